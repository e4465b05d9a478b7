import Events
import Foundation
import Logging
import ServiceLifecycle

/// Moves clicks from the proxy's bounded hand-off into the store's click ledger, in batches, off
/// the event loops. On shutdown it writes what is left before returning.
public struct ClickLedgerWriter: Service {
    let queue: BoundedClickQueue
    let store: any EventStore
    let logger: Logger
    let interval: Duration

    public init(queue: BoundedClickQueue, store: any EventStore, logger: Logger, interval: Duration = .milliseconds(200)) {
        self.queue = queue
        self.store = store
        self.logger = logger
        self.interval = interval
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: interval)
            await flush()
        }
        await flush()
    }

    /// Writes what is queued now.
    public func flush() async {
        let clicks = queue.drain()
        guard !clicks.isEmpty else { return }
        let entries = clicks.map { click in
            ClickLedgerEntry(
                visitorID: click.visitorID, clickedAt: Date(timeIntervalSince1970: Double(click.unixMilliseconds) / 1000),
                ttclid: click.clickIDs.first { $0.parameter == "ttclid" }?.value, ttp: click.ttp, ip: click.clientAddress,
                userAgent: click.userAgent, landingURL: click.landingURL, referrer: click.referrer)
        }
        do {
            try await store.recordClicks(entries)
        } catch {
            logger.error("click ledger write failed", metadata: ["clicks": "\(entries.count)", "error": "\(error)"])
        }
    }
}
