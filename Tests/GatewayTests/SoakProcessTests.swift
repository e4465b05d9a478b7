import AsyncHTTPClient
import EventsTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// A bounded mixed-load soak: HTTP/1.1 page views with click ids, HTTP/2 downloads and event posts at
/// once against the gateway process, its RSS sampled every second. 20 s by default; set
/// `SOAK_SECONDS` for a long soak (`SOAK_SECONDS=3600 scripts/test --filter Soak`).
/// (Named …ProcessTests: scripts/test runs it in the phase of its own.)
///
/// It found HTTP/2 streams reset with CANCEL after complete responses when a client's END_STREAM
/// came in a frame after the response (`LimitsTests.http2ResponsesCompleteBeforeTheRequestEndAreNotReset`).
@Suite struct SoakProcessTests {
    @Test func mixedLoadShowsNoMemoryGrowth() async throws {
        let seconds = Int(ProcessInfo.processInfo.environment["SOAK_SECONDS"] ?? "") ?? 20
        let api = try await FakeEventsAPI.start(token: "soak-token")
        let origin = try await TestOrigin.start()
        let scratch = TestFiles.makeScratch("soak")
        let yaml = TestFiles.deliveringYAML(upstream: origin.url, scratch: scratch, api: api, pixelCode: "CSOAK01", tokenEnv: "SOAK_TOKEN", linger: "200ms")
        let gateway = try await GatewayProcess.start(yaml: yaml, directory: scratch, environment: ["SOAK_TOKEN": "soak-token"])
        // The soak shares two cores with the other process tests' gateways and PostgreSQL: a TLS handshake
        // at the start can wait several seconds for CPU, which is contention, not a failure.
        let h1 = TestClients.make(http2: false, connect: .seconds(30))
        let h2 = TestClients.make(http2: true, connect: .seconds(30))
        defer {
            gateway.signal(SIGKILL)
            Task {
                try? await h1.shutdown()
                try? await h2.shutdown()
                await api.stop()
                await origin.stop()
            }
        }
        let base = "https://localhost:\(gateway.httpsPort)"
        // The clients and the origin run on the test process's event loops: one of them held by a
        // long task fails requests the gateway would have answered. The 1 GiB download of
        // `ProcessTests` held one for up to 10 s, until its origin got a loop of its own and
        // yielded between writes; since then the longest stall seen was 0.17 s.
        let probe = LoopStallProbe(MultiThreadedEventLoopGroup.singleton)
        let start = ContinuousClock.now
        let deadline = start + .seconds(seconds)
        let counts = await withTaskGroup(of: (ok: Int, failed: Int).self) { group in
            func worker(_ kind: String, _ body: @escaping @Sendable (Int) async throws -> Bool) {
                group.addTask {
                    var result = (ok: 0, failed: 0)
                    var i = 0
                    while ContinuousClock.now < deadline {
                        i += 1
                        do {
                            if try await body(i) { result.ok += 1 } else { result.failed += 1 }
                        } catch {
                            result.failed += 1
                            failures.withLockedValue { if $0.count < 5 { $0.append("\(kind) \(i) at \(ContinuousClock.now - start): \(error)") } }
                        }
                    }
                    return result
                }
            }
            for w in 0..<6 {
                worker("h1 page view") { i in
                    let response = try await h1.execute(HTTPClientRequest(url: "\(base)/echo?ttclid=E.C.P.soak\(w)x\(i)&utm_source=tiktok"), timeout: .seconds(10))
                    _ = try await response.body.collect(upTo: 1 << 20)
                    return response.status == .ok
                }
            }
            for _ in 0..<4 {
                worker("h2 download") { _ in
                    let response = try await h2.execute(HTTPClientRequest(url: "\(base)/bytes/65536"), timeout: .seconds(10))
                    _ = try await response.body.collect(upTo: 1 << 20)
                    return response.status == .ok
                }
            }
            for w in 0..<2 {
                worker("h2 event") { i in
                    var request = HTTPClientRequest(url: "\(base)/_clickgate/events")
                    request.method = .POST
                    request.headers.add(name: "content-type", value: "application/json")
                    request.body = .bytes(ByteBuffer(string: #"{"event":"Purchase","event_id":"soak-\#(w)-\#(i)","properties":{"value":1,"currency":"EUR"}}"#))
                    let response = try await h2.execute(request, timeout: .seconds(10))
                    _ = try await response.body.collect(upTo: 1 << 16)
                    if response.status.code != 202 { failures.withLockedValue { if $0.count < 5 { $0.append("event: HTTP \(response.status.code)") } } }
                    return response.status.code == 202
                }
            }
            // The sampler.
            group.addTask {
                var samples: [Int] = []
                while ContinuousClock.now < deadline {
                    samples.append(gateway.memory().rss)
                    try? await Task.sleep(for: .seconds(1))
                }
                rssSamples.withLockedValue { $0 = samples }
                return (0, 0)
            }
            return await group.reduce(into: (ok: 0, failed: 0)) { $0.ok += $1.ok; $0.failed += $1.failed }
        }
        let samples = rssSamples.withLockedValue { $0 }
        let mib = samples.map { $0 >> 20 }
        let stalls = probe.stop()
        print("soak \(seconds)s: \(counts.ok) requests ok, \(counts.failed) failed; RSS MiB per second: \(mib); longest stall of the test's event loops: \(stalls)")
        #expect(counts.failed == 0, "\(failures.withLockedValue { $0 })")
        #expect(counts.ok > 1000, "the soak produced too little load to mean anything")
        // After the first quarter (warm-up: pools, caches, allocator arenas), no growth trend: the
        // last quarter's median stays within 8 MiB of the second quarter's.
        let quarter = max(1, samples.count / 4)
        func median(_ slice: ArraySlice<Int>) -> Int { slice.sorted()[slice.count / 2] }
        let early = median(samples[quarter..<min(samples.count, 2 * quarter)])
        let late = median(samples[(samples.count - quarter)...])
        #expect(late - early < 8 << 20, "RSS grew from \(early >> 20) to \(late >> 20) MiB under steady load: \(mib)")
    }
}

private let rssSamples = NIOLockedValueBox<[Int]>([])
private let failures = NIOLockedValueBox<[String]>([])

/// Measures, for each event loop of a group, the longest delay of a task scheduled every 50 ms.
/// (It sees a loop held by one long task; not one whose tasks keep rescheduling each other, which
/// NIO runs before it polls sockets again.)
private final class LoopStallProbe: Sendable {
    private let tasks: [RepeatedTask]
    private let worst: [NIOLockedValueBox<TimeAmount>]

    init(_ group: any EventLoopGroup) {
        let loops = Array(group.makeIterator())
        let worst = loops.map { _ in NIOLockedValueBox(TimeAmount.zero) }
        self.worst = worst
        tasks = zip(loops, worst).map { loop, worst in
            let period = TimeAmount.milliseconds(50)
            let due = NIOLockedValueBox(NIODeadline.now() + period)
            return loop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in
                let now = NIODeadline.now()
                worst.withLockedValue { $0 = max($0, now - due.withLockedValue { $0 }) }
                due.withLockedValue { $0 = now + period }
            }
        }
    }

    /// Stops the probe; the longest delay of each loop, in milliseconds.
    func stop() -> [Int64] {
        tasks.forEach { $0.cancel() }
        return worst.map { $0.withLockedValue { $0.nanoseconds / 1_000_000 } }
    }
}
