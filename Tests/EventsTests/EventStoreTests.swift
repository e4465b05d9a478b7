import Events
import EventsTestSupport
import Foundation
import Logging
import Testing

func scratchDatabase() -> String {
    let dir = NSTemporaryDirectory() + "clickgate-store-\(UUID().uuidString.prefix(8))"
    return dir + "/events.sqlite"
}

func event(_ id: String, name: String = "Purchase") -> NormalizedEvent {
    NormalizedEvent(
        event: name, eventID: id, eventTime: 1_760_000_000, user: NormalizedEvent.User(), properties: ["value": .number(1)],
        page: nil, limitedDataUse: false, visitorID: nil)
}

@Suite struct SQLiteEventStoreTests {
    @Test func acceptedEventsSurviveReopeningAndDuplicatesAreRecognised() async throws {
        let path = scratchDatabase()
        do {
            let store = try SQLiteEventStore(path: path)
            let outcomes = try await store.enqueue([OutboxEvent(pixel: "main", event: event("e1")), OutboxEvent(pixel: "main", event: event("e2"))])
            #expect(outcomes.count == 2 && !outcomes.contains(.duplicate))
            try store.close()
        }
        let reopened = try SQLiteEventStore(path: path)
        #expect(try await reopened.stats(now: Date()).queueDepth == 2)
        // Same pixel, event and event_id within 48 h: a duplicate, even after a restart.
        #expect(try await reopened.enqueue([OutboxEvent(pixel: "main", event: event("e1"))]) == [.duplicate])
        // Another pixel or another event name is another key.
        let other = try await reopened.enqueue([OutboxEvent(pixel: "second", event: event("e1")), OutboxEvent(pixel: "main", event: event("e1", name: "Lead"))])
        #expect(!other.contains(.duplicate))
    }

    @Test func concurrentSubmissionsShareCommits() async throws {
        let store = try SQLiteEventStore(path: scratchDatabase())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<400 {
                group.addTask { _ = try await store.enqueue([OutboxEvent(pixel: "main", event: event("c\(i)"))]) }
            }
            try await group.waitForAll()
        }
        #expect(try await store.stats(now: Date()).queueDepth == 400)
        let commits = await store.commitCount
        #expect(commits < 400, "group commit: \(commits) transactions for 400 submissions")
    }


    @Test func reopeningReleasesTheLeasesOfADeadRun() async throws {
        let path = scratchDatabase()
        do {
            let store = try SQLiteEventStore(path: path)
            _ = try await store.enqueue([OutboxEvent(pixel: "main", event: event("r1"))])
            #expect(try await store.lease(limit: 1, for: .seconds(600), now: Date()).count == 1)
            // As the process that held it ending would.
            try store.close()
        }
        let reopened = try SQLiteEventStore(path: path)
        #expect(try await reopened.lease(limit: 1, for: .seconds(600), now: Date()).map(\.event.eventID) == ["r1"])
    }

    /// One process owns a file: a second gateway on it is refused by name, while a tool opened
    /// beside the owner reads the queue and leaves the owner's leases alone.
    @Test func aSecondOwnerIsRefusedAndToolsLeaveLeasesAlone() async throws {
        let path = scratchDatabase()
        let owner = try SQLiteEventStore(path: path)
        _ = try await owner.enqueue([OutboxEvent(pixel: "main", event: event("o1"))])
        #expect(try await owner.lease(limit: 1, for: .seconds(600), now: Date()).count == 1)
        let refusal = #expect(throws: SQLiteEventStore.OwnerLockError.self) { try SQLiteEventStore(path: path) }
        #expect(refusal?.description.contains(path + " is already open in another clickgate process") == true)
        let tool = try SQLiteEventStore(path: path, owner: false)
        #expect(try await tool.stats(now: Date()).queueDepth == 1)
        #expect(try await owner.lease(limit: 1, for: .seconds(600), now: Date()).isEmpty, "the tool released the owner's lease")
    }



}

/// What every store must do the same way; the PostgreSQL runs use a real server (TestPostgres).
@Suite struct EventStoreContractTests {
    @Test(arguments: StoreKind.allCases)
    func duplicatesAreRecognisedByPixelEventAndID(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let first = try await store.enqueue([
            OutboxEvent(pixel: "main", event: event("e1")), OutboxEvent(pixel: "main", event: event("e1")),
            OutboxEvent(pixel: "main", event: event("e2")),
        ])
        #expect(first[1] == .duplicate, "the same key twice in one request")
        #expect(first[0] != .duplicate && first[2] != .duplicate)
        #expect(try await store.enqueue([OutboxEvent(pixel: "main", event: event("e1"))]) == [.duplicate])
        let other = try await store.enqueue([OutboxEvent(pixel: "second", event: event("e1")), OutboxEvent(pixel: "main", event: event("e1", name: "Lead"))])
        #expect(!other.contains(.duplicate))
        #expect(try await store.stats(now: Date()).queueDepth == 4)
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentCopiesOfOneEventAreStoredOnce(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let stored = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<40 {
                group.addTask { try await store.enqueue([OutboxEvent(pixel: "main", event: event("same"))]).filter { $0 != .duplicate }.count }
            }
            return try await group.reduce(0, +)
        }
        #expect(stored == 1)
        try await store.checkWritable()
    }

    @Test(arguments: StoreKind.allCases)
    func leasesAreExclusiveUntilTheyExpire(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        _ = try await store.enqueue((0..<5).map { OutboxEvent(pixel: "main", event: event("l\($0)")) })
        let now = Date()
        let first = try await store.lease(limit: 3, for: .seconds(30), now: now)
        let second = try await store.lease(limit: 10, for: .seconds(30), now: now)
        #expect(first.map(\.event.eventID) == ["l0", "l1", "l2"])
        #expect(second.map(\.event.eventID) == ["l3", "l4"])
        #expect(try await store.lease(limit: 10, for: .seconds(30), now: now).isEmpty)
        // A crashed sender's lease runs out; the events come back (the same event_ids).
        let later = try await store.lease(limit: 10, for: .seconds(30), now: now.addingTimeInterval(31))
        #expect(later.map(\.event.eventID) == ["l0", "l1", "l2", "l3", "l4"])
        #expect(later.allSatisfy { $0.attempts == 2 })
        try await store.markDelivered(later.prefix(4).map(\.id))
        try await store.retryLater([later[4].id], at: now.addingTimeInterval(100), error: "HTTP 500")
        #expect(try await store.lease(limit: 10, for: .seconds(30), now: now.addingTimeInterval(90)).isEmpty)
        #expect(try await store.lease(limit: 10, for: .seconds(30), now: now.addingTimeInterval(101)).count == 1)
    }

    @Test(arguments: StoreKind.allCases)
    func deadLettersCanBeListedAndReplayed(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        _ = try await store.enqueue([OutboxEvent(pixel: "main", event: event("d1")), OutboxEvent(pixel: "main", event: event("d2"))])
        let leased = try await store.lease(limit: 10, for: .seconds(30), now: Date())
        try await store.deadLetter([leased[0].id], reason: "40002: invalid value for properties.currency")
        let letters = try await store.deadLetters(limit: 10)
        #expect(letters.map(\.eventID) == ["d1"])
        #expect(letters[0].reason.hasPrefix("40002"))
        #expect(try await store.stats(now: Date()) .deadLetters == 1)
        #expect(try await store.replay([]) == 1)
        #expect(try await store.deadLetters(limit: 10).isEmpty)
        #expect(try await store.stats(now: Date()).queueDepth == 2)
    }

    @Test(arguments: StoreKind.allCases)
    func theClickLedgerAndIdentitiesJoinVisitors(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let now = Date()
        try await store.recordClicks([
            ClickLedgerEntry(visitorID: "v1", clickedAt: now.addingTimeInterval(-40 * 86_400), ttclid: "OLD", ttp: nil, ip: nil, userAgent: nil, landingURL: nil, referrer: nil),
            ClickLedgerEntry(visitorID: "v1", clickedAt: now.addingTimeInterval(-3600), ttclid: "E.C.P.new", ttp: "t", ip: "203.0.113.1", userAgent: "UA", landingURL: "https://lp/x", referrer: nil),
        ])
        let window = now.addingTimeInterval(-28 * 86_400)
        let latest = try await store.latestClicks(visitorIDs: ["v1", "v2"], since: window)
        #expect(latest["v1"]?.ttclid == "E.C.P.new")
        #expect(latest["v2"] == nil)
        let email = PII.hashEmail("a@b.example")!
        try await store.linkIdentity([email], visitorID: "v1", at: now)
        #expect(try await store.visitors(forIdentities: ["x", email]) == [email: "v1"])
    }
}

extension EventStoreContractTests {
    @Test(arguments: StoreKind.allCases)
    func pruningDeletesWhatCanNoLongerMatter(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let now = Date()
        _ = try await store.enqueue((0..<3).map { OutboxEvent(pixel: "main", event: event("p\($0)")) })
        try await store.recordClicks([
            ClickLedgerEntry(visitorID: "old", clickedAt: now.addingTimeInterval(-30 * 86_400), ttclid: "T", ttp: nil, ip: nil, userAgent: nil, landingURL: nil, referrer: nil),
            ClickLedgerEntry(visitorID: "new", clickedAt: now, ttclid: "T2", ttp: nil, ip: nil, userAgent: nil, landingURL: nil, referrer: nil),
        ])
        try await store.linkIdentity(["h-old"], visitorID: "old", at: now.addingTimeInterval(-30 * 86_400))
        try await store.linkIdentity(["h-new"], visitorID: "new", at: now)

        let early = try await store.prune(now: now, retention: 28 * 86_400)
        #expect(early.dedupKeys == 0 && early.clicks == 1 && early.identities == 1)
        #expect(try await store.latestClicks(visitorIDs: ["old", "new"], since: .distantPast).keys.sorted() == ["new"])
        #expect(try await store.visitors(forIdentities: ["h-old", "h-new"]) == ["h-new": "new"])

        // Past the 48 h window the dedup keys go; the same event_id is new again.
        let later = try await store.prune(now: now.addingTimeInterval(49 * 3600), retention: 28 * 86_400)
        #expect(later.dedupKeys == 3)
        #expect(try await store.enqueue([OutboxEvent(pixel: "main", event: event("p0"))]) != [.duplicate])
    }
}

enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres

    var testDescription: String { rawValue }

    func make() async throws -> any EventStore {
        switch self {
        case .sqlite:
            return try SQLiteEventStore(path: scratchDatabase())
        case .postgres:
            let store = try PostgresEventStore(url: try await TestPostgres.shared.makeDatabase(), logger: quietLogger)
            try await store.waitUntilReady(timeout: .seconds(30))
            return store
        }
    }
}

let quietLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

@Suite struct DeadlineTests {
    /// The caller gets its error at the deadline even when the call ignores cancellation (a query
    /// on a connection to a database that went away): the call is left to finish on its own.
    @Test func theDeadlineHoldsAgainstACallThatIgnoresCancellation() async throws {
        let started = ContinuousClock.now
        await #expect(throws: DeadlineExceeded.self) {
            try await withDeadline(.milliseconds(200), what: "a deaf call") {
                await withUnsafeContinuation { continuation in
                    DispatchQueue.global().asyncAfter(deadline: .now() + 30) { continuation.resume() }
                }
                return 1
            }
        }
        // Well before the call's own 30 s.
        #expect(ContinuousClock.now - started < .seconds(15))
        #expect(try await withDeadline(.seconds(5), what: "a quick call") { 42 } == 42)
    }
}
