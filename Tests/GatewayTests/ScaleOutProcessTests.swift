import Events
import EventsTestSupport
import Foundation
import Testing

/// Several gateway processes on one PostgreSQL, as a busy advertiser runs them behind a load
/// balancer. (Named …ProcessTests: scripts/test runs it in the phase of its own.)
@Suite struct ScaleOutProcessTests {
    struct Cluster {
        let gateways: [GatewayProcess]
        let api: FakeEventsAPI
        let origin: TestOrigin

        func stop() {
            for gateway in gateways { gateway.signal(SIGKILL) }
            let (api, origin) = (api, origin)
            Task { await api.stop(); await origin.stop() }
        }
    }

    static let apiKey = "scale-key-1"

    func startCluster(_ count: Int, store: String, lease: String = "5s") async throws -> Cluster {
        let api = try await FakeEventsAPI.start(token: "scale-token")
        let origin = try await TestOrigin.start()
        var gateways: [GatewayProcess] = []
        for _ in 0..<count { gateways.append(try await startGateway(store: store, api: api, origin: origin, lease: lease)) }
        return Cluster(gateways: gateways, api: api, origin: origin)
    }

    /// One more instance on the same store, ready (schema applied) when this returns.
    func startGateway(store: String, api: FakeEventsAPI, origin: TestOrigin, lease: String = "5s") async throws -> GatewayProcess {
        let yaml = TestFiles.yaml(upstream: origin.url, site: "pixel: main", top: """
            events:
              store: \(store)
              endpoint: \(api.url)
              batch_size: 20
              linger: 100ms
              lease: \(lease)
              api_keys_env: SCALE_KEYS
              pixels: { main: { pixel_code: CSCALE1, access_token_env: SCALE_TOKEN } }
            """)
        let gateway = try await GatewayProcess.start(yaml: yaml, environment: ["SCALE_TOKEN": "scale-token", "SCALE_KEYS": Self.apiKey])
        for _ in 0..<150 {
            if try await curl(["-o", "/dev/null", "-w", "%{http_code}", "\(gateway.adminURL)/readyz"]).stdout == "200" { return gateway }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("the gateway did not become ready: \(gateway.log.suffix(2000))")
        return gateway
    }

    /// Posts `count` events of 10 through the browser path of `gateway`; returns the acknowledged event_ids.
    func ingest(_ gateway: GatewayProcess, prefix: String, requests: Int) async throws -> [String] {
        var acknowledged: [String] = []
        for r in 0..<requests {
            let ids = (0..<10).map { "\(prefix)-\(r)-\($0)" }
            let body = "[" + ids.map { #"{"event":"Purchase","event_id":"\#($0)","properties":{"value":1,"currency":"EUR"}}"# }.joined(separator: ",") + "]"
            let result = try await curl(["-X", "POST", "-H", "content-type: application/json", "--data-binary", body, "-w", " %{http_code}",
                "https://localhost:\(gateway.httpsPort)/_clickgate/events"])
            if result.stdout.hasSuffix(" 202") { acknowledged += ids }
        }
        return acknowledged
    }

    func waitForDelivery(of ids: [String], by api: FakeEventsAPI, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, !Set(ids).isSubset(of: Set(api.delivered)) {
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    @Test func threeGatewaysDeliverEveryAcknowledgedEventExactlyOnce() async throws {
        // Exactly once holds while a lease holds: longer than any delivery takes beside the other
        // process suites (a 5 s lease once expired mid-delivery there and a batch went twice).
        let cluster = try await startCluster(3, store: try await TestPostgres.shared.makeDatabase("three"), lease: "60s")
        defer { cluster.stop() }
        let acknowledged = try await withThrowingTaskGroup(of: [String].self) { group in
            for (i, gateway) in cluster.gateways.enumerated() {
                group.addTask { try await self.ingest(gateway, prefix: "g\(i)", requests: 20) }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(acknowledged.count == 600)
        try await waitForDelivery(of: acknowledged, by: cluster.api)
        let delivered = cluster.api.delivered
        #expect(Set(acknowledged).subtracting(delivered).isEmpty, "acknowledged but never delivered")
        #expect(delivered.count == Set(delivered).count, "\(delivered.count - Set(delivered).count) events were sent twice")
        // The work was shared: every instance delivered some of it.
        for gateway in cluster.gateways {
            let metrics = try await curl(["\(gateway.adminURL)/metrics"]).stdout
            let line = metrics.split(separator: "\n").first { $0.hasPrefix("clickgate_events_delivered_total ") }
            #expect((line.flatMap { Double($0.split(separator: " ")[1]) } ?? 0) > 0, "an instance delivered nothing")
        }
        print("scale-out: 3 gateways, \(acknowledged.count) acknowledged, \(delivered.count) delivered")
    }

    /// `kill -9` of an instance in the middle of delivery: its batch stays leased, and another
    /// instance takes it over when the lease expires.
    @Test func killingOneGatewayDuringDeliveryLosesNothing() async throws {
        let store = try await TestPostgres.shared.makeDatabase("kill")
        let cluster = try await startCluster(1, store: store)
        defer { cluster.stop() }
        // The first request to the API never gets an answer: the instance waits on it, holding the lease.
        cluster.api.inject([.hang])
        var acknowledged = try await ingest(cluster.gateways[0], prefix: "k0", requests: 10)
        let deadline = ContinuousClock.now + .seconds(10)
        while cluster.api.requests == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        cluster.gateways[0].signal(SIGKILL)
        _ = await cluster.gateways[0].waitForExit(timeout: .seconds(5))
        let others = [
            try await startGateway(store: store, api: cluster.api, origin: cluster.origin),
            try await startGateway(store: store, api: cluster.api, origin: cluster.origin),
        ]
        defer { for gateway in others { gateway.signal(SIGKILL) } }
        acknowledged += try await ingest(others[0], prefix: "k1", requests: 5)
        acknowledged += try await ingest(others[1], prefix: "k2", requests: 5)
        #expect(acknowledged.count == 200)
        try await waitForDelivery(of: acknowledged, by: cluster.api, timeout: .seconds(60))
        let missing = Set(acknowledged).subtracting(cluster.api.delivered)
        #expect(missing.isEmpty, "\(missing.count) acknowledged events never delivered, e.g. \(missing.sorted().prefix(3))")
        let delivered = cluster.api.delivered
        print("scale-out kill -9: \(acknowledged.count) acknowledged, \(Set(delivered).count) delivered, \(delivered.count - Set(delivered).count) repeats")
    }

    /// A click through instance A enriches a server event received by instance B; the same event
    /// sent to two instances is stored once.
    @Test func instancesShareTheClickLedgerAndDeduplication() async throws {
        let cluster = try await startCluster(2, store: try await TestPostgres.shared.makeDatabase("share"))
        defer { cluster.stop() }
        let (a, b) = (cluster.gateways[0], cluster.gateways[1])
        let click = try await curl(["-i", "-o", "-", "https://localhost:\(a.httpsPort)/echo?ttclid=E.C.P.crossinstance&utm_source=tiktok"])
        let visitor = try #require(click.stdout.split(separator: "\r\n").first { $0.hasPrefix("set-cookie: _cg_vid=") }?
            .dropFirst("set-cookie: _cg_vid=".count).prefix(32))
        try await Task.sleep(for: .milliseconds(600))  // the ledger writer flushes every 200 ms

        let server = try await curl(["-X", "POST", "-H", "authorization: Bearer \(Self.apiKey)", "-H", "content-type: application/json",
            "--data-binary", #"{"event":"Purchase","event_id":"cross-1","visitor_id":"\#(visitor)","properties":{"value":5,"currency":"USD"}}"#,
            "-w", " %{http_code}", "\(b.adminURL)/v1/events?pixel=main"])
        #expect(server.stdout.hasSuffix(" 202"), "\(server.stdout)")
        try await waitForDelivery(of: ["cross-1"], by: cluster.api, timeout: .seconds(20))
        #expect(cluster.api.event("cross-1")?["user"]?["ttclid"]?.stringValue == "E.C.P.crossinstance", "B enriched the event from A's click")

        let body = #"{"event":"Lead","event_id":"both-1"}"#
        let first = try await curl(["-X", "POST", "-H", "content-type: application/json", "--data-binary", body, "https://localhost:\(a.httpsPort)/_clickgate/events"])
        let second = try await curl(["-X", "POST", "-H", "content-type: application/json", "--data-binary", body, "https://localhost:\(b.httpsPort)/_clickgate/events"])
        #expect(first.stdout.contains(#""accepted":1"#))
        #expect(second.stdout.contains(#""duplicates":1"#), "\(second.stdout)")
    }

    /// PostgreSQL down: ingest answers 503 (nothing acknowledged), the proxy keeps proxying and
    /// setting click-id cookies, readiness says why; when the database is back, all of it recovers.
    @Test func whilePostgreSQLIsDownTheProxyKeepsWorking() async throws {
        let database = try await TestPostgres.launch()
        let cluster = try await startCluster(1, store: try await database.makeDatabase("outage"))
        defer { cluster.stop() }
        let gateway = cluster.gateways[0]
        let site = "https://localhost:\(gateway.httpsPort)"
        func post(_ id: String) async throws -> String {
            try await curl(["-X", "POST", "-H", "content-type: application/json", "--data-binary", #"{"event":"Lead","event_id":"\#(id)"}"#,
                "-o", "/dev/null", "-w", "%{http_code}", "\(site)/_clickgate/events"]).stdout
        }
        #expect(try await post("before") == "202")
        try await database.stop()

        #expect(try await post("during") == "503")
        let proxied = try await curl(["-i", "-o", "-", "\(site)/echo?ttclid=E.C.P.outage"])
        #expect(proxied.stdout.hasPrefix("HTTP/2 200"), "\(proxied.stdout.prefix(200))")
        #expect(proxied.stdout.contains("set-cookie: ttclid=E.C.P.outage"))
        let ready = try await curl(["-w", " %{http_code}", "\(gateway.adminURL)/readyz"]).stdout
        #expect(ready.hasSuffix(" 503") && ready.contains("store"), "\(ready)")

        try await database.start()
        var status = ""
        for _ in 0..<100 where status != "202" {
            status = try await post("after")
            if status != "202" { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(status == "202")
        try await waitForDelivery(of: ["before", "after"], by: cluster.api, timeout: .seconds(30))
        #expect(Set(["before", "after"]).isSubset(of: Set(cluster.api.delivered)))
        #expect(!cluster.api.delivered.contains("during"), "what was refused was never stored")
        await database.shutDown()
    }
}
