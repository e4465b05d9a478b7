import NIOCore
import NIOPosix

/// Small writes gathered into one buffer until the next flush or a full record.
///
/// Behind TLS every write becomes a record of its own (swift-nio-ssl calls `SSL_write` once a
/// write): an HTTP/1 response was two records (head, body; a chunk three), an HTTP/2 response
/// three (HEADERS, a DATA frame's header, its payload), each ≈ 3,000 instructions of record
/// work besides the bytes' encryption, and each write a trip down NIO's pipeline. nginx gathers
/// the same way into its 16 KiB `ssl_buffer_size`. Bytes are copied only up to ``copyLimit`` a
/// write; a larger write goes on as it is, after what was gathered. The copies go into a buffer
/// the thread lends (``GatherBuffers``): a fresh 16 KiB buffer a response cost a page fault each.
struct WriteGather {
    /// A TLS record's largest plaintext.
    static let bufferSize = 16 * 1024
    static let copyLimit = 8 * 1024

    private var pending: ByteBuffer?
    /// Whether `pending` is a buffer of our own, or the first write's, held without a copy.
    private var owned = false
    private var promise: EventLoopPromise<Void>?
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
        guard var gathered = pending.take() else {
            guard copiesFirstWrite else {
                (pending, owned, self.promise) = (bytes, false, promise)
                return
            }
            var own = GatherBuffers.ofThisThread.take(allocator: context.channel.allocator)
            own.writeImmutableBuffer(bytes)
            (pending, owned, self.promise) = (own, true, promise)
            return
        }
        if gathered.readableBytes + bytes.readableBytes > Self.bufferSize {
            // A full record leaves at once, as nginx's full `ssl_buffer_size` does: flushed,
            // the buffer is free to take again rather than a new one made.
            pending = gathered
            release(context: context)
            context.flush()
            (pending, owned, self.promise) = (bytes, false, promise)
            return
        }
        if !owned {
            var own = GatherBuffers.ofThisThread.take(allocator: context.channel.allocator)
            own.writeImmutableBuffer(gathered)
            (gathered, owned) = (own, true)
        }
        gathered.writeImmutableBuffer(bytes)
        pending = gathered
        self.promise = EventLoopPromise.joined(self.promise, promise)
    }

    /// What was gathered goes down the pipeline; call before flushing.
    mutating func release(context: ChannelHandlerContext) {
        guard let gathered = pending.take() else { return }
        context.write(NIOAny(IOData.byteBuffer(gathered)), promise: promise.take())
        if owned { GatherBuffers.ofThisThread.giveBack(gathered) }
    }

    /// The channel is gone: what was gathered is dropped and its writes fail.
    mutating func discard() {
        pending = nil
        promise.take()?.fail(ChannelError.ioOnClosedChannel)
    }
}

/// The gather buffer of one thread (an event loop is one), lent to one ``WriteGather`` at a time.
///
/// Given back as it goes down the pipeline at a flush, where TLS encrypts it before the flush
/// returns: the next channel to take it is then its only holder, and `clear()` keeps its memory.
/// A buffer still held below (a handshake not finished) is replaced by a new one on `clear()`.
final class GatherBuffers {
    // Each thread reaches its own value only; the variable itself is thread-safe.
    private nonisolated(unsafe) static let perThread = ThreadSpecificVariable<GatherBuffers>()

    static var ofThisThread: GatherBuffers {
        if let buffers = perThread.currentValue { return buffers }
        let buffers = GatherBuffers()
        perThread.currentValue = buffers
        return buffers
    }

    private var spare: ByteBuffer?

    /// The spare buffer, emptied; lent out already, a new one of a record's size.
    func take(allocator: ByteBufferAllocator) -> ByteBuffer {
        guard var buffer = spare.take() else { return allocator.buffer(capacity: WriteGather.bufferSize) }
        buffer.clear()
        return buffer
    }

    func giveBack(_ buffer: ByteBuffer) {
        if spare == nil { spare = buffer }
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
