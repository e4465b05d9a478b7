import EventsTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// Output of a finished child process.
struct ProcessResult {
    var status: Int32
    var output: Data
    var stderr: String

    var stdout: String { String(decoding: output, as: UTF8.self) }
}

/// Runs a program to completion; stdout and stderr are read concurrently so neither pipe fills.
/// The wait happens on a thread of its own (``onOwnThread(_:)``).
func runProcess(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, input: String? = nil) async throws -> ProcessResult {
    try await runProcess(executable, arguments, environment: environment, bytes: input.map { Data($0.utf8) })
}

/// ``runProcess(_:_:environment:input:)`` for binary input (gzip, gunzip).
func runProcess(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, bytes input: Data?) async throws -> ProcessResult {
    try await onOwnThread { try runProcessBlocking(executable, arguments, environment: environment, input: input) }
}

private func runProcessBlocking(_ executable: String, _ arguments: [String], environment: [String: String]?, input: Data?) throws -> ProcessResult {
    let out = Pipe()
    let err = Pipe()
    let stdin = Pipe()
    let child = try ChildProcess(
        executable, arguments, environment: environment, stdin: input == nil ? nil : stdin.fileHandleForReading.fileDescriptor,
        stdout: out.fileHandleForWriting.fileDescriptor, stderr: err.fileHandleForWriting.fileDescriptor)
    // The child has its copies; ours must close for the reads below to see the end.
    try out.fileHandleForWriting.close()
    try err.fileHandleForWriting.close()
    try stdin.fileHandleForReading.close()
    let errData = NIOLockedValueBox(Data())
    let reader = Thread { errData.withLockedValue { $0 = readAll(err.fileHandleForReading.fileDescriptor) } }
    reader.start()
    _ = ignoreBrokenPipes
    // Written from a thread of its own: input larger than a pipe's buffer would otherwise wait for
    // the child to drain it while the child waits for us to read its output.
    let writer = Thread {
        if let input { writeAll(stdin.fileHandleForWriting.fileDescriptor, input) }
        try? stdin.fileHandleForWriting.close()
    }
    writer.start()
    let outData = readAll(out.fileHandleForReading.fileDescriptor)
    let status = child.waitBlocking()
    while !reader.isFinished || !writer.isFinished { usleep(1000) }
    return ProcessResult(status: status, output: outData, stderr: String(decoding: errData.withLockedValue { $0 }, as: UTF8.self))
}

/// A child that stops reading early makes a write fail with EPIPE rather than kill the tests.
private let ignoreBrokenPipes: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

/// Writes all of `data` unless the reader goes away, retrying writes a signal interrupted.
private func writeAll(_ fd: Int32, _ data: Data) {
    data.withUnsafeBytes { bytes in
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n > 0 {
                offset += n
            } else if n < 0, errno == EINTR {
                continue
            } else {
                return
            }
        }
    }
}

/// Reads a descriptor to its end, retrying reads a signal interrupted.
private func readAll(_ fd: Int32) -> Data {
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            data.append(contentsOf: buffer[0..<n])
        } else if n < 0, errno == EINTR {
            continue
        } else {
            return data
        }
    }
}

/// curl from Debian: the reference HTTP/1.1 and HTTP/2 client.
func curl(_ arguments: [String]) async throws -> ProcessResult {
    try await runProcess("/usr/bin/curl", ["-sS", "--max-time", "120", "--cacert", TestFiles.caFile] + arguments)
}

/// The `clickgate` executable the process-level tests run: `CLICKGATE_BINARY` when set (the test
/// command's release phase), else the one `swift build` put beside this test bundle.
let clickgateBinary: String = {
    if let chosen = ProcessInfo.processInfo.environment["CLICKGATE_BINARY"], !chosen.isEmpty { return chosen }
    let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let candidates = [bundleDir.appendingPathComponent("clickgate").path, ".build/debug/clickgate"]
    return candidates.first(where: FileManager.default.isExecutableFile(atPath:)) ?? candidates[0]
}()

/// The gateway as its own process, as an operator runs it.
final class GatewayProcess: Sendable {
    let process: ChildProcess
    let stderrPath: String
    let httpsPort: Int
    let httpPort: Int
    let adminPort: Int
    let configPath: String

    private init(process: ChildProcess, stderrPath: String, httpsPort: Int, httpPort: Int, adminPort: Int, configPath: String) {
        self.process = process
        self.stderrPath = stderrPath
        self.httpsPort = httpsPort
        self.httpPort = httpPort
        self.adminPort = adminPort
        self.configPath = configPath
    }

    var adminURL: String { "http://127.0.0.1:\(adminPort)" }

    /// - Parameters:
    ///   - directory: where the config and logs go; reuse it to restart on the same store.
    ///   - environment: added to the test's own environment.
    static func start(yaml: String, directory: String? = nil, environment: [String: String] = [:]) async throws -> GatewayProcess {
        let scratch = directory ?? TestFiles.makeScratch("process")
        let configPath = scratch + "/clickgate.yaml"
        // Access and debug lines go to stderr, which the test keeps.
        try (yaml + "\nlog: { access: stderr, level: debug }\n").write(toFile: configPath, atomically: true, encoding: .utf8)
        let stderrPath = scratch + "/stderr-\(UUID().uuidString.prefix(6)).log"
        guard FileManager.default.createFile(atPath: stderrPath, contents: nil) else { throw ProcessStartError(log: "cannot create \(stderrPath)") }
        // NIO's strict mode turns misuse (like scheduling on a stopped event loop) into a crash.
        let variables = ProcessInfo.processInfo.environment.merging(environment.merging(["SWIFTNIO_STRICT": "1"]) { a, _ in a }) { _, new in new }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        defer { try? log.close() }
        // Relative paths of the configuration (the default events.store) land in the scratch folder.
        let process = try ChildProcess(
            clickgateBinary, ["serve", "--config", configPath], environment: variables, directory: scratch, stderr: log.fileDescriptor)
        for _ in 0..<300 {
            let log = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
            if let line = log.split(separator: "\n").first(where: { $0.contains("\"listening\"") }),
                let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
            {
                func port(_ key: String) -> Int { Int(object[key]?.split(separator: ":").last ?? "") ?? 0 }
                return GatewayProcess(
                    process: process, stderrPath: stderrPath, httpsPort: port("https"), httpPort: port("http"), adminPort: port("admin"),
                    configPath: configPath)
            }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        await process.stop()
        throw ProcessStartError(log: (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "")
    }

    /// Resident and peak resident memory, in bytes, from /proc.
    func memory() -> (rss: Int, peak: Int) {
        let status = (try? String(contentsOfFile: "/proc/\(process.pid)/status", encoding: .utf8)) ?? ""
        func field(_ name: String) -> Int {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
        }
        return (field("VmRSS"), field("VmHWM"))
    }

    func signal(_ signal: Int32) {
        process.signal(signal)
    }

    /// Waits for exit; returns the exit status, or nil if it did not exit in time (then kills it).
    func waitForExit(timeout: Duration) async -> Int32? {
        if let status = await process.wait(timeout: timeout) { return status }
        process.signal(SIGKILL)
        _ = await process.wait(timeout: .seconds(10))
        return nil
    }

    var log: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
}

struct ProcessStartError: Error, CustomStringConvertible {
    let log: String
    var description: String { "the gateway did not start:\n\(log)" }
}

/// Raw bytes over a plain TCP connection: for requests no well-behaved client would send.
enum RawHTTP {
    /// Sends `request` (optionally in pieces, `gap` apart) and returns everything read until the
    /// server closes or `timeout` passes. The default is generous: a close normally ends the wait
    /// at once, and the whole suite running in parallel on two cores can delay it by seconds.
    static func exchange(
        port: Int, _ pieces: [String], gap: Duration = .zero, timeout: Duration = .seconds(15)
    ) async throws -> (response: String, closedByServer: Bool) {
        let collector = ResponseCollector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        for (i, piece) in pieces.enumerated() {
            if i > 0, gap > .zero { try await Task.sleep(for: gap) }
            guard channel.isActive else { break }
            try? await channel.writeAndFlush(ByteBuffer(string: piece))
        }
        let deadline = ContinuousClock.now + timeout
        while channel.isActive, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        let closedByServer = !channel.isActive
        try? await channel.close()
        return (collector.text, closedByServer)
    }

    private final class ResponseCollector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        private let received = NIOLockedValueBox(ByteBuffer())

        var text: String { String(buffer: received.withLockedValue { $0 }) }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            received.withLockedValue { _ = $0.writeBuffer(&buffer) }
        }
    }
}

/// Polls `condition` until it holds; records an issue naming `what` if it never does.
func waitUntil(_ what: String, timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(200))
    }
    Issue.record("timed out waiting for \(what)")
}
