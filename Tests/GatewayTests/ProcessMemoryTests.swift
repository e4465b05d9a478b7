#if os(Linux)
import Foundation
import Glibc
import Testing

@testable import Gateway

@Suite struct ProcessMemoryTests {
    private static let sampleSmaps = """
        55e0ed56c000-55e0f06e3000 r-xp 00000000 fe:00 16220533                   /usr/bin/clickgate
        Size:              52700 kB
        Rss:               31324 kB
        Anonymous:             0 kB
        VmFlags: rd ex mr mw me
        55e0f06e3000-55e0f0834000 r--p 03176000 fe:00 16220533                   /usr/bin/clickgate
        Rss:                1348 kB
        Anonymous:          1348 kB
        VmFlags: rd mr mw me ac
        55e0f0834000-55e0f2de4000 rw-p 032c7000 fe:00 16220533                   /usr/bin/clickgate
        Anonymous:           460 kB
        55e0f2de4000-55e0f2f4c000 rw-p 00000000 00:00 0
        Anonymous:           556 kB
        7fa2e8644000-7fa2e879a000 r-xp 00026000 fe:00 333151                     /usr/lib/x86_64-linux-gnu/libc.so.6
        AnonHugePages:         0 kB
        Anonymous:             4 kB
        7fa2e879a000-7fa2e87ed000 r--p 0017c000 fe:00 333151                     /usr/lib/x86_64-linux-gnu/libc.so.6
        Anonymous:             0 kB
        7ffd1000-7ffd2000 r-xp 00000000 00:00 0                                  [vdso]
        Anonymous:             0 kB
        """

    /// Only read-only private file mappings without a privately copied page qualify: relocated
    /// constants (read-only after RELRO, yet written) and writable data would lose their contents.
    @Test func onlyCleanReadOnlyFileMappingsQualify() {
        let found = ProcessMemory.CleanFileMapping.all(in: Self.sampleSmaps)
        #expect(found.map(\.path) == ["/usr/bin/clickgate", "/usr/lib/x86_64-linux-gnu/libc.so.6"])
        #expect(found.first?.start == 0x55e0_ed56_c000)
        #expect(found.first?.end == 0x55e0_f06e_3000)
        #expect(found.last?.start == 0x7fa2_e879_a000)
    }

    /// Released in this test process: its resident file pages drop, and code keeps running as
    /// the pages come back on use.
    @Test func releasingStartupCodeLowersResidentFilePagesAndCodeStillRuns() throws {
        let before = try #require(Self.statusKiB("RssFile"))
        let released = ProcessMemory.releaseStartupCode()
        let after = try #require(Self.statusKiB("RssFile"))
        #expect(released > 1 << 20)
        #expect(after < before)
        #expect(ProcessMemory.CleanFileMapping.all(in: Self.sampleSmaps).count == 2)
    }

    /// 48 MiB freed below a chunk still in use cannot be trimmed from the top of the heap;
    /// returning free pages takes them out of the resident set anyway.
    @Test func freeHeapPagesLeaveTheResidentSet() throws {
        let chunks = (0..<48 * 1024).map { _ -> UnsafeMutableRawPointer in
            let chunk = malloc(1000)!
            memset(chunk, 0x5a, 1000)
            return chunk
        }
        let keeper = malloc(1000)!
        defer { free(keeper) }
        for chunk in chunks { free(chunk) }
        let before = try #require(Self.statusKiB("RssAnon"))
        let free = try #require(ProcessMemory.returnFreeHeapPages(ifAtLeast: 32 << 20))
        let after = try #require(Self.statusKiB("RssAnon"))
        #expect(free >= 32 << 20)
        #expect(before - after > 24 * 1024, "RssAnon \(before) → \(after) KiB")
        #expect(ProcessMemory.returnFreeHeapPages(ifAtLeast: Int.max) == nil)
    }

    private static func statusKiB(_ field: String) -> Int? {
        guard let status = try? FileHandle(forReadingAtPath: "/proc/self/status")?.readToEnd() else { return nil }
        let line = String(decoding: status, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix(field + ":") }
        return line?.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }
}
#endif
