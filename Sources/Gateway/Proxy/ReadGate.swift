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

/// Fires once when nothing touched it for `timeout` while armed.
///
/// Cheap to move, the way a proxy's clocks move on every request and read: `touch` only notes
/// the time, `disarm` leaves the pending check in place, and `arm` schedules a check only when none
/// is pending before its deadline. A check that comes early re-arms itself for the time left. So a
/// kept-alive connection pays for about one scheduled check per timeout period, not one per request.
///
/// The clock tells its owner through a function of the owner rather than a closure that captures
/// it: an idle connection keeps its four clocks, and a capturing closure is one more allocation each.
final class StallTimer<Owner: AnyObject>: NIOScheduledCallbackHandler {
    private weak var owner: Owner?
    private var onStall: (Owner) -> Void
    private var timeout = TimeAmount.zero
    private var lastTouch = NIODeadline.now()
    /// A scheduled callback, not a scheduled task: an idle connection holds its clocks' pending
    /// checks for a whole timeout, and a callback costs one entry in the loop's queue where a task
    /// costs that plus a promise and two closures.
    private var pending: (check: NIOScheduledCallback, due: NIODeadline)?
    private(set) var isArmed = false

    init(owner: Owner, onStall: @escaping (Owner) -> Void) {
        self.owner = owner
        self.onStall = onStall
    }

    func arm(on eventLoop: any EventLoop, timeout: TimeAmount) {
        self.timeout = timeout
        lastTouch = .now()
        isArmed = true
        let due = lastTouch + timeout
        if let pending, pending.due <= due { return }
        pending?.check.cancel()
        schedule(on: eventLoop, at: due)
    }

    func touch() { lastTouch = .now() }

    /// Hands the disarmed clock to a new owner (see ``StreamClockPool``): a check still pending
    /// serves the new owner's first arming.
    func adopt(by owner: Owner, onStall: @escaping (Owner) -> Void) {
        self.owner = owner
        self.onStall = onStall
    }

    func disarm() { isArmed = false }

    /// For teardown: nothing fires after this.
    func stop() {
        isArmed = false
        pending?.check.cancel()
        pending = nil
    }

    func handleScheduledCallback(eventLoop: some EventLoop) {
        pending = nil
        guard isArmed else { return }
        let due = lastTouch + timeout
        if due <= .now() {
            isArmed = false
            if let owner { onStall(owner) }
        } else {
            schedule(on: eventLoop, at: due)
        }
    }

    private func schedule(on eventLoop: any EventLoop, at deadline: NIODeadline) {
        // Throws only while the loop shuts down, when no clock matters any more.
        guard let check = try? eventLoop.assumeIsolated().scheduleCallback(at: deadline, handler: self) else { return }
        pending = (check, deadline)
    }
}

/// The clocks of an HTTP/2 connection's finished streams, kept for its next streams.
///
/// Each stream has its own ``ProxyHandler`` and clocks. A clock stopped with its stream costs a
/// cancellation, which NIO makes by a linear search of the event loop's scheduled work (≈ 7,000
/// instructions a stream with a hundred streams open); a clock kept here lets its pending check
/// serve a later stream, as a kept-alive HTTP/1 connection's clocks serve its next request. It
/// holds at most the clocks of the most streams open at once, and stops them all when the
/// connection closes.
final class StreamClockPool<Owner: AnyObject> {
    private var idle: [StallTimer<Owner>] = []

    /// A kept clock for `owner`, or a new one.
    func take(for owner: Owner, onStall: @escaping (Owner) -> Void) -> StallTimer<Owner> {
        guard let clock = idle.popLast() else { return StallTimer(owner: owner, onStall: onStall) }
        clock.adopt(by: owner, onStall: onStall)
        return clock
    }

    /// Keeps a stream's clock, disarmed, for the next stream.
    func giveBack(_ clock: StallTimer<Owner>) {
        clock.disarm()
        idle.append(clock)
    }

    /// For the connection's close: no kept clock fires after this.
    func stopAll() {
        for clock in idle { clock.stop() }
        idle.removeAll()
    }
}
