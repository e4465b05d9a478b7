#if canImport(Glibc)
import CLinux
import Glibc
#endif
import Foundation
import Logging
import ServiceLifecycle

/// Process-wide memory settings `clickgate serve` applies; the library's tests run without them.
public enum ProcessMemory {
    /// Allocations of 16 KiB and more get pages of their own.
    ///
    /// Every TLS connection holds a 32 KiB plaintext and a 16 KiB ciphertext buffer (swift-nio-ssl)
    /// for its whole life, while a small request touches one page of each. From glibc's heap they
    /// would often reuse chunks a busier moment left dirty, resident whole; as mappings of their own
    /// only the touched pages count (measured after the benchmark's load: 28.7 → 25.8 KiB per idle
    /// TLS connection). Fixing the threshold also stops glibc raising it to 32 MiB as blocks are freed.
    public static func giveLargeBuffersTheirOwnPages() {
        #if canImport(Glibc)
        _ = mallopt(M_MMAP_THRESHOLD, 16 * 1024)
        #endif
    }

    /// Releases the resident pages of free heap memory in every arena when at least `threshold`
    /// bytes are free; returns the free bytes it found then, nil when it left the heap alone.
    public static func returnFreeHeapPages(ifAtLeast threshold: Int) -> Int? {
        #if canImport(Glibc)
        let free = mallinfo2().fordblks
        guard free >= threshold else { return nil }
        _ = malloc_trim(0)
        return free
        #else
        return nil
        #endif
    }

    /// Drops this process's mapping of its executable's read-only pages (code and constants).
    ///
    /// Starting touches code scattered over the whole binary (YAML, certificates, SQLite migrations,
    /// argument parsing), and the kernel maps 64 KiB around each touched page, so a started gateway
    /// has nearly all of its ~50 MB read-only segment resident although serving uses a fraction. The
    /// pages are clean and stay in the page cache; the ones serving needs come back on first use as
    /// minor faults. Only mappings without a private copy of any page qualify: `MADV_DONTNEED` would
    /// discard such copies (relocated constants after RELRO are read-only but privately written).
    /// - Returns: the bytes of mappings released (0 where `/proc` is unreadable).
    @discardableResult
    public static func releaseStartupCode() -> Int {
        #if os(Linux)
        // Read to the end: `String(contentsOfFile:)` stops after the first read of a /proc file.
        guard let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"),
            let smaps = try? FileHandle(forReadingAtPath: "/proc/self/smaps")?.readToEnd()
        else { return 0 }
        var released = 0
        for mapping in CleanFileMapping.all(in: String(decoding: smaps, as: UTF8.self)) where mapping.path == executable {
            let length = Int(mapping.end - mapping.start)
            if madvise(UnsafeMutableRawPointer(bitPattern: mapping.start), length, MADV_DONTNEED) == 0 { released += length }
        }
        return released
        #else
        return 0
        #endif
    }

    /// A private, never-writable file mapping with no page privately copied, from `/proc/self/smaps`.
    struct CleanFileMapping: Equatable {
        var start: UInt
        var end: UInt
        var path: Substring

        static func all(in smaps: String) -> [CleanFileMapping] {
            var found: [CleanFileMapping] = []
            var current: CleanFileMapping?
            for line in smaps.split(separator: "\n") {
                // Field lines start with a name and a colon; a mapping's line with its address range.
                if !line.prefix(while: { $0 != " " }).hasSuffix(":") {
                    current = CleanFileMapping(header: line)
                } else if line.hasPrefix("Anonymous:"), let mapping = current {
                    current = nil
                    if line.split(separator: " ").dropFirst().first == "0" { found.append(mapping) }
                }
            }
            return found
        }

        /// `55e0…-55e3… r-xp 00000000 fe:00 16220533   /usr/bin/clickgate`
        init?(header line: Substring) {
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6, fields[1].count == 4, fields[1].hasPrefix("r"),
                fields[1].dropFirst().first == "-", fields[1].last == "p"
            else { return nil }
            let path = fields[5].drop(while: { $0 == " " })
            guard path.hasPrefix("/") else { return nil }
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16), start < end
            else { return nil }
            self.start = start
            self.end = end
            self.path = path
        }
    }
}

/// Gives the kernel back heap pages that freed memory left resident, when there are many.
///
/// glibc returns only the top of each arena; after a burst (a load spike, 10,000 connections
/// closing) the free chunks below it stay resident, and a chunk reused later counts whole although
/// its new owner may touch one page. `malloc_trim(0)` releases those pages in every arena. It holds
/// each arena's lock while it works (≈ 50 ms after 5,000 TLS connections closed), so it runs only
/// when at least `threshold` bytes are free.
public struct FreeHeapReturner: Service {
    let interval: Duration
    let threshold: Int
    let logger: Logger

    public init(interval: Duration = .seconds(30), threshold: Int = 16 << 20, logger: Logger) {
        self.interval = interval
        self.threshold = threshold
        self.logger = logger
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                let start = ContinuousClock.now
                guard let free = ProcessMemory.returnFreeHeapPages(ifAtLeast: threshold) else { continue }
                logger.debug("returned free heap pages", metadata: [
                    "free_bytes": "\(free)", "took": "\(ContinuousClock.now - start)",
                ])
            }
        }
    }
}
