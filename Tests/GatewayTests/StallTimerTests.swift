import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import Gateway

/// The proxy's clocks move on every request without scheduling a task each time; these check that
/// the shortcuts (a disarmed clock keeps its pending check, an early check re-arms itself) never
/// fire a clock that is off, nor fire one before its own deadline. Only lower bounds on time are
/// asserted: a slow machine can make a clock late, never early.
@Suite struct StallTimerTests {
    private final class Probe: Sendable {
        private let firings = NIOLockedValueBox<[NIODeadline]>([])
        func fired() { firings.withLockedValue { $0.append(.now()) } }
        var times: [NIODeadline] { firings.withLockedValue { $0 } }

        func waitForFiring(within limit: Duration = .seconds(5)) async throws -> NIODeadline? {
            let clock = ContinuousClock()
            let end = clock.now + limit
            while clock.now < end {
                if let first = times.first { return first }
                try await Task.sleep(for: .milliseconds(10))
            }
            return nil
        }
    }

    private let timeout = TimeAmount.milliseconds(150)

    private func withTimer(_ body: (any EventLoop, NIOLoopBound<StallTimer<Probe>>, Probe) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let probe = Probe()
        let timer = try await loop.submit { NIOLoopBound(StallTimer(owner: probe) { $0.fired() }, eventLoop: loop) }.get()
        try await body(loop, timer, probe)
        try await loop.submit { timer.value.stop() }.get()
        try await group.shutdownGracefully()
    }

    @Test func aDisarmedClockNeverFires() async throws {
        try await withTimer { loop, timer, probe in
            // In one loop task, so the disarm surely comes before the deadline however slow the machine.
            try await loop.submit { [timeout] in
                timer.value.arm(on: loop, timeout: timeout)
                timer.value.disarm()
            }.get()
            try await Task.sleep(for: .milliseconds(500))
            #expect(probe.times.isEmpty)
        }
    }

    @Test func aClockReArmedLaterFiresOnceAtItsOwnDeadline() async throws {
        try await withTimer { loop, timer, probe in
            // The first arming leaves a check pending at +150 ms; once disarmed and armed again, the
            // clock must not fire there. (On a loaded machine the disarm may come after the first
            // deadline, and that firing is right: only firings after the disarm are judged.)
            try await loop.submit { [timeout] in timer.value.arm(on: loop, timeout: timeout) }.get()
            try await Task.sleep(for: .milliseconds(100))
            // Taken before the calls: the clock reads its own time inside them, never earlier.
            let rearmed = try await loop.submit { [timeout] in
                let now = NIODeadline.now()
                timer.value.disarm()
                timer.value.arm(on: loop, timeout: timeout)
                return now
            }.get()
            try await Task.sleep(for: .milliseconds(100))
            let deadline = ContinuousClock.now + .seconds(5)
            while probe.times.filter({ $0 > rearmed }).isEmpty, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            try await Task.sleep(for: .milliseconds(400))
            let afterDisarm = probe.times.filter { $0 > rearmed }
            #expect(afterDisarm.count == 1)
            #expect(afterDisarm.allSatisfy { $0 >= rearmed + timeout })
        }
    }

    @Test func touchingPostponesTheClock() async throws {
        try await withTimer { loop, timer, probe in
            // Each time is taken before the call: the clock reads its own time inside it, never earlier.
            var touches: [NIODeadline] = [try await loop.submit { [timeout] in
                let now = NIODeadline.now()
                timer.value.arm(on: loop, timeout: timeout)
                return now
            }.get()]
            for _ in 0..<8 {
                try await Task.sleep(for: .milliseconds(50))
                touches.append(try await loop.submit {
                    let now = NIODeadline.now()
                    timer.value.touch()
                    return now
                }.get())
            }
            let fired = try #require(try await probe.waitForFiring())
            // Judged against the last touch before it fired: a slow machine may space touches wider
            // than the timeout, and then the clock rightly fires between them.
            let lastTouchBefore = try #require(touches.last { $0 < fired })
            #expect(fired >= lastTouchBefore + timeout)
            #expect(probe.times.count == 1)
        }
    }
}
