import Foundation
import NIOConcurrencyHelpers

/// A real PostgreSQL server (Debian's packages) in a temporary directory on a loopback port, for
/// one test run: `initdb`, `pg_ctl start`, one fresh database per caller, `shutDown()` at the end.
///
/// Every call that waits for PostgreSQL's tools runs on a thread of its own (``onOwnThread(_:)``):
/// `initdb` under the parallel tests takes seconds, and four tests waiting for the shared server
/// used to hold both cooperative threads, and so every other test's tasks, that long. Servers a
/// test leaves running are stopped when the test process exits.
///
/// PostgreSQL refuses to run as root; as root the server runs as the `postgres` user.
public final class TestPostgres: Sendable {
    public var port: Int { portBox.withLockedValue { $0 } }
    private let portBox: NIOLockedValueBox<Int>
    public let directory: String
    private let binaries: String
    private let databases = NIOLockedValueBox(0)

    /// One server per test process, started on first use.
    public static var shared: TestPostgres {
        get async throws { try await sharedLaunch.value }
    }

    private static let sharedLaunch = Task { try await launch() }

    /// A server of the caller's own (for tests that stop and restart it).
    public static func launch() async throws -> TestPostgres {
        let server = try await onOwnThread { try TestPostgres() }
        running.withLockedValue { servers in
            if servers.isEmpty { atexit { TestPostgres.running.withLockedValue { $0 }.forEach { $0.shutDownBlocking() } } }
            servers.append(server)
        }
        return server
    }

    private static let running = NIOLockedValueBox<[TestPostgres]>([])

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    private init() throws {
        guard let version = try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql").sorted().last else {
            throw Failure(description: "PostgreSQL is not installed (scripts/test installs Debian's postgresql)")
        }
        binaries = "/usr/lib/postgresql/\(version)/bin"
        directory = NSTemporaryDirectory() + "clickgate-pg-\(getpid())-\(UUID().uuidString.prefix(6))"
        portBox = NIOLockedValueBox(freeLoopbackPortOutsideEphemeralRange())
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if getuid() == 0 { try run("/bin/chown", ["postgres:postgres", directory], asServer: false) }
        try run(binaries + "/initdb", ["-D", directory + "/data", "-U", "clickgate", "--auth=trust", "-E", "UTF8", "--no-sync"])
        // A port free a moment ago; a parallel test may bind it meanwhile, so others are tried.
        portBox.withLockedValue { $0 = freeLoopbackPortOutsideEphemeralRange() }
        for attempt in 1...5 {
            do {
                try startBlocking()
                return
            } catch where attempt < 5 {
                portBox.withLockedValue { $0 = freeLoopbackPortOutsideEphemeralRange() }
            }
        }
    }

    /// Restarts the server on the same port and data, after ``stop()``.
    public func start() async throws {
        try await onOwnThread { try self.startBlocking() }
    }

    /// A restart waits out a port that is briefly taken; a fresh server fails at once (its caller
    /// moves it to another port).
    private func startBlocking() throws {
        for attempt in 1...10 {
            do {
                return try startOnce()
            } catch where attempt < 10 && !isFresh {
                Thread.sleep(forTimeInterval: 0.3)
            }
        }
    }

    /// True until the first successful start: a fresh server may move to another port instead.
    private var isFresh: Bool { startedOnce.withLockedValue { !$0 } }
    private let startedOnce = NIOLockedValueBox(false)

    private func startOnce() throws {
        do {
            try run(binaries + "/pg_ctl", [
                "-D", directory + "/data", "-l", directory + "/server.log", "-w", "-t", "30", "start",
                "-o", "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on",
            ])
        } catch {
            let log = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
            throw Failure(description: "\(error)\nserver log: \(log.suffix(600))")
        }
        startedOnce.withLockedValue { $0 = true }
    }

    /// Stops the server (fast shutdown: open connections are closed); ``start()`` brings it back.
    public func stop() async throws {
        try await onOwnThread { try self.stopBlocking() }
    }

    private func stopBlocking() throws {
        try run(binaries + "/pg_ctl", ["-D", directory + "/data", "-m", "fast", "-w", "stop"])
    }

    /// Stops the server if it runs and deletes its files.
    public func shutDown() async {
        Self.running.withLockedValue { $0.removeAll { $0 === self } }
        _ = try? await onOwnThread { self.shutDownBlocking() }
    }

    private func shutDownBlocking() {
        try? stopBlocking()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A new empty database; its URL for `events.store`.
    public func makeDatabase(_ prefix: String = "t") async throws -> String {
        let name = prefix.lowercased() + "_" + String(databases.withLockedValue { n in
            n += 1
            return n
        }) + "_" + UUID().uuidString.prefix(6).lowercased()
        _ = try await onOwnThread { try self.run(self.binaries + "/createdb", ["-h", "127.0.0.1", "-p", String(self.port), "-U", "clickgate", name]) }
        return "postgres://clickgate@127.0.0.1:\(port)/\(name)?sslmode=disable"
    }

    @discardableResult
    private func run(_ executable: String, _ arguments: [String], asServer: Bool = true) throws -> String {
        var command = [executable] + arguments
        if asServer && getuid() == 0 { command = ["/usr/sbin/runuser", "-u", "postgres", "--"] + command }
        // A file, not a pipe: the server that `pg_ctl start` leaves running inherits the descriptor
        // and would hold a pipe open forever.
        let outputPath = NSTemporaryDirectory() + "clickgate-pg-output-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        let status = try ChildProcess(command[0], Array(command.dropFirst()), stdout: output.fileDescriptor, stderr: output.fileDescriptor)
            .waitBlocking()
        try output.close()
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw Failure(description: "\(executable) \(arguments.joined(separator: " ")) exited \(status): \(text)")
        }
        return text
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for configurations that must name theirs).
public func freeLoopbackPort() -> Int {
    boundLoopbackPort(0) ?? 0
}

/// A free port below the kernel's ephemeral range: a server stopped and started again on it cannot
/// find it taken meanwhile as the local port of some other test's outgoing connection (seen in CI:
/// PostgreSQL's restart on a port from `freeLoopbackPort()` failed with "Address already in use").
public func freeLoopbackPortOutsideEphemeralRange() -> Int {
    let ephemeralStart = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
        .flatMap { text in text.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } } ?? 32768
    let candidates = max(1024, ephemeralStart - 12_000)..<max(1025, ephemeralStart)
    for _ in 0..<200 {
        if let port = boundLoopbackPort(Int.random(in: candidates)) { return port }
    }
    return freeLoopbackPort()
}

/// Binds `port` (0: any) on 127.0.0.1 and lets it go; the port bound, or nil when it was taken.
private func boundLoopbackPort(_ port: Int) -> Int? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    guard bound == 0 else { return nil }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}
