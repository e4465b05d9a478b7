import ClickID
import NIOCore
import NIOHTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reads the messages of one HTTP/1.1 connection from its bytes (RFC 9112), one part at a time:
/// requests from clients (``HTTP1RequestParser``), responses from origins (``HTTP1ResponseParser``).
///
/// Strict on purpose: a proxy and an origin that could frame the same bytes two ways are how
/// requests get smuggled, so whatever could be read two ways is refused and ends the connection —
/// a line not ended by CRLF, whitespace before a colon or a folded line, a control byte in a value,
/// `Content-Length` beside `Transfer-Encoding`, a transfer coding other than `chunked` alone, a
/// malformed chunk.
///
/// Replaces NIO's `ByteToMessageHandler(HTTPDecoder)` and llhttp: one pass over a complete head
/// instead of a callback per token, body parts that are slices of the bytes received, and no
/// buffer kept while a connection idles.
struct HTTP1Parser<Head: HTTP1ParsableHead> {
    private enum State {
        /// Waiting for (the rest of) a head.
        case head
        /// A head without a body was returned; its end comes next.
        case end
        case fixedBody(remaining: Int)
        /// The body runs to the end of the connection (a response with neither length nor chunks).
        case untilClose
        case chunkSize
        case chunkData(remaining: Int)
        /// The CRLF after a chunk's data.
        case chunkDataEnd
        case trailers
        /// After a refusal, or after a message that closes the connection (RFC 9112 §9.6: no later
        /// request is processed): nothing more is read.
        case stopped
    }

    private let maxHeadBytes: Int
    private let maxFieldCount: Int
    /// Set before each response is read: whether it answers a HEAD, and so has no body.
    var answeringHead = false
    private var state = State.head
    /// Bytes received and not yet parsed; nil rather than empty, so an idle connection holds none.
    private var pending: ByteBuffer?
    /// Where the search for the end of the head (or of the trailers) resumes, and where its
    /// current line began: a head that arrives a byte at a time is not scanned again each time.
    private var scanned = 0
    private var lineStart = 0
    /// The message being read says its connection closes after it (`Connection: close`, or
    /// HTTP/1.0 without `keep-alive`).
    private(set) var messageClosesConnection = false

    /// Leave RFC 9110 §7.6.1's connection-specific fields, and those a `Connection` field names,
    /// out of the heads returned (a proxy's responses from origins): their framing and keep-alive
    /// meaning is read all the same, and no string is made for a field only to be dropped.
    private let leavesOutConnectionFields: Bool

    init(maxHeadBytes: Int, maxFieldCount: Int, leavingOutConnectionFields: Bool = false) {
        self.maxHeadBytes = maxHeadBytes
        self.maxFieldCount = maxFieldCount
        self.leavesOutConnectionFields = leavingOutConnectionFields
    }

    mutating func receive(_ bytes: ByteBuffer) {
        if case .stopped = state { return }
        if pending == nil {
            pending = bytes
        } else {
            pending!.writeImmutableBuffer(bytes)
        }
    }

    /// Whether the message being read ends only when the connection does.
    var bodyEndsWithConnection: Bool {
        if case .untilClose = state { return true }
        return false
    }

    /// The part the end of the connection completes (a body that runs to it); a refusal when a
    /// message was cut short.
    mutating func finish() throws(HTTP1ParseError) -> HTTPPart<Head, ByteBuffer>? {
        switch state {
        case .untilClose, .end:
            state = .head
            return .end(nil)
        case .head where pending == nil, .stopped:
            return nil
        default:
            state = .stopped
            throw .malformed("the connection closed inside a message")
        }
    }

    /// The next complete part, nil until more bytes arrive. After a refusal, or after a message
    /// that closes the connection, nothing more.
    mutating func next() throws(HTTP1ParseError) -> HTTPPart<Head, ByteBuffer>? {
        guard var input = pending.take() else {
            if case .end = state { return endMessage(nil) }
            return nil
        }
        defer { if input.readableBytes > 0, !isStopped { pending = input } }
        do {
            return try step(&input)
        } catch {
            state = .stopped
            throw error
        }
    }

    /// Up to `remaining` bytes of body, as many as have arrived (a slice, not a copy), and how
    /// many remain after them; nil when none has.
    private static func slice(_ input: inout ByteBuffer, upTo remaining: Int) -> (part: ByteBuffer, left: Int)? {
        guard input.readableBytes > 0 else { return nil }
        let count = min(remaining, input.readableBytes)
        return (input.readSlice(length: count)!, remaining - count)
    }

    private mutating func endMessage(_ trailers: HTTPHeaders?) -> HTTPPart<Head, ByteBuffer> {
        state = messageClosesConnection ? .stopped : .head
        if messageClosesConnection { pending = nil }
        return .end(trailers)
    }

    private var isStopped: Bool {
        if case .stopped = state { return true }
        return false
    }

    private mutating func step(_ input: inout ByteBuffer) throws(HTTP1ParseError) -> HTTPPart<Head, ByteBuffer>? {
        switch state {
        case .head:
            return try head(&input)
        case .untilClose:
            return Self.slice(&input, upTo: .max).map { .body($0.part) }
        case .end:
            return endMessage(nil)
        case .fixedBody(let remaining):
            guard let (part, left) = Self.slice(&input, upTo: remaining) else { return nil }
            state = left == 0 ? .end : .fixedBody(remaining: left)
            return .body(part)
        case .chunkSize:
            guard let size = try chunkSize(&input) else { return nil }
            if size == 0 {
                state = .trailers
                return try trailers(&input)
            }
            state = .chunkData(remaining: size)
            return try step(&input)
        case .chunkData(let remaining):
            guard let (part, left) = Self.slice(&input, upTo: remaining) else { return nil }
            state = left == 0 ? .chunkDataEnd : .chunkData(remaining: left)
            return .body(part)
        case .chunkDataEnd:
            guard input.readableBytes >= 2 else { return nil }
            guard input.readInteger(as: UInt16.self) == crlf else { throw .malformed("chunk data not followed by CRLF") }
            state = .chunkSize
            return try step(&input)
        case .trailers:
            return try trailers(&input)
        case .stopped:
            return nil
        }
    }

    // MARK: Heads

    private mutating func head(_ input: inout ByteBuffer) throws(HTTP1ParseError) -> HTTPPart<Head, ByteBuffer>? {
        // A loop, not recursion: an origin may send any number of interim responses in one read.
        while true {
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
            let parsed = try input.withUnsafeReadableBytes { raw throws(HTTP1ParseError) in
                try parseHead(UnsafeBufferPointer(start: raw.baseAddress!.assumingMemoryBound(to: UInt8.self), count: length))
            }
            input.moveReaderIndex(forwardBy: length)
            // An interim response (100 Continue, 103 Early Hints) is dropped: the final one follows.
            guard parsed.isInterim else { return .head(parsed) }
            state = .head
        }
    }

    /// 414 when the start line alone is over the limit, 431 otherwise.
    private func oversized(_ input: ByteBuffer) -> HTTP1ParseError {
        let lineEnds = input.withUnsafeReadableBytes { raw in memchr(raw.baseAddress!, Int32(lf), min(raw.count, maxHeadBytes)) != nil }
        return lineEnds
            ? HTTP1ParseError(status: .requestHeaderFieldsTooLarge, reason: "head over the size limit")
            : HTTP1ParseError(status: .uriTooLong, reason: "start line over the head size limit")
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

    private mutating func parseHead(_ bytes: UnsafeBufferPointer<UInt8>) throws(HTTP1ParseError) -> Head {
        var index = 0
        var head = try Head.readStartLine(bytes, at: &index)
        let fields = try parseFields(bytes, from: index)
        switch try head.framing(fields.framing, answeringHead: answeringHead) {
        case .none: state = .end
        case .length(let length): state = length == 0 ? .end : .fixedBody(remaining: length)
        case .chunked: state = .chunkSize
        case .untilClose: state = .untilClose
        }
        head.headers = fields.headers
        messageClosesConnection = !fields.framing.connection.keepAlive(in: head.version)
        return head
    }

    private struct Fields {
        var headers: HeaderFields
        var framing = HTTP1FramingFields()
    }

    /// Field lines from `start` through the empty line that ends `bytes`.
    private func parseFields(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) throws(HTTP1ParseError) -> Fields {
        let section = UnsafeBufferPointer(rebasing: bytes[start...])
        var fields = Fields(headers: HeaderFields(receivedSection: section, room: roomForAddedFields, fields: 16))
        // Read once: a static's every read checks that it is initialised.
        let token = ByteClass.token
        let fieldValue = ByteClass.fieldValue
        var index = start
        while true {
            if bytes[index] == cr {
                guard index + 1 < bytes.count, bytes[index + 1] == lf else { throw .malformed("header section not ended by CRLF") }
                let named = fields.framing.connection.otherFields
                if leavesOutConnectionFields, !named.isEmpty {
                    fields.headers.removeAll { field, _ in named.contains { HeaderFields.sameName(field, $0) } }
                }
                return fields
            }
            if bytes[index] == space || bytes[index] == tab { throw .malformed("folded or indented field line") }
            let nameStart = index
            while token.admits(bytes[index]) { index += 1 }
            let nameEnd = index
            guard nameEnd > nameStart, bytes[index] == colon else {
                throw .malformed(bytes[index] == space || bytes[index] == tab ? "whitespace before a colon" : "malformed field name")
            }
            index += 1
            while bytes[index] == space || bytes[index] == tab { index += 1 }
            let valueStart = index
            // The line's CR found with memchr, the value then checked eight bytes at a time.
            guard let found = memchr(bytes.baseAddress! + index, Int32(cr), bytes.count - index) else {
                throw .malformed("field line not ended by CRLF")
            }
            index = UnsafeRawPointer(bytes.baseAddress!).distance(to: UnsafeRawPointer(found))
            let span = UnsafeBufferPointer(rebasing: bytes[valueStart..<index])
            guard fieldValue.admits(all: span) else {
                throw .malformed(span.contains(lf) ? "field line not ended by CRLF" : "control byte in a field value")
            }
            guard bytes[index + 1] == lf else { throw .malformed("CR without LF in a field line") }
            var valueEnd = index
            while valueEnd > valueStart, bytes[valueEnd - 1] == space || bytes[valueEnd - 1] == tab { valueEnd -= 1 }
            index += 2
            guard fields.headers.count < maxFieldCount else {
                throw HTTP1ParseError(status: .requestHeaderFieldsTooLarge, reason: "more than \(maxFieldCount) header fields")
            }
            let name = UnsafeBufferPointer(rebasing: bytes[nameStart..<nameEnd])
            let value = UnsafeBufferPointer(rebasing: bytes[valueStart..<valueEnd])
            if name.count == 14, name.matches("content-length") {
                guard let length = Bytes.decimal(value) else { throw .malformed("invalid Content-Length") }
                if let earlier = fields.framing.contentLength, earlier != length { fields.framing.contentLengthsDiffer = true }
                fields.framing.contentLength = length
                fields.framing.contentLengthCount += 1
            } else if name.count == 17, name.matches("transfer-encoding") {
                if fields.framing.transferEncodingCount == 0 { fields.framing.chunked = value.matches("chunked") }
                fields.framing.transferEncodingCount += 1
            } else if name.count == 10, name.matches("connection") {
                fields.framing.connection.read(value)
            }
            if leavesOutConnectionFields, ConnectionSpecific.isField(name) { continue }
            // Most lines are already laid out as they are written; the others are written anew.
            if valueStart == nameEnd + 2, bytes[nameEnd + 1] == space, valueEnd + 2 == index {
                fields.headers.indexReceivedLine(start: nameStart - start, nameEnd: nameEnd - start, valueEnd: valueEnd - start)
            } else {
                fields.headers.appendChecked(name: name, value: value)
            }
        }
    }

    // MARK: Chunked bodies

    /// The size of the next chunk, its line (extensions included) consumed; nil while incomplete.
    private mutating func chunkSize(_ input: inout ByteBuffer) throws(HTTP1ParseError) -> Int? {
        let parsed = try input.withUnsafeReadableBytes { raw throws(HTTP1ParseError) -> (size: Int, length: Int)? in
            let bytes = UnsafeBufferPointer(start: raw.baseAddress!.assumingMemoryBound(to: UInt8.self), count: raw.count)
            guard let found = memchr(raw.baseAddress!, Int32(lf), min(raw.count, maxChunkLine)) else {
                if raw.count >= maxChunkLine { throw .malformed("chunk-size line too long") }
                return nil
            }
            let newline = raw.baseAddress!.distance(to: UnsafeRawPointer(found))
            guard newline > 0, bytes[newline - 1] == cr else { throw .malformed("chunk-size line not ended by CRLF") }
            var size = 0
            var index = 0
            while index < newline - 1, let digit = Bytes.hexValue(bytes[index]) {
                guard index < 15 else { throw .malformed("chunk size too large") }
                size = size << 4 | digit
                index += 1
            }
            guard index > 0 else { throw .malformed("malformed chunk size") }
            // Extensions (ignored): `;` right after the size, then visible bytes. Whitespace after
            // the size is refused, as llhttp refuses it: parsers that differ here disagree on
            // where a chunk ends.
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

    private mutating func trailers(_ input: inout ByteBuffer) throws(HTTP1ParseError) -> HTTPPart<Head, ByteBuffer>? {
        let tooLarge = HTTP1ParseError(status: .requestHeaderFieldsTooLarge, reason: "trailers over the size limit")
        guard let length = sectionEnd(input) else {
            if scanned > maxHeadBytes { throw tooLarge }
            return nil
        }
        guard length <= maxHeadBytes else { throw tooLarge }
        let fields = try input.withUnsafeReadableBytes { raw throws(HTTP1ParseError) in
            try parseFields(UnsafeBufferPointer(start: raw.baseAddress!.assumingMemoryBound(to: UInt8.self), count: length), from: 0)
        }
        input.moveReaderIndex(forwardBy: length)
        // Framing fields mean nothing in trailers (RFC 9110 §6.5.1) and are not passed on.
        var trailers: [(String, String)] = []
        fields.headers.forEach { name, value in
            guard !name.matches("content-length"), !name.matches("transfer-encoding") else { return }
            trailers.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
        return endMessage(trailers.isEmpty ? nil : HTTPHeaders(trailers))
    }
}

/// A parse error: the status a client is answered with (an origin's is a 502), and what was wrong.
struct HTTP1ParseError: Error, Equatable, CustomStringConvertible {
    let status: HTTPResponseStatus
    let reason: String

    var description: String { reason }

    static func malformed(_ reason: String) -> HTTP1ParseError { HTTP1ParseError(status: .badRequest, reason: reason) }
}

/// What a head's fields say of its body's framing and of its connection, as the field pass found it.
struct HTTP1FramingFields {
    var contentLength: Int?
    var contentLengthCount = 0
    var contentLengthsDiffer = false
    var transferEncodingCount = 0
    /// The first `Transfer-Encoding` value is `chunked`, alone.
    var chunked = false
    var connection = ConnectionOptions()
}

/// The options of a message's `Connection` fields (comma-separated lists): `close`, `keep-alive`,
/// and the other fields they name.
struct ConnectionOptions {
    private var close = false
    private var keepAliveAsked = false
    /// Lower-cased; rarely any (an array allocates only when one is added).
    private(set) var otherFields: [String] = []

    mutating func read(_ value: UnsafeBufferPointer<UInt8>) {
        var start = 0
        while start <= value.count {
            var end = start
            while end < value.count, value[end] != UInt8(ascii: ",") { end += 1 }
            var first = start
            var last = end
            while first < last, value[first] == space || value[first] == tab { first += 1 }
            while last > first, value[last - 1] == space || value[last - 1] == tab { last -= 1 }
            let option = UnsafeBufferPointer(rebasing: value[first..<last])
            if option.matches("close") {
                close = true
            } else if option.matches("keep-alive") {
                keepAliveAsked = true
            } else if !option.isEmpty, !ConnectionSpecific.isField(option) {
                let name = String(decoding: option, as: UTF8.self).lowercased()
                if !otherFields.contains(name) { otherFields.append(name) }
            }
            start = end + 1
        }
    }

    /// RFC 9112 §9.3: HTTP/1.1 stays open unless an option says `close`; HTTP/1.0 only when one
    /// says `keep-alive`.
    func keepAlive(in version: HTTPVersion) -> Bool {
        !close && (version.minor >= 1 || version.major > 1 || keepAliveAsked)
    }
}

/// RFC 9110 §7.6.1: fields that describe one connection and stop at the next hop: `Connection`,
/// `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade` and `Proxy-*`.
enum ConnectionSpecific {
    /// Asked of every field a proxy forwards: the length picks the one or two names to compare.
    static func isField(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
        if name.count > 6, UnsafeBufferPointer(rebasing: name[..<6]).matches("proxy-") { return true }
        switch name.count {
        case 2: return name.matches("te")
        case 7: return name.matches("trailer") || name.matches("upgrade")
        case 10: return name.matches("connection") || name.matches("keep-alive")
        case 17: return name.matches("transfer-encoding")
        default: return false
        }
    }
}

enum HTTP1BodyFraming {
    case none
    case length(Int)
    case chunked
    case untilClose
}

/// What a request and a response each read differently: the start line and the body's framing.
protocol HTTP1ParsableHead: Equatable {
    /// The start line through its CRLF, with no fields yet.
    static func readStartLine(_ bytes: UnsafeBufferPointer<UInt8>, at index: inout Int) throws(HTTP1ParseError) -> Self
    func framing(_ fields: HTTP1FramingFields, answeringHead: Bool) throws(HTTP1ParseError) -> HTTP1BodyFraming
    /// An interim (1xx) response, dropped before the final one.
    var isInterim: Bool { get }
    var version: HTTPVersion { get }
    var headers: HeaderFields { get set }
}

typealias HTTP1RequestParser = HTTP1Parser<RequestHead>
typealias HTTP1ResponseParser = HTTP1Parser<ResponseHead>

extension RequestHead: HTTP1ParsableHead {
    /// CONNECT is refused (405): an edge gateway opens no tunnels.
    static func readStartLine(_ bytes: UnsafeBufferPointer<UInt8>, at index: inout Int) throws(HTTP1ParseError) -> RequestHead {
        while index < bytes.count, ByteClass.token.admits(bytes[index]) { index += 1 }
        let methodEnd = index
        guard methodEnd > 0, index < bytes.count, bytes[index] == space else { throw .malformed("malformed method") }
        index += 1
        let targetStart = index
        while index < bytes.count, ByteClass.visible.admits(bytes[index]) { index += 1 }
        let targetEnd = index
        guard targetEnd > targetStart, index < bytes.count, bytes[index] == space else { throw .malformed("malformed request target") }
        index += 1
        let version = try Bytes.version(bytes, at: &index)
        guard bytes.count - index >= 2, bytes[index] == cr, bytes[index + 1] == lf else { throw .malformed("request line not ended by CRLF") }
        index += 2
        let method = Bytes.method(UnsafeBufferPointer(rebasing: bytes[0..<methodEnd]))
        if method == .CONNECT { throw HTTP1ParseError(status: .methodNotAllowed, reason: "CONNECT is not served") }
        return RequestHead(version: version, method: method, uri: String(decoding: UnsafeBufferPointer(rebasing: bytes[targetStart..<targetEnd]), as: UTF8.self))
    }

    func framing(_ fields: HTTP1FramingFields, answeringHead: Bool) throws(HTTP1ParseError) -> HTTP1BodyFraming {
        if fields.transferEncodingCount > 0 {
            guard fields.contentLengthCount == 0 else { throw .malformed("Content-Length beside Transfer-Encoding") }
            guard version.minor == 1 else { throw .malformed("Transfer-Encoding in an HTTP/1.0 request") }
            // Only `chunked`, once: any other coding could not be passed on, and two parsers
            // reading a list of codings differently is a smuggling vector.
            guard fields.transferEncodingCount == 1, fields.chunked else { throw .malformed("a transfer coding other than chunked") }
            return .chunked
        }
        guard fields.contentLengthCount <= 1 else { throw .malformed("Content-Length more than once") }
        return fields.contentLength.map(HTTP1BodyFraming.length) ?? .none
    }

    var isInterim: Bool { false }
}

extension ResponseHead: HTTP1ParsableHead {
    static func readStartLine(_ bytes: UnsafeBufferPointer<UInt8>, at index: inout Int) throws(HTTP1ParseError) -> ResponseHead {
        let version = try Bytes.version(bytes, at: &index)
        guard bytes.count - index >= 6, bytes[index] == space else { throw .malformed("malformed status line") }
        var code = 0
        for offset in 1...3 {
            let digit = bytes[index + offset] &- UInt8(ascii: "0")
            guard digit < 10 else { throw .malformed("malformed status code") }
            code = code * 10 + Int(digit)
        }
        index += 4
        // The reason phrase may be empty; it is kept only for codes NIO has no phrase of its own for.
        guard bytes[index] == space || bytes[index] == cr else { throw .malformed("malformed status line") }
        if bytes[index] == space { index += 1 }
        let reasonStart = index
        while bytes[index] != cr {
            guard ByteClass.fieldValue.admits(bytes[index]) else { throw .malformed("control byte in the reason phrase") }
            index += 1
        }
        guard bytes[index + 1] == lf else { throw .malformed("status line not ended by CRLF") }
        let reason = String(decoding: UnsafeBufferPointer(rebasing: bytes[reasonStart..<index]), as: UTF8.self)
        index += 2
        guard code >= 100 else { throw .malformed("status code below 100") }
        if code == 101 { throw .malformed("101 Switching Protocols to a request that asked for no upgrade") }
        return ResponseHead(version: version, status: HTTPResponseStatus(statusCode: code, reasonPhrase: reason))
    }

    func framing(_ fields: HTTP1FramingFields, answeringHead: Bool) throws(HTTP1ParseError) -> HTTP1BodyFraming {
        // RFC 9112 §6.3: these never have a body, whatever their fields say.
        if answeringHead || isInterim || status.code == 204 || status.code == 304 { return .none }
        if fields.transferEncodingCount > 0 {
            guard fields.contentLengthCount == 0 else { throw .malformed("Content-Length beside Transfer-Encoding") }
            guard fields.transferEncodingCount == 1, fields.chunked else { throw .malformed("a transfer coding other than chunked") }
            return .chunked
        }
        // An identical repeat is one length (RFC 9110 §8.6); different ones are no length at all.
        guard !fields.contentLengthsDiffer else { throw .malformed("Content-Length values that differ") }
        return fields.contentLength.map(HTTP1BodyFraming.length) ?? .untilClose
    }

    var isInterim: Bool { (100..<200).contains(status.code) }
}

private enum Bytes {
    /// `HTTP/x.y` (case-sensitive): 1.0 and 1.1, a later 1.x read as 1.1 (RFC 9110 §2.5), 505 for any other major.
    static func version(_ bytes: UnsafeBufferPointer<UInt8>, at index: inout Int) throws(HTTP1ParseError) -> HTTPVersion {
        guard bytes.count - index >= 8, UnsafeBufferPointer(rebasing: bytes[index..<(index + 5)]).matches("HTTP/", ignoringCase: false) else {
            throw .malformed("malformed HTTP version")
        }
        let major = bytes[index + 5] &- UInt8(ascii: "0")
        let minor = bytes[index + 7] &- UInt8(ascii: "0")
        guard major < 10, bytes[index + 6] == UInt8(ascii: "."), minor < 10 else { throw .malformed("malformed HTTP version") }
        guard major == 1 else { throw HTTP1ParseError(status: .httpVersionNotSupported, reason: "HTTP/\(major).\(minor) is not served here") }
        index += 8
        return HTTPVersion(major: 1, minor: minor == 0 ? 0 : 1)
    }


    static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte &- UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte &- UInt8(ascii: "a") &+ 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte &- UInt8(ascii: "A") &+ 10)
        default: nil
        }
    }

    /// 1*DIGIT (RFC 9110 §8.6: no sign, no list), up to 18 digits.
    static func decimal(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 18 else { return nil }
        var value = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte &- UInt8(ascii: "0"))
        }
        return value
    }

    /// The common methods without building a string; others by name.
    static func method(_ bytes: UnsafeBufferPointer<UInt8>) -> HTTPMethod {
        switch bytes.count {
        case 3 where bytes[0] == UInt8(ascii: "G") && bytes[1] == UInt8(ascii: "E") && bytes[2] == UInt8(ascii: "T"): .GET
        case 4 where bytes[0] == UInt8(ascii: "P") && bytes[1] == UInt8(ascii: "O") && bytes[2] == UInt8(ascii: "S") && bytes[3] == UInt8(ascii: "T"): .POST
        case 4 where bytes[0] == UInt8(ascii: "H") && bytes[1] == UInt8(ascii: "E") && bytes[2] == UInt8(ascii: "A") && bytes[3] == UInt8(ascii: "D"): .HEAD
        default: HTTPMethod(rawValue: String(decoding: bytes, as: UTF8.self))
        }
    }
}

/// Room in a parsed head for the fields filters usually add (forwarding fields, cookies), so
/// they go in without copying the head's bytes.
private let roomForAddedFields = 384
/// A chunk-size line, extensions included, may not be longer than this.
private let maxChunkLine = 4096
private let cr = UInt8(ascii: "\r")
private let lf = UInt8(ascii: "\n")
private let space = UInt8(ascii: " ")
private let tab = UInt8(ascii: "\t")
private let colon = UInt8(ascii: ":")
/// CR LF as a big-endian UInt16, the way `ByteBuffer` reads integers.
private let crlf: UInt16 = 0x0D0A
