import ClickID
import Testing

@testable import Gateway

/// `admits(all:)` reads field values four, eight or sixteen bytes at a time (overlapping at the
/// end); every class must agree with the byte-by-byte definition on every input, whichever word
/// or block a bad byte falls in.
@Suite struct ByteClassTests {
    @Test(arguments: [
        ("token", ByteClass.token), ("field value", ByteClass.fieldValue), ("request target", ByteClass.requestTarget), ("host", ByteClass.hostName),
        ("cookie octet", ByteClass.cookieOctet), ("lower-case token", ByteClass.lowercaseToken), ("visible", ByteClass.visible),
        ("unreserved", ByteClass.unreserved),
    ])
    func wordsAgreeWithBytes(name: String, byteClass: ByteClass) {
        var random = SplitMix(seed: 21)
        // Bytes the classes are made of, their neighbours and the ones they refuse, weighted
        // toward the allowed so that most strings pass and the one bad byte decides.
        let common = Array("abcxyzAZ09-_.~:/?#[]@!$&'()*+,;=% \t\"<>\\^`{|}".utf8)
        for _ in 0..<40_000 {
            let count = Int(random.next() % 80)
            var bytes = (0..<count).map { _ in common[Int(random.next() % UInt64(common.count))] }
            if count > 0, random.next() % 2 == 0 { bytes[Int(random.next() % UInt64(count))] = UInt8(truncatingIfNeeded: random.next()) }
            let expected = bytes.allSatisfy { byteClass.admits($0) }
            bytes.withUnsafeBufferPointer { buffer in
                #expect(byteClass.admits(all: buffer) == expected, "\(name): \(bytes)")
            }
        }
    }

    @Test func everySingleByteInEveryPosition() {
        for byteClass in [ByteClass.token, .fieldValue, .requestTarget, .hostName, .cookieOctet, .lowercaseToken, .visible, .unreserved] {
            // Each length where the words or blocks change, and their neighbours.
            var disagreements: [(count: Int, position: Int, byte: UInt8)] = []
            for count in [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48] {
                for position in 0..<count {
                    for byte in UInt8.min...UInt8.max {
                        var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: count)
                        bytes[position] = byte
                        if bytes.withUnsafeBufferPointer({ byteClass.admits(all: $0) }) != byteClass.admits(byte) {
                            disagreements.append((count, position, byte))
                        }
                    }
                }
            }
            #expect(disagreements.isEmpty, "\(disagreements.prefix(5))")
        }
    }

    /// RFC 6265 §4.1.1: `%x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E`.
    @Test func cookieOctetsAreRFC6265s() {
        let ranges: [ClosedRange<UInt8>] = [0x21...0x21, 0x23...0x2B, 0x2D...0x3A, 0x3C...0x5B, 0x5D...0x7E]
        for byte in UInt8.min...UInt8.max {
            #expect(ByteClass.cookieOctet.admits(byte) == ranges.contains { $0.contains(byte) }, "\(byte)")
        }
    }

    /// HTTP/2 names are tokens with no upper case; visible bytes are all but controls, SP and DEL.
    @Test func lowerCaseTokensAndVisibleBytes() {
        for byte in UInt8.min...UInt8.max {
            let upper = (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            #expect(ByteClass.lowercaseToken.admits(byte) == (ByteClass.token.admits(byte) && !upper), "\(byte)")
            #expect(ByteClass.visible.admits(byte) == (byte > 0x20 && byte != 0x7F), "\(byte)")
        }
    }
}
