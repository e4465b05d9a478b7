import NIOConcurrencyHelpers
import NIOCore

/// The proxy listeners' accepted connections, so that shutdown can close whatever outlived the
/// grace period itself, while the event loops still run the handlers' cleanup (closing them by
/// stopping the loops would leave that cleanup nowhere to run).
final class OpenConnections: Sendable {
    private let channels = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

    func add(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        channels.withLockedValue { $0[key] = channel }
        channel.closeFuture.whenComplete { [channels] _ in _ = channels.withLockedValue { $0.removeValue(forKey: key) } }
    }

    var count: Int { channels.withLockedValue { $0.count } }

    /// Closes every connection still open and waits until each is closed.
    func closeAll() async {
        for channel in channels.withLockedValue({ Array($0.values) }) {
            channel.close(promise: nil)
            try? await channel.closeFuture.get()
        }
    }
}
