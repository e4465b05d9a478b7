import NIOCore

/// Holds back `read()` while any reason to pause stands. This is how back-pressure crosses from
/// one channel to the other: a channel that cannot take more writes pauses reads on its partner.
struct ReadGate {
    struct Reason: OptionSet {
        let rawValue: UInt8
        /// Waiting for an upstream connection.
        static let connecting = Reason(rawValue: 1)
        /// The partner channel is not writable.
        static let partnerBusy = Reason(rawValue: 2)
    }

    private var reasons: Reason = []
    private var pendingRead = false

    /// Whether a `read()` may go through now; a held one is remembered.
    /// Callers issue `context.read()` themselves, after this returns: a read can re-enter the
    /// handler synchronously, and must not do so while the gate is being mutated.
    mutating func admitRead() -> Bool {
        if reasons.isEmpty { return true }
        pendingRead = true
        return false
    }

    mutating func pause(_ reason: Reason) {
        reasons.insert(reason)
    }

    /// Returns true when a held read must be issued now.
    mutating func resume(_ reason: Reason) -> Bool {
        reasons.remove(reason)
        guard reasons.isEmpty, pendingRead else { return false }
        pendingRead = false
        return true
    }
}

/// Fires once when nothing touched it for `timeout` while armed. A busy stream costs no timer
/// allocation per read: the scheduled check re-arms itself for the time left.
final class StallTimer {
    private let timeout: TimeAmount
    private let onStall: () -> Void
    private var lastTouch = NIODeadline.now()
    private var scheduled: Scheduled<Void>?
    private var armed = false

    init(timeout: TimeAmount, onStall: @escaping () -> Void) {
        self.timeout = timeout
        self.onStall = onStall
    }

    func arm(on eventLoop: any EventLoop) {
        lastTouch = .now()
        armed = true
        if scheduled == nil { schedule(on: eventLoop, at: lastTouch + timeout) }
    }

    func touch() { lastTouch = .now() }

    func disarm() {
        armed = false
        scheduled?.cancel()
        scheduled = nil
    }

    private func schedule(on eventLoop: any EventLoop, at deadline: NIODeadline) {
        scheduled = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            scheduled = nil
            guard armed else { return }
            let due = lastTouch + timeout
            if due <= .now() {
                armed = false
                onStall()
            } else {
                schedule(on: eventLoop, at: due)
            }
        }
    }
}
