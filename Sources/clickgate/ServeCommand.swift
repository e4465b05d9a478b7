import ArgumentParser
import Config
import Events
import Foundation
import Gateway
import Logging
import ServiceLifecycle

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway.",
        discussion: """
            Without --config, runs the embedded default: HTTPS on :8443 and HTTP on :8080 in front of a built-in demo site, with a development certificate made in certs/ on first start.

            Example: clickgate serve --config conf/clickgate.yaml
            """)

    @Option(name: .long, help: "The YAML configuration file.")
    var config: String?

    @Option(name: .long, help: "Where the development CA and certificate live (embedded default only).")
    var certsDir = "certs"

    func run() async throws {
        ProcessMemory.giveLargeBuffersTheirOwnPages()
        let loaded: GatewayConfig
        if let path = config {
            do { loaded = try ConfigLoader.load(file: path) } catch {
                FileHandle.standardError.write(Data("\(error)\n".utf8))
                throw configErrorExit
            }
        } else {
            if try DevCertificates.ensure(in: certsDir) {
                FileHandle.standardError.write(Data("made a development CA and certificate in \(certsDir)/ (trust \(certsDir)/clickgate-dev-ca.pem to skip browser warnings)\n".utf8))
            }
            loaded = GatewayConfig.embeddedDefault(certificate: DevCertificates.Paths(directory: certsDir).pair)
        }
        let level = Logger.Level(rawValue: loaded.log.level) ?? .info
        let logger = Logger(label: "clickgate") { JSONLogHandler(label: $0, sink: .stderr, level: level) }
        let accessSink: LogSink?
        switch loaded.log.access {
        case .stdout: accessSink = .stdout
        case .stderr: accessSink = .stderr
        case .off: accessSink = nil
        case .file(let path): accessSink = try LogSink(appendingTo: path)
        }
        let accessLog = Logger(label: "clickgate.access") { label in
            guard let accessSink else { return SwiftLogNoOpLogHandler() }
            return JSONLogHandler(label: label, sink: accessSink)
        }
        let store: any EventStore
        do {
            store = try openStore(loaded.events.store, logger: logger)
        } catch {
            FileHandle.standardError.write(Data("events.store: \(error)\n".utf8))
            throw configErrorExit
        }
        let observability = Observability.bootstrap(sampleEvery: loaded.admin.historyInterval)
        let ingestor = EventIngestor(store: store, normalizer: EventNormalizer()).configured(for: loaded.events)
        let clicks = BoundedClickQueue()
        var settings = DeliveryWorker.Settings()
        settings.batchSize = loaded.events.batchSize
        settings.linger = loaded.events.linger
        settings.lease = loaded.events.lease
        let worker = DeliveryWorker(
            store: store, api: EventsAPIClient(endpoint: loaded.events.endpoint, client: .shared),
            pixels: Credentials.pixelTargets(loaded.events, logger: logger), settings: settings, logger: logger)
        let admin = AdminContext(
            observability: observability, pausedPixels: { worker.pausedPixels },
            onReload: { await worker.updatePixels(Credentials.pixelTargets($0.events, logger: logger)) })
        let server = GatewayServer(
            config: loaded, logger: logger, accessLog: accessLog, clickSink: clicks, ingestor: ingestor, configPath: config, admin: admin)
        let ledger = ClickLedgerWriter(queue: clicks, store: store, logger: logger)
        // Services stop in reverse order: the proxy drains first, then delivery, then the ledger
        // writes what is left.
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: ledger), .init(service: DeliveryService(worker: worker)),
                    .init(service: MetricsSampler(observability: observability)), .init(service: FreeHeapReturner(logger: logger)),
                    .init(service: StoreMaintenance(store: store, events: loaded.events, logger: logger)),
                    .init(service: server), .init(service: ReloadTriggers(server: server, logger: logger)),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        // Listening before the group runs, so the code that starting touched can be let go; the
        // server's service then finds itself started.
        try await server.start()
        ProcessMemory.releaseStartupCode()
        try await group.run()
    }
}

/// Delivery as a lifecycle service: stops taking new batches on graceful shutdown.
struct DeliveryService: Service {
    let worker: DeliveryWorker

    func run() async throws {
        await worker.run(shouldStop: { Task.isShuttingDownGracefully })
    }
}

/// The store `events.store` names. A PostgreSQL store connects in the background. `owner` is
/// false for tools opening an SQLite store beside the gateway that serves it.
func openStore(_ location: String, owner: Bool = true, logger: Logger) throws -> any EventStore {
    if location.hasPrefix("sqlite:") { return try SQLiteEventStore(path: String(location.dropFirst("sqlite:".count)), owner: owner) }
    return try PostgresEventStore(url: location, logger: logger)
}
