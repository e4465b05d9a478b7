import ClickID
import NIOCore
import NIOHTTP1

/// HTTP/1.1 heads serialised straight into a buffer. A head's fields are already the lines
/// they are written as (``HeaderFields``), checked when they were parsed or added, so writing
/// them copies runs of lines; only the start line is checked here. The walk over the fields
/// also learns what they say about framing.
///
/// The start line gets the checks NIO's validators made: methods are tokens, reason phrases hold
/// no control byte but tab (a CR or LF would end the head early and let it smuggle fields or a
/// second message), and a request target holds no space or control byte. The other bytes RFC 9112
/// does not allow unencoded, which clients send anyway (`{{ad.name}}` left by an ad platform's
/// unfilled macro, raw UTF-8), go to the origin percent-encoded, as a browser would have sent them.
enum HeadWriter {
    /// Framing fields a head carries that its encoder must leave out or add.
    struct FramingEdit {
        var dropContentLength = false
        var dropTransferEncoding = false
        /// Writes `transfer-encoding: chunked` in place of any `Transfer-Encoding` the head has.
        var addChunked = false

        /// A chunked head carries only the encoder's own `transfer-encoding` field.
        var leavesOutTransferEncoding: Bool { dropTransferEncoding || addChunked }

        /// Whether a head with `framing` has a field this edit leaves out.
        func leavesOut(of framing: Framing) -> Bool {
            (dropContentLength && framing.hasContentLength) || (leavesOutTransferEncoding && framing.hasTransferEncoding)
        }
    }

    /// What a head's fields say about its body's framing, from which an encoder picks its
    /// ``FramingEdit``.
    struct Framing {
        fileprivate(set) var hasContentLength = false
        fileprivate(set) var hasTransferEncoding = false
        /// The first `Transfer-Encoding` is `chunked`.
        fileprivate(set) var chunked = false
    }

    /// A head written out as it is: what an encoder holds while it decides the framing.
    struct Draft {
        fileprivate var buffer: ByteBuffer
        let framing: Framing
    }

    /// The start line and every field of `head`, as they are; nil when a part may not be sent.
    static func draft(_ head: some SerializableHead, allocator: ByteBufferAllocator) -> Draft? {
        draft(head, edit: FramingEdit(), allocator: allocator)
    }

    /// The head with `edit` applied. The draft's bytes are kept unless the edit leaves a field
    /// out (then the head is written again without it: rare, a 304 with a length, a length beside
    /// a `Transfer-Encoding`); a `chunked` the encoder adds goes in before the blank line.
    static func finish(_ draft: consuming Draft, of head: some SerializableHead, edit: FramingEdit, allocator: ByteBufferAllocator) -> ByteBuffer? {
        if edit.leavesOut(of: draft.framing) {
            guard let again = Self.draft(head, edit: edit, allocator: allocator) else { return nil }
            draft = again
        }
        if edit.addChunked {
            draft.buffer.moveWriterIndex(to: draft.buffer.writerIndex - 2)
            draft.buffer.writeStaticString("transfer-encoding: chunked\r\n\r\n")
        }
        return draft.buffer
    }

    /// Writes trailer fields and the blank line that ends a chunked body (after its `0` chunk).
    static func write(trailers: HTTPHeaders, to buffer: inout ByteBuffer) -> Bool {
        write(HeaderFields(trailers), edit: FramingEdit(), to: &buffer) != nil
    }

    private static func draft(_ head: some SerializableHead, edit: FramingEdit, allocator: ByteBufferAllocator) -> Draft? {
        let startLineLength = head.startLineLength
        // The fields' bytes may include removed ones: at most a little more than needed.
        var buffer = allocator.buffer(capacity: startLineLength + head.headers.bytes.count + 2)
        var valid = false
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: startLineLength) { raw in
            var out = Output(raw.baseAddress!.assumingMemoryBound(to: UInt8.self), limit: raw.count)
            valid = head.writeStartLine(&out)
            return valid ? out.written : 0
        }
        guard valid, let framing = write(head.headers, edit: edit, to: &buffer) else { return nil }
        return Draft(buffer: buffer, framing: framing)
    }

    /// Writes the fields `edit` keeps and the blank line: consecutive lines in one copy. Nil,
    /// with nothing written, when the block holds a field that may not be sent.
    private static func write(_ headers: HeaderFields, edit: FramingEdit, to buffer: inout ByteBuffer) -> Framing? {
        guard headers.isWritable else { return nil }
        var framing = Framing()
        headers.withLines { bytes, lines in
            var run = 0..<0
            for line in lines {
                let nameLength = line.nameEnd - line.start
                if nameLength == 14 || nameLength == 17 {
                    let name = HeaderFields.name(of: line, in: bytes)
                    if name.matches("content-length") {
                        framing.hasContentLength = true
                        if edit.dropContentLength {
                            copy(&run, from: bytes, to: &buffer)
                            continue
                        }
                    } else if name.matches("transfer-encoding") {
                        if !framing.hasTransferEncoding { framing.chunked = HeaderFields.value(of: line, in: bytes).matches("chunked") }
                        framing.hasTransferEncoding = true
                        if edit.leavesOutTransferEncoding {
                            copy(&run, from: bytes, to: &buffer)
                            continue
                        }
                    }
                }
                let range = line.range
                if range.lowerBound == run.upperBound, !run.isEmpty {
                    run = run.lowerBound..<range.upperBound
                } else {
                    copy(&run, from: bytes, to: &buffer)
                    run = range
                }
            }
            copy(&run, from: bytes, to: &buffer)
        }
        buffer.writeInteger(UInt16(0x0D0A))
        return framing
    }

    /// Writes the lines in `run`, if any, and empties it.
    private static func copy(_ run: inout Range<Int>, from bytes: UnsafeBufferPointer<UInt8>, to buffer: inout ByteBuffer) {
        guard !run.isEmpty else { return }
        buffer.writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[run])))
        run = 0..<0
    }

    /// A cursor over the bytes reserved for a start line; a copy that would run past them fails.
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

        @discardableResult
        mutating func copy(_ string: StaticString) -> Bool {
            let count = string.utf8CodeUnitCount
            guard written + count <= limit else { return false }
            (base + written).update(from: string.utf8Start, count: count)
            written += count
            return true
        }

        /// Copies a request target, percent-encoding the visible bytes RFC 9112 does not allow as
        /// they are; false for a space or control byte.
        mutating func copyTarget(_ target: String) -> Bool {
            if copy(target, allowed: ByteClass.requestTarget) { return true }
            return target.withUTF8Buffer { bytes in
                guard ByteClass.visible.admits(all: bytes) else { return false }
                let hex: StaticString = "0123456789ABCDEF"
                for byte in bytes {
                    if ByteClass.requestTarget.admits(byte) {
                        guard self.byte(byte) else { return false }
                    } else {
                        guard self.byte(UInt8(ascii: "%")), self.byte(hex.utf8Start[Int(byte >> 4)]), self.byte(hex.utf8Start[Int(byte & 0x0F)])
                        else { return false }
                    }
                }
                return true
            }
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

/// A head ``HeadWriter`` writes: its start line and its fields.
protocol SerializableHead {
    var headers: HeaderFields { get }
    /// The start line's length with its CRLF, at most.
    var startLineLength: Int { get }
    /// `HTTP/x.y code reason` or `METHOD target HTTP/x.y`, and CRLF; false when a part may not be sent.
    func writeStartLine(_ out: inout HeadWriter.Output) -> Bool
}

extension ResponseHead: SerializableHead {
    var startLineLength: Int { 8 + 1 + 3 + 1 + status.reasonPhrase.utf8.count + 2 }

    func writeStartLine(_ out: inout HeadWriter.Output) -> Bool {
        let code = status.code
        guard (100...999).contains(code), let version = version.startLineBytes else { return false }
        return out.copy(version) && out.byte(UInt8(ascii: " ")) && out.byte(UInt8(ascii: "0") + UInt8(code / 100))
            && out.byte(UInt8(ascii: "0") + UInt8(code / 10 % 10)) && out.byte(UInt8(ascii: "0") + UInt8(code % 10))
            && out.byte(UInt8(ascii: " ")) && out.copy(status.reasonPhrase, allowed: ByteClass.fieldValue) && out.crlf()
    }
}

extension RequestHead: SerializableHead {
    var startLineLength: Int {
        let target = uri.withUTF8Buffer { bytes in
            ByteClass.requestTarget.admits(all: bytes) ? bytes.count : bytes.count + 2 * bytes.count { !ByteClass.requestTarget.admits($0) }
        }
        return method.rawValue.utf8.count + 1 + target + 1 + 8 + 2
    }

    func writeStartLine(_ out: inout HeadWriter.Output) -> Bool {
        let method = method.rawValue
        guard let version = version.startLineBytes, !method.isEmpty, !uri.isEmpty else { return false }
        return out.copy(method, allowed: ByteClass.token) && out.byte(UInt8(ascii: " ")) && out.copyTarget(uri)
            && out.byte(UInt8(ascii: " ")) && out.copy(version) && out.crlf()
    }
}

extension HTTPVersion {
    fileprivate var startLineBytes: StaticString? {
        switch (major, minor) {
        case (1, 1): "HTTP/1.1"
        case (1, 0): "HTTP/1.0"
        default: nil
        }
    }
}
