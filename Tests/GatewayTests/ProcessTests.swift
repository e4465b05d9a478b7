import Foundation
import Testing

/// The gateway as an operator runs it: its own process, signals, exit codes and memory.
@Suite(.serialized) struct ProcessTests {
    @Test func streamsA1GiBDownloadAndA200MiBUploadInBoundedMemory() async throws {
        let origin = try await TestOrigin.start()
        defer { Task { await origin.stop() } }
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
        FileManager.default.createFile(atPath: uploadFile, contents: nil)
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
