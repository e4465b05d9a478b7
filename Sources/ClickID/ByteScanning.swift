/// Delimiter searches over UTF-8 bytes.
///
/// URLs, queries and cookies are delimited by ASCII bytes, but Swift's `Character` is a grapheme
/// cluster: a prepend mark such as U+0602 fuses with a following `?` into one Character, and a
/// Character-level search would not see the delimiter at all. Every split in this module goes
/// through these byte-level helpers instead; the indices they return are scalar-aligned and slice
/// the original text exactly.
extension StringProtocol where UTF8View: BidirectionalCollection {
    func firstIndex(ofByte byte: UInt8) -> Index? {
        utf8.firstIndex(of: byte)
    }

    func lastIndex(ofByte byte: UInt8) -> Index? {
        utf8.lastIndex(of: byte)
    }

    func containsByte(_ byte: UInt8) -> Bool {
        utf8.contains(byte)
    }

    func hasPrefix(bytes prefix: String) -> Bool {
        utf8.starts(with: prefix.utf8)
    }

    /// Pieces between `byte`s (empty pieces dropped when `omittingEmpty`).
    public func split(byte: UInt8, omittingEmpty: Bool = true) -> [SubSequence] {
        var pieces: [SubSequence] = []
        var start = startIndex
        var index = startIndex
        while let found = self[index...].utf8.firstIndex(of: byte) {
            if !(omittingEmpty && start == found) { pieces.append(self[start..<found]) }
            start = utf8.index(after: found)
            index = start
        }
        if !(omittingEmpty && start == endIndex) { pieces.append(self[start...]) }
        return pieces
    }

    /// The text's UTF-8 as one buffer: the string's own storage when it is contiguous (every
    /// native string), else a copy. A byte loop over a buffer costs a fraction of the view's own
    /// index-by-index iteration, which is what the hot paths' checks and copies are written on.
    @inlinable
    public func withUTF8Buffer<Result>(_ body: (UnsafeBufferPointer<UInt8>) throws -> Result) rethrows -> Result {
        if let result = try utf8.withContiguousStorageIfAvailable(body) { return result }
        return try Array(utf8).withUnsafeBufferPointer(body)
    }

    /// Without leading and trailing spaces and tabs.
    public var trimmingSpaces: SubSequence {
        let bytes = utf8
        var start = bytes.startIndex
        var end = bytes.endIndex
        while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start = bytes.index(after: start) }
        while end > start {
            let before = bytes.index(before: end)
            guard bytes[before] == 0x20 || bytes[before] == 0x09 else { break }
            end = before
        }
        return self[start..<end]
    }
}

extension String {
    /// The parts end to end in one allocation, sized by a counting pass. `+`, `append` and
    /// interpolation grow and re-check the storage part by part, about 300 instructions each:
    /// too much for values built on every request (Set-Cookie, `Forwarded`).
    public init(concatenating parts: String...) {
        let count = parts.reduce(0) { $0 + $1.utf8.count }
        self.init(unsafeUninitializedCapacity: count) { buffer in
            var written = 0
            for part in parts {
                written += part.withUTF8Buffer { bytes in
                    if let source = bytes.baseAddress { (buffer.baseAddress! + written).update(from: source, count: bytes.count) }
                    return bytes.count
                }
            }
            return written
        }
    }
}

extension String {
    /// The bytes as a string with ASCII letters lower-cased; nil when a byte is not ASCII (the
    /// caller's Unicode-aware path then decides). A string already in lower case is better kept
    /// as it is: see ``UnsafeBufferPointer/hasASCIIUppercase``.
    public init?(asciiLowercasing bytes: UnsafeBufferPointer<UInt8>) {
        guard !bytes.contains(where: { $0 >= 0x80 }) else { return nil }
        self.init(unsafeUninitializedCapacity: bytes.count) { out in
            for index in bytes.indices { out[index] = bytes[index] >= 0x41 && bytes[index] <= 0x5a ? bytes[index] | 0x20 : bytes[index] }
            return bytes.count
        }
    }
}

extension UnsafeBufferPointer<UInt8> {
    public var hasASCIIUppercase: Bool { contains { $0 >= 0x41 && $0 <= 0x5a } }

    /// Whether `word` (lower case) occurs in these bytes, ASCII letters compared without case.
    public func containsIgnoringASCIICase(_ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard count > 0, count <= self.count else { return count == 0 }
        let letters = word.utf8Start
        func folded(_ byte: UInt8) -> UInt8 { byte >= 0x41 && byte <= 0x5a ? byte | 0x20 : byte }
        for start in 0...(self.count - count) where folded(self[start]) == letters[0] {
            var index = 1
            while index < count, folded(self[start + index]) == letters[index] { index += 1 }
            if index == count { return true }
        }
        return false
    }
}

extension UInt8 {
    static let ampersand = UInt8(ascii: "&"), equals = UInt8(ascii: "="), question = UInt8(ascii: "?"), hash = UInt8(ascii: "#")
    static let slash = UInt8(ascii: "/"), colon = UInt8(ascii: ":"), at = UInt8(ascii: "@"), semicolon = UInt8(ascii: ";")
    static let openBracket = UInt8(ascii: "["), closeBracket = UInt8(ascii: "]"), dot = UInt8(ascii: ".")
    static let lessThan = UInt8(ascii: "<"), greaterThan = UInt8(ascii: ">"), exclamation = UInt8(ascii: "!"), hyphen = UInt8(ascii: "-")
    static let doubleQuote = UInt8(ascii: "\""), singleQuote = UInt8(ascii: "'")

    var isASCIILetter: Bool { (0x41...0x5a).contains(self) || (0x61...0x7a).contains(self) }
    /// HTML's whitespace: space, tab, LF, FF, CR.
    var isHTMLSpace: Bool { self == 0x20 || self == 0x09 || self == 0x0a || self == 0x0c || self == 0x0d }
    public var asciiLowercased: UInt8 { (0x41...0x5a).contains(self) ? self | 0x20 : self }
}
