import EventsTestSupport
import Foundation
import Gateway
import Testing

/// What an operator uses: the admin listener's endpoints and dashboard, reloads, the service files.
@Suite struct OperationsTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func get(_ url: String) async throws -> (status: Int, body: String) {
        let result = try await curl(["-w", "\n%{http_code}", url])
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
    }

    /// Traffic and deliveries show up in /metrics, /status and the dashboard (opened in headless
    /// Chromium, screenshot kept in artifacts/); a pixel TikTok refuses makes the gateway not ready,
    /// and a reload with the right token makes it ready again and delivers what waited.
    @Test func operatorSeesTrafficDeliveryReadinessAndTheDashboard() async throws {
        let api = try await FakeEventsAPI.start(token: "ops-token")
        let origin = try await TestOrigin.start()
        let scratch = TestFiles.makeScratch("ops")
        try "ops-token\n".write(toFile: scratch + "/token", atomically: true, encoding: .utf8)
        func yaml(token: String) -> String {
            TestFiles.yaml(upstream: origin.url, site: "pixel: main", top: """
                events:
                  store: sqlite:\(scratch)/events.sqlite
                  endpoint: \(api.url)
                  linger: 100ms
                  pixels: { main: { pixel_code: COPS001, \(token) } }
                admin: { history_interval: 1s }
                """)
        }
        let gateway = try await GatewayProcess.start(
            yaml: yaml(token: "access_token_env: OPS_TOKEN"), directory: scratch, environment: ["OPS_TOKEN": "ops-token"])
        defer {
            gateway.signal(SIGKILL)
            Task { await api.stop(); await origin.stop() }
        }
        let site = "https://localhost:\(gateway.httpsPort)"
        for i in 0..<6 { _ = try await curl(["-o", "/dev/null", "\(site)/echo?ttclid=E.C.P.ops\(i)&utm_source=tiktok"]) }
        _ = try await curl(["-o", "/dev/null", "\(site)/nowhere"])
        for i in 0..<3 {
            _ = try await curl(["-X", "POST", "-H", "content-type: application/json", "-b", "ttclid=E.C.P.ops\(i)",
                "--data-binary", #"{"event":"Purchase","event_id":"ops-\#(i)","user":{"email":"ops\#(i)@example.com"},"properties":{"value":1,"currency":"EUR"}}"#,
                "\(site)/_clickgate/events"])
        }
        try await waitUntil("three deliveries") { api.delivered.count >= 3 }
        try await Task.sleep(for: .milliseconds(1200))

        let metrics = try await get(gateway.adminURL + "/metrics")
        #expect(metrics.status == 200)
        for line in [
            #"clickgate_click_ids_captured_total{site="localhost",platform="tiktok",parameter="ttclid"} 6"#,
            #"clickgate_requests_total{site="localhost",code="200"}"#, #"clickgate_requests_total{site="localhost",code="404"} 1"#,
            #"clickgate_upstream_response_seconds_bucket{site="localhost",le="+Inf"}"#, #"clickgate_events_api_responses_total{code="0"}"#,
            "clickgate_events_delivered_total 3", #"clickgate_events_delivered_with_total{identifier="email_or_phone"} 3"#,
            "clickgate_events_queue_depth",
        ] {
            #expect(metrics.body.contains(line), "/metrics lacks \(line)")
        }

        let ready = try await get(gateway.adminURL + "/readyz")
        #expect(ready.status == 200, "\(ready.body)")
        let status = json(try await get(gateway.adminURL + "/status").body)
        #expect((status["sites"] as? [[String: Any]])?.first?["name"] as? String == "localhost")
        #expect((status["pixels"] as? [[String: Any]])?.first?["pixel_code"] as? String == "COPS001")
        #expect((status["generation"] as? [String: Any])?["number"] as? Int == 1)
        #expect((status["queue"] as? [String: Any])?["depth"] as? Int == 0)
        let history = json(try await get(gateway.adminURL + "/api/history").body)
        #expect((history["samples"] as? [Any])?.count ?? 0 >= 2)

        // The dashboard, as a browser renders it.
        let chromium = "/usr/bin/chromium"
        #expect(FileManager.default.isExecutableFile(atPath: chromium), "scripts/test installs Debian's chromium")
        let browser = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=\(scratch)/chromium",
            "--window-size=1360,1000", "--virtual-time-budget=5000"]
        let dom = try await runProcess(chromium, browser + ["--dump-dom", gateway.adminURL + "/"])
        #expect(dom.stdout.contains(#"data-loaded="1""#), "the dashboard's script did not render: \(dom.stderr.suffix(500))")
        #expect(dom.stdout.contains("localhost (total)"))
        #expect(dom.stdout.contains("<polyline"), "charts are drawn")
        let artifacts = Self.repository.appendingPathComponent("artifacts").path
        try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
        let screenshot = artifacts + "/dashboard.png"
        try? FileManager.default.removeItem(atPath: screenshot)
        _ = try await runProcess(chromium, browser + ["--screenshot=\(screenshot)", gateway.adminURL + "/"])
        let size = (try? FileManager.default.attributesOfItem(atPath: screenshot)[.size] as? Int) ?? 0
        #expect(size > 20_000, "a screenshot of the dashboard is saved in artifacts/")

        // TikTok refuses the token: the pixel pauses and the gateway is not ready.
        api.inject([.unauthorized])
        _ = try await curl(["-X", "POST", "-H", "content-type: application/json", "--data-binary", #"{"event":"Purchase","event_id":"ops-paused"}"#,
            "\(site)/_clickgate/events"])
        try await waitUntil("the pixel to pause") { try await get(gateway.adminURL + "/readyz").status == 503 }
        let notReady = try await get(gateway.adminURL + "/readyz")
        #expect(notReady.body.contains("paused for an authorization error: main"), "\(notReady.body)")
        let admin = ["--admin", "127.0.0.1:\(gateway.adminPort)"]
        #expect(try await runProcess(clickgateBinary, ["health"] + admin).status == 0, "alive")
        let readiness = try await runProcess(clickgateBinary, ["health", "--ready"] + admin)
        #expect(readiness.status == 1, "\(readiness.stdout)")

        // A reload (here with the token from a file): ready again, and the held-back event is
        // delivered now, not when the 60 s pause ends.
        try (yaml(token: "access_token_file: \(scratch)/token") + "\nlog: { access: stderr, level: debug }\n")
            .write(toFile: gateway.configPath, atomically: true, encoding: .utf8)
        let reload = try await runProcess(clickgateBinary, ["reload", "--admin", "127.0.0.1:\(gateway.adminPort)"])
        #expect(reload.status == 0, "\(reload.stdout)\(reload.stderr)")
        #expect(reload.stdout.contains("reloaded: generation 2"))
        try await waitUntil("the paused event") { api.delivered.contains("ops-paused") }
        #expect(try await get(gateway.adminURL + "/readyz").status == 200)
    }

    /// A reload serves new sites and smartlinks to new requests, lets requests in flight finish, and
    /// refuses a broken file (logged, the old configuration keeps serving); SIGHUP does the same.
    @Test func reloadChangesRoutingAndRefusesBrokenConfigurations() async throws {
        let origin = try await TestOrigin.start()
        let scratch = TestFiles.makeScratch("reload")
        let base = TestFiles.yaml(upstream: origin.url, hosts: "[localhost, 127.0.0.1]")
        let gateway = try await GatewayProcess.start(yaml: base, directory: scratch)
        defer {
            gateway.signal(SIGKILL)
            Task { await origin.stop() }
        }
        func write(_ yaml: String) throws {
            try (yaml + "\nlog: { access: stderr, level: debug }\n").write(toFile: gateway.configPath, atomically: true, encoding: .utf8)
        }
        let site = "https://localhost:\(gateway.httpsPort)"
        func smartlink() async throws -> String {
            try await curl(["-o", "/dev/null", "-w", "%{http_code} %header{location}", "\(site)/go/new?ttclid=E.C.P.r1"]).stdout
        }
        #expect(try await smartlink().hasPrefix("404"))

        let inFlight = Task { try await curl(["-o", "/dev/null", "-w", "%{http_code}", "\(site)/slow/1500"]).stdout }
        try await Task.sleep(for: .milliseconds(300))
        try write(base + """

            smartlinks:
              - path: /go/new
                targets: [{ url: "https://localhost/landing" }]
            """)
        // The test's listen.admin is port 0, so the CLI is told where the listener is.
        let applied = try await runProcess(clickgateBinary, ["reload", "--admin", "127.0.0.1:\(gateway.adminPort)"])
        #expect(applied.status == 0, "\(applied.stdout)\(applied.stderr)")
        let redirected = try await smartlink()
        #expect(redirected == "302 https://localhost/landing?ttclid=E.C.P.r1", "\(redirected)")
        #expect(try await inFlight.value == "200", "a request in flight during the reload finishes")

        try write(base.replacingOccurrences(of: "sites:", with: "sitez:"))
        let refused = try await runProcess(clickgateBinary, ["reload", "--admin", "127.0.0.1:\(gateway.adminPort)"])
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("refused (generation 2 keeps serving)"), "\(refused.stdout)")
        #expect(refused.stdout.contains("sitez"), "the problem names the key: \(refused.stdout)")
        #expect(gateway.log.contains("reload refused"))
        #expect(try await smartlink().hasPrefix("302"), "the running configuration keeps serving")

        try write(base)
        gateway.signal(SIGHUP)
        try await waitUntil("SIGHUP to drop the smartlink") { try await smartlink().hasPrefix("404") }
        #expect(gateway.log.contains("SIGHUP: reloading the configuration"))
    }

    /// New certificate files are picked up without a reload command: the gateway serves a name the
    /// first certificate did not cover.
    @Test func certificatesAreReadAgainWhenTheirFilesChange() async throws {
        let origin = try await TestOrigin.start()
        let scratch = TestFiles.makeScratch("certwatch")
        let site = try TestFiles.certificate(for: ["localhost"], in: scratch)
        let yaml = TestFiles.yaml(upstream: origin.url, hosts: "[localhost, renewed.test]", certificate: site)
        let gateway = try await GatewayProcess.start(yaml: yaml, directory: scratch)
        defer {
            gateway.signal(SIGKILL)
            Task { await origin.stop() }
        }
        let request = ["--resolve", "renewed.test:\(gateway.httpsPort):127.0.0.1", "-o", "/dev/null", "-w", "%{http_code}", "https://renewed.test:\(gateway.httpsPort)/echo"]
        #expect(try await curl(request).status == 60, "the first certificate does not name renewed.test")

        // A renewal writes the new pair over the old files (key first, as certbot's deploy hooks do).
        let renewed = try TestFiles.certificate(for: ["localhost", "renewed.test"], in: TestFiles.makeScratch("renewed"))
        try String(contentsOfFile: renewed.key, encoding: .utf8).write(toFile: site.key, atomically: true, encoding: .utf8)
        try String(contentsOfFile: renewed.cert, encoding: .utf8).write(toFile: site.cert, atomically: true, encoding: .utf8)
        try await waitUntil("the renewed certificate") { try await curl(request).stdout == "200" }
        #expect(gateway.log.contains("certificate files changed"))
    }

    /// A change is measured against the files the serving configuration read, not against the
    /// watcher's last look: a key renewed alone is refused and keeps counting as changed, and the
    /// certificate written after it is picked up however the writes fall between two checks.
    @Test func certificateChangesCountAgainstWhatTheServingConfigurationRead() async throws {
        let origin = try await TestOrigin.start()
        defer { Task { await origin.stop() } }
        let scratch = TestFiles.makeScratch("certstate")
        let site = try TestFiles.certificate(for: ["localhost"], in: scratch)
        let gateway = try await TestGateway.start(TestFiles.yaml(upstream: origin.url, certificate: site))
        defer { Task { await gateway.stop() } }
        #expect(gateway.server.changedCertificateFiles() == nil)

        let renewed = try TestFiles.certificate(for: ["localhost", "renewed.test"], in: TestFiles.makeScratch("certstate-renewed"))
        try String(contentsOfFile: renewed.key, encoding: .utf8).write(toFile: site.key, atomically: true, encoding: .utf8)
        let keyOnly = try #require(gateway.server.changedCertificateFiles())
        #expect(await gateway.server.reloadCertificates().applied == false, "a new key beside the old certificate is refused")
        #expect(gateway.server.changedCertificateFiles() == keyOnly, "the refused files still differ from the served ones")

        try String(contentsOfFile: renewed.cert, encoding: .utf8).write(toFile: site.cert, atomically: true, encoding: .utf8)
        #expect(gateway.server.changedCertificateFiles() != nil)
        #expect(await gateway.server.reloadCertificates().applied)
        #expect(gateway.server.changedCertificateFiles() == nil)
    }

    @Test func readinessFailsWhenTheStoreCannotWrite() async throws {
        let origin = try await TestOrigin.start()
        defer { Task { await origin.stop() } }
        let gateway = try await TestGateway.start(TestFiles.yaml(upstream: origin.url), wrapStore: { BrokenStore(base: $0) })
        defer { Task { await gateway.stop() } }
        let admin = "http://127.0.0.1:\(gateway.addresses.admin?.port ?? 0)"
        let ready = try await get(admin + "/readyz")
        #expect(ready.status == 503)
        #expect(json(ready.body)["checks"].flatMap { ($0 as? [String: String])?["store"] }?.hasPrefix("not writable") == true, "\(ready.body)")
        #expect(try await get(admin + "/healthz").status == 200, "alive, though not ready")
        let metrics = try await get(admin + "/metrics")
        #expect(metrics.status == 404, "an in-process gateway without bootstrapped metrics says so")
    }

    /// The image builds with the script CI builds with, runs unprivileged and checks its own health;
    /// the configuration compose mounts is valid.
    @Test func dockerFilesUseTheCIScriptsAndAValidConfiguration() async throws {
        let docker = Self.repository.appendingPathComponent("docker")
        let dockerfile = try String(contentsOf: docker.appendingPathComponent("Dockerfile"), encoding: .utf8)
        #expect(dockerfile.contains("FROM swift:6.3"))
        #expect(dockerfile.contains("USER clickgate"))
        #expect(dockerfile.contains(#"HEALTHCHECK"#) && dockerfile.contains(#"CMD ["clickgate", "health"]"#))
        let scripts = dockerfile.split(separator: "\n").filter { $0.hasPrefix("RUN scripts/") }.map { $0.dropFirst(4).split(separator: " ")[0] }
        #expect(scripts == ["scripts/build"])
        for script in scripts {
            #expect(FileManager.default.isExecutableFile(atPath: Self.repository.appendingPathComponent(String(script)).path))
        }
        let testScript = try String(contentsOf: Self.repository.appendingPathComponent("scripts/test"), encoding: .utf8)
        #expect(testScript.contains("\nscripts/build\n"), "CI's test command builds with the same script")

        let compose = try String(contentsOf: docker.appendingPathComponent("compose.yaml"), encoding: .utf8)
        #expect(compose.contains("dockerfile: docker/Dockerfile"))
        #expect(compose.contains("./clickgate.yaml:/etc/clickgate/clickgate.yaml:ro"))
        #expect(compose.contains("image: postgres:") && compose.contains("postgres: { condition: service_healthy }"))
        let scratch = TestFiles.makeScratch("compose")
        let mounted = try String(contentsOf: docker.appendingPathComponent("clickgate.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "/var/lib/clickgate/certs", with: TestFiles.certs)
        try mounted.write(toFile: scratch + "/clickgate.yaml", atomically: true, encoding: .utf8)
        let checked = try await runProcess(clickgateBinary, ["check-config", "--config", scratch + "/clickgate.yaml"])
        #expect(checked.stdout == "ok\n", "docker/clickgate.yaml: \(checked.stdout)")
    }

    /// The unit's commands are real subcommands, and it carries the hardening an operator expects.
    @Test func systemdUnitIsSound() async throws {
        let unit = try String(contentsOf: Self.repository.appendingPathComponent("conf/clickgate.service"), encoding: .utf8)
        for line in [
            "ExecStart=/usr/local/bin/clickgate serve --config /etc/clickgate/clickgate.yaml", "ExecReload=/bin/kill -HUP $MAINPID",
            "User=clickgate", "NoNewPrivileges=yes", "ProtectSystem=strict", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
            "ReadWritePaths=/var/lib/clickgate",
        ] {
            #expect(unit.contains(line), "clickgate.service lacks \(line)")
        }
        for command in [["serve", "--help"], ["check-config", "--help"]] {
            #expect(try await runProcess(clickgateBinary, command).status == 0)
        }
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") {
            let scratch = TestFiles.makeScratch("unit")
            try unit.replacingOccurrences(of: "/usr/local/bin/clickgate", with: clickgateBinary)
                .write(toFile: scratch + "/clickgate.service", atomically: true, encoding: .utf8)
            let verified = try await runProcess("/usr/bin/systemd-analyze", ["verify", scratch + "/clickgate.service"])
            let problems = verified.stderr.split(separator: "\n").filter { !$0.contains("Failed to ") && !$0.contains("not executable") }
            #expect(problems.isEmpty, "systemd-analyze: \(verified.stderr)")
        }
    }
}
