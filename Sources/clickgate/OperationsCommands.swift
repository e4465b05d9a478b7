import ArgumentParser
import AsyncHTTPClient
import Config
import Foundation
import Gateway
import NIOCore
import NIOHTTP1

/// Where the admin listener of a running gateway is: `--admin`, else `listen.admin` of `--config`.
struct AdminLocation: ParsableArguments {
    @Option(help: "The configuration the gateway runs with (its listen.admin is the address).")
    var config = "conf/clickgate.yaml"

    @Option(help: ArgumentHelp("The admin listener, instead of reading the configuration.", valueName: "HOST:PORT"))
    var admin: String?

    func address() throws -> String {
        if let admin { return admin }
        guard FileManager.default.fileExists(atPath: config) else {
            // No file and no --admin: the gateway runs the embedded default, whose listener this is.
            let embedded = GatewayConfig.embeddedDefault(certificate: .init(certificatePath: "", keyPath: ""))
            return embedded.listen.admin?.description ?? "127.0.0.1:9090"
        }
        let loaded: GatewayConfig
        do { loaded = try ConfigLoader.load(file: config) } catch {
            print(error)
            throw configErrorExit
        }
        guard let listener = loaded.listen.admin else {
            throw usageFailure("\(config) has no listen.admin (send SIGHUP to the process instead)")
        }
        return listener.description
    }

    /// One request to the admin listener: status and body, or a usage failure naming the address.
    func call(_ method: HTTPMethod, _ path: String) async throws -> (status: UInt, body: String) {
        let address = try address()
        var request = HTTPClientRequest(url: "http://\(address)\(path)")
        request.method = method
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            return (response.status.code, String(buffer: try await response.body.collect(upTo: 1 << 20)))
        } catch {
            throw usageFailure("could not reach the admin listener at \(address): \(error)")
        }
    }
}

struct Reload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a running gateway read its configuration file again (as SIGHUP does) and print the outcome.",
        discussion: """
            Asks the admin listener (listen.admin of the configuration, or --admin) to reload. A configuration with problems is refused and the running one keeps serving; certificates are read again too. Requests in flight finish on the configuration they started with.

            Exit status: 0 applied, 1 refused, 2 the gateway could not be reached.

            Examples:
              clickgate reload --config /etc/clickgate/clickgate.yaml
              clickgate reload --admin 127.0.0.1:9090
            """)

    @OptionGroup var location: AdminLocation

    func run() async throws {
        let (status, body) = try await location.call(.POST, "/reload")
        guard let outcome = try? JSONDecoder().decode(ReloadOutcome.self, from: Data(body.utf8)) else {
            throw usageFailure("the admin listener answered HTTP \(status), not a reload outcome: \(body.prefix(200))")
        }
        print(outcome.applied ? "reloaded: \(outcome.message)" : "refused (generation \(outcome.generation) keeps serving):\n\(outcome.message)")
        for note in outcome.notes { print("note: \(note)") }
        if !outcome.applied { throw ExitCode(1) }
    }
}

struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask a running gateway whether it is alive (or, with --ready, ready): for container and monitoring checks.",
        discussion: """
            Reads /healthz (the process answers) or /readyz (listeners bound, the event store writable, no pixel paused) on the admin listener and prints the answer.

            Exit status: 0 healthy (ready), 1 not, 2 not reachable.

            Examples:
              clickgate health
              clickgate health --ready --admin 127.0.0.1:9090
            """)

    @OptionGroup var location: AdminLocation

    @Flag(help: "Check readiness instead of liveness.")
    var ready = false

    func run() async throws {
        let (status, body) = try await location.call(.GET, ready ? "/readyz" : "/healthz")
        print(body.trimmingCharacters(in: .whitespacesAndNewlines))
        if status != 200 { throw ExitCode(1) }
    }
}
