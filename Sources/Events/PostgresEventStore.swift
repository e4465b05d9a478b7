import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOSSL
import PostgresNIO

/// The shared store for several gateways: `events.store: postgres://USER[:PASSWORD]@HOST[:PORT]/DB`.
///
/// Same contract as the SQLite store. What differs is sharing: instances claim outbox rows with
/// `FOR UPDATE SKIP LOCKED` plus a lease expiry, so no event is sent by two instances at once and
/// a crashed instance's leases are taken over when they expire (never released at start: other
/// instances may hold them). Every acknowledged enqueue is a committed transaction
/// (`synchronous_commit` as the server has it, `on` by default).
public final class PostgresEventStore: EventStore {
    private let client: PostgresClient
    private let runner: Task<Void, Never>
    private let schema: Task<Void, Never>
    private let logger: Logger
    /// Nil once the schema is in place; before that, why the database cannot be used yet.
    private let unavailable = NIOLockedValueBox<String?>("connecting to PostgreSQL")

    /// Starts connecting and applying the schema in the background, retrying until the database
    /// answers: a gateway starts (and proxies) while its database is still down. Throws only for
    /// a URL that cannot work.
    public init(url: String, logger: Logger) throws {
        let configuration = try Self.configuration(from: url)
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        self.logger = logger
        runner = Task { await client.run() }
        let unavailable = self.unavailable
        schema = Task {
            var delay: Duration = .milliseconds(250)
            while !Task.isCancelled {
                do {
                    try await withDeadline(.seconds(15), what: "applying the schema") { try await Self.migrate(client, logger: logger) }
                    unavailable.withLockedValue { $0 = nil }
                    return
                } catch {
                    unavailable.withLockedValue { $0 = "PostgreSQL is not reachable: \(error)" }
                    logger.error("events store: PostgreSQL is not reachable; retrying", metadata: ["error": "\(error)", "url": "\(Self.redacted(url))"])
                    try? await Task.sleep(for: delay)
                    delay = min(delay * 2, .seconds(5))
                }
            }
        }
    }

    deinit {
        schema.cancel()
        runner.cancel()
    }

    /// Waits for the schema (command-line tools use this); throws with the last error after `timeout`.
    public func waitUntilReady(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while let reason = unavailable.withLockedValue({ $0 }) {
            guard ContinuousClock.now < deadline else { throw DeadlineExceeded(description: reason) }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    // MARK: Connection settings

    public struct InvalidURL: Error, CustomStringConvertible {
        public var description: String
    }

    /// `postgres://user:password@host:port/database?sslmode=disable|prefer|require|verify-full`
    /// (libpq's names; `prefer` when absent). Also `application_name`.
    static func configuration(from url: String) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? ""),
            let host = components.host, !host.isEmpty
        else { throw InvalidURL(description: "expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, got \(Self.redacted(url))") }
        guard let user = components.user, !user.isEmpty else { throw InvalidURL(description: "the URL names no user: \(Self.redacted(url))") }
        let database = String(components.path.drop { $0 == "/" })
        let query = Dictionary((components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { _, last in last })
        let tls: PostgresClient.Configuration.TLS
        switch query["sslmode"] ?? "prefer" {
        case "disable": tls = .disable
        case "prefer", "allow": tls = .prefer(Self.unverified)
        case "require": tls = .require(Self.unverified)
        case "verify-ca", "verify-full": tls = .require(.makeClientConfiguration())
        case let other: throw InvalidURL(description: "sslmode '\(other)' is not one of disable, prefer, require, verify-full")
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: components.port ?? 5432, username: user, password: components.password?.removingPercentEncoding,
            database: database.isEmpty ? user : database, tls: tls)
        configuration.options.additionalStartupParameters = [("application_name", query["application_name"] ?? "clickgate")]
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.maximumConnections = 16
        return configuration
    }

    /// libpq's `prefer`/`require` encrypt without verifying the server.
    private static var unverified: TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        return tls
    }

    /// The URL without its password, for messages.
    public static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? url
    }

    // MARK: Schema

    /// Versioned steps, applied in order under an advisory lock, so instances starting together
    /// apply each step once.
    static let migrations: [(version: Int, sql: [String])] = [
        (1, [
            """
            CREATE TABLE outbox (
                id BIGSERIAL PRIMARY KEY, pixel TEXT NOT NULL, event TEXT NOT NULL, event_id TEXT NOT NULL,
                payload TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                available_at DOUBLE PRECISION NOT NULL, lease_until DOUBLE PRECISION, last_error TEXT)
            """,
            "CREATE INDEX outbox_due ON outbox (available_at)",
            """
            CREATE TABLE dedup (
                pixel TEXT NOT NULL, event TEXT NOT NULL, event_id TEXT NOT NULL, seen_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (pixel, event, event_id))
            """,
            """
            CREATE TABLE dead_letters (
                id BIGSERIAL PRIMARY KEY, pixel TEXT NOT NULL, event TEXT NOT NULL, event_id TEXT NOT NULL,
                payload TEXT NOT NULL, reason TEXT NOT NULL, failed_at DOUBLE PRECISION NOT NULL)
            """,
            """
            CREATE TABLE clicks (
                visitor_id TEXT NOT NULL, clicked_at DOUBLE PRECISION NOT NULL, ttclid TEXT, ttp TEXT, ip TEXT,
                user_agent TEXT, landing_url TEXT, referrer TEXT)
            """,
            "CREATE INDEX clicks_visitor ON clicks (visitor_id, clicked_at)",
            "CREATE INDEX clicks_time ON clicks (clicked_at)",
            "CREATE INDEX dedup_seen ON dedup (seen_at)",
            "CREATE TABLE identities (hash TEXT PRIMARY KEY, visitor_id TEXT NOT NULL, seen_at DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX identities_seen ON identities (seen_at)",
            "CREATE TABLE health (id INTEGER PRIMARY KEY, checked_at DOUBLE PRECISION NOT NULL)",
        ]),
    ]

    static func migrate(_ client: PostgresClient, logger: Logger) async throws {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(727011)", logger: logger)
            try await connection.query(
                "CREATE TABLE IF NOT EXISTS clickgate_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)",
                logger: logger)
            var applied = Set<Int>()
            for try await version in try await connection.query("SELECT version FROM clickgate_migrations", logger: logger).decode(Int.self) {
                applied.insert(version)
            }
            for migration in migrations where !applied.contains(migration.version) {
                for statement in migration.sql { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
                let now = Date().timeIntervalSince1970
                try await connection.query("INSERT INTO clickgate_migrations (version, applied_at) VALUES (\(migration.version), \(now))", logger: logger)
                logger.info("events store: schema migrated", metadata: ["version": "\(migration.version)"])
            }
        }
    }

    public struct StoreUnavailable: Error, CustomStringConvertible {
        public var description: String
    }

    /// Every call gives up after this: a request must not hang on a database that went away.
    static let operationTimeout: Duration = .seconds(10)

    @discardableResult
    private func run<T: Sendable>(_ what: String, _ body: @escaping @Sendable (PostgresClient) async throws -> T) async throws -> T {
        if let reason = unavailable.withLockedValue({ $0 }) { throw StoreUnavailable(description: "\(what): \(reason)") }
        let client = self.client
        return try await withDeadline(Self.operationTimeout, what: what) { try await body(client) }
    }

    // MARK: EventStore

    public func enqueue(_ events: [OutboxEvent]) async throws -> [EnqueueOutcome] {
        guard !events.isEmpty else { return [] }
        // The same key twice in one request: the first is the event, the rest duplicates.
        var firstIndex: [String: Int] = [:]
        var pixels: [String] = [], names: [String] = [], ids: [String] = [], payloads: [String] = []
        for (i, item) in events.enumerated() {
            let key = item.pixel + "\u{1f}" + item.event.event + "\u{1f}" + item.event.eventID
            guard firstIndex[key] == nil else { continue }
            firstIndex[key] = i
            pixels.append(item.pixel)
            names.append(item.event.event)
            ids.append(item.event.eventID)
            payloads.append(item.event.storageJSON.serialized)
        }
        let logger = self.logger
        let stored = try await run("storing events") { [pixels, names, ids, payloads] client in
            let now = Date().timeIntervalSince1970
            let cutoff = now - SQLiteEventStore.dedupWindow
            // Dedup keys older than the window are taken over by the new event.
            let rows = try await client.query("""
                WITH input AS (
                    SELECT * FROM unnest(\(pixels)::text[], \(names)::text[], \(ids)::text[], \(payloads)::text[])
                        AS i(pixel, event, event_id, payload)),
                claimed AS (
                    INSERT INTO dedup (pixel, event, event_id, seen_at) SELECT pixel, event, event_id, \(now) FROM input
                    ON CONFLICT (pixel, event, event_id) DO UPDATE SET seen_at = excluded.seen_at WHERE dedup.seen_at < \(cutoff)
                    RETURNING pixel, event, event_id)
                INSERT INTO outbox (pixel, event, event_id, payload, received_at, available_at)
                SELECT i.pixel, i.event, i.event_id, i.payload, \(now), \(now) FROM input i JOIN claimed c USING (pixel, event, event_id)
                RETURNING id, pixel, event, event_id
                """, logger: logger)
            var stored: [String: Int64] = [:]
            for try await (id, pixel, event, eventID) in rows.decode((Int64, String, String, String).self) {
                stored[pixel + "\u{1f}" + event + "\u{1f}" + eventID] = id
            }
            return stored
        }
        return events.enumerated().map { i, item in
            let key = item.pixel + "\u{1f}" + item.event.event + "\u{1f}" + item.event.eventID
            guard firstIndex[key] == i, let id = stored[key] else { return .duplicate }
            return .stored(id: id)
        }
    }

    public func lease(limit: Int, for duration: Duration, now: Date) async throws -> [LeasedEvent] {
        let logger = self.logger
        let nowValue = now.timeIntervalSince1970
        let until = nowValue + Double(duration.components.seconds)
        return try await run("leasing events") { client in
            let rows = try await client.query("""
                UPDATE outbox SET lease_until = \(until), attempts = attempts + 1
                WHERE id IN (
                    SELECT id FROM outbox WHERE available_at <= \(nowValue) AND (lease_until IS NULL OR lease_until <= \(nowValue))
                    ORDER BY id LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                RETURNING id, pixel, payload, attempts
                """, logger: logger)
            var leased: [LeasedEvent] = []
            for try await (id, pixel, payload, attempts) in rows.decode((Int64, String, String, Int).self) {
                guard let event = NormalizedEvent(storage: try JSONValue.parse(Array(payload.utf8))) else { throw StoredEventUnreadable(id: id) }
                leased.append(LeasedEvent(id: id, pixel: pixel, event: event, attempts: attempts))
            }
            return leased.sorted { $0.id < $1.id }
        }
    }

    public func markDelivered(_ ids: [Int64]) async throws {
        guard !ids.isEmpty else { return }
        let logger = self.logger
        try await run("marking events delivered") { client in
            try await client.query("DELETE FROM outbox WHERE id = ANY(\(ids))", logger: logger)
        }
    }

    public func retryLater(_ ids: [Int64], at: Date, error: String) async throws {
        guard !ids.isEmpty else { return }
        let logger = self.logger
        let when = at.timeIntervalSince1970
        try await run("scheduling a retry") { client in
            try await client.query(
                "UPDATE outbox SET lease_until = NULL, available_at = \(when), last_error = \(error) WHERE id = ANY(\(ids))", logger: logger)
        }
    }

    public func expediteRetries(pixel: String, now: Date) async throws {
        let logger = self.logger
        let value = now.timeIntervalSince1970
        try await run("expediting retries") { client in
            try await client.query(
                "UPDATE outbox SET available_at = \(value) WHERE pixel = \(pixel) AND available_at > \(value) AND lease_until IS NULL", logger: logger)
        }
    }

    public func deadLetter(_ ids: [Int64], reason: String) async throws {
        guard !ids.isEmpty else { return }
        let logger = self.logger
        let now = Date().timeIntervalSince1970
        try await run("dead-lettering events") { client in
            try await client.query("""
                WITH moved AS (DELETE FROM outbox WHERE id = ANY(\(ids)) RETURNING id, pixel, event, event_id, payload)
                INSERT INTO dead_letters (pixel, event, event_id, payload, reason, failed_at)
                SELECT pixel, event, event_id, payload, \(reason), \(now) FROM moved ORDER BY id
                """, logger: logger)
        }
    }

    public func deadLetters(limit: Int) async throws -> [DeadLetter] {
        let logger = self.logger
        return try await run("reading dead letters") { client in
            let rows = try await client.query(
                "SELECT id, pixel, event, event_id, reason, failed_at FROM dead_letters ORDER BY id LIMIT \(limit)", logger: logger)
            var letters: [DeadLetter] = []
            for try await (id, pixel, event, eventID, reason, failedAt) in rows.decode((Int64, String, String, String, String, Double).self) {
                letters.append(DeadLetter(id: id, pixel: pixel, event: event, eventID: eventID, reason: reason, failedAt: Date(timeIntervalSince1970: failedAt)))
            }
            return letters
        }
    }

    public func replay(_ ids: [Int64]) async throws -> Int {
        let logger = self.logger
        let now = Date().timeIntervalSince1970
        return try await run("replaying dead letters") { client in
            let all = ids.isEmpty
            let rows = try await client.query("""
                WITH moved AS (DELETE FROM dead_letters WHERE \(all) OR id = ANY(\(ids)) RETURNING id, pixel, event, event_id, payload)
                INSERT INTO outbox (pixel, event, event_id, payload, received_at, available_at)
                SELECT pixel, event, event_id, payload, \(now), \(now) FROM moved ORDER BY id
                RETURNING id
                """, logger: logger)
            var moved = 0
            for try await _ in rows { moved += 1 }
            return moved
        }
    }

    public func recordClicks(_ entries: [ClickLedgerEntry]) async throws {
        guard !entries.isEmpty else { return }
        let logger = self.logger
        let visitors = entries.map(\.visitorID), times = entries.map { $0.clickedAt.timeIntervalSince1970 }
        // Arrays of optionals do not bind: absent values travel as '' and become NULL again.
        func column(_ path: KeyPath<ClickLedgerEntry, String?>) -> [String] { entries.map { $0[keyPath: path] ?? "" } }
        let ttclids = column(\.ttclid), ttps = column(\.ttp), ips = column(\.ip), agents = column(\.userAgent)
        let landings = column(\.landingURL), referrers = column(\.referrer)
        try await run("recording clicks") { client in
            try await client.query("""
                INSERT INTO clicks (visitor_id, clicked_at, ttclid, ttp, ip, user_agent, landing_url, referrer)
                SELECT v, t, NULLIF(c, ''), NULLIF(p, ''), NULLIF(a, ''), NULLIF(u, ''), NULLIF(l, ''), NULLIF(r, '')
                FROM unnest(\(visitors)::text[], \(times)::float8[], \(ttclids)::text[], \(ttps)::text[], \(ips)::text[],
                    \(agents)::text[], \(landings)::text[], \(referrers)::text[]) AS x(v, t, c, p, a, u, l, r)
                """, logger: logger)
        }
    }

    public func latestClicks(visitorIDs: Set<String>, since: Date) async throws -> [String: ClickLedgerEntry] {
        guard !visitorIDs.isEmpty else { return [:] }
        let logger = self.logger
        let ids = Array(visitorIDs)
        let sinceValue = since.timeIntervalSince1970
        return try await run("reading the click ledger") { client in
            let rows = try await client.query("""
                SELECT DISTINCT ON (visitor_id) visitor_id, clicked_at, ttclid, ttp, ip, user_agent, landing_url, referrer
                FROM clicks WHERE visitor_id = ANY(\(ids)) AND clicked_at >= \(sinceValue)
                ORDER BY visitor_id, clicked_at DESC
                """, logger: logger)
            var latest: [String: ClickLedgerEntry] = [:]
            for try await (visitor, clickedAt, ttclid, ttp, ip, agent, landing, referrer) in rows.decode(
                (String, Double, String?, String?, String?, String?, String?, String?).self)
            {
                latest[visitor] = ClickLedgerEntry(
                    visitorID: visitor, clickedAt: Date(timeIntervalSince1970: clickedAt), ttclid: ttclid, ttp: ttp, ip: ip,
                    userAgent: agent, landingURL: landing, referrer: referrer)
            }
            return latest
        }
    }

    public func linkIdentity(_ hashes: [String], visitorID: String, at: Date) async throws {
        guard !hashes.isEmpty else { return }
        let logger = self.logger
        let seen = at.timeIntervalSince1970
        let unique = Array(Set(hashes))
        try await run("linking identities") { client in
            try await client.query("""
                INSERT INTO identities (hash, visitor_id, seen_at) SELECT h, \(visitorID), \(seen) FROM unnest(\(unique)::text[]) AS h
                ON CONFLICT (hash) DO UPDATE SET visitor_id = excluded.visitor_id, seen_at = excluded.seen_at
                """, logger: logger)
        }
    }

    public func visitors(forIdentities hashes: Set<String>) async throws -> [String: String] {
        guard !hashes.isEmpty else { return [:] }
        let logger = self.logger
        let list = Array(hashes)
        return try await run("reading identities") { client in
            var out: [String: String] = [:]
            let rows = try await client.query("SELECT hash, visitor_id FROM identities WHERE hash = ANY(\(list))", logger: logger)
            for try await (hash, visitor) in rows.decode((String, String).self) { out[hash] = visitor }
            return out
        }
    }

    public func prune(now: Date, retention: TimeInterval) async throws -> PruneCounts {
        let logger = self.logger
        let dedupCutoff = now.timeIntervalSince1970 - SQLiteEventStore.dedupWindow
        let cutoff = now.timeIntervalSince1970 - retention
        // Batches of 5,000 keep each transaction short; instances pruning at once skip each other's rows.
        func deleteAll(_ table: String, _ column: String, before: Double) async throws -> Int {
            var total = 0
            while true {
                let deleted = try await run("pruning \(table)") { client in
                    let rows = try await client.query(PostgresQuery(unsafeSQL: """
                        DELETE FROM \(table) WHERE ctid IN (SELECT ctid FROM \(table) WHERE \(column) < $1 LIMIT 5000 FOR UPDATE SKIP LOCKED)
                        RETURNING 1
                        """, binds: try Self.binds(before)), logger: logger)
                    var count = 0
                    for try await _ in rows { count += 1 }
                    return count
                }
                total += deleted
                if deleted < 5000 { return total }
            }
        }
        var counts = PruneCounts()
        counts.dedupKeys = try await deleteAll("dedup", "seen_at", before: dedupCutoff)
        counts.clicks = try await deleteAll("clicks", "clicked_at", before: cutoff)
        counts.identities = try await deleteAll("identities", "seen_at", before: cutoff)
        return counts
    }

    private static func binds(_ value: Double) throws -> PostgresBindings {
        var binds = PostgresBindings()
        binds.append(value)
        return binds
    }

    public func stats(now: Date) async throws -> StoreStats {
        let logger = self.logger
        let nowValue = now.timeIntervalSince1970
        return try await run("reading queue statistics") { client in
            let rows = try await client.query("""
                SELECT (SELECT COUNT(*) FROM outbox), (SELECT MIN(received_at) FROM outbox), (SELECT COUNT(*) FROM dead_letters)
                """, logger: logger)
            for try await (depth, oldest, dead) in rows.decode((Int, Double?, Int).self) {
                return StoreStats(queueDepth: depth, oldestUndeliveredAge: oldest.map { nowValue - $0 }, deadLetters: dead)
            }
            return StoreStats(queueDepth: 0, oldestUndeliveredAge: nil, deadLetters: 0)
        }
    }

    public func checkWritable() async throws {
        let logger = self.logger
        let now = Date().timeIntervalSince1970
        try await run("writing the readiness probe") { client in
            try await client.query(
                "INSERT INTO health (id, checked_at) VALUES (1, \(now)) ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                logger: logger)
        }
    }
}
