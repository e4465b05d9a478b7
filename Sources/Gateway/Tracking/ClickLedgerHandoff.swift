import ClickID
import Metrics
import NIOConcurrencyHelpers

/// One captured click, as the sidecar's click ledger stores it.
public struct ClickRecord: Sendable, Equatable {
    public struct ID: Sendable, Equatable {
        public var parameter: String
        public var platform: String
        public var value: String
    }

    public var unixMilliseconds: Int64
    public var visitorID: String
    public var clickIDs: [ID]
    public var ttp: String?
    public var clientAddress: String
    public var userAgent: String?
    public var landingURL: String
    public var referrer: String?
    /// The smartlink target chosen for this click, when it came through one.
    public var smartlinkTarget: String?
}

/// Where the proxy hands clicks to the ledger. `offer` never waits: a full hand-off drops the
/// click (and counts it) rather than slow a request down.
public protocol ClickSink: Sendable {
    /// - Returns: false when the click was dropped.
    @discardableResult
    func offer(_ record: ClickRecord) -> Bool
}

/// A bounded in-memory hand-off between the proxy's event loops and the ledger's writer.
public final class BoundedClickQueue: ClickSink {
    private let capacity: Int
    private let buffer = NIOLockedValueBox<[ClickRecord]>([])
    private let dropped = Counter(label: "clickgate_click_ledger_dropped_total")

    public init(capacity: Int = 10_000) {
        self.capacity = capacity
    }

    @discardableResult
    public func offer(_ record: ClickRecord) -> Bool {
        let accepted = buffer.withLockedValue { queue -> Bool in
            guard queue.count < capacity else { return false }
            queue.append(record)
            return true
        }
        if !accepted { dropped.increment() }
        return accepted
    }

    /// Takes everything queued so far.
    public func drain() -> [ClickRecord] {
        buffer.withLockedValue { queue in
            defer { queue.removeAll(keepingCapacity: true) }
            return queue
        }
    }

    /// Puts clicks taken by ``drain()`` back in front of those queued since, for another try. What
    /// no longer fits is dropped (and counted) from the oldest: a newer click of a visitor is the
    /// one events join.
    public func putBack(_ records: [ClickRecord]) {
        let lost = buffer.withLockedValue { queue -> Int in
            let kept = records.suffix(max(0, capacity - queue.count))
            queue.insert(contentsOf: kept, at: 0)
            return records.count - kept.count
        }
        if lost > 0 { dropped.increment(by: Int64(lost)) }
    }

    public var count: Int { buffer.withLockedValue { $0.count } }
}
