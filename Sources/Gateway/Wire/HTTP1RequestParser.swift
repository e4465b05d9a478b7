import NIOCore
import NIOHTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reads the requests of one HTTP/1.1 connection from its bytes (RFC 9112), one part at a time.
///
/// Strict on purpose: a proxy and an origin that could frame the same bytes two ways are how
/// requests get smuggled, so whatever could be read two ways is refused and ends the connection —
/// a line not ended by CRLF, whitespace before a colon or a folded line, a control byte in a value,
/// `Content-Length` twice or beside `Transfer-Encoding`, a transfer coding other than `chunked`
/// alone, a malformed chunk. CONNECT is refused (405): an edge gateway opens no tunnels.
///
/// Replaces NIO's `ByteToMessageHandler(HTTPRequestDecoder)` and llhttp: one pass over a complete
/// head instead of a callback per token, body parts that are slices of the bytes received, and no
/// buffer kept while a connection idles.
struct HTTP1RequestParser {
    struct Refusal: Error, Equatable, CustomStringConvertible {
        let status: HTTPResponseStatus
        let reason: String

        var description: String { reason }

        fileprivate static func malformed(_ reason: String) -> Refusal { Refusal(status: .badRequest, reason: reason) }
    }

    private enum State {
        /// Waiting for (the rest of) a head.
        case head
        /// A head without a body was returned; its end comes next.
        case end
        case fixedBody(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        /// The CRLF after a chunk's data.
        case chunkDataEnd
        case trailers
        /// Nothing more is read from this connection.
        case refused
    }

    /// A chunk-size line, extensions included, may not be longer than this.
    private static let maxChunkLine = 4096

    private let maxHeadBytes: Int
    private let maxFieldCount: Int
    private var state = State.head
    /// Bytes received and not yet parsed; nil rather than empty, so an idle connection holds none.
    private var pending: ByteBuffer?
    /// Where the search for the end of the head (or of the trailers) resumes, and where its
    /// current line began: a head that arrives a byte at a time is not scanned again each time.
    private var scanned = 0
    private var lineStart = 0

    init(maxHeadBytes: Int, maxFieldCount: Int) {
        self.maxHeadBytes = maxHeadBytes
        self.maxFieldCount = maxFieldCount
    }

    mutating func receive(_ bytes: ByteBuffer) {
        if case .refused = state { return }
        if pending == nil {
            pending = bytes
        } else {
            pending!.writeImmutableBuffer(bytes)
        }
    }

    /// The next complete part, nil until more bytes arrive. After a refusal, nothing more.
    mutating func next() throws(Refusal) -> HTTPServerRequestPart? {
        guard var input = pending.take() else {
            if case .end = state {
                state = .head
                return .end(nil)
            }
            return nil
        }
        defer { if input.readableBytes > 0, !isRefused { pending = input } }
        do {
            return try step(&input)
        } catch {
            state = .refused
            throw error
        }
    }

    private var isRefused: Bool {
        if case .refused = state { return true }
        return false
    }

    private mutating func step(_ input: inout ByteBuffer) throws(Refusal) -> HTTPServerRequestPart? {
        switch state {
        case .head:
            return try head(&input)
        case .end:
            state = .head
            return .end(nil)
        case .fixedBody(let remaining):
            guard input.readableBytes > 0 else { return nil }
            let count = min(remaining, input.readableBytes)
            state = count == remaining ? .end : .fixedBody(remaining: remaining - count)
            return .body(input.readSlice(length: count)!)
        case .chunkSize:
            guard let size = try chunkSize(&input) else { return nil }
            if size == 0 {
                state = .trailers
                return try trailers(&input)
            }
            state = .chunkData(remaining: size)
            return try step(&input)
        case .chunkData(let remaining):
            guard input.readableBytes > 0 else { return nil }
            let count = min(remaining, input.readableBytes)
            state = count == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - count)
            return .body(input.readSlice(length: count)!)
        case .chunkDataEnd:
            guard input.readableBytes >= 2 else { return nil }
            guard input.readInteger(as: UInt16.self) == crlf else { throw .malformed("chunk data not followed by CRLF") }
            state = .chunkSize
            return try step(&input)
        case .trailers:
            return try trailers(&input)
        case .refused:
            return nil
        }
    }

    // MARK: Heads

    private mutating func head(_ input: inout ByteBuffer) throws(Refusal) -> HTTPServerRequestPart? {
        if scanned == 0 {
            // RFC 9112 §2.2: empty lines before a request line are ignored (some clients send a
            // CRLF after a body).
            while input.readableBytes >= 2, input.getInteger(at: input.readerIndex, as: UInt16.self) == crlf {
                input.moveReaderIndex(forwardBy: 2)
            }
            if input.readableBytes == 1, input.getInteger(at: input.readerIndex, as: UInt8.self) == cr { return nil }
        }
        guard let length = sectionEnd(input) else {
            if scanned > maxHeadBytes { throw oversized(input) }
            return nil
        }
        guard length <= maxHeadBytes else { throw oversized(input) }
        let head = try input.withUnsafeReadableBytes { raw throws(Refusal) in
            try parseHead(UnsafeBufferPointer(start: raw.baseAddress!.assumingMemoryBound(to: UInt8.self), count: length))
        }
        input.moveReaderIndex(forwardBy: length)
        return .head(head)
    }

    /// 414 when the request line alone is over the limit, 431 otherwise.
    private func oversized(_ input: ByteBuffer) -> Refusal {
        let lineEnds = input.withUnsafeReadableBytes { raw in memchr(raw.baseAddress!, Int32(lf), min(raw.count, maxHeadBytes)) != nil }
        return lineEnds
            ? Refusal(status: .requestHeaderFieldsTooLarge, reason: "request head over the size limit")
            : Refusal(status: .uriTooLong, reason: "request line over the head size limit")
    }

    /// The length of the section (head or trailers) from the reader index through its empty
    /// line, nil while it is incomplete. Only the bytes not yet scanned are looked at.
    private mutating func sectionEnd(_ input: ByteBuffer) -> Int? {
        let end = input.withUnsafeReadableBytes { raw -> Int? in
            let base = raw.baseAddress!
            while scanned < raw.count {
                guard let found = memchr(base + scanned, Int32(lf), raw.count - scanned) else {
                    scanned = raw.count
                    return nil
                }
                let newline = base.distance(to: UnsafeRawPointer(found))
                scanned = newline + 1
                let lineLength = newline - lineStart
                if lineLength == 0 || (lineLength == 1 && raw[lineStart] == cr) { return scanned }
                lineStart = scanned
            }
            return nil
        }
        guard let end else { return nil }
        scanned = 0
        lineStart = 0
        return end
    }

    private mutating func parseHead(_ bytes: UnsafeBufferPointer<UInt8>) throws(Refusal) -> HTTPRequestHead {
        var index = 0
        while index < bytes.count, ByteClass.token.admits(bytes[index]) { index += 1 }
        let methodEnd = index
        guard methodEnd > 0, index < bytes.count, bytes[index] == space else { throw .malformed("malformed method") }
        index += 1
        let targetStart = index
        while index < bytes.count, Self.isTargetByte(bytes[index]) { index += 1 }
        let targetEnd = index
        guard targetEnd > targetStart, index < bytes.count, bytes[index] == space else { throw .malformed("malformed request target") }
        index += 1
        let version = try parseVersion(bytes, at: &index)
        let method = Self.method(UnsafeBufferPointer(rebasing: bytes[0..<methodEnd]))
        if method == .CONNECT { throw Refusal(status: .methodNotAllowed, reason: "CONNECT is not served") }

        let fields = try parseFields(bytes, from: index)
        let framing = try Self.framing(of: fields, version: version)
        switch framing {
        case .none: state = .end
        case .length(let length): state = length == 0 ? .end : .fixedBody(remaining: length)
        case .chunked: state = .chunkSize
        }
        return HTTPRequestHead(
            version: version, method: method, uri: String(decoding: UnsafeBufferPointer(rebasing: bytes[targetStart..<targetEnd]), as: UTF8.self),
            headers: HTTPHeaders(fields.pairs))
    }

    private func parseVersion(_ bytes: UnsafeBufferPointer<UInt8>, at index: inout Int) throws(Refusal) -> HTTPVersion {
        guard bytes.count - index >= 10, Self.matches(UnsafeBufferPointer(rebasing: bytes[index..<(index + 5)]), "HTTP/", ignoringCase: false) else {
            throw .malformed("malformed HTTP version")
        }
        let major = bytes[index + 5] &- UInt8(ascii: "0")
        let minor = bytes[index + 7] &- UInt8(ascii: "0")
        guard major < 10, bytes[index + 6] == UInt8(ascii: "."), minor < 10 else { throw .malformed("malformed HTTP version") }
        guard bytes[index + 8] == cr, bytes[index + 9] == lf else { throw .malformed("request line not ended by CRLF") }
        guard major == 1 else { throw Refusal(status: .httpVersionNotSupported, reason: "HTTP/\(major).\(minor) is not served here") }
        index += 10
        // RFC 9110 §2.5: a later 1.x minor version is answered as 1.1.
        return HTTPVersion(major: 1, minor: minor == 0 ? 0 : 1)
    }

    private struct Fields {
        var pairs: [(String, String)] = []
        var contentLength: Int?
        var contentLengthCount = 0
        var transferEncodingCount = 0
        /// The first `Transfer-Encoding` value is `chunked`, alone.
        var chunked = false
    }

    /// Field lines from `start` through the empty line that ends `bytes`.
    private func parseFields(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) throws(Refusal) -> Fields {
        var fields = Fields()
        fields.pairs.reserveCapacity(16)
        var index = start
        while true {
            if bytes[index] == cr {
                guard index + 1 < bytes.count, bytes[index + 1] == lf else { throw .malformed("header section not ended by CRLF") }
                return fields
            }
            if bytes[index] == space || bytes[index] == tab { throw .malformed("folded or indented field line") }
            let nameStart = index
            while ByteClass.token.admits(bytes[index]) { index += 1 }
            let nameEnd = index
            guard nameEnd > nameStart, bytes[index] == colon else {
                throw .malformed(bytes[index] == space || bytes[index] == tab ? "whitespace before a colon" : "malformed field name")
            }
            index += 1
            while bytes[index] == space || bytes[index] == tab { index += 1 }
            let valueStart = index
            while bytes[index] != cr {
                guard ByteClass.fieldValue.admits(bytes[index]) else {
                    throw .malformed(bytes[index] == lf ? "field line not ended by CRLF" : "control byte in a field value")
                }
                index += 1
            }
            guard bytes[index + 1] == lf else { throw .malformed("CR without LF in a field line") }
            var valueEnd = index
            while valueEnd > valueStart, bytes[valueEnd - 1] == space || bytes[valueEnd - 1] == tab { valueEnd -= 1 }
            index += 2
            guard fields.pairs.count < maxFieldCount else {
                throw Refusal(status: .requestHeaderFieldsTooLarge, reason: "more than \(maxFieldCount) header fields")
            }
            let name = UnsafeBufferPointer(rebasing: bytes[nameStart..<nameEnd])
            let value = UnsafeBufferPointer(rebasing: bytes[valueStart..<valueEnd])
            if name.count == 14, Self.matches(name, "content-length") {
                guard let length = Self.decimal(value) else { throw .malformed("invalid Content-Length") }
                fields.contentLength = length
                fields.contentLengthCount += 1
            } else if name.count == 17, Self.matches(name, "transfer-encoding") {
                if fields.transferEncodingCount == 0 { fields.chunked = Self.matches(value, "chunked") }
                fields.transferEncodingCount += 1
            }
            fields.pairs.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
    }

    private enum Framing {
        case none
        case length(Int)
        case chunked
    }

    private static func framing(of fields: Fields, version: HTTPVersion) throws(Refusal) -> Framing {
        if fields.transferEncodingCount > 0 {
            guard fields.contentLengthCount == 0 else { throw .malformed("Content-Length beside Transfer-Encoding") }
            guard version.minor == 1 else { throw .malformed("Transfer-Encoding in an HTTP/1.0 request") }
            // Only `chunked`, once: any other coding could not be passed on, and two parsers
            // reading a list of codings differently is a smuggling vector.
            guard fields.transferEncodingCount == 1, fields.chunked else { throw .malformed("a transfer coding other than chunked") }
            return .chunked
        }
        guard fields.contentLengthCount <= 1 else { throw .malformed("Content-Length more than once") }
        return fields.contentLength.map(Framing.length) ?? .none
    }

    // MARK: Chunked bodies

    /// The size of the next chunk, its line (extensions included) consumed; nil while incomplete.
    private mutating func chunkSize(_ input: inout ByteBuffer) throws(Refusal) -> Int? {
        let parsed = try input.withUnsafeReadableBytes { raw throws(Refusal) -> (size: Int, length: Int)? in
            let bytes = UnsafeBufferPointer(start: raw.baseAddress!.assumingMemoryBound(to: UInt8.self), count: raw.count)
            guard let found = memchr(raw.baseAddress!, Int32(lf), min(raw.count, Self.maxChunkLine)) else {
                if raw.count >= Self.maxChunkLine { throw .malformed("chunk-size line too long") }
                return nil
            }
            let newline = raw.baseAddress!.distance(to: UnsafeRawPointer(found))
            guard newline > 0, bytes[newline - 1] == cr else { throw .malformed("chunk-size line not ended by CRLF") }
            var size = 0
            var index = 0
            while index < newline - 1, let digit = Self.hexValue(bytes[index]) {
                guard index < 15 else { throw .malformed("chunk size too large") }
                size = size << 4 | digit
                index += 1
            }
            guard index > 0 else { throw .malformed("malformed chunk size") }
            // Extensions (ignored): optional whitespace, then `;` and visible bytes.
            while index < newline - 1, bytes[index] == space || bytes[index] == tab { index += 1 }
            if index < newline - 1 {
                guard bytes[index] == UInt8(ascii: ";") else { throw .malformed("malformed chunk size") }
                for byte in bytes[index..<(newline - 1)] where !ByteClass.fieldValue.admits(byte) {
                    throw .malformed("control byte in a chunk extension")
                }
            }
            return (size, newline + 1)
        }
        guard let parsed else { return nil }
        input.moveReaderIndex(forwardBy: parsed.length)
        return parsed.size
    }

    private mutating func trailers(_ input: inout ByteBuffer) throws(Refusal) -> HTTPServerRequestPart? {
        let tooLarge = Refusal(status: .requestHeaderFieldsTooLarge, reason: "trailers over the size limit")
        guard let length = sectionEnd(input) else {
            if scanned > maxHeadBytes { throw tooLarge }
            return nil
        }
        guard length <= maxHeadBytes else { throw tooLarge }
        var fields = try input.withUnsafeReadableBytes { raw throws(Refusal) in
            try parseFields(UnsafeBufferPointer(start: raw.baseAddress!.assumingMemoryBound(to: UInt8.self), count: length), from: 0)
        }
        input.moveReaderIndex(forwardBy: length)
        state = .head
        if fields.pairs.isEmpty { return .end(nil) }
        // Framing fields mean nothing in trailers (RFC 9110 §6.5.1) and are not passed on.
        fields.pairs.removeAll { HeaderRules.sameName($0.0, "content-length") || HeaderRules.sameName($0.0, "transfer-encoding") }
        return .end(fields.pairs.isEmpty ? nil : HTTPHeaders(fields.pairs))
    }

    // MARK: Bytes

    private static func isTargetByte(_ byte: UInt8) -> Bool {
        // Visible ASCII, and bytes of 0x80 and above, which some clients send unencoded.
        byte > 0x20 && byte != 0x7F
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte &- UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte &- UInt8(ascii: "a") &+ 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte &- UInt8(ascii: "A") &+ 10)
        default: nil
        }
    }

    /// 1*DIGIT (RFC 9110 §8.6: no sign, no list), up to 18 digits.
    private static func decimal(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 18 else { return nil }
        var value = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte &- UInt8(ascii: "0"))
        }
        return value
    }

    /// Compares with `expected`; ignoring ASCII case, `expected` is lowercase letters and `-`.
    private static func matches(_ bytes: UnsafeBufferPointer<UInt8>, _ expected: StaticString, ignoringCase: Bool = true) -> Bool {
        guard bytes.count == expected.utf8CodeUnitCount else { return false }
        let expected = expected.utf8Start
        let fold: UInt8 = ignoringCase ? 0x20 : 0
        for index in 0..<bytes.count where bytes[index] | fold != expected[index] { return false }
        return true
    }

    /// The common methods without building a string; others by name.
    private static func method(_ bytes: UnsafeBufferPointer<UInt8>) -> HTTPMethod {
        switch bytes.count {
        case 3 where bytes[0] == UInt8(ascii: "G") && bytes[1] == UInt8(ascii: "E") && bytes[2] == UInt8(ascii: "T"): .GET
        case 4 where bytes[0] == UInt8(ascii: "P") && bytes[1] == UInt8(ascii: "O") && bytes[2] == UInt8(ascii: "S") && bytes[3] == UInt8(ascii: "T"): .POST
        case 4 where bytes[0] == UInt8(ascii: "H") && bytes[1] == UInt8(ascii: "E") && bytes[2] == UInt8(ascii: "A") && bytes[3] == UInt8(ascii: "D"): .HEAD
        default: HTTPMethod(rawValue: String(decoding: bytes, as: UTF8.self))
        }
    }
}

private let cr = UInt8(ascii: "\r")
private let lf = UInt8(ascii: "\n")
private let space = UInt8(ascii: " ")
private let tab = UInt8(ascii: "\t")
private let colon = UInt8(ascii: ":")
/// CR LF as a big-endian UInt16, the way `ByteBuffer` reads integers.
private let crlf: UInt16 = 0x0D0A
