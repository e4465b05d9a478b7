import Logging
import ServiceLifecycle
import UnixSignals

/// What makes the gateway reload while it runs: SIGHUP (`systemctl reload`, `kill -HUP`) reloads
/// the configuration file; a change to a certificate or key file re-reads the certificates.
/// (`POST /reload` on the admin listener, used by `clickgate reload`, is the third way.)
public struct ReloadTriggers: Service {
    let server: GatewayServer
    let certificateCheckInterval: Duration
    let logger: Logger

    public init(server: GatewayServer, certificateCheckInterval: Duration = .seconds(5), logger: Logger) {
        self.server = server
        self.certificateCheckInterval = certificateCheckInterval
        self.logger = logger
    }

    public func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                for await _ in signals.cancelOnGracefulShutdown() {
                    logger.info("SIGHUP: reloading the configuration")
                    _ = await server.reload()
                }
            }
            tasks.addTask {
                try? await cancelWhenGracefulShutdown {
                    // The state of a refused try: the same files are not tried again until they change.
                    var refused: [String]?
                    while !Task.isCancelled {
                        try await Task.sleep(for: certificateCheckInterval)
                        guard let now = server.changedCertificateFiles(), now != refused else { continue }
                        logger.info("certificate files changed: reading them again")
                        refused = await server.reloadCertificates().applied ? nil : now
                    }
                }
            }
            await tasks.next()
            tasks.cancelAll()
        }
    }
}
