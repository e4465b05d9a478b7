import ArgumentParser
import Config
import Gateway

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
