import Events
import EventsTestSupport
import Foundation
import NIOPosix
import Testing

/// The gateway as an operator runs it: its own process, signals, exit codes and memory.
@Suite(.serialized) struct ProcessTests {
    @Test func streamsA1GiBDownloadAndA200MiBUploadInBoundedMemory() async throws {
        let loop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let origin = try await TestOrigin.start(group: loop)
        defer {
            Task {
                await origin.stop()
                try? await loop.shutdownGracefully()
            }
        }
        let gateway = try await GatewayProcess.start(
            yaml: TestFiles.yaml(upstream: origin.url, site: "max_body_size: 256MiB"))
        defer { gateway.signal(SIGKILL) }
        let warm = try await curl(["-o", "/dev/null", "-w", "%{http_code}", "https://localhost:\(gateway.httpsPort)/bytes/1000"])
        #expect(warm.stdout == "200")
        let before = gateway.memory().rss

        let size = 1 << 30
        let download = try await curl(["--http1.1", "-o", "/dev/null", "-w", "%{size_download} %{http_code}", "https://localhost:\(gateway.httpsPort)/bytes/\(size)"])
        #expect(download.stdout == "\(size) 200", "\(download.stderr)")
        let h2download = try await curl(["--http2", "-o", "/dev/null", "-w", "%{size_download} %{http_code}", "https://localhost:\(gateway.httpsPort)/bytes/\(256 << 20)"])
        #expect(h2download.stdout == "\(256 << 20) 200", "\(h2download.stderr)")

        let uploadFile = TestFiles.makeScratch("upload") + "/body.bin"
        #expect(FileManager.default.createFile(atPath: uploadFile, contents: nil))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: uploadFile))
        let chunk = Data(repeating: 0x62, count: 1 << 20)
        for _ in 0..<200 { handle.write(chunk) }
        try handle.close()
        for proto in ["--http1.1", "--http2"] {
            let upload = try await curl([proto, "--data-binary", "@\(uploadFile)", "-H", "content-type: application/octet-stream", "https://localhost:\(gateway.httpsPort)/upload"])
            #expect(upload.stdout == "\(200 << 20)", "\(proto): \(upload.stderr)\n\(gateway.log)")
        }
        try? FileManager.default.removeItem(atPath: uploadFile)

        let peak = gateway.memory().peak
        let growth = peak - before
        print("streaming: RSS before \(before >> 20) MiB, peak \(peak >> 20) MiB, growth \(growth >> 20) MiB")
        #expect(growth < 64 << 20, "the gateway's RSS grew by \(growth >> 20) MiB")
    }

    @Test func sigtermDrainsInFlightRequestsAndExitsZero() async throws {
        let origin = try await TestOrigin.start()
        defer { Task { await origin.stop() } }
        let gateway = try await GatewayProcess.start(yaml: TestFiles.yaml(upstream: origin.url))
        let port = gateway.httpsPort
        async let slow = curl(["-w", " %{http_code}", "https://localhost:\(port)/slow/1500"])
        try await Task.sleep(for: .milliseconds(400))
        gateway.signal(SIGTERM)
        try await Task.sleep(for: .milliseconds(200))
        // New connections are refused once draining began.
        let refused = try await curl(["-o", "/dev/null", "--max-time", "2", "https://localhost:\(port)/echo"])
        #expect(refused.status == 7, "a new connection during drain: \(refused)")
        let answered = try await slow
        #expect(answered.stdout == "slow 1500 200", "\(answered)")
        let status = await gateway.waitForExit(timeout: .seconds(10))
        #expect(status == 0, "\(gateway.log)")
        #expect(gateway.log.contains("\"draining\""))
    }

    /// An event answered 202 is on disk: the gateway is killed with `kill -9` five times at random
    /// moments while four clients post events and delivery runs (into API errors and a dropped
    /// connection, so kills also land mid-batch); after the last restart every acknowledged
    /// event_id reaches the Events API (repeats of in-flight batches are allowed: TikTok dedups).
    @Test func kill9AtRandomMomentsLosesNoAcknowledgedEvent() async throws {
        let api = try await FakeEventsAPI.start(token: "process-token")
        defer { Task { await api.stop() } }
        let origin = try await TestOrigin.start()
        defer { Task { await origin.stop() } }
        let scratch = TestFiles.makeScratch("kill9")
        let yaml = TestFiles.yaml(upstream: origin.url, site: "pixel: main", top: """
            events:
              store: sqlite:\(scratch)/events.sqlite
              endpoint: \(api.url)
              batch_size: 20
              linger: 100ms
              pixels: { main: { pixel_code: CPROC01, access_token_env: FAKE_TIKTOK_TOKEN } }
            """)
        let environment = ["FAKE_TIKTOK_TOKEN": "process-token"]
        api.inject([.http500, .drop, .http500, .rateLimit, .drop])
        var acknowledged: Set<String> = []
        var moments: [Int] = []
        for round in 0..<5 {
            let gateway = try await GatewayProcess.start(yaml: yaml, directory: scratch, environment: environment)
            let killAfter = Int.random(in: 200...1500)
            moments.append(killAfter)
            let posted = await withTaskGroup(of: [String].self) { clients in
                for client in 0..<4 {
                    clients.addTask {
                        var ids: [String] = []
                        // Until the gateway is gone: a refused connection ends the client.
                        for request in 0... {
                            let batch = (0..<5).map { "r\(round)-c\(client)-\(request)-\($0)" }
                            let body = "[" + batch.map { #"{"event":"Purchase","event_id":"\#($0)","properties":{"value":1,"currency":"EUR"}}"# }.joined(separator: ",") + "]"
                            guard let result = try? await curl(["-X", "POST", "-H", "content-type: application/json", "--data-binary", body,
                                "-w", " %{http_code}", "--max-time", "10", "https://localhost:\(gateway.httpsPort)/_clickgate/events"]),
                                result.status == 0
                            else { return ids }
                            if result.stdout.hasSuffix(" 202") { ids += batch }
                        }
                        return ids
                    }
                }
                clients.addTask {
                    try? await Task.sleep(for: .milliseconds(killAfter))
                    gateway.signal(SIGKILL)
                    return []
                }
                return await clients.reduce(into: []) { $0 += $1 }
            }
            _ = await gateway.waitForExit(timeout: .seconds(5))
            acknowledged.formUnion(posted)
        }
        #expect(acknowledged.count >= 100, "only \(acknowledged.count) events acknowledged")
        let gateway = try await GatewayProcess.start(yaml: yaml, directory: scratch, environment: environment)
        defer { gateway.signal(SIGKILL) }
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline, !acknowledged.isSubset(of: Set(api.delivered)) {
            try await Task.sleep(for: .milliseconds(100))
        }
        let missing = acknowledged.subtracting(api.delivered)
        #expect(missing.isEmpty, "\(missing.count) acknowledged events never delivered, e.g. \(missing.sorted().prefix(5))")
        print("kill -9 at \(moments) ms: \(acknowledged.count) acknowledged, \(Set(api.delivered).count) delivered, \(api.delivered.count - Set(api.delivered).count) repeats")
    }

    @Test func deadLettersAreListedAndReplayedFromTheCommandLine() async throws {
        let path = TestFiles.makeScratch("dead") + "/events.sqlite"
        let store = try SQLiteEventStore(path: path)
        let events = ["a", "b"].map { OutboxEvent(pixel: "main", event: NormalizedEvent(event: "Purchase", eventID: "dl-\($0)", eventTime: 1_760_000_000)) }
        _ = try await store.enqueue(events)
        let leased = try await store.lease(limit: 2, for: .seconds(30), now: Date())
        try await store.deadLetter(leased.map(\.id), reason: "40002: Invalid value for field: data[0].properties.currency")
        let table = try await runProcess(clickgateBinary, ["events", "dead-letters", "--store", "sqlite:\(path)"])
        #expect(table.status == 0)
        #expect(table.stdout.contains("dl-a") && table.stdout.contains("40002: Invalid value for field"), "\(table.stdout)")
        let json = try await runProcess(clickgateBinary, ["events", "dead-letters", "--store", "sqlite:\(path)", "--json"])
        #expect(json.stdout.split(separator: "\n").count == 2)
        let usage = try await runProcess(clickgateBinary, ["events", "replay", "--store", "sqlite:\(path)"])
        #expect(usage.status != 0 && usage.stderr.contains("--all"))
        let firstID = try #require(try await store.deadLetters(limit: 1).first?.id)
        let one = try await runProcess(clickgateBinary, ["events", "replay", "\(firstID)", "--store", "sqlite:\(path)"])
        #expect(one.stdout == "requeued 1 event\n")
        let rest = try await runProcess(clickgateBinary, ["events", "replay", "--all", "--store", "sqlite:\(path)"])
        #expect(rest.stdout == "requeued 1 event\n")
        #expect(try await store.stats(now: Date()).queueDepth == 2)
    }

    @Test func checkConfigNamesTheProblemAndExitsTwo() async throws {
        let scratch = TestFiles.makeScratch("check")
        let bad = scratch + "/bad.yaml"
        try TestFiles.yaml(upstream: "http://127.0.0.1:1", top: "trusted_proxies: [\"10.0.0.0/40\"]").write(toFile: bad, atomically: true, encoding: .utf8)
        let result = try await runProcess(clickgateBinary, ["check-config", "--config", bad])
        #expect(result.status == 2)
        #expect(result.stdout.contains("trusted_proxies[0]: prefix '/40' must be 0 to 32"), "\(result.stdout)")
        let serve = try await runProcess(clickgateBinary, ["serve", "--config", bad])
        #expect(serve.status == 2)
        #expect(serve.stderr.contains("trusted_proxies[0]"))
        let good = scratch + "/good.yaml"
        try TestFiles.yaml(upstream: "http://127.0.0.1:1").write(toFile: good, atomically: true, encoding: .utf8)
        let ok = try await runProcess(clickgateBinary, ["check-config", "--config", good])
        #expect(ok.status == 0)
        #expect(ok.stdout == "ok\n")
    }

    @Test func theRepositoryConfigExamplesAreValid() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let confDir = root.appendingPathComponent("conf").path
        let examples = try FileManager.default.contentsOfDirectory(atPath: confDir).filter { $0.hasSuffix(".yaml") }
        #expect(!examples.isEmpty)
        // The examples name certs/… relative to the repository, where `clickgate certs dev` puts them.
        _ = try await runProcess(clickgateBinary, ["certs", "dev", "--dir", root.appendingPathComponent("certs").path])
        for example in examples {
            let result = try await runProcess("/bin/sh", ["-c", "cd '\(root.path)' && '\(clickgateBinary)' check-config --config conf/\(example)"])
            #expect(result.stdout == "ok\n", "conf/\(example): \(result.stdout)")
        }
    }
}
