import ArgumentParser
import Config
import Events
import Foundation
import Gateway
import Logging
import ServiceLifecycle

@main
struct ClickGateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clickgate",
        abstract: "An edge gateway that keeps paid-social click ids (TikTok's ttclid first) alive.",
        subcommands: [Serve.self, CheckConfig.self, Certs.self, EventsCommand.self],
        defaultSubcommand: Serve.self)
}

/// Exit code 2: the configuration cannot be used (nothing was started).
let configErrorExit = ExitCode(2)

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway.",
        discussion: """
            Without --config, runs the embedded default: HTTPS on :8443 and HTTP on :8080 in front of a
            built-in demo site, with a development certificate made in certs/ on first start.
            Example: clickgate serve --config conf/clickgate.yaml
            """)

    @Option(name: .long, help: "The YAML configuration file.")
    var config: String?

    @Option(name: .long, help: "Where the development CA and certificate live (embedded default only).")
    var certsDir = "certs"

    func run() async throws {
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
            store = try openStore(loaded.events.store)
        } catch {
            FileHandle.standardError.write(Data("events.store: \(error)\n".utf8))
            throw configErrorExit
        }
        let normalizer = EventNormalizer(customEvents: Set(loaded.events.customEvents), defaultCountryCode: loaded.events.phoneCountry)
        var ingestor = EventIngestor(store: store, normalizer: normalizer)
        ingestor.attributionWindow = TimeInterval(loaded.events.attributionWindow.components.seconds)
        let clicks = BoundedClickQueue()
        let server = GatewayServer(
            config: loaded, logger: logger, accessLog: accessLog, clickSink: clicks, ingestor: ingestor,
            apiKeys: apiKeys(loaded.events))
        let ledger = ClickLedgerWriter(queue: clicks, store: store, logger: logger)
        var settings = DeliveryWorker.Settings()
        settings.batchSize = loaded.events.batchSize
        settings.linger = loaded.events.linger
        let delivery = DeliveryService(worker: DeliveryWorker(
            store: store, api: EventsAPIClient(endpoint: loaded.events.endpoint, client: .shared),
            pixels: pixelTargets(loaded.events, logger: logger), settings: settings, logger: logger))
        // Services stop in reverse order: the proxy drains first, then delivery, then the ledger
        // writes what is left.
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: ledger), .init(service: delivery), .init(service: server)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
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

/// Each configured pixel with its token, read once from the environment or a file. The token is
/// never logged; a pixel without one delivers to the dry-run log.
func pixelTargets(_ events: GatewayConfig.Events, logger: Logger) -> [PixelTarget] {
    events.pixels.sorted { $0.key < $1.key }.map { name, pixel in
        var token = pixel.accessTokenEnv.flatMap { ProcessInfo.processInfo.environment[$0] }
        if token == nil, let file = pixel.accessTokenFile {
            token = (try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if token?.isEmpty ?? true {
            token = nil
            logger.warning("no access token for this pixel: its events go to the dry-run log", metadata: [
                "pixel": "\(name)", "access_token_env": "\(pixel.accessTokenEnv ?? "-")", "access_token_file": "\(pixel.accessTokenFile ?? "-")",
            ])
        }
        return PixelTarget(name: name, pixelCode: pixel.pixelCode, accessToken: token, testEventCode: pixel.testEventCode)
    }
}

/// Keys for the admin listener's `POST /v1/events`, from the environment and/or a file.
func apiKeys(_ events: GatewayConfig.Events) -> Set<String> {
    var text = events.apiKeysEnv.flatMap { ProcessInfo.processInfo.environment[$0] } ?? ""
    if let file = events.apiKeysFile { text += "\n" + ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "") }
    return Set(text.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\n" }).map(String.init))
}

/// The store `events.store` names.
func openStore(_ location: String) throws -> any EventStore {
    if location.hasPrefix("sqlite:") { return try SQLiteEventStore(path: String(location.dropFirst("sqlite:".count))) }
    throw StoreUnavailable(description: "PostgreSQL stores are not supported by this build yet; use sqlite:PATH")
}

struct StoreUnavailable: Error, CustomStringConvertible {
    let description: String
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a configuration file: prints every problem with its key path, or \"ok\".")

    @Option(name: .long, help: "The YAML configuration file.")
    var config = "conf/clickgate.yaml"

    func run() throws {
        do {
            _ = try ConfigLoader.load(file: config)
            print("ok")
        } catch {
            print(error)
            throw configErrorExit
        }
    }
}

struct Certs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Certificate tools.", subcommands: [Dev.self])

    struct Dev: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a development CA and a localhost certificate signed by it.",
            discussion: "Keeps an existing CA unless --force. Trust DIR/clickgate-dev-ca.pem in your browser or OS.")

        @Option(name: .long, help: "Directory for the files.")
        var dir = "certs"

        @Flag(help: "Replace the CA and certificate even when they exist.")
        var force = false

        func run() throws {
            let paths = DevCertificates.Paths(directory: dir)
            if try DevCertificates.ensure(in: dir, force: force) {
                print("wrote \(paths.caCertificate), \(paths.certificate) and their keys")
            } else {
                print("already present: \(paths.caCertificate) and \(paths.certificate) (use --force to replace)")
            }
        }
    }
}

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "The event sidecar's queue.", subcommands: [DeadLetters.self, Replay.self])

    /// Where the store is: `--store`, else the config's `events.store`, else the embedded default's.
    struct StoreOptions: ParsableArguments {
        @Option(name: .long, help: "The YAML configuration whose events.store to open.")
        var config: String?

        @Option(name: .long, help: "A store location (sqlite:PATH), overriding the configuration.")
        var store: String?

        func open() throws -> any EventStore {
            var location = store ?? GatewayConfig.Events().store
            if store == nil, let config {
                do { location = try ConfigLoader.load(file: config).events.store } catch {
                    FileHandle.standardError.write(Data("\(error)\n".utf8))
                    throw configErrorExit
                }
            }
            return try openStore(location)
        }
    }

    struct DeadLetters: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dead-letters",
            abstract: "List events TikTok refused, with its reason.",
            discussion: "Example: clickgate events dead-letters --config conf/clickgate.yaml --json")

        @OptionGroup var location: StoreOptions
        @Flag(help: "JSON lines instead of a table.") var json = false
        @Option(help: "At most this many.") var limit = 100

        func run() async throws {
            let letters = try await location.open().deadLetters(limit: limit)
            if json {
                for letter in letters {
                    let object: [String: Any] = [
                        "id": letter.id, "pixel": letter.pixel, "event": letter.event, "event_id": letter.eventID,
                        "reason": letter.reason, "failed_at": ISO8601DateFormatter().string(from: letter.failedAt),
                    ]
                    print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
                }
                return
            }
            guard !letters.isEmpty else { return print("no dead letters") }
            print("ID".padding(6) + "PIXEL".padding(12) + "EVENT".padding(18) + "EVENT_ID".padding(28) + "REASON")
            for l in letters {
                print(String(l.id).padding(6) + l.pixel.padding(12) + l.event.padding(18) + l.eventID.padding(28) + l.reason)
            }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put dead letters back in the queue (after fixing what TikTok refused).",
            discussion: "Example: clickgate events replay 3 7 --config conf/clickgate.yaml   (or --all)")

        @OptionGroup var location: StoreOptions
        @Argument(help: "Dead-letter ids to replay.") var ids: [Int64] = []
        @Flag(help: "Replay every dead letter.") var all = false

        func validate() throws {
            if ids.isEmpty != all { throw ValidationError("name dead-letter ids, or --all (not both)") }
        }

        func run() async throws {
            let moved = try await location.open().replay(all ? [] : ids)
            print("requeued \(moved) event\(moved == 1 ? "" : "s")")
        }
    }
}

extension String {
    /// Left-aligned in a column of `width`.
    func padding(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
