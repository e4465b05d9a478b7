import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// A program the tests start (curl, the clickgate binary, PostgreSQL's tools, Chromium), spawned
/// with `posix_spawn` rather than Foundation's `Process`. On Linux, `Process` crashed under the
/// parallel tests (it lists `/proc/self/fd` while other threads open and close sockets), and it
/// watches every child from one thread that blocks in `waitpid` on any child that closes the
/// descriptor `Process` hands it (Chromium does), so other children's exits go unnoticed until
/// that one ends. Here the child gets exactly descriptors 0–2, and each child is reaped by its pid.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    private let reaped = NIOLockedValueBox<Int32?>(nil)

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// - Parameters:
    ///   - environment: the whole environment; nil inherits the test's.
    ///   - directory: the working directory; nil keeps the test's.
    ///   - stdin, stdout, stderr: descriptors the child gets as 0, 1 and 2; nil is /dev/null.
    public init(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil, directory: String? = nil,
        stdin: Int32? = nil, stdout: Int32? = nil, stderr: Int32? = nil
    ) throws {
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        guard null >= 0 else { throw Failure(description: "cannot open /dev/null") }
        defer { close(null) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (source, target) in [(stdin ?? null, Int32(0)), (stdout ?? null, 1), (stderr ?? null, 2)] {
            posix_spawn_file_actions_adddup2(&actions, source, target)
        }
        // NIO opens sockets without close-on-exec: without this a child would hold the tests' connections open.
        guard Self.closeFrom(&actions, 3) == 0 else { throw Failure(description: "posix_spawn_file_actions_addclosefrom_np failed") }
        if let directory, Self.changeDirectory(&actions, directory) != 0 {
            throw Failure(description: "posix_spawn_file_actions_addchdir_np failed for \(directory)")
        }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let variables = environment ?? ProcessInfo.processInfo.environment
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        var child: pid_t = 0
        let result = posix_spawn(&child, executable, &actions, nil, argv, envp)
        guard result == 0 else { throw Failure(description: "cannot start \(executable): \(String(cString: strerror(result)))") }
        pid = child
    }

    /// The exit status once the child has ended (a signal `n` reads as 128 + n), else nil.
    public var exitStatus: Int32? {
        reaped.withLockedValue { reaped in
            if reaped == nil { reaped = Self.reap(pid, options: WNOHANG) }
            return reaped
        }
    }

    public var isRunning: Bool { exitStatus == nil }

    /// Blocks the calling thread until the child ends: for threads of the tests' own (see
    /// ``onOwnThread(_:)``), never for Swift concurrency's few. A child is waited for either this
    /// way or by polling, not both.
    public func waitBlocking() -> Int32 {
        if let status = exitStatus { return status }
        // Outside the lock; if a poll reaped the child meanwhile, this wait fails and the poll's status stands.
        let status = Self.reap(pid, options: 0)
        return reaped.withLockedValue { reaped in
            if reaped == nil, let status, status != -1 { reaped = status }
            return reaped ?? -1
        }
    }

    /// Waits up to `timeout`; nil if the child is still running then.
    public func wait(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = exitStatus { return status }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return exitStatus
    }

    /// Sends `signal` unless the child is already reaped (its pid may belong to another by then).
    public func signal(_ signal: Int32) {
        reaped.withLockedValue { reaped in
            if reaped == nil { kill(pid, signal) }
        }
    }

    /// SIGTERM, then SIGKILL if the child is still running after `grace`.
    public func stop(grace: Duration = .seconds(2)) async {
        signal(SIGTERM)
        if await wait(timeout: grace) == nil {
            signal(SIGKILL)
            _ = await wait(timeout: .seconds(10))
        }
    }

    private static func reap(_ pid: pid_t, options: Int32) -> Int32? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, options)
            if result == pid { break }
            if result == -1, errno == EINTR { continue }
            // 0: still running; -1 otherwise: not our child any more (reaped elsewhere).
            return result == 0 ? nil : -1
        }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    // glibc has both since 2.34 and 2.29, but its headers show them only to _GNU_SOURCE builds.
    private typealias FileActionInt = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private typealias FileActionPath = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    private static func closeFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ lowest: Int32) -> Int32 {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return -1 }
        return unsafeBitCast(symbol, to: FileActionInt.self)(actions, lowest)
    }

    private static func changeDirectory(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ path: String) -> Int32 {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addchdir_np") else { return -1 }
        return path.withCString { unsafeBitCast(symbol, to: FileActionPath.self)(actions, $0) }
    }
}

/// Runs blocking work (a child's whole run, a server's start) on a thread of its own and awaits it.
///
/// Swift concurrency has one cooperative thread per core here: two tests blocking theirs (say, both
/// waiting for `initdb`) stall every other test's requests, whose deadlines then expire.
public func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}
