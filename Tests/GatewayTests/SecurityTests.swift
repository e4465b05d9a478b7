import Events
import EventsTestSupport
import Foundation
import Testing

/// Outside tools and whole-run sweeps for what docs/SECURITY.md promises.
@Suite struct SecurityTests {
    /// testssl.sh (Debian's) against the HTTPS listener: TLS 1.2 and 1.3 only, no weak or anonymous
    /// ciphers, forward secrecy.
    @Test func testsslFindsNoWeakProtocolOrCipher() async throws {
        let origin = try await TestOrigin.start()
        defer { Task { await origin.stop() } }
        let gateway = try await TestGateway.start(TestFiles.yaml(upstream: origin.url))
        defer { Task { await gateway.stop() } }
        let report = TestFiles.makeScratch("testssl") + "/report.json"
        let run = try await runProcess("/usr/bin/testssl", [
            "--quiet", "--color", "0", "--warnings", "off", "--protocols", "--std", "--fs", "--jsonfile-pretty", report,
            "127.0.0.1:\(gateway.httpsPort)",
        ])
        let data = try #require(FileManager.default.contents(atPath: report), "testssl wrote no report: \(run.stdout.suffix(800))")
        guard case .object(let root) = try JSONValue.parse(Array(data)), case .array(let scans)? = root["scanResult"], let scan = scans.first,
            case .object(let sections) = scan
        else { Issue.record("unexpected testssl report"); return }
        var findings: [String: String] = [:]
        for case .array(let items) in sections.values {
            for item in items { if let id = item["id"]?.stringValue { findings[id] = item["finding"]?.stringValue ?? "" } }
        }
        for id in ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA"] {
            #expect(findings[id] == "not offered", "\(id): \(findings[id] ?? "missing from the report")")
        }
        #expect(findings["TLS1_2"] == "offered")
        #expect(findings["TLS1_3"]?.hasPrefix("offered") == true)
        #expect(findings["PFS"] == "offered", "forward secrecy: \(findings["PFS"] ?? "missing")")
        #expect(findings["ALPN_HTTP2"] == "h2")
    }

    /// A pixel's access token appears nowhere a run leaves behind: not in logs (at debug level), the
    /// metrics, the status page, error answers, dead letters or the store's file.
    @Test func theAccessTokenNeverAppearsInWhatTheGatewayWrites() async throws {
        let token = "tok-\(UUID().uuidString)-SECRET"
        let api = try await FakeEventsAPI.start(token: token)
        let origin = try await TestOrigin.start()
        let scratch = TestFiles.makeScratch("secrets")
        let yaml = TestFiles.deliveringYAML(upstream: origin.url, scratch: scratch, api: api, pixelCode: "CSECRET", tokenEnv: "SECRET_TOKEN")
        let gateway = try await GatewayProcess.start(yaml: yaml, directory: scratch, environment: ["SECRET_TOKEN": token])
        defer {
            gateway.signal(SIGKILL)
            Task { await api.stop(); await origin.stop() }
        }
        // Every answer the API can give: refused token, invalid batch (dead letter), errors, success.
        api.inject([.unauthorized, .http500, .garbage, .rateLimit])
        api.poison("secret-poisoned")
        for id in ["secret-1", "secret-poisoned", "secret-2"] {
            _ = try await curl(["-X", "POST", "-H", "content-type: application/json", "--data-binary",
                #"{"event":"Purchase","event_id":"\#(id)","properties":{"value":1,"currency":"EUR"}}"#, "https://localhost:\(gateway.httpsPort)/_clickgate/events"])
        }
        // Once the refused token has paused the pixel, a reload retries it at once.
        try await waitUntil("the pixel is paused") { gateway.log.contains("events api: pixel paused") }
        _ = try await runProcess(clickgateBinary, ["reload", "--admin", "127.0.0.1:\(gateway.adminPort)"])
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, !Set(["secret-1", "secret-2"]).isSubset(of: Set(api.delivered)) {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(Set(["secret-1", "secret-2"]).isSubset(of: Set(api.delivered)))
        let test = try await runProcess(clickgateBinary, ["events", "test", "--config", gateway.configPath, "--pixel", "main", "--test-event-code", "T1"],
            environment: ProcessInfo.processInfo.environment.merging(["SECRET_TOKEN": token]) { _, new in new })

        var written = [gateway.log, test.stdout, test.stderr]
        for path in ["/metrics", "/status", "/api/history", "/readyz"] { written.append(try await curl(["\(gateway.adminURL)\(path)"]).stdout) }
        written.append(try await runProcess(clickgateBinary, ["events", "dead-letters", "--json", "--store", "sqlite:\(scratch)/events.sqlite"]).stdout)
        for file in try FileManager.default.contentsOfDirectory(atPath: scratch) where file.hasPrefix("events.sqlite") {
            written.append(String(decoding: FileManager.default.contents(atPath: scratch + "/" + file) ?? Data(), as: UTF8.self))
        }
        #expect(written[0].contains("events api: pixel paused"), "the run went through the refused-token path")
        #expect(written.joined().contains("secret-poisoned"), "the dead letter is there")
        for (i, text) in written.enumerated() {
            #expect(!text.contains(token) && !text.contains(String(token.dropFirst(4).prefix(20))), "the token leaked into output \(i)")
        }
    }
}
