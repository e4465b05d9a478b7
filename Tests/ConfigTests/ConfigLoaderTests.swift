import Config
import Testing

/// Files that "exist" for these tests; everything else is missing.
private let present: Set<String> = ["certs/site.pem", "certs/site.key"]

private func load(_ yaml: String) throws(ConfigError) -> GatewayConfig {
    try ConfigLoader.load(yaml: yaml, source: "test.yaml", fileExists: { present.contains($0) })
}

private func problems(_ yaml: String) -> [String] {
    do {
        _ = try load(yaml)
        return []
    } catch {
        return error.problems.map(\.description)
    }
}

private let minimal = """
    tls:
      certificates:
        - { cert: certs/site.pem, key: certs/site.key }
    sites:
      - hosts: [lp.example.com]
        upstream: http://127.0.0.1:3000
    """

@Suite struct ConfigLoaderTests {
    @Test func theDocumentedExampleLoads() throws {
        let config = try load("""
            listen: { https: "0.0.0.0:8443", http: "0.0.0.0:8080", admin: "127.0.0.1:9090" }
            tls:
              certificates:
                - { cert: certs/site.pem, key: certs/site.key }
            trusted_proxies: ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]
            sites:
              - hosts: [lp.example.com, www.example.com]
                upstream: http://127.0.0.1:3000
                cookie_domain: example.com
                decorate_hosts: [checkout.example-pay.com]
                pixel: main
            smartlinks:
              - { path: /go/spring, targets: [ { url: "https://lp.example.com/spring", weight: 1 } ] }
            events:
              path: /_clickgate/events
              store: sqlite:data/clickgate.sqlite
              endpoint: https://business-api.tiktok.com/open_api/v1.3/event/track/
              pixels:
                main: { pixel_code: CXXXXXXX, access_token_env: TIKTOK_ACCESS_TOKEN, test_event_code: null }
            """)
        #expect(config.listen.https == HostPort(host: "0.0.0.0", port: 8443))
        #expect(config.listen.admin == HostPort(host: "127.0.0.1", port: 9090))
        #expect(config.trustedProxies.count == 3)
        #expect(config.trustedProxies[0].contains("10.1.2.3"))
        #expect(!config.trustedProxies[0].contains("11.0.0.1"))
        #expect(config.trustedProxies[1].contains("2001:db8::1"))
        #expect(config.trustedProxies[2].contains("192.0.2.7") && !config.trustedProxies[2].contains("192.0.2.8"))
        #expect(config.sites[0].hosts == ["lp.example.com", "www.example.com"])
        #expect(config.sites[0].upstream == GatewayConfig.Upstream(scheme: .http, host: "127.0.0.1", port: 3000))
        #expect(config.sites[0].cookieDomain == "example.com")
        #expect(config.sites[0].pixel == "main")
        #expect(config.smartlinks[0].targets == [.init(url: "https://lp.example.com/spring", weight: 1)])
        #expect(config.events.pixels["main"]?.pixelCode == "CXXXXXXX")
        #expect(config.events.pixels["main"]?.testEventCode == nil)
    }

    @Test func defaultsApplyWhenSectionsAreAbsent() throws {
        let config = try load(minimal)
        #expect(config.listen.https?.port == 8443)
        #expect(config.limits.maxBodySize == 10 * 1024 * 1024)
        #expect(config.timeouts.header == .seconds(15))
        #expect(config.unknownHost == .misdirected)
        #expect(config.events.path == "/_clickgate/events")
        #expect(config.events.clickLedger)
        #expect(try load(minimal + "\nevents: { click_ledger: false }\n").events.clickLedger == false)
    }

    @Test func unknownKeysAreNamedWithTheirPath() {
        let found = problems(minimal + "\n    upstrem_tls: {}\n")
        #expect(found == ["sites[0].upstrem_tls: unknown key (known keys here: cookie_domain, decorate_hosts, default, hosts, max_body_size, pixel, preserve_host, rewrite_html, upstream, upstream_tls) (line 7)"])
        #expect(problems("lsten: {}\n" + minimal).first?.hasPrefix("lsten: unknown key") == true)
    }

    @Test func wrongTypesSayWhatWasExpected() {
        let found = problems(minimal.replacingOccurrences(of: "hosts: [lp.example.com]", with: "hosts: lp.example.com"))
        #expect(found.contains { $0.hasPrefix("sites[0].hosts: expected a list, found a scalar 'lp.example.com'") }, "\(found)")
        let timeout = problems(minimal + "\ntimeouts: { header: soon }\n")
        #expect(timeout.contains { $0.hasPrefix("timeouts.header: 'soon' is not a duration") })
        let bool = problems(minimal + "\n    default: \"yes\"\n")
        #expect(bool.contains { $0.hasPrefix("sites[0].default: expected true or false") })
        #expect(problems(minimal + "\nevents: { click_ledger: sometimes }\n").contains { $0.hasPrefix("events.click_ledger: expected true or false") })
    }

    /// Found by the config fuzzer: these trapped (a Double past Int64, a size multiplication).
    @Test func hugeDurationsAndSizesAreProblemsNotCrashes() {
        let duration = problems(minimal + "\ntimeouts: { idle: 9e99 }\n")
        #expect(duration.contains { $0.hasPrefix("timeouts.idle: '9e99' is longer than the 100 years a duration may be") }, "\(duration)")
        let size = problems(minimal + "\nlimits: { max_body_size: 99999999999GiB }\n")
        #expect(size.contains { $0.hasPrefix("limits.max_body_size: '99999999999GiB' is larger than any size") }, "\(size)")
    }

    @Test func missingCertificateFilesAreReported() {
        let found = problems(minimal.replacingOccurrences(of: "certs/site.key", with: "certs/missing.key"))
        #expect(found.contains { $0.hasPrefix("tls.certificates[0].key: file 'certs/missing.key' does not exist") })
    }

    @Test func badCIDRsAndURLsAreReported() {
        let cidr = problems(minimal + "\ntrusted_proxies: [\"10.0.0.0/33\", \"not-an-ip\", \"::1/129\"]\n")
        #expect(cidr.contains { $0.hasPrefix("trusted_proxies[0]: prefix '/33' must be 0 to 32") })
        #expect(cidr.contains { $0.hasPrefix("trusted_proxies[1]: 'not-an-ip' is not an IPv4 or IPv6 address") })
        #expect(cidr.contains { $0.hasPrefix("trusted_proxies[2]: prefix '/129' must be 0 to 128") })
        let url = problems(minimal.replacingOccurrences(of: "http://127.0.0.1:3000", with: "ftp://origin"))
        #expect(url.contains { $0.hasPrefix("sites[0].upstream: scheme 'ftp' is not supported") })
        let path = problems(minimal.replacingOccurrences(of: "http://127.0.0.1:3000", with: "http://origin/app"))
        #expect(path.contains { $0.hasPrefix("sites[0].upstream: an upstream is an origin only") })
    }

    @Test func ipAddressesParseStrictly() {
        for good in ["127.0.0.1", "0.0.0.0", "255.255.255.255", "010.1.1.1", "::1", "::ffff:10.0.0.1", "2001:db8::8a2e:370:7334"] {
            #expect(IPAddressBytes.parse(good) != nil, "\(good)")
        }
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1..2.3", "1.2.3.", ".1.2.3", "1.2.3.4 ", "1.2.3.0004", "१.2.3.4", "::1::", "example.com"] {
            #expect(IPAddressBytes.parse(bad) == nil, "\(bad)")
        }
        #expect(IPAddressBytes.parse("10.1.2.3")?.bytes.suffix(4) == [10, 1, 2, 3])
        let loopback = try? CIDR.parse("127.0.0.0/8").get()
        #expect(loopback?.contains("127.9.9.9") == true)
        #expect(loopback?.contains("128.0.0.1") == false)
    }

    @Test func crossReferencesAreChecked() {
        let pixel = problems(minimal + "\n    pixel: nope\n")
        #expect(pixel.contains { $0.hasPrefix("sites[0].pixel: no pixel named 'nope'") })
        let cookie = problems(minimal + "\n    cookie_domain: other.com\n")
        #expect(cookie.contains { $0.contains("'other.com' does not cover host 'lp.example.com'") })
        let duplicate = problems(minimal + "\n  - hosts: [lp.example.com]\n    upstream: http://127.0.0.1:4000\n")
        #expect(duplicate.contains { $0.contains("host 'lp.example.com' is already served by sites[0]") })
    }

    @Test func everyProblemIsReportedInOneRun() {
        let found = problems("""
            listen: { https: "0.0.0.0:99999" }
            tls: { certificates: [ { cert: nope.pem, key: nope.key } ] }
            sites:
              - hosts: []
                upstream: "::"
            """)
        #expect(found.count >= 4, "\(found)")
    }

    @Test func malformedYAMLIsAClearError() {
        let found = problems("sites: [unclosed\n")
        #expect(found.count == 1)
        #expect(found[0].hasPrefix("not valid YAML"))
    }

    @Test(arguments: [
        ("500ms", Duration.milliseconds(500)), ("10s", .seconds(10)), ("2m", .seconds(120)), ("1h", .seconds(3600)), ("7", .seconds(7)),
    ])
    func durations(text: String, expected: Duration) throws {
        let config = try load(minimal + "\ntimeouts: { idle: \(text) }\n")
        #expect(config.timeouts.idle == expected)
    }

    @Test(arguments: [("1024", 1024), ("512KiB", 524_288), ("10MiB", 10_485_760), ("1GiB", 1_073_741_824), ("2MB", 2_000_000)])
    func sizes(text: String, expected: Int) throws {
        let config = try load(minimal + "\nlimits: { max_body_size: \(text) }\n")
        #expect(config.limits.maxBodySize == expected)
    }

    @Test func listenAddressForms() throws {
        #expect(try HostPort.parse("[::1]:8443").get() == HostPort(host: "::1", port: 8443))
        #expect(try HostPort.parse(":8080").get() == HostPort(host: "0.0.0.0", port: 8080))
        #expect((try? HostPort.parse("::1:8443").get()) == nil)
        #expect((try? HostPort.parse("host:http").get()) == nil)
    }
}
