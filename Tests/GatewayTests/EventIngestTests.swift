import Events
import Foundation
import Gateway
import Logging
import Testing

/// The store refuses every write: ingest must answer 503 and acknowledge nothing.
struct BrokenStore: EventStore {
    let base: SQLiteEventStore
    struct DiskFull: Error {}
    func enqueue(_ events: [OutboxEvent]) async throws -> [EnqueueOutcome] { throw DiskFull() }
    func lease(limit: Int, for duration: Duration, now: Date) async throws -> [LeasedEvent] { try await base.lease(limit: limit, for: duration, now: now) }
    func markDelivered(_ ids: [Int64]) async throws { try await base.markDelivered(ids) }
    func retryLater(_ ids: [Int64], at: Date, error: String) async throws { try await base.retryLater(ids, at: at, error: error) }
    func deadLetter(_ ids: [Int64], reason: String) async throws { try await base.deadLetter(ids, reason: reason) }
    func deadLetters(limit: Int) async throws -> [DeadLetter] { try await base.deadLetters(limit: limit) }
    func replay(_ ids: [Int64]) async throws -> Int { try await base.replay(ids) }
    func recordClicks(_ entries: [ClickLedgerEntry]) async throws { try await base.recordClicks(entries) }
    func linkIdentity(_ hashes: [String], visitorID: String, at: Date) async throws { try await base.linkIdentity(hashes, visitorID: visitorID, at: at) }
    func visitors(forIdentities hashes: Set<String>) async throws -> [String: String] { try await base.visitors(forIdentities: hashes) }
    func latestClicks(visitorIDs: Set<String>, since: Date) async throws -> [String: ClickLedgerEntry] { try await base.latestClicks(visitorIDs: visitorIDs, since: since) }
    func expediteRetries(pixel: String, now: Date) async throws { try await base.expediteRetries(pixel: pixel, now: now) }
    func stats(now: Date) async throws -> StoreStats { try await base.stats(now: now) }
    func checkWritable() async throws { throw DiskFull() }
    func prune(now: Date, retention: TimeInterval) async throws -> PruneCounts { try await base.prune(now: now, retention: retention) }
}

private func post(_ gateway: TestGateway, _ body: String, headers: [String] = [], proto: String = "--http2") async throws -> (status: String, body: String) {
    var arguments = [proto, "-X", "POST", "-H", "content-type: application/json", "--data-binary", body, "-w", "\n%{http_code}"]
    for header in headers { arguments += ["-H", header] }
    let result = try await curl(arguments + ["https://localhost:\(gateway.httpsPort)/_clickgate/events"])
    let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
    return (String(lines.last ?? ""), lines.dropLast().joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines))
}

@Suite struct EventIngestTests {
    init() { _ = testMetrics }

    @Test(arguments: ["--http2", "--http1.1"])
    func aBrowserEventIsEnrichedFromTheVisitsCookiesAndStored(proto: String) async throws {
        try await withGateway { gateway, origin in
            let cookies = "cookie: ttclid=E.C.P.click1; _ttp=ttp.Value-1; _cg_vid=0123456789abcdef0123456789abcdef"
            let event = #"{"event":"Purchase","event_id":"order-9","properties":{"value":19.99,"currency":"EUR"},"user":{"email":" ALICE_abc@gmail.com "}}"#
            let answer = try await post(gateway, event, headers: [cookies, "referer: https://localhost/checkout", "user-agent: TestBrowser/1"], proto: proto)
            #expect(answer.status == "202", "\(answer)")
            #expect(answer.body == #"{"accepted":1,"duplicates":0}"#)
            #expect(origin.connectionCount == 0, "the events path never reaches the origin")
            let stored = try #require(try await gateway.store.lease(limit: 10, for: .seconds(30), now: Date()).first)
            #expect(stored.event.eventID == "order-9")
            #expect(stored.event.user.ttclid == "E.C.P.click1")
            #expect(stored.event.user.ttp == "ttp.Value-1")
            #expect(stored.event.user.ip == "127.0.0.1")
            #expect(stored.event.user.userAgent == "TestBrowser/1")
            #expect(stored.event.user.email == ["848a771458438fc2ec420560d769fb9b9b86851ee338ec56517baabd79d3bb4f"])
            #expect(stored.event.page?.url == "https://localhost/checkout")
            #expect(stored.event.visitorID == "0123456789abcdef0123456789abcdef")
            #expect(!stored.event.limitedDataUse)
            // The same event again: acknowledged as a duplicate, not stored twice.
            let again = try await post(gateway, event, headers: [cookies], proto: proto)
            #expect(again.status == "202" && again.body == #"{"accepted":0,"duplicates":1}"#, "\(again)")
        }
    }

    @Test func aBatchKeepsItsGoodEventsAndNamesTheBadOnes() async throws {
        try await withGateway { gateway, _ in
            let answer = try await post(gateway, #"[{"event":"Lead","event_id":"a"},{"event":"lead","event_id":"b"},{"event":"Purchase","event_id":"c","properties":{"currency":"EURO"}}]"#)
            #expect(answer.status == "400")
            #expect(answer.body.contains(#""accepted":1"#))
            #expect(answer.body.contains(#"{"field":"event","index":1"#) || answer.body.contains(#""index":1"#), "\(answer.body)")
            #expect(answer.body.contains(#""field":"properties.currency""#))
            #expect(try await gateway.store.stats(now: Date()).queueDepth == 1)
            let rejected = try testMetrics.expectCounter("clickgate_events_rejected_total", [("field", "properties.currency")])
            #expect(rejected.totalValue >= 1)
            let malformed = try await post(gateway, #"{"event": "Lead""#)
            #expect(malformed.status == "400" && malformed.body.contains("not valid JSON"))
            let get = try await curl(["-o", "/dev/null", "-w", "%{http_code}", "https://localhost:\(gateway.httpsPort)/_clickgate/events"])
            #expect(get.stdout == "405")
        }
    }

    @Test func withoutConsentEventsCarryLimitedDataUseAndNoVisitor() async throws {
        try await withGateway { gateway, _ in
            let answer = try await post(gateway, #"{"event":"Lead","event_id":"gpc-1"}"#, headers: ["sec-gpc: 1", "cookie: _cg_vid=0123456789abcdef0123456789abcdef"])
            #expect(answer.status == "202")
            let stored = try #require(try await gateway.store.lease(limit: 1, for: .seconds(30), now: Date()).first)
            #expect(stored.event.limitedDataUse)
            #expect(stored.event.visitorID == nil)
        }
    }

    /// Also with the access log off: the logging phase, where clicks go to the ledger, still runs.
    @Test(arguments: ["", "log: { access: off }"])
    func aServerEventFindsItsClickInTheLedger(log: String) async throws {
        try await withGateway(top: log) { gateway, _ in
            // The ad click: captured by the proxy, handed off, written to the ledger.
            let click = try await curl(["-D", "-", "-o", "/dev/null", "-A", "Phone/1", "https://localhost:\(gateway.httpsPort)/echo?ttclid=E.C.P.ledger"])
            let visitor = try #require(click.stdout.split(separator: "\r\n").first { $0.hasPrefix("set-cookie: _cg_vid=") }?
                .dropFirst("set-cookie: _cg_vid=".count).prefix(32))
            try await Task.sleep(for: .milliseconds(100))
            let writer = ClickLedgerWriter(queue: gateway.clicks, store: gateway.store, logger: Logger(label: "test"))
            await writer.flush()
            // Later the backend reports the purchase with only the visitor id and an email.
            let answer = try await post(gateway, #"{"event":"Purchase","event_id":"srv-1","visitor_id":"\#(visitor)","user":{"email":"buyer@example.com"}}"#)
            #expect(answer.status == "202", "\(answer)")
            let stored = try #require(try await gateway.store.lease(limit: 1, for: .seconds(30), now: Date()).first)
            #expect(stored.event.user.ttclid == "E.C.P.ledger")
            #expect(stored.event.page?.url?.hasSuffix("/echo?ttclid=E.C.P.ledger") == true)
            // A second event with the same email but no visitor id joins the same click.
            _ = try await post(gateway, #"{"event":"Subscribe","event_id":"srv-2","user":{"email":"BUYER@example.com"}}"#)
            let joined = try #require(try await gateway.store.lease(limit: 1, for: .seconds(30), now: Date()).first)
            #expect(joined.event.visitorID == String(visitor))
            #expect(joined.event.user.ttclid == "E.C.P.ledger")
        }
    }

    @Test func withTheClickLedgerOffNoClickIsStored() async throws {
        try await withGateway(top: "events: { click_ledger: false }") { gateway, _ in
            let click = try await curl(["-D", "-", "-o", "/dev/null", "https://localhost:\(gateway.httpsPort)/echo?ttclid=E.C.P.unstored"])
            // The click is still captured into its cookie; it is only not stored.
            #expect(click.stdout.contains("set-cookie: ttclid=E.C.P.unstored"), "\(click.stdout)")
            let visitor = try #require(click.stdout.split(separator: "\r\n").first { $0.hasPrefix("set-cookie: _cg_vid=") }?
                .dropFirst("set-cookie: _cg_vid=".count).prefix(32))
            try await Task.sleep(for: .milliseconds(100))
            await ClickLedgerWriter(queue: gateway.clicks, store: gateway.store, logger: Logger(label: "test")).flush()
            let stored = try await gateway.store.latestClicks(visitorIDs: [String(visitor)], since: Date(timeIntervalSinceNow: -60))
            #expect(stored.isEmpty)
        }
    }

    @Test func serverEventsNeedAKeyAndAcceptTikToksBatchShape() async throws {
        let pixels = "events: { pixels: { main: { pixel_code: CMAIN01 }, other: { pixel_code: COTHER2 } } }"
        try await withGateway(top: pixels) { gateway, _ in
            let url = "http://127.0.0.1:\(gateway.adminPort)/v1/events"
            let batch = #"{"event_source":"web","event_source_id":"COTHER2","data":[{"event":"Purchase","event_time":\#(Int(Date().timeIntervalSince1970)),"event_id":"srv-9","user":{"external_id":"user_123","phone":"(+1)2133734253"},"properties":{"value":5,"currency":"USD"}}]}"#
            for auth in [[], ["-H", "authorization: Bearer wrong"], ["-H", "authorization: Basic dGVzdA=="]] {
                let refused = try await curl(["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "--data-binary", batch] + auth + [url])
                #expect(refused.stdout == "401")
            }
            let accepted = try await curl(["-w", " %{http_code}", "-X", "POST", "-H", "authorization: Bearer test-key-1", "--data-binary", batch, url])
            #expect(accepted.stdout == "{\"accepted\":1,\"duplicates\":0}\n 202", "\(accepted)")
            let stored = try #require(try await gateway.store.lease(limit: 1, for: .seconds(30), now: Date()).first)
            #expect(stored.pixel == "other")
            #expect(stored.event.user.externalID == ["80fba0ae1c48e3978e43e4efc365e14e12ea0c830ba8ba5b9a2dafc7e3f2ab8b"])
            #expect(stored.event.user.phone == ["9f7ec22d72092cd3c0b58726ed9c2d91b92e51a3f29837508fb2948bb22dd2fd"])
            // With two pixels, an event that names none is refused rather than guessed.
            let unnamed = try await curl(["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "authorization: Bearer test-key-1",
                "--data-binary", #"{"event":"Lead"}"#, url])
            #expect(unnamed.stdout == "400")
            let named = try await curl(["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "authorization: Bearer test-key-1",
                "--data-binary", #"{"event":"Lead"}"#, url + "?pixel=main"])
            #expect(named.stdout == "202")
        }
    }

    @Test func whenTheStoreCannotCommitNothingIsAcknowledged() async throws {
        let origin = try await TestOrigin.start()
        let gateway = try await TestGateway.start(TestFiles.yaml(upstream: origin.url), wrapStore: { BrokenStore(base: $0) })
        defer { Task { await gateway.stop(); await origin.stop() } }
        let answer = try await post(gateway, #"{"event":"Lead","event_id":"x"}"#)
        #expect(answer.status == "503", "\(answer)")
        #expect(!answer.body.contains(#""accepted":1"#))
        // Proxying carries on.
        let page = try await curl(["-o", "/dev/null", "-w", "%{http_code}", "https://localhost:\(gateway.httpsPort)/echo?ttclid=E.C.P.1"])
        #expect(page.stdout == "200")
    }
}
