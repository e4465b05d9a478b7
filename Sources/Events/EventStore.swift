import Foundation

/// An accepted event on its way to the Events API.
public struct OutboxEvent: Sendable, Equatable {
    /// The `events.pixels` name (empty when the site has none: the dry-run sink).
    public var pixel: String
    public var event: NormalizedEvent

    public init(pixel: String, event: NormalizedEvent) {
        self.pixel = pixel
        self.event = event
    }
}

public enum EnqueueOutcome: Sendable, Equatable {
    case stored(id: Int64)
    /// The same (pixel, event, event_id) within 48 h: acknowledged, not sent again.
    case duplicate
}

/// An event claimed for delivery by one sender until `leaseUntil`.
public struct LeasedEvent: Sendable, Equatable {
    public var id: Int64
    public var pixel: String
    public var event: NormalizedEvent
    public var attempts: Int
}

public struct DeadLetter: Sendable, Equatable {
    public var id: Int64
    public var pixel: String
    public var event: String
    public var eventID: String
    public var reason: String
    public var failedAt: Date
}

/// One captured click in the ledger that enriches later events.
public struct ClickLedgerEntry: Sendable, Equatable {
    public var visitorID: String
    public var clickedAt: Date
    public var ttclid: String?
    public var ttp: String?
    public var ip: String?
    public var userAgent: String?
    public var landingURL: String?
    public var referrer: String?

    public init(
        visitorID: String, clickedAt: Date, ttclid: String?, ttp: String?, ip: String?, userAgent: String?, landingURL: String?,
        referrer: String?
    ) {
        self.visitorID = visitorID
        self.clickedAt = clickedAt
        self.ttclid = ttclid
        self.ttp = ttp
        self.ip = ip
        self.userAgent = userAgent
        self.landingURL = landingURL
        self.referrer = referrer
    }
}

/// Rows ``EventStore/prune(now:retention:)`` deleted.
public struct PruneCounts: Sendable, Equatable {
    public var dedupKeys = 0
    public var clicks = 0
    public var identities = 0

    public init() {}
    public var total: Int { dedupKeys + clicks + identities }
}

public struct StoreStats: Sendable, Equatable {
    public var queueDepth: Int
    /// Seconds since the oldest undelivered event was received.
    public var oldestUndeliveredAge: Double?
    public var deadLetters: Int
}

/// Where accepted events, dedup keys, dead letters and the click ledger live. SQLite embeds it;
/// PostgreSQL shares it between gateways. SQL and leasing stay behind this protocol.
public protocol EventStore: Sendable {
    /// Durable once this returns: the caller may acknowledge.
    func enqueue(_ events: [OutboxEvent]) async throws -> [EnqueueOutcome]
    /// Claims up to `limit` events that are due, oldest first, for `duration`.
    func lease(limit: Int, for duration: Duration, now: Date) async throws -> [LeasedEvent]
    func markDelivered(_ ids: [Int64]) async throws
    func retryLater(_ ids: [Int64], at: Date, error: String) async throws
    /// Makes the pixel's backed-off events due now (the API answered again after failures).
    func expediteRetries(pixel: String, now: Date) async throws
    func deadLetter(_ ids: [Int64], reason: String) async throws
    func deadLetters(limit: Int) async throws -> [DeadLetter]
    /// Puts dead letters back in the outbox (all when `ids` is empty); returns how many.
    func replay(_ ids: [Int64]) async throws -> Int
    func recordClicks(_ entries: [ClickLedgerEntry]) async throws
    /// Each visitor's latest click no older than `since`, in one query.
    func latestClicks(visitorIDs: Set<String>, since: Date) async throws -> [String: ClickLedgerEntry]
    /// Remembers that a hashed email or external id belongs to a visitor.
    func linkIdentity(_ hashes: [String], visitorID: String, at: Date) async throws
    /// The visitor of each known hash, in one query.
    func visitors(forIdentities hashes: Set<String>) async throws -> [String: String]
    func stats(now: Date) async throws -> StoreStats
    /// A small durable write: throws when the store cannot take events (disk full, read-only, gone).
    func checkWritable() async throws
    /// Deletes what can no longer matter, in small batches: dedup keys older than the dedup window,
    /// clicks and identity links older than `retention` (the attribution window).
    func prune(now: Date, retention: TimeInterval) async throws -> PruneCounts
}
