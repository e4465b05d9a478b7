import Foundation
#if canImport(Glibc)
import Glibc
#endif
import GRDB
import NIOConcurrencyHelpers

/// The embedded store: SQLite in WAL mode with `synchronous=FULL`, so an acknowledged event
/// survives `kill -9` and power loss. Writes are group-committed: while one transaction commits,
/// new submissions wait and share the next one, so one fsync covers many events under load.
public final class SQLiteEventStore: EventStore {
    private let pool: DatabasePool
    private let committer: GroupCommitter
    /// The descriptor holding the owner's lock on `PATH.lock`; closing it releases the lock.
    private let ownerLock: NIOLockedValueBox<Int32?>
    static let dedupWindow: TimeInterval = 48 * 3600

    /// A second process delivering from the same file would release the first one's leases and
    /// send its batches again: several gateways share work through PostgreSQL instead.
    public struct OwnerLockError: Error, CustomStringConvertible {
        public let description: String
    }

    /// - Parameter owner: true for the one process that serves and delivers from this store: it
    ///   takes an exclusive lock beside the file (a second owner gets ``OwnerLockError``) and releases
    ///   leases a dead run left behind. Tools (dead-letters, replay) open it with false, beside a
    ///   running gateway, and leave its leases alone.
    public init(path: String, owner: Bool = true) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        let lock = owner ? try Self.lockExclusively(path) : nil
        ownerLock = NIOLockedValueBox(lock)
        do {
            var configuration = Configuration()
            configuration.busyMode = .timeout(5)
            configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
            if owner {
                // Leases left behind were held by a run that died (kill -9 mid-batch), so those
                // events are due again now, not when the leases expire.
                try pool.write { db in try db.execute(sql: "UPDATE outbox SET lease_until = NULL WHERE lease_until IS NOT NULL") }
            }
        } catch {
            if let lock { Glibc.close(lock) }
            throw error
        }
        committer = GroupCommitter(pool: pool)
    }

    deinit {
        releaseOwnership()
    }

    /// Closes the database and gives up ownership: another process (or a test's next instance)
    /// may open the file as its owner. The store is not usable afterwards.
    public func close() throws {
        try pool.close()
        releaseOwnership()
    }

    private func releaseOwnership() {
        if let lock = ownerLock.withLockedValue({ lock in defer { lock = nil }; return lock }) { Glibc.close(lock) }
    }

    private static func lockExclusively(_ path: String) throws -> Int32 {
        let fd = open(path + ".lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw OwnerLockError(description: "cannot open \(path).lock: \(String(cString: strerror(errno)))") }
        // A lock just released can linger for a moment: a child being spawned holds a copy of the
        // descriptor until it execs. A second gateway holds it for good.
        var locked = flock(fd, LOCK_EX | LOCK_NB) == 0
        for _ in 1..<20 where !locked {
            usleep(50_000)
            locked = flock(fd, LOCK_EX | LOCK_NB) == 0
        }
        guard locked else {
            Glibc.close(fd)
            throw OwnerLockError(
                description: "\(path) is already open in another clickgate process (it holds \(path).lock); several gateways share work through PostgreSQL")
        }
        return fd
    }

    /// Transactions that stored events so far (each is one fsync of the WAL).
    public var commitCount: Int {
        get async { await committer.commits }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE outbox (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    pixel TEXT NOT NULL, event TEXT NOT NULL, event_id TEXT NOT NULL,
                    payload BLOB NOT NULL, received_at REAL NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0, available_at REAL NOT NULL,
                    lease_until REAL, last_error TEXT);
                CREATE INDEX outbox_due ON outbox(available_at);
                CREATE TABLE dedup (
                    pixel TEXT NOT NULL, event TEXT NOT NULL, event_id TEXT NOT NULL, seen_at REAL NOT NULL,
                    PRIMARY KEY (pixel, event, event_id)) WITHOUT ROWID;
                CREATE TABLE dead_letters (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    pixel TEXT NOT NULL, event TEXT NOT NULL, event_id TEXT NOT NULL,
                    payload BLOB NOT NULL, reason TEXT NOT NULL, failed_at REAL NOT NULL);
                CREATE TABLE clicks (
                    visitor_id TEXT NOT NULL, clicked_at REAL NOT NULL, ttclid TEXT, ttp TEXT, ip TEXT,
                    user_agent TEXT, landing_url TEXT, referrer TEXT);
                CREATE INDEX clicks_visitor ON clicks(visitor_id, clicked_at);
                CREATE TABLE identities (hash TEXT PRIMARY KEY, visitor_id TEXT NOT NULL, seen_at REAL NOT NULL) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v2: readiness probe") { db in
            try db.execute(sql: "CREATE TABLE health (id INTEGER PRIMARY KEY, checked_at REAL NOT NULL)")
        }
        migrator.registerMigration("v3: pruning by age") { db in
            try db.execute(sql: """
                CREATE INDEX dedup_seen ON dedup (seen_at);
                CREATE INDEX clicks_time ON clicks (clicked_at);
                CREATE INDEX identities_seen ON identities (seen_at);
                """)
        }
        return migrator
    }

    public func enqueue(_ events: [OutboxEvent]) async throws -> [EnqueueOutcome] {
        try await committer.submit(events.map(Encoded.init))
    }

    public func lease(limit: Int, for duration: Duration, now: Date) async throws -> [LeasedEvent] {
        let until = now.addingTimeInterval(TimeInterval(duration.components.seconds))
        let nowValue = now.timeIntervalSince1970
        return try await pool.write { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT id, pixel, payload, attempts FROM outbox
                WHERE available_at <= ? AND (lease_until IS NULL OR lease_until <= ?)
                ORDER BY id LIMIT ?
                """, arguments: [nowValue, nowValue, limit])
            var leased: [LeasedEvent] = []
            for row in rows {
                let id: Int64 = row["id"]
                try db.execute(sql: "UPDATE outbox SET lease_until = ?, attempts = attempts + 1 WHERE id = ?",
                               arguments: [until.timeIntervalSince1970, id])
                let payload: Data = row["payload"]
                guard let event = NormalizedEvent(storage: try JSONValue.parse(Array(payload))) else {
                    throw StoredEventUnreadable(id: id)
                }
                leased.append(LeasedEvent(id: id, pixel: row["pixel"], event: event, attempts: (row["attempts"] as Int) + 1))
            }
            return leased
        }
    }

    public func markDelivered(_ ids: [Int64]) async throws {
        guard !ids.isEmpty else { return }
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM outbox WHERE id IN (\(Self.placeholders(ids.count)))", arguments: StatementArguments(ids))
        }
    }

    public func retryLater(_ ids: [Int64], at: Date, error: String) async throws {
        guard !ids.isEmpty else { return }
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE outbox SET lease_until = NULL, available_at = ?, last_error = ? WHERE id IN (\(Self.placeholders(ids.count)))",
                arguments: StatementArguments([at.timeIntervalSince1970, error] as [any DatabaseValueConvertible]) + StatementArguments(ids))
        }
    }

    public func expediteRetries(pixel: String, now: Date) async throws {
        let value = now.timeIntervalSince1970
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE outbox SET available_at = ? WHERE pixel = ? AND available_at > ? AND lease_until IS NULL",
                arguments: [value, pixel, value])
        }
    }

    public func deadLetter(_ ids: [Int64], reason: String) async throws {
        guard !ids.isEmpty else { return }
        let now = Date().timeIntervalSince1970
        try await pool.write { db in
            let list = Self.placeholders(ids.count)
            try db.execute(sql: """
                INSERT INTO dead_letters (pixel, event, event_id, payload, reason, failed_at)
                SELECT pixel, event, event_id, payload, ?, ? FROM outbox WHERE id IN (\(list))
                """, arguments: StatementArguments([reason, now] as [any DatabaseValueConvertible]) + StatementArguments(ids))
            try db.execute(sql: "DELETE FROM outbox WHERE id IN (\(list))", arguments: StatementArguments(ids))
        }
    }

    public func deadLetters(limit: Int) async throws -> [DeadLetter] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, pixel, event, event_id, reason, failed_at FROM dead_letters ORDER BY id LIMIT ?", arguments: [limit])
                .map { row in
                    DeadLetter(
                        id: row["id"], pixel: row["pixel"], event: row["event"], eventID: row["event_id"], reason: row["reason"],
                        failedAt: Date(timeIntervalSince1970: row["failed_at"]))
                }
        }
    }

    public func replay(_ ids: [Int64]) async throws -> Int {
        let now = Date().timeIntervalSince1970
        return try await pool.write { db in
            let filter = ids.isEmpty ? "" : "WHERE id IN (\(Self.placeholders(ids.count)))"
            let arguments = ids.isEmpty ? StatementArguments() : StatementArguments(ids)
            try db.execute(sql: """
                INSERT INTO outbox (pixel, event, event_id, payload, received_at, available_at)
                SELECT pixel, event, event_id, payload, \(now), \(now) FROM dead_letters \(filter) ORDER BY id
                """, arguments: arguments)
            let moved = db.changesCount
            try db.execute(sql: "DELETE FROM dead_letters \(filter)", arguments: arguments)
            return moved
        }
    }

    public func recordClicks(_ entries: [ClickLedgerEntry]) async throws {
        guard !entries.isEmpty else { return }
        try await pool.write { db in
            let statement = try db.cachedStatement(sql: """
                INSERT INTO clicks (visitor_id, clicked_at, ttclid, ttp, ip, user_agent, landing_url, referrer)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for e in entries {
                try statement.execute(arguments: [
                    e.visitorID, e.clickedAt.timeIntervalSince1970, e.ttclid, e.ttp, e.ip, e.userAgent, e.landingURL, e.referrer,
                ])
            }
        }
    }

    public func latestClicks(visitorIDs: Set<String>, since: Date) async throws -> [String: ClickLedgerEntry] {
        guard !visitorIDs.isEmpty else { return [:] }
        let ids = Array(visitorIDs)
        return try await pool.read { db in
            var latest: [String: ClickLedgerEntry] = [:]
            let rows = try Row.fetchAll(db, sql: """
                SELECT * FROM clicks WHERE visitor_id IN (\(Self.placeholders(ids.count))) AND clicked_at >= ? ORDER BY clicked_at
                """, arguments: StatementArguments(ids) + [since.timeIntervalSince1970])
            for row in rows {
                let entry = ClickLedgerEntry(
                    visitorID: row["visitor_id"], clickedAt: Date(timeIntervalSince1970: row["clicked_at"]), ttclid: row["ttclid"],
                    ttp: row["ttp"], ip: row["ip"], userAgent: row["user_agent"], landingURL: row["landing_url"], referrer: row["referrer"])
                latest[entry.visitorID] = entry
            }
            return latest
        }
    }

    public func visitors(forIdentities hashes: Set<String>) async throws -> [String: String] {
        guard !hashes.isEmpty else { return [:] }
        let list = Array(hashes)
        return try await pool.read { db in
            var out: [String: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT hash, visitor_id FROM identities WHERE hash IN (\(Self.placeholders(list.count))) ORDER BY seen_at",
                                        arguments: StatementArguments(list)) {
                out[row["hash"]] = row["visitor_id"]
            }
            return out
        }
    }

    public func linkIdentity(_ hashes: [String], visitorID: String, at: Date) async throws {
        guard !hashes.isEmpty else { return }
        try await pool.write { db in
            for hash in hashes {
                try db.execute(sql: "INSERT OR REPLACE INTO identities (hash, visitor_id, seen_at) VALUES (?, ?, ?)",
                               arguments: [hash, visitorID, at.timeIntervalSince1970])
            }
        }
    }

    public func checkWritable() async throws {
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO health (id, checked_at) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET checked_at = excluded.checked_at", arguments: [Date().timeIntervalSince1970])
        }
    }

    public func prune(now: Date, retention: TimeInterval) async throws -> PruneCounts {
        let dedupCutoff = now.timeIntervalSince1970 - Self.dedupWindow
        let cutoff = now.timeIntervalSince1970 - retention
        var counts = PruneCounts()
        // Batches of 5,000, each its own transaction: ingest waits at most one batch for the writer.
        func deleteAll(_ sql: String, before: Double) async throws -> Int {
            var total = 0
            while true {
                let deleted = try await pool.write { db in
                    try db.execute(sql: sql, arguments: [before])
                    return db.changesCount
                }
                total += deleted
                if deleted < 5000 { return total }
            }
        }
        counts.dedupKeys = try await deleteAll(
            "DELETE FROM dedup WHERE (pixel, event, event_id) IN (SELECT pixel, event, event_id FROM dedup WHERE seen_at < ? LIMIT 5000)",
            before: dedupCutoff)
        counts.clicks = try await deleteAll("DELETE FROM clicks WHERE rowid IN (SELECT rowid FROM clicks WHERE clicked_at < ? LIMIT 5000)", before: cutoff)
        counts.identities = try await deleteAll(
            "DELETE FROM identities WHERE hash IN (SELECT hash FROM identities WHERE seen_at < ? LIMIT 5000)", before: cutoff)
        return counts
    }

    public func stats(now: Date) async throws -> StoreStats {
        try await pool.read { db in
            let depth = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM outbox") ?? 0
            let oldest = try Double.fetchOne(db, sql: "SELECT MIN(received_at) FROM outbox")
            let dead = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM dead_letters") ?? 0
            return StoreStats(queueDepth: depth, oldestUndeliveredAge: oldest.map { now.timeIntervalSince1970 - $0 }, deadLetters: dead)
        }
    }

    static func placeholders(_ count: Int) -> String {
        Array(repeating: "?", count: count).joined(separator: ",")
    }

    /// An event with its outbox payload already encoded: encoding happens before the writer is
    /// taken, so the transaction does only SQL.
    struct Encoded: Sendable {
        let pixel: String
        let event: String
        let eventID: String
        let payload: Data

        init(_ item: OutboxEvent) {
            pixel = item.pixel
            event = item.event.event
            eventID = item.event.eventID
            payload = Data(item.event.storageJSON.serialized.utf8)
        }
    }

    /// One transaction for a group of submissions: dedup, then insert. A dedup key older than the
    /// window is taken over by the new event (the upsert's WHERE); `changesCount` tells which won.
    static func insert(_ groups: [[Encoded]], into db: Database, now: Date) throws -> [[EnqueueOutcome]] {
        let nowValue = now.timeIntervalSince1970
        let claim = try db.cachedStatement(sql: """
            INSERT INTO dedup (pixel, event, event_id, seen_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (pixel, event, event_id) DO UPDATE SET seen_at = excluded.seen_at WHERE seen_at < ?
            """)
        let insert = try db.cachedStatement(sql: """
            INSERT INTO outbox (pixel, event, event_id, payload, received_at, available_at) VALUES (?, ?, ?, ?, ?, ?)
            """)
        return try groups.map { events in
            try events.map { item in
                try claim.execute(arguments: [item.pixel, item.event, item.eventID, nowValue, nowValue - dedupWindow])
                guard db.changesCount > 0 else { return .duplicate }
                try insert.execute(arguments: [item.pixel, item.event, item.eventID, item.payload, nowValue, nowValue])
                return .stored(id: db.lastInsertedRowID)
            }
        }
    }
}

struct StoredEventUnreadable: Error, CustomStringConvertible {
    let id: Int64
    var description: String { "outbox row \(id) does not hold an event" }
}

/// Batches concurrent submissions into shared transactions.
actor GroupCommitter {
    private let pool: DatabasePool
    private var waiting: [([SQLiteEventStore.Encoded], CheckedContinuation<[EnqueueOutcome], any Error>)] = []
    private var writing = false
    private(set) var commits = 0

    init(pool: DatabasePool) {
        self.pool = pool
    }

    func submit(_ events: [SQLiteEventStore.Encoded]) async throws -> [EnqueueOutcome] {
        try await withCheckedThrowingContinuation { continuation in
            waiting.append((events, continuation))
            if !writing {
                writing = true
                Task { await drain() }
            }
        }
    }

    private func drain() async {
        while !waiting.isEmpty {
            let batch = waiting
            waiting.removeAll()
            let groups = batch.map(\.0)
            do {
                let outcomes = try await pool.write { db in try SQLiteEventStore.insert(groups, into: db, now: Date()) }
                commits += 1
                for (i, entry) in batch.enumerated() { entry.1.resume(returning: outcomes[i]) }
            } catch {
                for entry in batch { entry.1.resume(throwing: error) }
            }
        }
        writing = false
    }
}
