import Events
import Foundation
import Logging
import ServiceLifecycle

/// Moves clicks from the proxy's bounded hand-off into the store's click ledger, in batches, off
/// the event loops. On shutdown it writes what is left before returning.
///
/// While the store is down (PostgreSQL restarting, say) the clicks wait in the hand-off and the
/// writer tries again, less often the longer it fails (up to every `maxRetryInterval`): the
/// proxy's clicks are kept up to the hand-off's capacity, not dropped batch by batch.
public struct ClickLedgerWriter: Service {
    let queue: BoundedClickQueue
    let store: any EventStore
    let logger: Logger
    let interval: Duration
    let maxRetryInterval: Duration

    public init(
        queue: BoundedClickQueue, store: any EventStore, logger: Logger, interval: Duration = .milliseconds(200),
        maxRetryInterval: Duration = .seconds(5)
    ) {
        self.queue = queue
        self.store = store
        self.logger = logger
        self.interval = interval
        self.maxRetryInterval = maxRetryInterval
    }

    public func run() async throws {
        var wait = interval
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: wait)
            wait = await flush() ? interval : min(wait * 2, maxRetryInterval)
        }
        if !(await flush()) {
            logger.error("clicks not written to the ledger at shutdown", metadata: ["clicks": "\(queue.count)"])
        }
    }

    /// Writes what is queued now. False when the store refused them: they are back in the queue.
    @discardableResult
    public func flush() async -> Bool {
        let clicks = queue.drain()
        guard !clicks.isEmpty else { return true }
        let entries = clicks.map { click in
            ClickLedgerEntry(
                visitorID: click.visitorID, clickedAt: Date(timeIntervalSince1970: Double(click.unixMilliseconds) / 1000),
                ttclid: click.clickIDs.first { $0.parameter == "ttclid" }?.value, ttp: click.ttp, ip: click.clientAddress,
                userAgent: click.userAgent, landingURL: click.landingURL, referrer: click.referrer)
        }
        do {
            try await store.recordClicks(entries)
            return true
        } catch {
            // A store that takes a write now refused these clicks themselves: tried again they would
            // stop every later click behind them.
            if (try? await store.checkWritable()) != nil {
                logger.error("click ledger refused clicks; they are dropped", metadata: ["clicks": "\(entries.count)", "error": "\(error)"])
                return true
            }
            queue.putBack(clicks)
            logger.error("click ledger write failed; the clicks wait for another try", metadata: [
                "clicks": "\(entries.count)", "error": "\(error)",
            ])
            return false
        }
    }
}
