import Events
import EventsTestSupport
import Foundation
import Logging
import Testing

@testable import Gateway

/// The hand-off between the proxy and the click ledger keeps clicks while the store is down, on a
/// real PostgreSQL stopped and started again.
@Suite struct ClickLedgerWriterTests {
    private static func click(_ visitor: String, userAgent: String = "Phone/1") -> ClickRecord {
        ClickRecord(
            unixMilliseconds: Int64(Date().timeIntervalSince1970 * 1000), visitorID: visitor,
            clickIDs: [.init(parameter: "ttclid", platform: "tiktok", value: "E.C.P.\(visitor)")], ttp: nil, clientAddress: "192.0.2.1",
            userAgent: userAgent, landingURL: "https://lp.example/?ttclid=E.C.P.\(visitor)", referrer: nil, smartlinkTarget: nil)
    }

    /// Clicks put back go in front of those queued since; what no longer fits goes from the oldest.
    @Test func clicksPutBackKeepTheirOrderAndTheNewestFit() {
        let queue = BoundedClickQueue(capacity: 3)
        queue.offer(Self.click("a"))
        queue.offer(Self.click("b"))
        let taken = queue.drain()
        queue.offer(Self.click("c"))
        queue.offer(Self.click("d"))
        queue.putBack(taken)
        #expect(queue.drain().map(\.visitorID) == ["b", "c", "d"])
    }

    @Test func clicksWaitWhileTheDatabaseIsDownAndArriveWhenItIsBack() async throws {
        let server = try await TestPostgres.launch()
        let store = try PostgresEventStore(url: try await server.makeDatabase("ledger"), logger: Logger(label: "test"))
        try await store.waitUntilReady(timeout: .seconds(30))
        let queue = BoundedClickQueue()
        let writer = ClickLedgerWriter(queue: queue, store: store, logger: Logger(label: "test"))

        try await server.stop()
        queue.offer(Self.click("v1"))
        queue.offer(Self.click("v2"))
        #expect(await writer.flush() == false)
        #expect(queue.count == 2, "the clicks wait in the hand-off")

        try await server.start()
        try await store.waitUntilReady(timeout: .seconds(30))
        queue.offer(Self.click("v3"))
        #expect(await writer.flush())
        #expect(queue.count == 0)
        let stored = try await store.latestClicks(visitorIDs: ["v1", "v2", "v3"], since: Date(timeIntervalSinceNow: -60))
        #expect(stored.keys.sorted() == ["v1", "v2", "v3"])
        #expect(stored["v1"]?.ttclid == "E.C.P.v1")

        // A batch the working database refuses (PostgreSQL stores no NUL in text) is dropped, not
        // tried forever in front of every later click.
        queue.offer(Self.click("bad", userAgent: "a\u{0}b"))
        #expect(await writer.flush())
        queue.offer(Self.click("v4"))
        #expect(await writer.flush())
        let later = try await store.latestClicks(visitorIDs: ["bad", "v4"], since: Date(timeIntervalSinceNow: -60))
        #expect(later.keys.sorted() == ["v4"])
        await server.shutDown()
    }
}
