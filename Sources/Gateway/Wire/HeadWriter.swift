import ClickID
import NIOCore
import NIOHTTP1

/// HTTP/1.1 heads serialised into a buffer sized once (from a ``Measure`` of the fields), each
/// string checked as it is copied. NIO's encoders made four buffer writes per field and its
/// outbound validators walked every field again: about 20,000 instructions per proxied request
/// (two heads), of 222,000 (callgrind).
///
/// The checks are the ones NIO's validators made: field names and methods are tokens, field
/// values and reason phrases hold no control byte but tab (a CR or LF would end the head early
/// and let a value smuggle fields or a second message), and a request target holds only the
/// bytes RFC 9112 allows unencoded.
enum HeadWriter {
    /// Framing fields a head carries that its encoder must leave out or add.
    struct FramingEdit {
        var dropContentLength = false
        var dropTransferEncoding = false
        /// Writes `transfer-encoding: chunked` in place of any `Transfer-Encoding` the head has.
        var addChunked = false

        var dropsFields: Bool { dropContentLength || dropTransferEncoding || addChunked }
    }

    /// One pass over a head's fields: their serialised length, and the framing fields among
    /// them (`Content-Length`; whether the first `Transfer-Encoding` is `chunked`), from which
    /// the encoder picks its ``FramingEdit``.
    struct Measure {
        private(set) var fieldBytes = 0
        private(set) var hasContentLength = false
        private(set) var chunked = false

        init(_ headers: HTTPHeaders) {
            var sawTransferEncoding = false
            for (name, value) in headers {
                let count = name.utf8.count
                fieldBytes += count + value.utf8.count + 4
                if count == 14, HeaderRules.sameName(name, "content-length") {
                    hasContentLength = true
                } else if count == 17, HeaderRules.sameName(name, "transfer-encoding") {
                    if !sawTransferEncoding { chunked = HeaderRules.sameName(value, "chunked") }
                    sawTransferEncoding = true
                }
            }
        }
    }

    /// Writes `HTTP/x.y code reason`, the fields and the blank line; false (nothing written) when a
    /// part may not be sent.
    static func write(_ head: HTTPResponseHead, measured: Measure, edit: FramingEdit, to buffer: inout ByteBuffer) -> Bool {
        let code = head.status.code
        guard (100...999).contains(code), let version = versionBytes(head.version) else { return false }
        let reason = head.status.reasonPhrase
        let startLength = 8 + 1 + 3 + 1 + reason.utf8.count + 2
        return write(headers: head.headers, measured: measured, edit: edit, startLength: startLength, to: &buffer) { out in
            out.copy(version)
            out.byte(UInt8(ascii: " "))
            out.byte(UInt8(ascii: "0") + UInt8(code / 100))
            out.byte(UInt8(ascii: "0") + UInt8(code / 10 % 10))
            out.byte(UInt8(ascii: "0") + UInt8(code % 10))
            out.byte(UInt8(ascii: " "))
            return out.copy(reason, allowed: ByteClass.fieldValue) && out.crlf()
        }
    }

    /// Writes `METHOD target HTTP/x.y`, the fields and the blank line; false (nothing written) when
    /// a part may not be sent.
    static func write(_ head: HTTPRequestHead, measured: Measure, edit: FramingEdit, to buffer: inout ByteBuffer) -> Bool {
        guard let version = versionBytes(head.version) else { return false }
        let method = head.method.rawValue
        let startLength = method.utf8.count + 1 + head.uri.utf8.count + 1 + 8 + 2
        return write(headers: head.headers, measured: measured, edit: edit, startLength: startLength, to: &buffer) { out in
            guard !method.isEmpty, out.copy(method, allowed: ByteClass.token), out.byte(UInt8(ascii: " ")),
                !head.uri.isEmpty, out.copy(head.uri, allowed: ByteClass.requestTarget), out.byte(UInt8(ascii: " "))
            else { return false }
            out.copy(version)
            return out.crlf()
        }
    }

    /// Writes trailer fields and the blank line that ends a chunked body (after its `0` chunk).
    static func write(trailers: HTTPHeaders, to buffer: inout ByteBuffer) -> Bool {
        write(headers: trailers, measured: Measure(trailers), edit: FramingEdit(), startLength: 0, to: &buffer) { _ in true }
    }

    private static func versionBytes(_ version: HTTPVersion) -> StaticString? {
        switch (version.major, version.minor) {
        case (1, 1): "HTTP/1.1"
        case (1, 0): "HTTP/1.0"
        default: nil
        }
    }

    private static func write(
        headers: HTTPHeaders, measured: Measure, edit: FramingEdit, startLength: Int, to buffer: inout ByteBuffer,
        startLine: (inout Output) -> Bool
    ) -> Bool {
        var length = startLength + measured.fieldBytes + 2
        if edit.addChunked { length += chunkedField.utf8CodeUnitCount }
        var valid = false
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { raw in
            var out = Output(raw.baseAddress!.assumingMemoryBound(to: UInt8.self), limit: length)
            guard startLine(&out) else { return 0 }
            // Read once: a static's every read checks that it is initialised.
            let token = ByteClass.token
            let fieldValue = ByteClass.fieldValue
            for (name, value) in headers {
                if edit.dropsFields, skip(name, edit) { continue }
                guard out.copy(name, allowed: token), !name.isEmpty, out.byte(UInt8(ascii: ":")), out.byte(UInt8(ascii: " ")),
                    out.copy(value, allowed: fieldValue), out.crlf()
                else { return 0 }
            }
            if edit.addChunked { out.copy(chunkedField) }
            guard out.crlf() else { return 0 }
            valid = true
            return out.written
        }
        return valid
    }

    private static let chunkedField: StaticString = "transfer-encoding: chunked\r\n"

    private static func skip(_ name: String, _ edit: FramingEdit) -> Bool {
        switch name.utf8.count {
        case 14: edit.dropContentLength && HeaderRules.sameName(name, "content-length")
        case 17: (edit.dropTransferEncoding || edit.addChunked) && HeaderRules.sameName(name, "transfer-encoding")
        default: false
        }
    }

    /// A cursor over the buffer's reserved bytes; `limit` (the measured length) keeps a head
    /// written with another head's ``Measure`` from running past them.
    struct Output {
        private let base: UnsafeMutablePointer<UInt8>
        private let limit: Int
        private(set) var written = 0

        init(_ base: UnsafeMutablePointer<UInt8>, limit: Int) {
            self.base = base
            self.limit = limit
        }

        @discardableResult
        mutating func byte(_ byte: UInt8) -> Bool {
            guard written < limit else { return false }
            base[written] = byte
            written += 1
            return true
        }

        mutating func crlf() -> Bool {
            byte(UInt8(ascii: "\r")) && byte(UInt8(ascii: "\n"))
        }

        mutating func copy(_ string: StaticString) {
            let count = string.utf8CodeUnitCount
            precondition(written + count <= limit)
            (base + written).update(from: string.utf8Start, count: count)
            written += count
        }

        /// Copies the string's UTF-8 if every byte is in `allowed`.
        mutating func copy(_ string: String, allowed: ByteClass) -> Bool {
            // Not `withUTF8`, which is mutating: the copy of the string it needs costs a retain and a release.
            string.withUTF8Buffer { bytes in
                guard written + bytes.count <= limit, allowed.admits(all: bytes) else { return false }
                if let source = bytes.baseAddress { (base + written).update(from: source, count: bytes.count) }
                written += bytes.count
                return true
            }
        }
    }
}
