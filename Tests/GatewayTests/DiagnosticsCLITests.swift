import EventsTestSupport
import Foundation
import Gateway
import Testing

/// `clickgate trace|extract|url build|events test`, run as a user runs them, against servers the
/// tests start.
@Suite struct DiagnosticsCLITests {
    func clickgate(_ arguments: [String], input: String? = nil, environment: [String: String]? = nil) async throws -> ProcessResult {
        try await runProcess(clickgateBinary, arguments, environment: environment, input: input)
    }

    func traceJSON(_ arguments: [String]) async throws -> (status: Int32, report: [String: Any], stderr: String) {
        let result = try await clickgate(["trace", "--json"] + arguments)
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return (result.status, object ?? [:], result.stderr + result.stdout)
    }

    @Test func traceFollowsEveryHopTypeAndReportsTheClickIDKept() async throws {
        let origin = try await TestOrigin.start()
        defer { Task { await origin.stop() } }
        let (status, report, output) = try await traceJSON(["\(origin.url)/chain/start?ttclid=E.C.P.kept1&utm_source=tiktok&x=1"])
        #expect(status == 0, "\(output)")
        let hops = report["hops"] as? [[String: Any]] ?? []
        let via = hops.compactMap { ($0["next"] as? [String: Any])?["via"] as? String }
        #expect(via == ["Location", "Refresh header", "meta refresh", "JS redirect (heuristic)", "JS redirect (heuristic)"], "\(output)")
        #expect(hops.last?["url"] as? String == "\(origin.url)/chain/landing?ttclid=E.C.P.kept1&utm_source=tiktok&x=1")
        #expect((hops[2]["next"] as? [String: Any])?["delay"] as? String == "1")
        #expect(report["outcome"] as? String == "kept")
        for hop in hops {
            let ids = (hop["click_ids"] as? [[String: Any]] ?? []).compactMap { $0["value"] as? String }
            #expect(ids == ["E.C.P.kept1"])
            #expect((hop["timing"] as? [String: Any])?["total_ms"] is Double)
        }
        let text = try await clickgate(["trace", "\(origin.url)/chain/start?ttclid=E.C.P.kept1"])
        #expect(text.status == 0)
        #expect(text.stdout.contains("✓ ttclid reached the end in 6 hops"), "\(text.stdout)")
        #expect(!text.stdout.contains("\u{1b}["), "no colours when stdout is not a terminal")
    }

    @Test(arguments: [("start", 1, "Location"), ("refresh", 2, "Refresh header"), ("meta", 3, "meta refresh"), ("js", 4, "JS redirect (heuristic)")])
    func traceNamesTheHopThatDropsTheClickID(step: String, droppedBy: Int, via: String) async throws {
        let origin = try await TestOrigin.start()
        defer { Task { await origin.stop() } }
        let (status, report, output) = try await traceJSON(["\(origin.url)/chain/start?ttclid=E.C.P.lost1&lose=\(step)"])
        #expect(status == 1, "\(output)")
        #expect(report["outcome"] as? String == "lost")
        let loss = (report["losses"] as? [[String: Any]])?.first
        #expect(loss?["parameter"] as? String == "ttclid")
        #expect(loss?["platform"] as? String == "tiktok")
        #expect(loss?["dropped_by_hop"] as? Int == droppedBy, "\(output)")
        #expect(loss?["first_missing_hop"] as? Int == droppedBy + 1)
        #expect(loss?["via"] as? String == via)
        let text = try await clickgate(["trace", "\(origin.url)/chain/start?ttclid=E.C.P.lost1&lose=\(step)"])
        #expect(text.status == 1)
        #expect(text.stdout.contains("✗ ttclid (tiktok) lost: hop \(droppedBy) (\(via)) sent the browser to hop \(droppedBy + 1) without it"), "\(text.stdout)")
    }

    @Test func traceCarriesCookiesStopsLoopsAndHonoursMaxHops() async throws {
        let origin = try await TestOrigin.start()
        defer { Task { await origin.stop() } }
        let cookie = try await traceJSON(["\(origin.url)/chain/cookie?ttclid=E.C.P.c1"])
        #expect(cookie.status == 0, "\(cookie.stderr)")
        #expect((cookie.report["hops"] as? [Any])?.count == 3)

        let loop = try await traceJSON(["\(origin.url)/chain/loop?ttclid=E.C.P.l1"])
        #expect(loop.status == 2)
        #expect((loop.report["error"] as? String)?.contains("redirect loop") == true, "\(loop.stderr)")

        let short = try await traceJSON(["--max-hops", "2", "\(origin.url)/chain/start?ttclid=E.C.P.m1"])
        #expect(short.status == 2)
        #expect((short.report["error"] as? String)?.contains("stopped after 2 hops") == true, "\(short.stderr)")

        let refused = try await clickgate(["trace", "http://127.0.0.1:1/?ttclid=x"])
        #expect(refused.status == 2)
        #expect(refused.stdout.contains("connection refused"), "\(refused.stdout)")

        let notURL = try await clickgate(["trace", "shop.example/?ttclid=x"])
        #expect(notURL.status == 2)
        #expect(notURL.stdout.contains("starting with https://"), "\(notURL.stdout)")

        let badResolve = try await clickgate(["trace", "--resolve", "nonsense", "https://shop.test/"])
        #expect(badResolve.status != 0)
        #expect(badResolve.stderr.contains("HOST:PORT:ADDR"), "\(badResolve.stderr)")
    }

    @Test func traceSendsTheChosenUserAgent() async throws {
        let origin = try await TestOrigin.start()
        defer { Task { await origin.stop() } }
        for (option, expected) in [("mobile", "musical_ly"), ("desktop", "Windows NT"), ("probe/1.0", "probe/1.0")] {
            let (_, report, output) = try await traceJSON(["--user-agent", option, "\(origin.url)/echo"])
            #expect((report["user_agent"] as? String)?.contains(expected) == true, "\(output)")
        }
    }

    /// Through the real gateway over TLS, with `--resolve` and `--cacert`: the origin's redirect
    /// drops the click id and the gateway puts it back; straight to the origin, it is lost.
    @Test func traceThroughTheGatewayShowsTheClickIDRestored() async throws {
        let scratch = TestFiles.makeScratch("trace-tls")
        let origin = try await TestOrigin.start()
        let yaml = TestFiles.yaml(upstream: origin.url, hosts: "[shop.test]", certificate: try TestFiles.certificate(for: ["shop.test"], in: scratch))
        let gateway = try await GatewayProcess.start(yaml: yaml, directory: scratch)
        defer {
            gateway.signal(SIGKILL)
            Task { await origin.stop() }
        }
        let port = gateway.httpsPort
        let start = "https://shop.test:\(port)/chain/start?ttclid=E.C.P.gw1&utm_source=tiktok&lose=start"
        let resolve = ["--resolve", "shop.test:\(port):127.0.0.1"]

        let through = try await traceJSON(resolve + ["--cacert", TestFiles.caFile, start])
        #expect(through.status == 0, "\(through.stderr)")
        let hops = through.report["hops"] as? [[String: Any]] ?? []
        #expect((hops.first?["timing"] as? [String: Any])?["tls_ms"] is Double)
        #expect((hops.first?["click_id_cookies"] as? [[String: Any]])?.first?["name"] as? String == "ttclid")
        #expect((hops.dropFirst().first?["url"] as? String)?.contains("ttclid=E.C.P.gw1") == true, "\(through.stderr)")

        let direct = try await traceJSON(["\(origin.url)/chain/start?ttclid=E.C.P.gw1&lose=start"])
        #expect(direct.status == 1)

        let untrusted = try await clickgate(["trace"] + resolve + [start])
        #expect(untrusted.status == 2)
        #expect(untrusted.stdout.contains("TLS handshake with shop.test:\(port) failed"), "\(untrusted.stdout)")
        let insecure = try await clickgate(["trace", "--insecure"] + resolve + [start])
        #expect(insecure.status == 0, "\(insecure.stdout)\n\(gateway.log)")
    }

    @Test func extractListsClickIDsFromArgumentsAndStandardInput() async throws {
        let url = "https://shop.example/p?utm_source=tiktok&ttclid=E.C.P.x1&utm_campaign=__CAMPAIGN_NAME__&u=https%3A%2F%2Fpay.example%2F%3Ffbclid%3DIwAR9"
        let table = try await clickgate(["extract", url])
        #expect(table.status == 0)
        #expect(table.stdout.contains("tiktok     ttclid        E.C.P.x1"), "\(table.stdout)")
        #expect(table.stdout.contains("meta       fbclid        IwAR9  (inside u)"), "\(table.stdout)")
        #expect(table.stdout.contains("macro __CAMPAIGN_NAME__"))

        let piped = try await clickgate(["extract", "--json"], input: "\(url)\n\nhttps://shop.example/plain\n")
        #expect(piped.status == 1, "one URL has no click id")
        let entries = try JSONSerialization.jsonObject(with: Data(piped.stdout.utf8)) as? [[String: Any]] ?? []
        #expect(entries.count == 2)
        let platforms = (entries.first?["click_ids"] as? [[String: Any]] ?? []).compactMap { $0["platform"] as? String }
        #expect(platforms == ["tiktok", "meta"])

        let broken = try await clickgate(["extract", "https://shop.example/a b?ttclid=1"])
        #expect(broken.status == 2)
        #expect(broken.stdout.contains("not a URL"))
        let nothing = try await clickgate(["extract"], input: "")
        #expect(nothing.status == 2)
        #expect(nothing.stderr.contains("no URLs"))
    }

    @Test func urlBuildKeepsTheBaseAndPutsClickIDsFirst() async throws {
        let built = try await clickgate([
            "url", "build", "--base", "https://shop.example/p?ref=a%2Fb&ttclid=E.C.P.z&utm_source=old#reviews", "--source", "tiktok",
            "--medium", "paid_social", "--campaign", "spring sale", "--content", "__CID_NAME__",
        ])
        #expect(built.status == 0, "\(built.stderr)")
        #expect(built.stdout == "https://shop.example/p?ttclid=E.C.P.z&ref=a%2Fb&utm_source=tiktok&utm_medium=paid_social&utm_campaign=spring%20sale&utm_content=__CID_NAME__#reviews\n")
        #expect(built.stderr.contains("replaced the base URL's utm_source=old"))

        let bad = try await clickgate(["url", "build", "--base", "/relative", "--source", "a", "--medium", "b", "--campaign", "c"])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("--base must be an absolute http:// or https:// URL"))
        let empty = try await clickgate(["url", "build", "--base", "https://a.example/", "--source", " ", "--medium", "b", "--campaign", "c"])
        #expect(empty.status == 2)
        #expect(empty.stderr.contains("--source is empty"))
    }

    @Test func eventsTestShowsTheExchangeWithTheTokenRedacted() async throws {
        let token = "secret-token-\(UUID().uuidString)"
        let api = try await FakeEventsAPI.start(token: token)
        defer { Task { await api.stop() } }
        let scratch = TestFiles.makeScratch("events-test")
        let config = scratch + "/clickgate.yaml"
        try TestFiles.yaml(upstream: "http://127.0.0.1:9", top: """
            events:
              store: sqlite:\(scratch)/events.sqlite
              endpoint: \(api.url)
              pixels:
                shop: { pixel_code: CSHOP01, access_token_env: CG_TEST_TOKEN }
                nokey: { pixel_code: CNOKEY1, access_token_env: CG_UNSET_TOKEN }
            """).write(toFile: config, atomically: true, encoding: .utf8)
        var environment = ProcessInfo.processInfo.environment
        environment["CG_TEST_TOKEN"] = token
        environment["CG_UNSET_TOKEN"] = nil

        let sent = try await clickgate(
            ["events", "test", "--config", config, "--pixel", "shop", "--test-event-code", "TEST42", "--ttclid", "E.C.P.t1", "--email", "Ann@Example.com"],
            environment: environment)
        #expect(sent.status == 0, "\(sent.stdout)\(sent.stderr)")
        #expect(sent.stdout.contains("Access-Token: [redacted: \(token.count) characters]"))
        #expect(!sent.stdout.contains(token) && !sent.stderr.contains(token), "the token never appears")
        #expect(sent.stdout.contains(#""test_event_code" : "TEST42""#), "\(sent.stdout)")
        #expect(sent.stdout.contains(#"{"code":0,"message":"OK""#))
        #expect(sent.stdout.contains("code 0: OK: the events were accepted"))
        #expect(!sent.stdout.contains("Ann@Example.com"), "the email is hashed")
        #expect(api.testEventCodes == ["TEST42"])

        environment["CG_TEST_TOKEN"] = "wrong"
        let refused = try await clickgate(["events", "test", "--config", config, "--pixel", "shop", "--test-event-code", "T"], environment: environment)
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("code 40001: no permission"), "\(refused.stdout)")

        let noCode = try await clickgate(["events", "test", "--config", config, "--pixel", "shop"], environment: environment)
        #expect(noCode.status == 2)
        #expect(noCode.stderr.contains("no test event code"))
        let noToken = try await clickgate(["events", "test", "--config", config, "--pixel", "nokey", "--test-event-code", "T"], environment: environment)
        #expect(noToken.status == 2)
        #expect(noToken.stderr.contains("set the environment variable CG_UNSET_TOKEN"), "\(noToken.stderr)")
        let unknown = try await clickgate(["events", "test", "--config", config, "--pixel", "nope", "--test-event-code", "T"], environment: environment)
        #expect(unknown.stderr.contains("no pixel named 'nope' (events.pixels: nokey, shop)"), "\(unknown.stderr)")
        let badEvent = try await clickgate(["events", "test", "--config", config, "--pixel", "shop", "--test-event-code", "T", "--event", "purchase"], environment: environment)
        #expect(badEvent.status == 2)
        #expect(badEvent.stderr.contains("not a standard event name"), "\(badEvent.stderr)")

        api.inject([.http500])
        let failing = try await clickgate(["events", "test", "--config", config, "--pixel", "shop", "--test-event-code", "T"], environment: environment)
        #expect(failing.status == 1)
        #expect(failing.stdout.contains("HTTP 500"), "\(failing.stdout)")
        await api.stop()
        let down = try await clickgate(["events", "test", "--config", config, "--pixel", "shop", "--test-event-code", "T", "--timeout", "2"], environment: environment)
        #expect(down.status == 2)
        #expect(down.stdout.contains("no answer"), "\(down.stdout)")
    }
}
