// A stand-in for swift-crypto's `SHA256.hash(data:)`, for the normaliser fuzz target only: swift-crypto
// (BoringSSL) is too large to build with the fuzzers' swiftc. The fuzz target checks what the
// normaliser does around the hash (which fields it hashes, the 64-hex shape it stores), not the
// digest itself, which `PIITests.tiktokGoldenVectors` checks against TikTok's published values.
public enum SHA256 {
    public static func hash(data: [UInt8]) -> [UInt8] {
        var state: UInt64 = 0xcbf2_9ce4_8422_2325
        return (0..<32).map { round in
            for byte in data + [UInt8(round)] { state = (state ^ UInt64(byte)) &* 0x100_0000_01b3 }
            return UInt8(truncatingIfNeeded: state >> 24)
        }
    }
}
