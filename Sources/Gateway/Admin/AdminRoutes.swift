import Config
import Events
import Foundation
import NIOCore
import NIOHTTP1

/// What the admin listener reports on beyond the server itself; the process's `serve` fills it.
public struct AdminContext: Sendable {
    /// Metrics for `/metrics`, `/status` and the dashboard; nil when metrics are not bootstrapped.
    public var observability: Observability?
    /// Pixels delivery has paused for an authorization error: the gateway is then not ready.
    public var pausedPixels: @Sendable () -> [String]
    /// Called after a reload is applied (delivery takes the new pixels and tokens).
    public var onReload: @Sendable (GatewayConfig) async -> Void

    public init(
        observability: Observability? = nil, pausedPixels: @escaping @Sendable () -> [String] = { [] },
        onReload: @escaping @Sendable (GatewayConfig) async -> Void = { _ in }
    ) {
        self.observability = observability
        self.pausedPixels = pausedPixels
        self.onReload = onReload
    }
}

/// What a reload did, for the log, `POST /reload` and `clickgate reload`.
public struct ReloadOutcome: Sendable, Codable, Equatable {
    public var applied: Bool
    /// The generation serving new requests afterwards.
    public var generation: Int
    public var message: String
    /// Changes that were read but wait for a restart.
    public var notes: [String] = []
}

/// The admin listener (loopback by default): health, readiness, metrics, status, the dashboard,
/// reload, and server-side events.
struct AdminRoutes: Sendable {
    let server: GatewayServer

    var router: LocalHTTPHandler.Router {
        { head, body in
            let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
            switch (head.method, path) {
            case (.GET, "/"), (.HEAD, "/"):
                var response = LocalResponse(status: .ok, contentType: "text/html; charset=utf-8", body: Dashboard.page)
                response.headers.add(name: "content-security-policy", value: "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:")
                response.headers.add(name: "cache-control", value: "no-store")
                return response
            case (_, "/healthz"):
                return LocalResponse(status: .ok, contentType: "text/plain; charset=utf-8", body: "ok\n")
            case (_, "/readyz"):
                let readiness = await readiness()
                return json(readiness.ready ? .ok : .serviceUnavailable, readiness)
            case (_, "/metrics"):
                guard let registry = server.admin.observability?.registry else {
                    return LocalResponse(status: .notFound, contentType: "text/plain; charset=utf-8", body: "metrics are not enabled in this process\n")
                }
                return LocalResponse(
                    status: .ok, headers: ["content-type": "text/plain; version=0.0.4; charset=utf-8"], body: ByteBuffer(bytes: registry.emitToBuffer()))
            case (_, "/status"):
                return json(.ok, await status())
            case (_, "/api/history"):
                return json(.ok, history())
            case (.POST, "/reload"):
                let outcome = await server.reload()
                return json(outcome.applied ? .ok : .unprocessableEntity, outcome)
            case (.POST, "/v1/events"):
                guard let serverEvents = server.generation?.serverEvents else {
                    return LocalResponse(status: .notFound, contentType: "text/plain", body: "events are not enabled\n")
                }
                return await serverEvents.handle(head: head, body: body)
            default:
                return LocalResponse(status: .notFound, contentType: "text/plain; charset=utf-8", body: "not found\n")
            }
        }
    }

    struct Readiness: Codable {
        var ready: Bool
        /// `listeners`, `store`, `pixels` → "ok" or what is wrong.
        var checks: [String: String]
    }

    func readiness() async -> Readiness {
        var checks = ["listeners": server.isServing ? "ok" : "not listening"]
        if let store = server.eventStore {
            do {
                try await withDeadline(.seconds(2), what: "the store") { try await store.checkWritable() }
                checks["store"] = "ok"
            } catch let timeout as DeadlineExceeded {
                checks["store"] = "\(timeout)"
            } catch {
                checks["store"] = "not writable: \(error)"
            }
        }
        let paused = server.admin.pausedPixels()
        checks["pixels"] = paused.isEmpty ? "ok" : "paused for an authorization error: " + paused.joined(separator: ", ")
        return Readiness(ready: checks.values.allSatisfy { $0 == "ok" }, checks: checks)
    }

    struct Status: Codable {
        struct Generation: Codable {
            var number: Int
            var loadedAt: String
            var configFile: String?
            enum CodingKeys: String, CodingKey { case number, loadedAt = "loaded_at", configFile = "config_file" }
        }

        struct Site: Codable {
            var name: String
            var hosts: [String]
            var upstream: String
            var pixel: String?
        }

        struct Pixel: Codable {
            var name: String
            var pixelCode: String
            var paused: Bool
            enum CodingKeys: String, CodingKey { case name, pixelCode = "pixel_code", paused }
        }

        var startedAt: String
        var uptimeSeconds: Int
        var readiness: Readiness
        var generation: Generation?
        var listeners: [String: String]
        var sites: [Site]
        var pixels: [Pixel]
        var queue: StoreStatus?
        var metrics: [String: Double]
        enum CodingKeys: String, CodingKey {
            case startedAt = "started_at", uptimeSeconds = "uptime_seconds", readiness, generation, listeners, sites, pixels, queue, metrics
        }
    }

    struct StoreStatus: Codable {
        var depth: Int
        var oldestUndeliveredSeconds: Double?
        var deadLetters: Int
        enum CodingKeys: String, CodingKey { case depth, oldestUndeliveredSeconds = "oldest_undelivered_seconds", deadLetters = "dead_letters" }
    }

    func status() async -> Status {
        let config = server.config
        let generation = server.generation
        let started = server.admin.observability?.startedAt ?? Date()
        let paused = Set(server.admin.pausedPixels())
        let stats = try? await server.eventStore?.stats(now: Date())
        let iso = ISO8601DateFormatter()
        var listeners: [String: String] = [:]
        if let https = config.listen.https { listeners["https"] = https.description }
        if let http = config.listen.http { listeners["http"] = http.description }
        if let admin = config.listen.admin { listeners["admin"] = admin.description }
        return Status(
            startedAt: iso.string(from: started), uptimeSeconds: Int(Date().timeIntervalSince(started)), readiness: await readiness(),
            generation: generation.map { .init(number: $0.number, loadedAt: iso.string(from: $0.loadedAt), configFile: server.configFile) },
            listeners: listeners,
            sites: config.sites.map { .init(name: $0.name, hosts: $0.hosts, upstream: $0.upstream.description, pixel: $0.pixel) },
            pixels: config.events.pixels.sorted { $0.key < $1.key }.map { .init(name: $0.key, pixelCode: $0.value.pixelCode, paused: paused.contains($0.key)) },
            queue: stats.map { .init(depth: $0.queueDepth, oldestUndeliveredSeconds: $0.oldestUndeliveredAge, deadLetters: $0.deadLetters) },
            metrics: server.admin.observability?.tally.snapshot() ?? [:])
    }

    struct History: Codable {
        var intervalSeconds: Double
        var samples: [MetricsHistory.Sample]
        enum CodingKeys: String, CodingKey { case intervalSeconds = "interval_seconds", samples }
    }

    /// The recorded hour plus a sample taken now, so charts are current between samples.
    func history() -> History {
        guard let observability = server.admin.observability else { return History(intervalSeconds: 0, samples: []) }
        let now = MetricsHistory.Sample(t: Date().timeIntervalSince1970.rounded(), values: observability.tally.snapshot())
        let interval = observability.history.interval.components
        return History(intervalSeconds: Double(interval.seconds) + Double(interval.attoseconds) / 1e18, samples: observability.history.all + [now])
    }

    func json(_ status: HTTPResponseStatus, _ value: some Encodable) -> LocalResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return LocalResponse(status: status, headers: ["content-type": "application/json", "cache-control": "no-store"], body: ByteBuffer(bytes: data))
    }
}
