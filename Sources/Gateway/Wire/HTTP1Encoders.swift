import NIOCore
import NIOHTTP1

/// Serialises the responses of an HTTP/1 connection with ``HeadWriter``, framing bodies the way
/// NIO's `HTTPResponseEncoder` does: `Content-Length` when the head has one, otherwise chunked on
/// HTTP/1.1 (close-delimited on 1.0), no body at all for 1xx/204/304 and for answers to HEAD
/// (``HTTP1Connection`` reports each request's method as its head arrives; CONNECT is refused
/// before it is a request).
///
/// Not a channel handler of its own: ``HTTP1Connection`` writes through it, one pipeline hop fewer
/// on every response part. A class, so a write that calls back into the connection (a failed
/// promise) never overlaps an access to it.
final class ResponseEncoder {
    /// Which requests, by their number on the connection, are HEADs whose answers have not
    /// started: usually none, and an empty array costs no allocation per connection.
    private var unansweredHeads: [Int] = []
    private var requestsArrived = 0
    private var answersStarted = 0
    private var body = BodyFraming()
    /// The answer in progress may carry no body (it answers a HEAD).
    private var bodyless = false
    private var refusal = Refusal()
    /// Behind TLS only: in plaintext a write saved is not worth the copy (callgrind: +830
    /// instructions a plaintext request gathered, −3,400 a TLS one).
    private var gather: WriteGather?

    init(gathering: Bool = false) {
        gather = gathering ? WriteGather() : nil
    }

    func requestArrived(_ method: HTTPMethod) {
        if method == .HEAD { unansweredHeads.append(requestsArrived) }
        requestsArrived += 1
    }

    func write(_ part: ResponsePart, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        guard !refusal.rejects(promise) else { return }
        switch part {
        case .head(let head):
            let code = head.status.code
            if !((100..<200).contains(code) && code != 101) {
                bodyless = unansweredHeads.first == answersStarted
                if bodyless { unansweredHeads.removeFirst() }
                answersStarted += 1
            }
            let allocator = context.channel.allocator
            guard let draft = HeadWriter.draft(head, allocator: allocator) else { return refusal.refuse(context, promise) }
            var edit = HeadWriter.FramingEdit()
            if !head.status.mayHaveResponseBody {
                edit.dropContentLength = true
                edit.dropTransferEncoding = true
            } else if draft.framing.hasContentLength {
                edit.dropTransferEncoding = true
            } else if head.version.minor >= 1 {
                edit.addChunked = true
            }
            // A HEAD answer still says `chunked` (what a GET would get) but sends no chunks.
            body = BodyFraming(chunked: edit.addChunked && !bodyless)
            guard let buffer = HeadWriter.finish(draft, of: head, edit: edit, allocator: allocator) else { return refusal.refuse(context, promise) }
            output(.byteBuffer(buffer), promise, context)
        case .body(let part):
            if bodyless {
                promise?.fail(NIOHTTPResponseEncoderError.responseBodyNotAllowed)
            } else {
                body.write(part, context: context, promise: promise) { output($0, $1, context) }
            }
        case .end(let trailers):
            bodyless = false
            let ended = body.end(trailers, context: context, promise: promise) { output($0, $1, context) }
            guard ended else { return refusal.refuse(context, promise) }
        }
    }

    private func output(_ data: IOData, _ promise: EventLoopPromise<Void>?, _ context: ChannelHandlerContext) {
        guard gather != nil else { return context.write(NIOAny(data), promise: promise) }
        gather!.write(data, promise: promise, context: context)
    }

    /// Call before flushing the channel: what was gathered goes first, a record to a flush.
    func flush(context: ChannelHandlerContext) {
        guard let flush = gather?.takeForFlush() else { return }
        WriteGather.writeOut(flush, context: context)
    }

    /// The connection's handler is gone.
    func discard() {
        gather?.discard()
    }
}

/// Serialises the requests written to an upstream connection with ``HeadWriter``. A request
/// with `Content-Length` keeps it; a chunked one stays chunked; POST, PUT and PATCH without
/// either are sent chunked. Any other request without framing fields is held back until its
/// first body part, its end or the next flush shows whether a body follows: a GET with a body
/// (an HTTP/2 client need not send a length) goes out chunked. A body part for a request
/// already sent without framing is refused: as bare bytes the origin would read it as the next
/// request.
///
/// Like ``ResponseEncoder``, written through by the connection that owns it (``UpstreamConnection``).
final class UpstreamRequestEncoder {
    private var body = BodyFraming()
    /// A head waiting to learn whether a body follows.
    private var held: (head: RequestHead, draft: HeadWriter.Draft, promise: EventLoopPromise<Void>?)?
    /// The request in progress went out without framing: it can carry no body.
    private var unframed = false
    private var refusal = Refusal()

    func write(_ part: UpstreamRequestPart, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        guard !refusal.rejects(promise) else { return }
        switch part {
        case .head(let head):
            guard let draft = HeadWriter.draft(head, allocator: context.channel.allocator) else { return refusal.refuse(context, promise) }
            var edit = HeadWriter.FramingEdit()
            switch head.method {
            case .TRACE:
                edit.dropContentLength = true
                edit.dropTransferEncoding = true
            case _ where draft.framing.hasContentLength:
                edit.dropTransferEncoding = true
            case .POST, .PUT, .PATCH:
                edit.addChunked = true
            case _ where draft.framing.chunked:
                edit.addChunked = true
            default:
                held = (head, draft, promise)
                return
            }
            writeHead(head, draft: draft, edit: edit, context: context, promise: promise)
        case .body(let part):
            if part.readableBytes > 0 {
                if unframed { return refusal.refuse(context, promise) }
                guard releaseHeld(chunked: true, context: context) else {
                    promise?.fail(InvalidHeadError())
                    return
                }
            }
            body.write(part, context: context, promise: promise) { context.write(NIOAny($0), promise: $1) }
        case .end(let trailers):
            guard releaseHeld(chunked: false, context: context) else {
                promise?.fail(InvalidHeadError())
                return
            }
            unframed = false
            let ended = body.end(trailers, context: context, promise: promise) { context.write(NIOAny($0), promise: $1) }
            guard ended else { return refusal.refuse(context, promise) }
        }
    }

    /// Call before flushing the channel: a head still held goes out without framing.
    func flush(context: ChannelHandlerContext) {
        if !refusal.refused { releaseHeld(chunked: false, context: context) }
    }

    /// Writes the held head, if any, chunked or without framing; false when it may not be sent.
    @discardableResult
    private func releaseHeld(chunked: Bool, context: ChannelHandlerContext) -> Bool {
        guard let held = held.take() else { return true }
        unframed = !chunked
        var edit = HeadWriter.FramingEdit()
        edit.addChunked = chunked
        return writeHead(held.head, draft: held.draft, edit: edit, context: context, promise: held.promise)
    }

    @discardableResult
    private func writeHead(
        _ head: RequestHead, draft: consuming HeadWriter.Draft, edit: HeadWriter.FramingEdit, context: ChannelHandlerContext,
        promise: EventLoopPromise<Void>?
    ) -> Bool {
        // A chunked head always carries the encoder's own `transfer-encoding: chunked` (see `FramingEdit`).
        body = BodyFraming(chunked: edit.addChunked)
        guard let buffer = HeadWriter.finish(draft, of: head, edit: edit, allocator: context.channel.allocator) else {
            refusal.refuse(context, promise)
            return false
        }
        context.write(NIOAny(IOData.byteBuffer(buffer)), promise: promise)
        return true
    }
}

/// An encoder's state after a head or trailers failed their checks: that write and every later
/// one fail.
struct Refusal {
    private(set) var refused = false

    /// True (and `promise` failed) once refused.
    func rejects(_ promise: EventLoopPromise<Void>?) -> Bool {
        if refused { promise?.fail(InvalidHeadError()) }
        return refused
    }

    /// The error goes through the whole pipeline, from its head: the connection's handler that
    /// owns the encoder (whose context this is) closes the connection there.
    mutating func refuse(_ context: ChannelHandlerContext, _ promise: EventLoopPromise<Void>?) {
        refuse(promise)
        context.pipeline.syncOperations.fireErrorCaught(InvalidHeadError())
    }

    /// Refuses without telling the pipeline: an HTTP/2 stream tells its proxy.
    mutating func refuse(_ promise: EventLoopPromise<Void>?) {
        refused = true
        promise?.fail(InvalidHeadError())
    }
}

/// A head or trailer field that may not be sent (a control byte in a value, a name that is not a
/// token, a request target with bytes that must be percent-encoded).
struct InvalidHeadError: Error, CustomStringConvertible {
    var description: String { "a head field or request target may not be sent as it is" }
}

/// The body half of an encoder: chunk framing when the head chose it, the bytes as they are otherwise.
struct BodyFraming {
    let chunked: Bool

    init(chunked: Bool = false) {
        self.chunked = chunked
    }

    /// Where the framed bytes go: the channel, or a ``WriteGather`` in front of it.
    typealias Output = (_ data: IOData, _ promise: EventLoopPromise<Void>?) -> Void

    /// `context` lends its allocator to the chunk framing; the bytes go to `output`.
    func write(_ part: IOData, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?, to output: Output) {
        // An empty chunk would end the body early; its write still goes down to keep promises in order.
        guard chunked, part.readableBytes > 0 else { return output(part, promise) }
        var size = context.channel.allocator.buffer(capacity: 20)
        size.writeString(String(part.readableBytes, radix: 16))
        size.writeStaticString("\r\n")
        output(.byteBuffer(size), nil)
        output(part, nil)
        // Writes complete in order, so the last one's promise stands for all three.
        output(.byteBuffer(ByteBuffer(string: "\r\n")), promise)
    }

    /// False when the trailers may not be sent.
    func end(_ trailers: HTTPHeaders?, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?, to output: Output) -> Bool {
        guard chunked else {
            // Nothing to write, but the promise must not complete ahead of earlier writes.
            if let promise { output(.byteBuffer(ByteBuffer()), promise) }
            return true
        }
        var buffer = context.channel.allocator.buffer(capacity: 5)
        buffer.writeStaticString("0\r\n")
        if let trailers {
            guard HeadWriter.write(trailers: trailers, to: &buffer) else { return false }
        } else {
            buffer.writeStaticString("\r\n")
        }
        output(.byteBuffer(buffer), promise)
        return true
    }
}
