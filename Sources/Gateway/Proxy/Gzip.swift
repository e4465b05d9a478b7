import CZlib
import NIOCore
import NIOHTTP1

/// Why a gzip body could not be read or written. The response it belonged to is cut off: a client
/// must not take a damaged page for a whole one.
enum GzipError: Error, CustomStringConvertible {
    case corrupt(String)
    case truncated
    case expansion(limit: Int)
    case zlib(code: Int32)

    var description: String {
        switch self {
        case .corrupt(let message): "gzip body is corrupt: \(message)"
        case .truncated: "gzip body ended before its trailer"
        case .expansion(let limit): "gzip body inflates beyond \(limit) bytes per chunk"
        case .zlib(let code): "zlib error \(code)"
        }
    }
}

/// What a client's `Accept-Encoding` allows (RFC 9110 §12.5.3): gzip unless it says `gzip;q=0`,
/// or names neither gzip nor a `*` with a non-zero weight.
func acceptsGzip(_ headers: HeaderFields) -> Bool {
    var star = false
    for element in headers[canonicalForm: "accept-encoding"] {
        let parts = element.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        let refused = parts.dropFirst().contains { $0.hasPrefix("q=") && Double($0.dropFirst(2)) == 0 }
        switch parts.first {
        case "gzip", "x-gzip": return !refused
        case "*": star = !refused
        default: continue
        }
    }
    return star
}

/// One zlib stream. A class: zlib keeps pointers into its `z_stream`, so the struct must not move.
private class ZlibStream {
    let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)

    init() { stream.initialize(to: z_stream()) }

    deinit {
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Runs one zlib call with `input` as its input and up to `capacity` bytes of `output` free.
    /// Returns zlib's code and how much of the input it took.
    func run(
        _ input: UnsafeRawBufferPointer, into output: inout ByteBuffer, capacity: Int, _ call: (UnsafeMutablePointer<z_stream>) -> Int32
    ) -> (code: Int32, consumed: Int) {
        var code: Int32 = Z_OK
        var consumed = 0
        output.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { free in
            let next = input.baseAddress.map { UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: Bytef.self)) }
            stream.pointee.next_in = next
            stream.pointee.avail_in = UInt32(input.count)
            stream.pointee.next_out = free.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_out = UInt32(min(free.count, capacity))
            code = call(stream)
            consumed = input.count - Int(stream.pointee.avail_in)
            let written = min(free.count, capacity) - Int(stream.pointee.avail_out)
            stream.pointee.next_in = nil
            stream.pointee.next_out = nil
            return written
        }
        return (code, consumed)
    }

    var message: String { stream.pointee.msg.map { String(cString: $0) } ?? "no detail" }
}

/// Reads a gzip stream piece by piece; concatenated gzip members (RFC 1952 §2.2) are read as one.
private final class GzipInflater: ZlibStream {
    /// Whether the last member read so far ended with its trailer.
    private(set) var atMemberEnd = false

    override init() {
        super.init()
        precondition(clickgate_inflate_init_gzip(stream) == Z_OK, "zlib could not start an inflate stream")
    }

    deinit { inflateEnd(stream) }

    /// Inflates all of `input`, handing the plain bytes to `body` in pieces of at most `piece` bytes.
    func inflate(_ input: ByteBuffer, piece: Int, _ body: (ByteBuffer) throws -> Void) throws {
        try input.withUnsafeReadableBytes { bytes in
            var rest = bytes
            while true {
                if atMemberEnd {
                    if rest.isEmpty { return }
                    inflateReset(stream)
                    atMemberEnd = false
                }
                var plain = ByteBuffer()
                let (code, consumed) = run(rest, into: &plain, capacity: piece) { CZlib.inflate($0, Z_NO_FLUSH) }
                rest = UnsafeRawBufferPointer(rebasing: rest[consumed...])
                if plain.readableBytes > 0 { try body(plain) }
                switch code {
                case Z_STREAM_END:
                    atMemberEnd = true
                case Z_OK, Z_BUF_ERROR:
                    // Room left in the output means zlib holds nothing back: with the input taken, done.
                    if rest.isEmpty, stream.pointee.avail_out > 0 { return }
                    if consumed == 0, plain.readableBytes == 0 { throw GzipError.zlib(code: code) }
                case Z_DATA_ERROR, Z_NEED_DICT:
                    throw GzipError.corrupt(message)
                default:
                    throw GzipError.zlib(code: code)
                }
            }
        }
    }
}

/// Writes a gzip stream.
private final class GzipDeflater: ZlibStream {
    init(level: Int32) {
        super.init()
        precondition(clickgate_deflate_init_gzip(stream, level) == Z_OK, "zlib could not start a deflate stream")
    }

    deinit { deflateEnd(stream) }

    /// Deflates `input` into `output`. `Z_SYNC_FLUSH` leaves everything so far readable by the client;
    /// `Z_FINISH` writes the trailer.
    func deflate(_ input: ByteBuffer, flush: Int32, into output: inout ByteBuffer) throws {
        try input.withUnsafeReadableBytes { bytes in
            var rest = bytes
            while true {
                let (code, consumed) = run(rest, into: &output, capacity: 16 * 1024) { CZlib.deflate($0, flush) }
                rest = UnsafeRawBufferPointer(rebasing: rest[consumed...])
                switch code {
                case Z_STREAM_END:
                    return
                case Z_OK where flush != Z_FINISH && rest.isEmpty && stream.pointee.avail_out > 0:
                    return
                case Z_OK:
                    continue
                case Z_BUF_ERROR where flush != Z_FINISH && rest.isEmpty:
                    return  // nothing new to write: zlib's way of saying a repeated flush had no work
                default:
                    throw GzipError.zlib(code: code)
                }
            }
        }
    }
}

/// Runs a transform that works on plain bytes over a gzip body: inflates what the origin sent and,
/// for clients that accept gzip, deflates the result again; otherwise the client gets it plain.
///
/// Memory stays bounded: the body is inflated in pieces of 64 KiB, each rewritten and deflated before
/// the next. A client that takes it plain gets at most `maxPlainPerChunk` bytes for one origin chunk.
final class GzipRecoding: ResponseBodyTransform {
    static let piece = 64 * 1024
    static let maxPlainPerChunk = 32 << 20
    /// nginx's `gzip_comp_level` default: the re-compression should cost little next to the rewrite.
    static let level: Int32 = 1

    private let inner: any ResponseBodyTransform
    private let inflater = GzipInflater()
    private let deflater: GzipDeflater?

    init(_ inner: any ResponseBodyTransform, gzipToClient: Bool) {
        self.inner = inner
        deflater = gzipToClient ? GzipDeflater(level: Self.level) : nil
    }

    func transform(_ chunk: ByteBuffer) throws -> ByteBuffer {
        var out = ByteBuffer()
        var plainBytes = 0
        try inflater.inflate(chunk, piece: Self.piece) { plain in
            let rewritten = try inner.transform(plain)
            if let deflater {
                try deflater.deflate(rewritten, flush: Z_NO_FLUSH, into: &out)
            } else {
                plainBytes += rewritten.readableBytes
                if plainBytes > Self.maxPlainPerChunk { throw GzipError.expansion(limit: Self.maxPlainPerChunk) }
                out.writeImmutableBuffer(rewritten)
            }
        }
        if let deflater { try deflater.deflate(ByteBuffer(), flush: Z_SYNC_FLUSH, into: &out) }
        return out
    }

    func finish() throws -> ByteBuffer {
        guard inflater.atMemberEnd else { throw GzipError.truncated }
        let rest = try inner.finish()
        guard let deflater else { return rest }
        var out = ByteBuffer()
        try deflater.deflate(rest, flush: Z_FINISH, into: &out)
        return out
    }
}

/// How an origin's response body is encoded, as far as the engine can rewrite it.
enum ResponseCoding {
    case identity
    case gzip

    /// Nil for codings the gateway does not read (br, zstd, deflate, stacked codings): those bodies pass untouched.
    init?(_ headers: HeaderFields) {
        switch headers[canonicalForm: "content-encoding"].map({ $0.lowercased() }) {
        case [], ["identity"]: self = .identity
        case ["gzip"], ["x-gzip"]: self = .gzip
        default: return nil
        }
    }

    /// Fits a transform of plain bytes to this body and the head to what the client will get: no
    /// Content-Length (the length changes), no Accept-Ranges (ranges of the origin's bytes no longer
    /// apply), a weak ETag (same meaning, other bytes), `Vary: Accept-Encoding` (the coding follows
    /// the request's) and, for gzip, the coding the client accepts.
    func fit(_ transform: any ResponseBodyTransform, head: inout ResponseHead, request: RequestHead) -> any ResponseBodyTransform {
        head.headers.remove(name: "content-length")
        head.headers.remove(name: "accept-ranges")
        if let etag = head.headers.first(name: "etag"), !etag.hasPrefix("W/") {
            head.headers.replaceOrAdd(name: "etag", value: "W/" + etag)
        }
        let varies = head.headers[canonicalForm: "vary"].map { $0.lowercased() }
        if !varies.contains("accept-encoding"), !varies.contains("*") { head.headers.add(name: "vary", value: "Accept-Encoding") }
        guard case .gzip = self else { return transform }
        let gzipToClient = acceptsGzip(request.headers)
        if !gzipToClient { head.headers.remove(name: "content-encoding") }
        return GzipRecoding(transform, gzipToClient: gzipToClient)
    }
}
