/// Reading and extending a raw query string without disturbing what is already there.
public enum Query {
    /// The raw `name=value` pieces, in order (empty pieces from `&&` are kept out).
    public static func items(_ query: String?) -> Items {
        Items(query ?? "")
    }

    /// Read as they are iterated, with no array: every proxied request's query is read once.
    /// Delimiters are found in the string's UTF-8 buffer (index-by-index over a `UTF8View` slice
    /// cost ≈ 1,100 instructions for a one-parameter query).
    public struct Items: Sequence, IteratorProtocol {
        private let query: String
        private var offset = 0

        init(_ query: String) {
            self.query = query
        }

        public var first: (name: Substring, value: Substring?)? {
            var copy = self
            return copy.next()
        }

        public mutating func next() -> (name: Substring, value: Substring?)? {
            let (range, after) = query.withUTF8Buffer { [offset] bytes in
                var pieces = Pieces(bytes, from: offset)
                return (pieces.nextRange(), pieces.offset)
            }
            offset = after
            guard let (start, equals, end) = range else { return nil }
            let utf8 = query.utf8
            func index(_ offset: Int) -> String.Index { utf8.index(utf8.startIndex, offsetBy: offset) }
            guard let equals else { return (query[index(start)..<index(end)], nil) }
            return (query[index(start)..<index(equals)], query[index(equals + 1)..<index(end)])
        }
    }

    /// The pieces of a query's UTF-8 as byte buffers, for hot paths that compare names without
    /// making a substring of each (a slice by string index cost ≈ 300 instructions). Valid only
    /// while those bytes are: iterate inside `withUTF8Buffer`.
    public struct Pieces: Sequence, IteratorProtocol {
        private let bytes: UnsafeBufferPointer<UInt8>
        fileprivate private(set) var offset: Int

        public init(_ bytes: UnsafeBufferPointer<UInt8>) {
            self.init(bytes, from: 0)
        }

        fileprivate init(_ bytes: UnsafeBufferPointer<UInt8>, from offset: Int) {
            self.bytes = bytes
            self.offset = offset
        }

        public mutating func next() -> (name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>?)? {
            guard let (start, equals, end) = nextRange() else { return nil }
            guard let equals else { return (UnsafeBufferPointer(rebasing: bytes[start..<end]), nil) }
            return (UnsafeBufferPointer(rebasing: bytes[start..<equals]), UnsafeBufferPointer(rebasing: bytes[(equals + 1)..<end]))
        }

        /// The next piece's name, and the whole piece (`name=value`) as it stands.
        public mutating func nextWhole() -> (name: UnsafeBufferPointer<UInt8>, piece: UnsafeBufferPointer<UInt8>)? {
            guard let (start, equals, end) = nextRange() else { return nil }
            return (UnsafeBufferPointer(rebasing: bytes[start..<(equals ?? end)]), UnsafeBufferPointer(rebasing: bytes[start..<end]))
        }

        /// The next non-empty piece: where it starts, its first `=` and where it ends.
        fileprivate mutating func nextRange() -> (start: Int, equals: Int?, end: Int)? {
            while offset < bytes.count {
                let start = offset
                var equals: Int?
                var index = start
                while index < bytes.count, bytes[index] != .ampersand {
                    if equals == nil, bytes[index] == .equals { equals = index }
                    index += 1
                }
                offset = index + 1
                if index > start { return (start, equals, index) }
            }
            return nil
        }
    }

    /// A raw query name compared with decoded names: byte for byte when it has no escape and no
    /// `+` (nearly every name), else as its decoded text (the raw text when an escape is broken).
    /// Like ``Pieces``, valid only while its bytes are.
    public struct RawName {
        private let bytes: UnsafeBufferPointer<UInt8>
        private let decoded: String?

        public init(_ bytes: UnsafeBufferPointer<UInt8>) {
            self.bytes = bytes
            decoded = bytes.contains { $0 == 0x25 || $0 == 0x2b } ? percentDecoded(bytes) ?? String(decoding: bytes, as: UTF8.self) : nil
        }

        public func reads(as name: String) -> Bool {
            if let decoded { return decoded == name }
            return name.utf8.count == bytes.count && name.withUTF8Buffer { $0.elementsEqual(bytes) }
        }
    }

    /// Names as a server would read them: percent-decoded, `+` as space.
    public static func decodedNames(_ query: String?) -> Set<String> {
        Set(items(query).map { percentDecoded($0.name) ?? String($0.name) })
    }

    /// The first value of `name` (matched after decoding), percent-decoded; nil when absent or
    /// when its encoding is broken.
    public static func value(of name: String, in query: String?) -> String? {
        for item in items(query) where (percentDecoded(item.name) ?? String(item.name)) == name {
            return percentDecoded(item.value ?? "")
        }
        return nil
    }

    /// `reference` (a URL or relative reference) with `pieces` (already encoded) at the end of its
    /// query, before any fragment; every other byte as it was.
    public static func appending(_ pieces: some Collection<String>, toQueryOf reference: String) -> String {
        appending(count: pieces.count, length: pieces.reduce(0) { $0 + $1.utf8.count }, toQueryOf: reference) { writer in
            for piece in pieces { writer.piece(piece) }
        }
    }

    /// `reference` with `count` pieces of `length` bytes together (the `&`s between them not
    /// counted) at the end of its query, before any fragment, each written by `writePieces`; every
    /// other byte as it was. Spliced into the text rather than set as a parsed reference's query
    /// and the whole written again (≈ 2,000 instructions a redirect, and per rewritten link of a
    /// page), and written in place: no string is made for a piece.
    public static func appending(
        count: Int, length: Int, toQueryOf reference: String, _ writePieces: (inout PieceWriter) -> Void
    ) -> String {
        guard count > 0 else { return reference }
        return reference.withUTF8Buffer { text in
            // The first `#` starts the fragment; the first `?` before it starts the query.
            let fragment = text.firstIndex(of: .hash) ?? text.count
            let question = text[..<fragment].firstIndex(of: .question)
            let separator: StaticString
            if question == nil {
                separator = "?"
            } else if question == fragment - 1 || text[fragment - 1] == .ampersand {
                separator = ""
            } else {
                separator = "&"
            }
            let capacity = text.count + separator.utf8CodeUnitCount + length + count - 1
            return String(unsafeUninitializedCapacity: capacity) { out in
                var writer = PieceWriter(out: out)
                writer.copy(UnsafeBufferPointer(rebasing: text[..<fragment]))
                writer.copy(UnsafeBufferPointer(start: separator.utf8Start, count: separator.utf8CodeUnitCount))
                writePieces(&writer)
                writer.copy(UnsafeBufferPointer(rebasing: text[fragment...]))
                return writer.written
            }
        }
    }

    /// Writes the pieces ``appending(count:length:toQueryOf:_:)`` adds, `&` between them. Bounds
    /// are checked: a piece longer than announced stops the process rather than write past the string.
    public struct PieceWriter {
        fileprivate let out: UnsafeMutableBufferPointer<UInt8>
        fileprivate var written = 0
        private var pieces = 0

        fileprivate init(out: UnsafeMutableBufferPointer<UInt8>) {
            self.out = out
        }

        /// Starts a piece with `text`.
        public mutating func piece(_ text: String) {
            if pieces > 0 {
                precondition(written < out.count, "query pieces longer than announced")
                out[written] = .ampersand
                written += 1
            }
            pieces += 1
            text.withUTF8Buffer { copy($0) }
        }

        /// Continues the piece started last.
        public mutating func append(_ text: String) {
            text.withUTF8Buffer { copy($0) }
        }

        fileprivate mutating func copy(_ bytes: UnsafeBufferPointer<UInt8>) {
            precondition(bytes.count <= out.count - written, "query pieces longer than announced")
            written = UnsafeMutableBufferPointer(rebasing: out[written...]).initialize(fromContentsOf: bytes) + written
        }
    }

    /// `%XX` and `+` decoded as UTF-8; nil for a malformed escape or invalid UTF-8.
    public static func percentDecoded(_ text: Substring) -> String? {
        text.withUTF8Buffer(percentDecoded)
    }

    /// The same for the bytes of a query.
    static func percentDecoded(_ raw: UnsafeBufferPointer<UInt8>) -> String? {
        guard raw.contains(where: { $0 == 0x25 || $0 == 0x2b }) else { return String(decoding: raw, as: UTF8.self) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(raw.count)
        var iterator = raw.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case 0x2b: bytes.append(0x20)
            case 0x25:
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
                bytes.append(high << 4 | low)
            default: bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// Bytes a query value may carry as they are; everything else is percent-encoded.
    public static func encodedValue(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            if ByteClass.unreserved.admits(byte) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 0xf, radix: 16, uppercase: true)
            }
        }
        return out
    }

    /// A raw query piece made safe for any header: bytes outside the URL's allowed set (and `;`) are escaped,
    /// existing escapes are kept as they are.
    public static func sanitizedPiece(_ raw: Substring) -> String {
        raw.withUTF8Buffer(sanitizedPiece)
    }

    /// The same for the bytes of a piece. `=` passes unescaped, so a whole `name=value` piece
    /// comes out as its two parts would one by one.
    public static func sanitizedPiece(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        // Nearly every piece is safe as it came: one check, one copy.
        if pieceByte.admits(all: bytes) { return String(decoding: bytes, as: UTF8.self) }
        let hex: StaticString = "0123456789ABCDEF"
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 3)
        for byte in bytes {
            if pieceByte.admits(byte) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hex.utf8Start[Int(byte >> 4)])
                out.append(hex.utf8Start[Int(byte & 0xf)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A query item as one header-safe `name=value` piece (`=` passes unescaped, so the parts can
    /// be made safe one by one).
    public static func sanitizedPiece(_ item: (name: Substring, value: Substring?)) -> String {
        guard let value = item.value else { return sanitizedPiece(item.name) }
        return String(concatenating: sanitizedPiece(item.name), "=", sanitizedPiece(value))
    }

    /// What a query piece may carry unescaped: unreserved bytes, `%` escapes and the delimiters
    /// RFC 3986 allows in a query.
    private static let pieceByte = ByteClass("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%!$'()*+,=:@/?")

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: return byte - 0x30
        case 0x41...0x46: return byte - 0x41 + 10
        case 0x61...0x66: return byte - 0x61 + 10
        default: return nil
        }
    }
}
