import CLinux
import NIOPosix

/// The operating system's CSPRNG for ids made on every request (request ids, visitor ids), read
/// 4 KiB at a time per thread: one `getrandom` per 512 numbers instead of one per number.
struct BufferedRandom: RandomNumberGenerator {
    mutating func next() -> UInt64 { RandomBlock.forThisThread.next() }
}

/// One thread's block of random words. `@unchecked Sendable` because only the thread that owns
/// it (through `ThreadSpecificVariable`) ever touches it.
private final class RandomBlock: @unchecked Sendable {
    private static let perThread = ThreadSpecificVariable<RandomBlock>()

    static var forThisThread: RandomBlock {
        if let block = perThread.currentValue { return block }
        let block = RandomBlock()
        perThread.currentValue = block
        return block
    }

    private var words = [UInt64](repeating: 0, count: 512)
    private var used = 512

    func next() -> UInt64 {
        if used == words.count { refill() }
        defer { used += 1 }
        return words[used]
    }

    private func refill() {
        words.withUnsafeMutableBytes { buffer in
            var filled = 0
            while filled < buffer.count {
                let got = getrandom(buffer.baseAddress! + filled, buffer.count - filled, 0)
                if got > 0 {
                    filled += got
                } else {
                    // Interrupted: the standard library's generator never fails, so it finishes the block.
                    var system = SystemRandomNumberGenerator()
                    for i in filled..<buffer.count { buffer[i] = UInt8.random(in: .min ... .max, using: &system) }
                    filled = buffer.count
                }
            }
        }
        used = 0
    }
}
