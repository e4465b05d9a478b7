import Events
import EventsTestSupport
import Foundation
import Testing

/// What only a shared store must do: several instances at once, and a database that goes away.
@Suite struct PostgresEventStoreTests {
    @Test func instancesStartingTogetherApplyTheSchemaOnce() async throws {
        let url = try await TestPostgres.shared.makeDatabase("migrate")
        let stores = try (0..<3).map { _ in try PostgresEventStore(url: url, logger: quietLogger) }
        for store in stores { try await store.waitUntilReady(timeout: .seconds(30)) }
        _ = try await stores[0].enqueue([OutboxEvent(pixel: "main", event: event("m1"))])
        #expect(try await stores[2].stats(now: Date()).queueDepth == 1, "they share one schema")
    }

    /// Two instances leasing the same outbox at once never get the same event.
    @Test func concurrentLeasesNeverOverlap() async throws {
        let url = try await TestPostgres.shared.makeDatabase("lease")
        let a = try PostgresEventStore(url: url, logger: quietLogger)
        let b = try PostgresEventStore(url: url, logger: quietLogger)
        try await a.waitUntilReady(timeout: .seconds(30))
        try await b.waitUntilReady(timeout: .seconds(30))
        _ = try await a.enqueue((0..<600).map { OutboxEvent(pixel: "main", event: event("c\($0)")) })
        let leased = try await withThrowingTaskGroup(of: [String].self) { group in
            for store in [a, b, a, b, a, b] {
                group.addTask {
                    var ids: [String] = []
                    while true {
                        let batch = try await store.lease(limit: 25, for: .seconds(60), now: Date())
                        if batch.isEmpty { return ids }
                        ids += batch.map(\.event.eventID)
                    }
                }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(leased.count == 600)
        #expect(Set(leased).count == 600, "an event was leased twice")
    }

    @Test func invalidURLsAreRefusedWithTheirProblem() {
        #expect(throws: PostgresEventStore.InvalidURL.self) { try PostgresEventStore(url: "postgres://127.0.0.1/db", logger: quietLogger) }
        #expect(throws: PostgresEventStore.InvalidURL.self) { try PostgresEventStore(url: "postgres://u@h/db?sslmode=maybe", logger: quietLogger) }
        #expect(PostgresEventStore.redacted("postgres://u:secret@h/db") == "postgres://u:***@h/db")
    }

    /// A store opened while its database is down fails fast (nothing acknowledged) and works by
    /// itself once the database is up.
    @Test func aStoreRecoversWhenItsDatabaseReturns() async throws {
        let server = try await TestPostgres.launch()
        let url = try await server.makeDatabase("outage")
        try await server.stop()
        let store = try PostgresEventStore(url: url, logger: quietLogger)
        let started = ContinuousClock.now
        await #expect(throws: (any Error).self) { try await store.enqueue([OutboxEvent(pixel: "main", event: event("o1"))]) }
        #expect(ContinuousClock.now - started < .seconds(11), "a request never waits long on a database that is down")
        try await server.start()
        try await store.waitUntilReady(timeout: .seconds(30))
        #expect(try await store.enqueue([OutboxEvent(pixel: "main", event: event("o1"))]).count == 1)

        // Down again after it worked: calls fail within the operation timeout, then recover.
        try await server.stop()
        await #expect(throws: (any Error).self) { try await store.enqueue([OutboxEvent(pixel: "main", event: event("o2"))]) }
        try await server.start()
        var stored = false
        for _ in 0..<100 where !stored {
            stored = (try? await store.enqueue([OutboxEvent(pixel: "main", event: event("o2"))])) != nil
            if !stored { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(stored)
        #expect(try await store.stats(now: Date()).queueDepth == 2)
        await server.shutDown()
    }
}
