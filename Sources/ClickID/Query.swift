/// Reading and extending a raw query string without disturbing what is already there.
public enum Query {
    /// The raw `name=value` pieces, in order (empty pieces from `&&` are kept out).
    public static func items(_ query: String?) -> Items {
        Items(query ?? "")
    }

    /// Read as they are iterated, with no array: every proxied request's query is read once.
    public struct Items: Sequence, IteratorProtocol {
        private let query: String
        private var position: String.Index

        init(_ query: String) {
            self.query = query
            self.position = query.startIndex
        }

        public var first: (name: Substring, value: Substring?)? {
            var copy = self
            return copy.next()
        }

        public mutating func next() -> (name: Substring, value: Substring?)? {
            let bytes = query.utf8
            while position < bytes.endIndex {
                let end = bytes[position...].firstIndex(of: .ampersand) ?? bytes.endIndex
                let piece = query[position..<end]
                position = end < bytes.endIndex ? bytes.index(after: end) : end
                if piece.isEmpty { continue }
                if let eq = piece.firstIndex(ofByte: .equals) { return (piece[..<eq], piece[piece.utf8.index(after: eq)...]) }
                return (piece, nil)
            }
            return nil
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

    /// Appends pieces (already encoded) to `query`, keeping what is there byte for byte.
    public static func appending(_ pieces: [String], to query: String?) -> String? {
        guard !pieces.isEmpty else { return query }
        let addition = pieces.joined(separator: "&")
        guard let query, !query.isEmpty else { return addition }
        return query.utf8.last == .ampersand ? query + addition : query + "&" + addition
    }

    /// `%XX` and `+` decoded as UTF-8; nil for a malformed escape or invalid UTF-8.
    public static func percentDecoded(_ text: Substring) -> String? {
        guard text.utf8.contains(where: { $0 == 0x25 || $0 == 0x2b }) else { return String(text) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
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
            if isUnreserved(byte) {
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
        var out = ""
        for byte in raw.utf8 {
            if isUnreserved(byte) || "%!$'()*+,=:@/?".utf8.contains(byte) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 0xf, radix: 16, uppercase: true)
            }
        }
        return out
    }

    static func isUnreserved(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
            || byte == 0x2d || byte == 0x2e || byte == 0x5f || byte == 0x7e
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: return byte - 0x30
        case 0x41...0x46: return byte - 0x41 + 10
        case 0x61...0x66: return byte - 0x61 + 10
        default: return nil
        }
    }
}
