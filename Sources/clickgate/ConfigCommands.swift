import ArgumentParser
import AsyncHTTPClient
import Config
import Foundation
import Gateway
import NIOCore

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

    @Option(help: "The configuration the gateway runs with (its listen.admin is where to ask).")
    var config = "conf/clickgate.yaml"

    @Option(help: ArgumentHelp("The admin listener, instead of reading the configuration.", valueName: "HOST:PORT"))
    var admin: String?

    func run() async throws {
        let address: String
        if let admin {
            address = admin
        } else {
            let loaded: GatewayConfig
            do { loaded = try ConfigLoader.load(file: config) } catch {
                print(error)
                throw configErrorExit
            }
            guard let listener = loaded.listen.admin else {
                throw usageFailure("\(config) has no listen.admin: the reload endpoint lives there (or send SIGHUP to the process)")
            }
            address = listener.description
        }
        var request = HTTPClientRequest(url: "http://\(address)/reload")
        request.method = .POST
        let response: HTTPClientResponse
        let body: String
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            body = String(buffer: try await response.body.collect(upTo: 1 << 20))
        } catch {
            throw usageFailure("could not reach the admin listener at \(address): \(error)")
        }
        guard let outcome = try? JSONDecoder().decode(ReloadOutcome.self, from: Data(body.utf8)) else {
            throw usageFailure("\(address) answered HTTP \(response.status.code), not a reload outcome: \(body.prefix(200))")
        }
        print(outcome.applied ? "reloaded: \(outcome.message)" : "refused (generation \(outcome.generation) keeps serving):\n\(outcome.message)")
        for note in outcome.notes { print("note: \(note)") }
        if !outcome.applied { throw ExitCode(1) }
    }
}
