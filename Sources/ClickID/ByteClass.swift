import CByteScan

/// A set of ASCII bytes as two 64-bit masks (no table to look up, no bounds check): the byte
/// rules of HTTP heads, hosts and cookies, checked on every request.
public struct ByteClass: Sendable {
    // Inlined into other modules' byte loops (the HTTP/1 parser's, the head writer's): a call
    // per byte would cost more than the test.
    @usableFromInline let low: UInt64
    @usableFromInline let high: UInt64
    /// Bytes of 0x80 and above (RFC 9110 `obs-text` in field values).
    @usableFromInline let nonASCII: Bool
    /// What `admits(all:)` can test many bytes at a time.
    @usableFromInline let words: Words

    /// A test of many bytes at once that passes only bytes the class admits (bytes that fail it
    /// go byte by byte): a byte loop costs about twelve instructions a byte, a test of eight
    /// bytes in a word two, an SSE2 test of sixteen (the CByteScan target) less than one.
    @usableFromInline enum Words: Sendable {
        case none
        /// No byte below 0x20 or DEL: nearly every field value.
        case plain
        /// Letters, digits and `-`: nearly every field name.
        case lettersDigitsHyphens
        /// The same without upper case: nearly every HTTP/2 field name.
        case lowercaseLettersDigitsHyphens
        /// RFC 6265 `cookie-octet`s: every cookie value the gateway sets.
        case cookieOctets

        /// All of at least sixteen bytes, sixteen at a time.
        @inlinable @inline(__always)
        func pass(_ bytes: UnsafePointer<UInt8>, count: Int) -> Bool {
            switch self {
            case .none: false
            case .plain: clickgate_all_space_or_visible(bytes, count) != 0
            case .lettersDigitsHyphens: clickgate_all_letters_digits_hyphens(bytes, count, 1) != 0
            case .lowercaseLettersDigitsHyphens: clickgate_all_letters_digits_hyphens(bytes, count, 0) != 0
            case .cookieOctets: clickgate_all_cookie_octets(bytes, count) != 0
            }
        }

        /// Eight bytes: for fields too short for ``pass(_:count:)``.
        @inlinable @inline(__always)
        func pass(_ word: UInt64) -> Bool {
            let high: UInt64 = 0x8080_8080_8080_8080
            switch self {
            case .none:
                return false
            case .plain:
                let del = word ^ 0x7F7F_7F7F_7F7F_7F7F
                return ((word &- 0x2020_2020_2020_2020) & ~word | (del &- 0x0101_0101_0101_0101) & ~del) & high == 0
            case .cookieOctets:
                guard word & high == 0 else { return false }
                // Bit 7 of a byte of `(x - 0x01…) & ~x` is set for a zero byte (and may be for the
                // bytes above one, which is enough to refuse the word); `n` in place of 0x01
                // flags a byte below `n`.
                let ones: UInt64 = 0x0101_0101_0101_0101
                @inline(__always) func anyBelow(_ bytes: UInt64, _ n: UInt64) -> Bool { (bytes &- ones &* n) & ~bytes & high != 0 }
                @inline(__always) func anyEqual(_ byte: UInt64) -> Bool { anyBelow(word ^ (ones &* byte), 1) }
                return !anyBelow(word, 0x21) && !anyEqual(0x7F) && !anyEqual(0x22) && !anyEqual(0x2C) && !anyEqual(0x3B) && !anyEqual(0x5C)
            case .lettersDigitsHyphens, .lowercaseLettersDigitsHyphens:
                guard word & high == 0 else { return false }
                // With every byte below 0x80 no sum carries into the next byte: bit 7 of a byte is
                // set in `within` exactly when the byte is in `lo...hi`.
                @inline(__always) func within(_ bytes: UInt64, _ lo: UInt64, _ hi: UInt64) -> UInt64 {
                    let ones: UInt64 = 0x0101_0101_0101_0101
                    return (bytes &+ ones &* (0x80 - lo)) & ~(bytes &+ ones &* (0x7F - hi))
                }
                // Setting bit 0x20 folds upper-case letters onto lower-case ones and no other byte onto a letter.
                let letters = within(self == .lettersDigitsHyphens ? word | 0x2020_2020_2020_2020 : word, 0x61, 0x7A)
                let digits = within(word, 0x30, 0x39)
                let hyphens = ~((word ^ 0x2D2D_2D2D_2D2D_2D2D) &+ 0x7F7F_7F7F_7F7F_7F7F)
                return (letters | digits | hyphens) & high == high
            }
        }
    }

    @inlinable @inline(__always)
    public func admits(_ byte: UInt8) -> Bool {
        byte < 64 ? (low >> byte) & 1 == 1 : byte < 128 ? (high >> (byte &- 64)) & 1 == 1 : nonASCII
    }

    @inlinable
    public func admits(all bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        if words != .none, let base = bytes.baseAddress {
            let raw = UnsafeRawPointer(base)
            switch bytes.count {
            case 16...:
                if words.pass(base, count: bytes.count) { return true }
            case 8..<16:
                // The first eight and the last eight, which overlap.
                if words.pass(raw.loadUnaligned(as: UInt64.self)), words.pass(raw.loadUnaligned(fromByteOffset: bytes.count - 8, as: UInt64.self)) {
                    return true
                }
            case 4..<8:
                // The first four and the last four in one word.
                let word = UInt64(raw.loadUnaligned(as: UInt32.self)) | UInt64(raw.loadUnaligned(fromByteOffset: bytes.count - 4, as: UInt32.self)) << 32
                if words.pass(word) { return true }
            default:
                break
            }
        }
        var index = 0
        while index < bytes.count {
            guard admits(bytes[index]) else { return false }
            index += 1
        }
        return true
    }

    /// RFC 9110 `tchar`.
    public static let token = ByteClass("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", words: .lettersDigitsHyphens)
    /// Visible ASCII, space, tab and obs-text: every byte but the other controls and DEL.
    public static let fieldValue = ByteClass(" \t" + String((0x21...0x7E).map { Character(UnicodeScalar(UInt8($0))) }), nonASCII: true, words: .plain)
    /// HTTP/2 field names: tokens without upper case (RFC 9113 §8.2.1).
    public static let lowercaseToken = ByteClass("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz", words: .lowercaseLettersDigitsHyphens)
    /// Visible ASCII and obs-text: a request target as clients send it (some leave bytes of 0x80
    /// and above unencoded), and any HTTP/2 pseudo-field's value.
    public static let visible = ByteClass(String((0x21...0x7E).map { Character(UnicodeScalar(UInt8($0))) }), nonASCII: true)
    /// RFC 3986 `unreserved`: what a click id may hold.
    public static let unreserved = ByteClass("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    /// RFC 9112 request-target bytes: unreserved, gen-delims, sub-delims and `%`.
    public static let requestTarget = ByteClass("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%")

    /// Host names and IP literals as `Host` carries them, before the port is cut off.
    public static let hostName = ByteClass("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._:[]")

    /// RFC 6265 `cookie-octet`: no controls, whitespace, `"`, `,`, `;` or `\`.
    public static let cookieOctet = ByteClass(
        String((0x21...0x7E).map { Character(UnicodeScalar(UInt8($0))) }.filter { !"\",;\\".contains($0) }), words: .cookieOctets)

    init(_ members: String, nonASCII: Bool = false, words: Words = .none) {
        var low: UInt64 = 0
        var high: UInt64 = 0
        for byte in members.utf8 {
            if byte < 64 { low |= 1 << byte } else { high |= 1 << (byte - 64) }
        }
        self.low = low
        self.high = high
        self.nonASCII = nonASCII
        self.words = words
    }
}

extension UnsafeBufferPointer<UInt8> {
    /// Whether these bytes are `expected`; ignoring ASCII case, `expected` is lowercase letters and `-`.
    @inlinable
    public func matches(_ expected: StaticString, ignoringCase: Bool = true) -> Bool {
        guard count == expected.utf8CodeUnitCount else { return false }
        let expected = expected.utf8Start
        let fold: UInt8 = ignoringCase ? 0x20 : 0
        for index in 0..<count where self[index] | fold != expected[index] { return false }
        return true
    }
}
