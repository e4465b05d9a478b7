import AsyncHTTPClient
import Events
import EventsTestSupport
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// Keeps log lines so tests can read what an operator would.
final class CapturedLog: Sendable {
    let lines = NIOLockedValueBox<[String]>([])

    var logger: Logger {
        Logger(label: "test") { _ in Handler(sink: self) }
    }

    struct Handler: LogHandler {
        let sink: CapturedLog
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let fields = (event.metadata ?? [:]).map { "\($0.key)=\($0.value)" }.sorted().joined(separator: " ")
            sink.lines.withLockedValue { $0.append("\(event.level) \(event.message) \(fields)") }
        }
    }
}

private func scratchStore() throws -> SQLiteEventStore {
    try SQLiteEventStore(path: NSTemporaryDirectory() + "clickgate-delivery-\(UUID().uuidString.prefix(8))/events.sqlite")
}

private func events(_ count: Int, prefix: String = "e") -> [OutboxEvent] {
    (0..<count).map { i in
        var user = NormalizedEvent.User()
        user.email = [PII.hashEmail("user\(i)@example.com")!]
        user.ttclid = "E.C.P.\(i)"
        return OutboxEvent(pixel: "main", event: NormalizedEvent(
            event: "Purchase", eventID: "\(prefix)\(i)", eventTime: Int64(Date().timeIntervalSince1970), user: user,
            properties: ["value": .number(9.5), "currency": .string("EUR")]))
    }
}

/// Delivers until the outbox is empty, jumping the clock past every backoff.
private func drain(_ worker: DeliveryWorker, _ store: SQLiteEventStore, rounds: Int = 60) async throws {
    var clock = Date()
    for _ in 0..<rounds {
        if try await store.stats(now: clock).queueDepth == 0 { return }
        await worker.deliverOnce(now: clock)
        clock = clock.addingTimeInterval(400)
    }
}

@Suite(.serialized) struct DeliveryTests {
    let http = HTTPClient.shared

    func worker(
        _ api: FakeEventsAPI, _ store: SQLiteEventStore, token: String? = "test-token", testEventCode: String? = nil, log: CapturedLog = CapturedLog(),
        batchSize: Int = 50, timeout: TimeAmount = .seconds(10)
    ) -> DeliveryWorker {
        var settings = DeliveryWorker.Settings()
        settings.lease = .seconds(2)
        settings.batchSize = batchSize
        return DeliveryWorker(
            store: store, api: EventsAPIClient(endpoint: api.url, client: http, timeout: timeout),
            pixels: [PixelTarget(name: "main", pixelCode: "CPIXEL1", accessToken: token, testEventCode: testEventCode)],
            settings: settings, logger: log.logger)
    }

    @Test func batchesReachTheAPIOnceEach() async throws {
        let api = try await FakeEventsAPI.start()
        let store = try scratchStore()
        _ = try await store.enqueue(events(120))
        try await drain(worker(api, store), store)
        #expect(api.delivered.sorted() == (0..<120).map { "e\($0)" }.sorted())
        #expect(api.batchSizes.allSatisfy { $0 <= 50 })
        #expect(try await store.stats(now: Date()).queueDepth == 0)
        await api.stop()
    }

    @Test func everyTransientFaultEndsInExactlyOneDelivery() async throws {
        let api = try await FakeEventsAPI.start()
        let store = try scratchStore()
        _ = try await store.enqueue(events(30))
        api.inject([.http500, .rateLimit, .garbage, .drop, .hang, .http500])
        // Short enough for the hang to end quickly; a slow answer under load past it would be sent twice.
        try await drain(worker(api, store, timeout: .seconds(3)), store)
        #expect(api.delivered.count == 30)
        #expect(Set(api.delivered).count == 30, "no event delivered twice")
        await api.stop()
    }

    @Test func whenTheAPIAnswersAgainBackedOffEventsGoAtOnce() async throws {
        let api = try await FakeEventsAPI.start()
        let store = try scratchStore()
        _ = try await store.enqueue(events(10))
        api.inject([.http500])
        let delivery = worker(api, store, batchSize: 5)
        await delivery.deliverOnce()
        #expect(api.delivered.count == 5, "one batch failed, the next succeeded")
        // Without the clock moving, the failed batch is due again: the success expedited it.
        await delivery.deliverOnce()
        #expect(api.delivered.count == 10)
        await api.stop()
    }

    @Test func aBadEventIsIsolatedAndDeadLettered() async throws {
        let api = try await FakeEventsAPI.start()
        let store = try scratchStore()
        _ = try await store.enqueue(events(10))
        api.poison("e6")
        try await drain(worker(api, store), store)
        #expect(api.delivered.sorted() == (0..<10).filter { $0 != 6 }.map { "e\($0)" }.sorted())
        let letters = try await store.deadLetters(limit: 10)
        #expect(letters.map(\.eventID) == ["e6"])
        #expect(letters[0].reason == "40002: Invalid value for field: data[0].properties.currency")
        await api.stop()
    }

    @Test func aWrongTokenPausesThePixelAndKeepsItsEvents() async throws {
        let api = try await FakeEventsAPI.start()
        let store = try scratchStore()
        _ = try await store.enqueue(events(5))
        let log = CapturedLog()
        let wrong = worker(api, store, token: "wrong-secret-token", log: log)
        await wrong.deliverOnce()
        #expect(wrong.pausedPixels == ["main"])
        #expect(try await store.stats(now: Date()).queueDepth == 5)
        #expect(api.delivered.isEmpty)
        #expect(!log.lines.withLockedValue { $0 }.joined().contains("wrong-secret-token"), "the token is never logged")
        // With the right token the queued events go out.
        try await drain(worker(api, store), store)
        #expect(api.delivered.count == 5)
        await api.stop()
    }

    @Test func testEventsGoUnbatchedWithTheirCode() async throws {
        let api = try await FakeEventsAPI.start()
        let store = try scratchStore()
        _ = try await store.enqueue(events(4))
        try await drain(worker(api, store, testEventCode: "TEST123"), store)
        #expect(api.batchSizes == [1, 1, 1, 1])
        #expect(api.testEventCodes.allSatisfy { $0 == "TEST123" })
        await api.stop()
    }

    @Test func withoutATokenTheExactRequestIsLogged() async throws {
        let api = try await FakeEventsAPI.start()
        let store = try scratchStore()
        _ = try await store.enqueue(events(2))
        let log = CapturedLog()
        try await drain(worker(api, store, token: nil, log: log), store)
        #expect(api.requests == 0)
        let lines = log.lines.withLockedValue { $0 }
        let dryRun = try #require(lines.first { $0.contains("dry run") })
        #expect(dryRun.contains(#""event_source_id":"CPIXEL1""#) && dryRun.contains(#""event_id":"e0""#))
        await api.stop()
    }

    @Test func theFakeEnforcesTheContract() throws {
        #expect(FakeEventsAPI.contractViolation(try JSONValue.parse(Array(#"{"event_source":"web","event_source_id":"C","data":[{"event":"Purchase","event_time":1760000000,"event_id":7}]}"#.utf8)))?.contains("event_id") == true)
        #expect(FakeEventsAPI.contractViolation(try JSONValue.parse(Array(#"{"event_source":"web","event_source_id":"C","data":[]}"#.utf8))) != nil)
        #expect(FakeEventsAPI.contractViolation(try JSONValue.parse(Array(#"{"event_source":"web","event_source_id":"C","data":[{"event":"Purchase","event_time":1760000000000,"event_id":"x"}]}"#.utf8)))?.contains("event_time") == true)
        let client = EventsAPIClient.requestBody(events(1).map(\.event), pixel: PixelTarget(name: "m", pixelCode: "C1", accessToken: "t", testEventCode: nil))
        #expect(FakeEventsAPI.contractViolation(try JSONValue.parse(Array(client.utf8))) == nil)
        #expect(EventsAPIClient.classify(status: 200, body: #"{"code":40002,"message":"bad"}"#) == .rejected("40002: bad"))
        #expect(EventsAPIClient.classify(status: 502, body: "") == .retry("HTTP 502"))
    }
}
