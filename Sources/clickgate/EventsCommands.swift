import ArgumentParser
import Config
import Diagnostics
import Events
import Foundation
import Gateway
import Logging

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "The event sidecar: its queue, and a test event to TikTok.", subcommands: [DeadLetters.self, Replay.self, SendTest.self])

    /// Where the store is: `--store`, else the config's `events.store`, else the embedded default's.
    struct StoreOptions: ParsableArguments {
        @Option(name: .long, help: "The YAML configuration whose events.store to open.")
        var config: String?

        @Option(name: .long, help: "A store location (sqlite:PATH), overriding the configuration.")
        var store: String?

        func open() async throws -> any EventStore {
            var location = store ?? GatewayConfig.Events().store
            if store == nil, let config {
                do { location = try ConfigLoader.load(file: config).events.store } catch {
                    FileHandle.standardError.write(Data("\(error)\n".utf8))
                    throw configErrorExit
                }
            }
            let store = try openStore(location, owner: false, logger: Logger(label: "clickgate") { _ in SwiftLogNoOpLogHandler() })
            if let shared = store as? PostgresEventStore { try await shared.waitUntilReady(timeout: .seconds(15)) }
            return store
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
            print("ID".padded(6) + "PIXEL".padded(12) + "EVENT".padded(18) + "EVENT_ID".padded(28) + "REASON")
            for l in letters {
                print(String(l.id).padded(6) + l.pixel.padded(12) + l.event.padded(18) + l.eventID.padded(28) + l.reason)
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

    struct SendTest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "test",
            abstract: "Send one test event through the delivery client and show TikTok's raw answer.",
            discussion: """
                Uses the pixel's code and token and the endpoint from the configuration. Prints the request with the token redacted, then TikTok's raw answer and what its code means.

                Exit status: 0 accepted, 1 refused by TikTok, 2 not sent (configuration, network).

                Examples:
                  clickgate events test --pixel shop --test-event-code TEST12345
                  clickgate events test --config /etc/clickgate/clickgate.yaml \\
                    --pixel shop --event AddToCart --ttclid E.C.P.abc --test-event-code TEST12345
                """)

        @Option(help: "The YAML configuration with events.pixels and events.endpoint.")
        var config = "conf/clickgate.yaml"

        @Option(help: "The pixel's name in events.pixels.")
        var pixel: String

        @Option(help: "A standard event name (case-sensitive), or one of events.custom_events.")
        var event = "Purchase"

        @Option(help: "From TikTok Events Manager → Test events; overrides the pixel's test_event_code.")
        var testEventCode: String?

        @Flag(help: "Send without a test event code: TikTok counts it as a real conversion.")
        var live = false

        @Option(help: "A click id to attach (user.ttclid).")
        var ttclid: String?

        @Option(help: "An email address to attach; it is hashed as every event's is.")
        var email: String?

        @Option(help: "The Events API URL, overriding events.endpoint.")
        var endpoint: String?

        @Option(help: "Seconds to wait for the answer (connection attempts are retried until then).")
        var timeout = 15

        func run() async throws {
            let loaded: GatewayConfig
            do { loaded = try ConfigLoader.load(file: config) } catch {
                FileHandle.standardError.write(Data("\(error)\n".utf8))
                throw configErrorExit
            }
            func fail(_ message: String) -> ExitCode {
                FileHandle.standardError.write(Data("error: \(message)\n".utf8))
                return configErrorExit
            }
            guard let configured = loaded.events.pixels[pixel] else {
                let names = loaded.events.pixels.keys.sorted()
                throw fail("\(config) has no pixel named '\(pixel)' (events.pixels: \(names.isEmpty ? "none" : names.joined(separator: ", ")))")
            }
            var target = Credentials.pixelTarget(name: pixel, configured)
            guard target.accessToken != nil else {
                let source = configured.accessTokenEnv.map { "set the environment variable \($0)" }
                    ?? configured.accessTokenFile.map { "put the token in \($0)" } ?? "configure access_token_env or access_token_file"
                throw fail("pixel '\(pixel)' has no access token: \(source)")
            }
            if let testEventCode { target.testEventCode = testEventCode }
            if target.testEventCode == nil, !live {
                throw fail("no test event code: pass --test-event-code (TikTok Events Manager → Test events) or set the pixel's test_event_code; --live sends a real conversion")
            }
            if live { target.testEventCode = nil }
            var test = TestEvent()
            test.event = event
            test.ttclid = ttclid
            test.email = email
            let normalizer = EventNormalizer(customEvents: Set(loaded.events.customEvents), defaultCountryCode: loaded.events.phoneCountry)
            let built: NormalizedEvent
            switch test.normalized(using: normalizer) {
            case .success(let event): built = event
            case .failure(let rejection):
                throw fail(rejection.problems.map { "\($0.field) \($0.reason)" }.joined(separator: "; "))
            }
            let url = endpoint ?? loaded.events.endpoint
            let exchange = await EventsAPIClient(endpoint: url, client: .shared, timeout: .seconds(Int64(max(1, timeout)))).send([built], pixel: target)
            let report = TestEventReport(endpoint: url, pixel: target, exchange: exchange)
            print(report.rendered(on: .standardOutput))
            if report.exitCode != 0 { throw ExitCode(report.exitCode) }
        }
    }
}
