import AsyncHTTPClient
import Foundation
import Gateway
import Metrics
import MetricsTestKit
import NIOCore
import NIOHTTP1
import Testing

/// One metrics backend for the whole test process (swift-metrics bootstraps once).
let testMetrics: TestMetrics = {
    let metrics = TestMetrics()
    MetricsSystem.bootstrap(metrics)
    return metrics
}()

private func get(_ client: HTTPClient, _ url: String, headers: [(String, String)] = []) async throws -> (HTTPClientResponse, String) {
    var request = HTTPClientRequest(url: url)
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    let response = try await client.execute(request, timeout: .seconds(10))
    return (response, try await response.bodyText())
}

private func setCookies(_ response: HTTPClientResponse) -> [String: String] {
    var out: [String: String] = [:]
    for value in response.headers["set-cookie"] {
        let name = String(value.prefix { $0 != "=" })
        out[name] = value
    }
    return out
}

/// `/redirect-to` with a percent-encoded target.
private func redirectPath(_ to: String, status: Int = 302) -> String {
    "/redirect-to?status=\(status)&to=" + to.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
}

private let siteForTracking = """
    cookie_domain: localhost
    decorate_hosts: [checkout.example-pay.com]
    """

@Suite struct TrackingTests {
    init() { _ = testMetrics }

    @Test(arguments: [true, false])
    func clickIDsBecomeFirstPartyCookiesAndOriginHeaders(http2: Bool) async throws {
        try await withGateway { gateway, _ in
            let client = TestClients.make(http2: http2)
            defer { Task { try await client.shutdown() } }
            let (response, body) = try await get(
                client, "https://localhost:\(gateway.httpsPort)/echo?ttclid=E.C.P.abc-123&fbclid=FB_1&utm_source=tiktok",
                headers: [("x-clickgate-ttclid", "spoofed"), ("X-ClickGate-Visitor", "spoofed"), ("cookie", "_ttp=2Tt.pxl-1")])
            let cookies = setCookies(response)
            #expect(cookies["ttclid"] == "ttclid=E.C.P.abc-123; Max-Age=2592000; Path=/; Secure; SameSite=Lax")
            #expect(cookies["_fbc"]?.hasPrefix("_fbc=fb.1.") == true && cookies["_fbc"]?.contains(".FB_1; Max-Age=7776000;") == true)
            let visitor = try #require(cookies["_cg_vid"])
            #expect(visitor.hasSuffix("; Max-Age=34560000; Path=/; Secure; HttpOnly; SameSite=Lax"))
            #expect(cookies["_ttp"] == "_ttp=2Tt.pxl-1; Max-Age=34128000; Path=/; Secure; SameSite=Lax")
            let seen = try JSONDecoder().decode(Echo.self, from: Data(body.utf8))
            #expect(seen.values("x-clickgate-ttclid") == ["E.C.P.abc-123"])
            let visitorID = String(visitor.dropFirst("_cg_vid=".count).prefix(32))
            #expect(seen.values("x-clickgate-visitor") == [visitorID])
            let line = await gateway.awaitAccessLine { $0["path"] == "/echo" }
            #expect(line?["click_id"] == "url")
            // The click reached the ledger hand-off with what the sidecar needs.
            let click = try #require(gateway.clicks.drain().first)
            #expect(click.visitorID == visitorID)
            #expect(click.clickIDs.map(\.value) == ["E.C.P.abc-123", "FB_1"])
            #expect(click.ttp == "2Tt.pxl-1")
            #expect(click.clientAddress == "127.0.0.1")
            #expect(click.landingURL == "https://localhost:\(gateway.httpsPort)/echo?ttclid=E.C.P.abc-123&fbclid=FB_1&utm_source=tiktok")
        }
    }

    @Test func cookiesAreSetWhateverTheStatusAndALaterClickReplacesThem() async throws {
        try await withGateway(hosts: "[localhost, www.localhost]", site: siteForTracking) { gateway, _ in
            let client = TestClients.make(http2: true)
            defer { Task { try await client.shutdown() } }
            let (missing, _) = try await get(client, "https://localhost:\(gateway.httpsPort)/nothing-here?ttclid=A1", headers: [("cookie", "ttclid=OLD")])
            #expect(missing.status == .notFound)
            #expect(setCookies(missing)["ttclid"] == "ttclid=A1; Max-Age=2592000; Path=/; Domain=localhost; Secure; SameSite=Lax")
            let (redirect, _) = try await get(client, "https://localhost:\(gateway.httpsPort)/redirect?ttclid=A2")
            #expect(redirect.status == .found)
            #expect(setCookies(redirect)["ttclid"]?.hasPrefix("ttclid=A2;") == true)
            // A returning visitor keeps its id: no new visitor cookie.
            let (again, _) = try await get(client, "https://localhost:\(gateway.httpsPort)/echo", headers: [("cookie", "_cg_vid=0123456789abcdef0123456789abcdef")])
            #expect(setCookies(again).isEmpty)
            // Over plain HTTP the cookies are not `Secure`; a host inside the cookie domain gets it.
            let plain = try await curl(["-s", "-D", "-", "-o", "/dev/null", "-H", "host: www.localhost", "http://127.0.0.1:\(gateway.httpPort)/echo?ttclid=P1"])
            #expect(plain.stdout.contains("set-cookie: ttclid=P1; Max-Age=2592000; Path=/; Domain=localhost; SameSite=Lax\r\n"), "\(plain.stdout)")
            #expect(plain.stdout.contains("; Max-Age=34560000; Path=/; Domain=localhost; HttpOnly; SameSite=Lax\r\n"), "\(plain.stdout)")
        }
    }

    @Test(arguments: [
        // target, request cookies, expected Location
        ("/offer", "", "/offer?ttclid=E.C.P.1&utm_source=tiktok&utm_campaign=spring"),
        ("https://checkout.example-pay.com/pay#x", "", "https://checkout.example-pay.com/pay?ttclid=E.C.P.1&utm_source=tiktok&utm_campaign=spring#x"),
        ("https://www.localhost/next?ttclid=THEIRS", "", "https://www.localhost/next?ttclid=THEIRS&utm_source=tiktok&utm_campaign=spring"),
        ("https://thirdparty.example/collect", "", "https://thirdparty.example/collect"),
        ("//evil.example/", "", "//evil.example/"),
    ])
    func upstreamRedirectsGetTheirClickIDsBack(target: String, cookie: String, expected: String) async throws {
        try await withGateway(hosts: "[localhost, www.localhost]", site: siteForTracking) { gateway, _ in
            let result = try await curl(["--http1.1", "-D", "-", "-o", "/dev/null",
                "https://localhost:\(gateway.httpsPort)\(redirectPath(target))&ttclid=E.C.P.1&utm_source=tiktok&utm_campaign=spring"])
            let location = result.stdout.split(separator: "\r\n").first { $0.lowercased().hasPrefix("location:") }
            #expect(location.map { String($0.dropFirst("location: ".count)) } == expected, "\(result.stdout)")
        }
    }

    @Test func theCookieSuppliesTheIDWhenTheURLLacksIt() async throws {
        try await withGateway(hosts: "[localhost, www.localhost]", site: siteForTracking) { gateway, _ in
            for status in [301, 302, 303, 307, 308] {
                let result = try await curl(["--http2", "-D", "-", "-o", "/dev/null", "-H", "cookie: ttclid=FROM.COOKIE",
                    "https://localhost:\(gateway.httpsPort)\(redirectPath("/offer", status: status))"])
                #expect(result.stdout.lowercased().contains("location: /offer?ttclid=from.cookie"), "\(status): \(result.stdout)")
                // The URL no longer names the click: a shared cache must not hand this answer to others.
                #expect(result.stdout.lowercased().contains("cache-control: private"), "\(status): \(result.stdout)")
            }
            let refresh = try await curl(["-D", "-", "-o", "/dev/null",
                "https://localhost:\(gateway.httpsPort)/redirect-to?refresh=0%3B%20url%3D%2Fnext&ttclid=R1"])
            #expect(refresh.stdout.contains("refresh: 0; url=/next?ttclid=R1"), "\(refresh.stdout)")
        }
    }

    @Test func hostileClickIDsAreNeverWrittenAnywhere() async throws {
        try await withGateway(hosts: "[localhost, www.localhost]", site: siteForTracking) { gateway, _ in
            for value in ["a%0D%0ASet-Cookie:%20evil=1", "a%3Bdomain%3Devil.example", "%22quoted%22", "caf%C3%A9", String(repeating: "x", count: 1100)] {
                let result = try await curl(["--http1.1", "-D", "-", "-o", "/dev/null",
                    "https://localhost:\(gateway.httpsPort)\(redirectPath("/offer"))&ttclid=\(value)"])
                let head = result.stdout.lowercased()
                #expect(!head.contains("set-cookie: ttclid="), "\(value): \(head)")
                #expect(!head.contains("evil"), "\(value): \(head)")
                #expect(head.contains("location: /offer\r\n"), "\(value): \(head)")
            }
            let rejected = testMetrics.counters.filter { $0.label == "clickgate_click_ids_rejected_total" }
            #expect(!rejected.isEmpty)
        }
    }

    @Test(arguments: [("sec-gpc: 1", ""), ("x-none: 1", "cmp=denied")])
    func withoutConsentNothingIsStoredOrSet(header: String, cookie: String) async throws {
        try await withGateway(top: "tracking: { consent: { cookie: cmp, denied: [denied] } }") { gateway, _ in
            let result = try await curl(["--http2", "-D", "-", "-H", header, "-H", "cookie: \(cookie)",
                "https://localhost:\(gateway.httpsPort)/echo?ttclid=E.C.P.nope"])
            #expect(!result.stdout.lowercased().contains("set-cookie"), "\(result.stdout)")
            #expect(!result.stdout.lowercased().contains("x-clickgate-visitor"))
            #expect(gateway.clicks.drain().isEmpty)
        }
    }

    @Test func smartlinksForwardEveryParameterAndCannotBeSteered() async throws {
        let top = """
            smartlinks:
              - path: /go/spring
                targets:
                  - { url: "https://localhost/spring?src=sl", weight: 1 }
                  - { url: "https://localhost/spring-b", weight: 1 }
                  - { url: "https://m.localhost/spring", weight: 1, device: mobile }
            """
        try await withGateway(top: top) { gateway, origin in
            let base = "https://localhost:\(gateway.httpsPort)"
            let result = try await curl(["--http2", "-D", "-", "-o", "/dev/null", "-H", "cookie: _cg_vid=0123456789abcdef0123456789abcdef",
                "\(base)/go/spring?ttclid=E.C.P.sl&utm_source=tiktok&src=evil&url=https%3A%2F%2Fevil.example"])
            let head = result.stdout.lowercased()
            #expect(head.hasPrefix("http/2 302"))
            let location = try #require(head.split(separator: "\r\n").first { $0.hasPrefix("location:") }).dropFirst("location: ".count)
            #expect(location.hasPrefix("https://localhost/spring"), "\(location)")
            #expect(location.contains("ttclid=e.c.p.sl") && location.contains("utm_source=tiktok"))
            #expect(!location.contains("src=evil"), "the target's own value wins")
            #expect(head.contains("set-cookie: ttclid=e.c.p.sl;"))
            // Sticky: the same visitor lands on the same target every time.
            for _ in 0..<5 {
                let again = try await curl(["-D", "-", "-o", "/dev/null", "-H", "cookie: _cg_vid=0123456789abcdef0123456789abcdef", "\(base)/go/spring?ttclid=E.C.P.sl&utm_source=tiktok&src=evil&url=https%3A%2F%2Fevil.example"])
                #expect(again.stdout.lowercased().contains(String(location)))
            }
            let mobile = try await curl(["-D", "-", "-o", "/dev/null", "-A", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148", "\(base)/go/spring"])
            #expect(mobile.stdout.lowercased().contains("location: https://m.localhost/spring"))
            let unknown = try await curl(["-o", "/dev/null", "-w", "%{http_code}", "\(base)/go/unknown?to=https://evil.example"])
            #expect(unknown.stdout == "404")
            #expect(origin.connectionCount == 0, "smartlinks never reach the origin")
            let click = gateway.clicks.drain().first
            #expect(click?.smartlinkTarget?.hasPrefix("https://localhost/spring") == true)
        }
    }

    @Test func theDemoFlowKeepsTheClickIDThroughTheRedirect() async throws {
        let gateway = try await TestGateway.start(TestFiles.yaml(upstream: "builtin:demo"))
        defer { Task { await gateway.stop() } }
        let result = try await curl(["-D", "-", "-o", "/dev/null", "https://localhost:\(gateway.httpsPort)/redirect?ttclid=demo123&utm_source=tiktok"])
        #expect(result.stdout.contains("location: /offer?ttclid=demo123&utm_source=tiktok"), "\(result.stdout)")
        let landing = try await curl(["https://localhost:\(gateway.httpsPort)/?ttclid=demo123"])
        #expect(landing.stdout.contains("href=\"/redirect?ttclid=demo123\""))
    }

    /// With `rewrite_html`, an HTML answer to a request with a click id streams decorated (no
    /// Content-Length, chunked on HTTP/1.1); without a click id the answer is the origin's, byte for byte.
    @Test(arguments: ["--http1.1", "--http2"])
    func htmlTowardTheCheckoutIsDecoratedOnlyForClicks(proto: String) async throws {
        try await withGateway(site: "decorate_hosts: [checkout.test]\nrewrite_html: true") { gateway, _ in
            let url = "https://localhost:\(gateway.httpsPort)/journey/shop"
            let port = String(gateway.httpsPort)
            // The origin gzips HTML for clients that accept it: the gateway inflates, decorates and
            // deflates again for a client that takes gzip (curl --compressed), and sends it plain to one
            // that does not.
            for compressed in [true, false] {
                let clicked = try await curl([proto, "-s", "-D", "-"] + (compressed ? ["--compressed"] : []) + [url + "?ttclid=E.C.P.html&utm_source=tiktok"])
                let headers = clicked.stdout.lowercased().components(separatedBy: "\r\n\r\n")[0]
                #expect(clicked.stdout.contains(#"href="https://checkout.test:\#(port)/journey/checkout?ttclid=E.C.P.html&amp;utm_source=tiktok""#), "\(clicked.stdout)")
                #expect(clicked.stdout.contains(#"<input type="hidden" name="ttclid" value="E.C.P.html">"#))
                #expect(clicked.stdout.contains(#"href="https://thirdparty.test:\#(port)/journey/landing""#))
                #expect(!headers.contains("content-length:"), "\(headers)")
                #expect(headers.contains("content-encoding: gzip") == compressed, "\(headers)")
                #expect(headers.contains("vary: accept-encoding"), "\(headers)")
                #expect(headers.contains("cache-control: private"), "a page with one visitor's click id stays out of shared caches")
            }
            // Without a click id the origin's answer passes untouched, in the coding the origin chose
            // from curl's list (deflate, which the gateway never reads) and with its length.
            let plain = try await curl([proto, "-s", "-D", "-", "--compressed", url])
            let plainHeaders = plain.stdout.lowercased().components(separatedBy: "\r\n\r\n")[0]
            #expect(plainHeaders.contains("content-length:") && plainHeaders.contains("content-encoding: deflate"), "\(plainHeaders)")
            #expect(!plainHeaders.contains("cache-control"))
            #expect(plain.stdout.contains("<h1>shop</h1>") && !plain.stdout.contains("ttclid"))
        }
    }

    @Test(arguments: ["corrupt", "truncated"])
    func aDamagedGzipPageIsCutOffNotPassedOff(damage: String) async throws {
        try await withGateway(site: "decorate_hosts: [checkout.test]\nrewrite_html: true") { gateway, _ in
            let url = "https://localhost:\(gateway.httpsPort)/gzip-broken/\(damage)?ttclid=E.C.P.damaged"
            for compressed in [true, false] {
                let result = try await curl(["--http1.1", "-s", "-o", "/dev/null"] + (compressed ? ["--compressed"] : []) + [url])
                // The head may be out before the damage shows; either way the answer ends without its
                // last chunk, and curl reports the failure instead of a page.
                #expect(result.status != 0, "curl exit \(result.status): \(result.stderr)")
            }
            // The gateway itself carries on.
            let next = try await curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "https://localhost:\(gateway.httpsPort)/journey/landing"])
            #expect(next.stdout == "200")
        }
    }
}
