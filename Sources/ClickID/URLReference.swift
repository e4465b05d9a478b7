#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A URL or relative reference split into its RFC 3986 parts, each kept exactly as written.
///
/// Nothing is decoded or re-encoded: a rewrite that only appends to the query leaves every other
/// byte of the original untouched.
public struct URLReference: Sendable, Equatable {
    /// As written (compare with ``normalizedScheme``).
    public var scheme: String?
    /// Everything between `//` and the path, when present (`user@host:port`).
    public var authority: String?
    public var path: String
    /// Without the `?`; nil when there is no `?` at all, empty for a bare `?`.
    public var query: String?
    /// Without the `#`.
    public var fragment: String?

    public init(scheme: String? = nil, authority: String? = nil, path: String = "", query: String? = nil, fragment: String? = nil) {
        self.scheme = scheme
        self.authority = authority
        self.path = path
        self.query = query
        self.fragment = fragment
    }

    /// Splits `text`; nil for text that cannot be a URL reference (control characters, spaces, a
    /// scheme with characters schemes may not have).
    public init?(_ text: String) {
        // Every proxied request's target and every link the HTML decorator reads is split here:
        // one pass finds the parts, and each is made from its byte range.
        guard let parts = text.withUTF8Buffer({ bytes -> URLReference? in
            guard let ranges = Ranges(bytes) else { return nil }
            func part(_ range: Range<Int>) -> String { Ranges.string(range, of: bytes) }
            return URLReference(
                scheme: ranges.scheme.map(part), authority: ranges.authority.map(part), path: part(ranges.path),
                query: ranges.query.map(part), fragment: ranges.fragment.map(part))
        }) else { return nil }
        self = parts
    }

    /// A request as its client addressed it: `target`'s path and query (as ``init(_:)`` splits
    /// them; `/` for a target that is no reference) on `scheme` and `authority`. Only the two
    /// parts kept are made into strings.
    public init(scheme: String, authority: String, target: String) {
        let (path, query) = target.withUTF8Buffer { bytes -> (String, String?) in
            guard let ranges = Ranges(bytes) else { return ("/", nil) }
            return (Ranges.string(ranges.path, of: bytes), ranges.query.map { Ranges.string($0, of: bytes) })
        }
        self.init(scheme: scheme, authority: authority, path: path, query: query)
    }

    /// The query of `target` as ``init(_:)`` would split it, read in place: nil when `target` has
    /// none or is not a reference. Every request's capture reads it, and most never need the
    /// other parts as strings.
    public static func withQuery<Result>(of target: String, _ body: (UnsafeBufferPointer<UInt8>?) -> Result) -> Result {
        target.withUTF8Buffer { body(Parts($0)?.query) }
    }

    /// The parts of a reference that decide where it leads and what it carries, where they lie.
    struct Parts {
        var scheme: UnsafeBufferPointer<UInt8>?
        var authority: UnsafeBufferPointer<UInt8>?
        var query: UnsafeBufferPointer<UInt8>?

        /// `bytes`' parts as ``URLReference/init(_:)`` splits them, valid while `bytes` are; nil
        /// when they are not a reference. A rewritten redirect and each link of a decorated page
        /// need no other part, and no part as a string.
        init?(_ bytes: UnsafeBufferPointer<UInt8>) {
            guard let ranges = Ranges(bytes) else { return nil }
            func part(_ range: Range<Int>?) -> UnsafeBufferPointer<UInt8>? { range.map { UnsafeBufferPointer(rebasing: bytes[$0]) } }
            scheme = part(ranges.scheme)
            authority = part(ranges.authority)
            query = part(ranges.query)
        }
    }

    /// Where a reference's parts lie in its bytes. The delimiters are ASCII, so every range is
    /// whole UTF-8.
    private struct Ranges {
        var scheme: Range<Int>?
        var authority: Range<Int>?
        var path: Range<Int>
        var query: Range<Int>?
        var fragment: Range<Int>?

        init?(_ bytes: UnsafeBufferPointer<UInt8>) {
            var delimiters = Delimiters()
            guard delimiters.scan(bytes) else { return nil }
            var end = bytes.count
            if let hash = delimiters.hash {
                fragment = (hash + 1)..<end
                end = hash
            }
            if let mark = delimiters.question {
                query = (mark + 1)..<end
                end = mark
            }
            var start = 0
            if let colon = delimiters.schemeColon {
                guard colon > 0, URLReference.isASCIILetter(bytes[0]),
                    bytes[..<colon].allSatisfy({ URLReference.isASCIILetter($0) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2b || $0 == 0x2d || $0 == 0x2e })
                else { return nil }
                scheme = 0..<colon
                start = colon + 1
            }
            if end - start >= 2, bytes[start] == .slash, bytes[start + 1] == .slash {
                let authorityEnd = bytes[(start + 2)..<end].firstIndex(of: .slash) ?? end
                authority = (start + 2)..<authorityEnd
                start = authorityEnd
            }
            path = start..<end
        }

        /// One part as a string (the delimiters are ASCII: every part is whole UTF-8).
        static func string(_ range: Range<Int>, of bytes: UnsafeBufferPointer<UInt8>) -> String {
            String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        }
    }

    /// Whether `bytes`, read as a reference, have neither scheme nor authority (a path, query or
    /// fragment on the base's host), told from its first delimiter without splitting it.
    static func isPathReference(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        if bytes.count >= 2, bytes[0] == .slash, bytes[1] == .slash { return false }
        for byte in bytes {
            switch byte {
            case .colon: return false
            case .slash, .question, .hash: return true
            default: continue
            }
        }
        return true
    }

    /// Where a reference's delimiters are, as byte offsets: the first `#`, the first `?` before
    /// it, and the first `:` before both when no `/` comes before it (a scheme's end).
    private struct Delimiters {
        var hash: Int?
        var question: Int?
        var schemeColon: Int?

        /// False when a byte is a control or a space.
        mutating func scan(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
            // A reference that starts with `/` (every origin-form request target, most links)
            // has no scheme to find: its bytes are checked in one pass and the two delimiters
            // found with memchr, where the loop below costs ≈ 30 instructions a byte.
            if let base = bytes.baseAddress, bytes.first == .slash {
                guard ByteClass.visible.admits(all: bytes) else { return false }
                func first(_ byte: UInt8, before end: Int) -> Int? {
                    memchr(base, Int32(byte), end).map { UnsafeRawPointer(base).distance(to: UnsafeRawPointer($0)) }
                }
                hash = first(.hash, before: bytes.count)
                question = first(.question, before: hash ?? bytes.count)
                return true
            }
            var schemeDecided = false
            for index in bytes.indices {
                let byte = bytes[index]
                if byte <= 0x20 || byte == 0x7f { return false }
                guard hash == nil else { continue }
                switch byte {
                case UInt8(ascii: "#"):
                    hash = index
                case UInt8(ascii: "?") where question == nil:
                    question = index
                    schemeDecided = true
                case UInt8(ascii: ":") where !schemeDecided:
                    schemeColon = index
                    schemeDecided = true
                case UInt8(ascii: "/"):
                    schemeDecided = true
                default:
                    break
                }
            }
            return true
        }
    }

    private static func isASCIILetter(_ byte: UInt8) -> Bool {
        (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
    }

    /// The scheme lower-cased: schemes are case-insensitive.
    public var normalizedScheme: String? { scheme?.lowercased() }

    /// Whether the scheme is `http` or `https`, in any case.
    public var isWeb: Bool { Self.isWeb(scheme: scheme) }

    /// ``isWeb`` for a scheme on its own, compared as bytes: asked on every rewritten redirect,
    /// where lower-casing it first made a string.
    static func isWeb(scheme: String?) -> Bool {
        guard var scheme, scheme.utf8.count == 4 || scheme.utf8.count == 5 else { return false }
        return scheme.withUTF8 { bytes in
            bytes[0] | 0x20 == UInt8(ascii: "h") && bytes[1] | 0x20 == UInt8(ascii: "t") && bytes[2] | 0x20 == UInt8(ascii: "t")
                && bytes[3] | 0x20 == UInt8(ascii: "p") && (bytes.count == 4 || bytes[4] | 0x20 == UInt8(ascii: "s"))
        }
    }

    public var text: String {
        String(
            concatenating: scheme ?? "", scheme == nil ? "" : ":", authority == nil ? "" : "//", authority ?? "", path,
            query == nil ? "" : "?", query ?? "", fragment == nil ? "" : "#", fragment ?? "")
    }

    /// The host as a Host header names it: lower-cased, without user info or port, IPv6 in
    /// brackets; nil without an authority.
    public var host: String? { authority.flatMap(Self.host(of:)) }

    /// The host part of an authority, as ``host`` gives it.
    static func host(of authority: String) -> String? {
        // Over the bytes: every rewritten redirect asks for its target's host.
        authority.withUTF8Buffer { bytes -> String? in
            var start = 0
            if let at = bytes.lastIndex(of: .at) { start = at + 1 }
            var end = bytes.count
            if start < end, bytes[start] == .openBracket {
                guard let close = bytes[start...].firstIndex(of: .closeBracket) else { return nil }
                end = close + 1
            } else {
                if let colon = bytes[start...].lastIndex(of: .colon) { end = colon }
                if end > start, bytes[end - 1] == .dot { end -= 1 }
            }
            let host = UnsafeBufferPointer(rebasing: bytes[start..<end])
            if start == 0, end == bytes.count, !host.hasASCIIUppercase, !host.contains(where: { $0 >= 0x80 }) { return authority }
            return String(asciiLowercasing: host) ?? String(decoding: host, as: UTF8.self).lowercased()
        }
    }

    /// RFC 3986 §5.2: the absolute target of this reference seen from `base`.
    public func resolved(against base: URLReference) -> URLReference {
        if let scheme {
            return URLReference(scheme: scheme, authority: authority, path: Self.removeDotSegments(path), query: query, fragment: fragment)
        }
        if authority != nil {
            return URLReference(scheme: base.scheme, authority: authority, path: Self.removeDotSegments(path), query: query, fragment: fragment)
        }
        var target = URLReference(scheme: base.scheme, authority: base.authority, fragment: fragment)
        if path.isEmpty {
            target.path = base.path
            target.query = query ?? base.query
        } else {
            if path.hasPrefix(bytes: "/") {
                target.path = Self.removeDotSegments(path)
            } else {
                let merged: String
                if base.authority != nil, base.path.isEmpty {
                    merged = "/" + path
                } else if let slash = base.path.lastIndex(ofByte: .slash) {
                    merged = String(base.path[...slash]) + path
                } else {
                    merged = path
                }
                target.path = Self.removeDotSegments(merged)
            }
            target.query = query
        }
        return target
    }

    /// RFC 3986 §5.2.4. Most paths have no `.` or `..` segment and come back as they are (the
    /// full algorithm cost ≈ 4,000 instructions on `/lp`, for every redirect rewritten).
    static func removeDotSegments(_ path: String) -> String {
        hasDotSegment(path) ? applyingDotSegments(path) : path
    }

    /// Whether a segment of `path` (between slashes) is `.` or `..`.
    static func hasDotSegment(_ path: String) -> Bool {
        var length = 0
        var dots = 0
        for byte in path.utf8 {
            if byte == .slash {
                if length > 0, length == dots, dots <= 2 { return true }
                length = 0
                dots = 0
            } else {
                length += 1
                if byte == .dot { dots += 1 }
            }
        }
        return length > 0 && length == dots && dots <= 2
    }

    /// The algorithm itself, over bytes.
    static func applyingDotSegments(_ path: String) -> String {
        var input = ArraySlice(path.utf8)
        var output: [ArraySlice<UInt8>] = []
        func starts(_ prefix: String) -> Bool { input.starts(with: prefix.utf8) }
        func equals(_ text: String) -> Bool { input.elementsEqual(text.utf8) }
        while !input.isEmpty {
            if starts("../") { input = input.dropFirst(3) }
            else if starts("./") { input = input.dropFirst(2) }
            else if starts("/./") { input = input.dropFirst(2) }
            else if equals("/.") { input = ArraySlice("/".utf8) }
            else if starts("/../") {
                input = input.dropFirst(3)
                if !output.isEmpty { output.removeLast() }
            } else if equals("/..") {
                input = ArraySlice("/".utf8)
                if !output.isEmpty { output.removeLast() }
            } else if equals(".") || equals("..") { input = [] }
            else {
                let start = input.first == .slash ? input.index(after: input.startIndex) : input.startIndex
                let end = input[start...].firstIndex(of: .slash) ?? input.endIndex
                output.append(input[..<end])
                input = input[end...]
            }
        }
        return String(decoding: output.joined(), as: UTF8.self)
    }
}
