import Config
import Events
import Foundation
import Logging
import ServiceLifecycle

/// Keeps the store from growing forever: every `interval`, deletes dedup keys past the 48 h window
/// and clicks and identity links past the attribution window. Harmless to run on every instance.
public struct StoreMaintenance: Service {
    let store: any EventStore
    let retention: TimeInterval
    let interval: Duration
    let logger: Logger

    public init(store: any EventStore, events: GatewayConfig.Events, interval: Duration = .seconds(600), logger: Logger) {
        self.store = store
        self.retention = TimeInterval(events.attributionWindow.components.seconds)
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        // The long sleep between rounds must not hold up a shutdown.
        try? await cancelWhenGracefulShutdown { try await loop() }
    }

    private func loop() async throws {
        while !Task.isCancelled {
            do {
                let pruned = try await store.prune(now: Date(), retention: retention)
                if pruned.total > 0 {
                    logger.info("events store: pruned old rows", metadata: [
                        "dedup_keys": "\(pruned.dedupKeys)", "clicks": "\(pruned.clicks)", "identities": "\(pruned.identities)",
                    ])
                }
            } catch {
                logger.warning("events store: pruning failed; will try again", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: interval)
        }
    }
}
