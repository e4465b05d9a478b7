import NIOCore
import NIOPosix

/// Small writes gathered into one buffer until the next flush.
///
/// Behind TLS every write becomes a record of its own (swift-nio-ssl calls `SSL_write` once a
/// write): an HTTP/1 response was two records (head, body; a chunk three), an HTTP/2 response
/// three (HEADERS, a DATA frame's header, its payload), each ≈ 3,000 instructions of record
/// work besides the bytes' encryption, and each write a trip down NIO's pipeline. nginx gathers
/// the same way into its 16 KiB `ssl_buffer_size`. Bytes are copied only up to ``copyLimit`` a
/// write; a larger write goes on as it is, after what was gathered. A full buffer goes down and
/// the gathering goes on in another; none is flushed before the channel's own flush, whose errors
/// close the channel and would reach the writer in the middle of its write.
///
/// The copies go into buffers the thread lends (``GatherBuffers``): a fresh 16 KiB buffer a
/// response cost a page fault each.
struct WriteGather {
    /// A TLS record's largest plaintext.
    static let bufferSize = 16 * 1024
    static let copyLimit = 8 * 1024

    private var pending: ByteBuffer?
    /// Whether `pending` is a lent buffer, or the first write's, held without a copy.
    private var owned = false
    private var promise: EventLoopPromise<Void>?
    /// Lent buffers that went down full since the last flush, given back with `pending`.
    private var full: [ByteBuffer] = []
    /// For a writer that reuses its buffer (nio-http2's frames): copied at once, the buffer is
    /// its own again by its next write instead of being replaced.
    private let copiesFirstWrite: Bool

    init(copiesFirstWrite: Bool = false) {
        self.copiesFirstWrite = copiesFirstWrite
    }

    mutating func write(_ data: IOData, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        guard case .byteBuffer(let bytes) = data, bytes.readableBytes <= Self.copyLimit else {
            release(context: context)
            return context.write(NIOAny(data), promise: promise)
        }
        if bytes.readableBytes == 0 {
            // An empty write only keeps a promise in order: it completes with what is gathered.
            guard pending != nil else { return context.write(NIOAny(data), promise: promise) }
            self.promise = EventLoopPromise.joined(self.promise, promise)
            return
        }
        guard var gathered = pending.take() else { return begin(bytes, promise: promise, context: context) }
        if gathered.readableBytes + bytes.readableBytes > Self.bufferSize {
            // Lent: two writes of at most `copyLimit` fit in a record, so one held uncopied never fills it.
            context.write(NIOAny(IOData.byteBuffer(gathered)), promise: self.promise.take())
            full.append(gathered)
            return begin(bytes, promise: promise, context: context)
        }
        if !owned { (gathered, owned) = (Self.lentCopy(of: gathered, context: context), true) }
        gathered.writeImmutableBuffer(bytes)
        pending = gathered
        self.promise = EventLoopPromise.joined(self.promise, promise)
    }

    private mutating func begin(_ bytes: ByteBuffer, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        guard copiesFirstWrite else {
            (pending, owned, self.promise) = (bytes, false, promise)
            return
        }
        (pending, owned, self.promise) = (Self.lentCopy(of: bytes, context: context), true, promise)
    }

    private static func lentCopy(of bytes: ByteBuffer, context: ChannelHandlerContext) -> ByteBuffer {
        var lent = GatherBuffers.ofThisThread.take(allocator: context.channel.allocator)
        lent.writeImmutableBuffer(bytes)
        return lent
    }

    /// What was gathered goes down the pipeline; call right before flushing.
    mutating func release(context: ChannelHandlerContext) {
        guard let gathered = pending.take() else { return }
        context.write(NIOAny(IOData.byteBuffer(gathered)), promise: promise.take())
        guard owned || !full.isEmpty else { return }
        let buffers = GatherBuffers.ofThisThread
        if owned { buffers.giveBack(gathered) }
        for buffer in full { buffers.giveBack(buffer) }
        full.removeAll()
    }

    /// The channel is gone: what was gathered is dropped and its writes fail.
    mutating func discard() {
        pending = nil
        full.removeAll()
        promise.take()?.fail(ChannelError.ioOnClosedChannel)
    }
}

/// The gather buffers of one thread (an event loop is one), each lent to one ``WriteGather``
/// at a time.
///
/// Given back as they go down the pipeline, right before the flush in which TLS encrypts them:
/// the next channel to take one is then its only holder, and `clear()` keeps its memory. A buffer
/// still held below (a handshake not finished, a large write after it not flushed yet) is
/// replaced by a new one on `clear()`.
final class GatherBuffers {
    // Each thread reaches its own value only; the variable itself is thread-safe.
    private nonisolated(unsafe) static let perThread = ThreadSpecificVariable<GatherBuffers>()
    /// Spares kept (256 KiB): an HTTP/2 tick holds one or more for each connection it answers
    /// on until its flush. More would be kept for good by a gateway that once served a burst
    /// (64 added 2 MiB to 10,000 idle connections' RSS); buffers a tick needs beyond these are
    /// made and freed again (perf stat, 5 s of h2load on 16 connections: 1,900 page faults,
    /// 600 without gathering).
    static let kept = 16

    static var ofThisThread: GatherBuffers {
        if let buffers = perThread.currentValue { return buffers }
        let buffers = GatherBuffers()
        perThread.currentValue = buffers
        return buffers
    }

    private var spares: [ByteBuffer] = []

    /// A spare buffer, emptied; none left, a new one of a record's size.
    func take(allocator: ByteBufferAllocator) -> ByteBuffer {
        guard var buffer = spares.popLast() else { return allocator.buffer(capacity: WriteGather.bufferSize) }
        buffer.clear()
        return buffer
    }

    func giveBack(_ buffer: ByteBuffer) {
        if spares.count < Self.kept { spares.append(buffer) }
    }
}

extension EventLoopPromise<Void> {
    /// One promise for a write that completes two parts: `second` completes with `first`.
    static func joined(_ first: EventLoopPromise<Void>?, _ second: EventLoopPromise<Void>?) -> EventLoopPromise<Void>? {
        guard let first else { return second }
        if let second { first.futureResult.cascade(to: second) }
        return first
    }
}
