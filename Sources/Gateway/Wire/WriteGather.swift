import NIOCore
import NIOPosix

/// Small writes gathered into one buffer until the next flush, and no flush that hands TLS more
/// than its outbound buffer holds.
///
/// Behind TLS every write becomes a record of its own (swift-nio-ssl calls `SSL_write` once a
/// write): an HTTP/1 response was two records (head, body; a chunk three), an HTTP/2 response
/// three (HEADERS, a DATA frame's header, its payload), each ≈ 3,000 instructions of record
/// work besides the bytes' encryption, and each write a trip down NIO's pipeline. nginx gathers
/// the same way into its 16 KiB `ssl_buffer_size`. Bytes are copied only up to ``copyLimit`` a
/// write; a larger write is held as it is, after what was gathered.
///
/// Everything is held until the owner's flush, then written out at most ``flushBudget`` bytes of
/// ciphertext to a flush (``writeOut(_:context:)``): swift-nio-ssl encrypts all that one flush
/// brings into a buffer it keeps for the connection's life at the largest size it ever grew to,
/// so one flush of a 350 KB page left an idle connection holding 285 KiB. Flushing happens only
/// there, never from a write: a flush's write error closes the channel, and from inside a write
/// that would reach the writer in the middle of it.
///
/// The copies go into buffers the thread lends (``GatherBuffers``): a fresh 16 KiB buffer a
/// response cost a page fault each.
struct WriteGather {
    /// The ciphertext one flush may bring: swift-nio-ssl's outbound buffer starts at 16 KiB, and
    /// a single byte more would double it for good. 1 KiB of it stays free for what BoringSSL
    /// adds of its own: after a TLS 1.3 handshake the first write carries the session tickets
    /// too (two, ≈ 500 bytes), and without that room every connection's buffer doubled at its
    /// first large response (heaptrack).
    static let flushBudget = 15 * 1024
    /// What a record adds to its plaintext at most with the gateway's AEAD suites (TLS 1.2
    /// AES-GCM: 29 bytes; TLS 1.3: 22). Each write is a record.
    static let recordOverhead = 32
    /// A gathered buffer is a whole flush's worth: one record.
    static let bufferSize = flushBudget - recordOverhead
    static let copyLimit = 8 * 1024

    /// A write held for the flush.
    struct Held {
        var data: IOData
        var promise: EventLoopPromise<Void>?
        /// A buffer the thread lent, given back once written out.
        var lent: Bool
    }

    /// What one flush writes out, in order: `earlier`, then `last`.
    struct Flush {
        var earlier: [Held]
        var last: Held?
    }

    private var pending: ByteBuffer?
    /// Whether `pending` is a lent buffer, or the first write's, held without a copy.
    private var owned = false
    private var promise: EventLoopPromise<Void>?
    /// Held before `pending`: full lent buffers and large writes.
    private var held: [Held] = []
    /// For a writer that reuses its buffer (nio-http2's frames): copied at once, the buffer is
    /// its own again by its next write instead of being replaced.
    private let copiesFirstWrite: Bool

    init(copiesFirstWrite: Bool = false) {
        self.copiesFirstWrite = copiesFirstWrite
    }

    mutating func write(_ data: IOData, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        guard case .byteBuffer(let bytes) = data, bytes.readableBytes <= Self.copyLimit else {
            holdPending()
            held.append(Held(data: data, promise: promise, lent: false))
            return
        }
        if bytes.readableBytes == 0 {
            // An empty write only keeps a promise in order: it completes with what is held.
            if pending != nil {
                self.promise = EventLoopPromise.joined(self.promise, promise)
            } else if !held.isEmpty {
                held[held.count - 1].promise = EventLoopPromise.joined(held[held.count - 1].promise, promise)
            } else {
                context.write(NIOAny(data), promise: promise)
            }
            return
        }
        guard var gathered = pending.take() else { return begin(bytes, promise: promise, context: context) }
        if gathered.readableBytes + bytes.readableBytes > Self.bufferSize {
            held.append(Held(data: .byteBuffer(gathered), promise: self.promise.take(), lent: owned))
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

    private mutating func holdPending() {
        guard let gathered = pending.take() else { return }
        held.append(Held(data: .byteBuffer(gathered), promise: promise.take(), lent: owned))
    }

    private static func lentCopy(of bytes: ByteBuffer, context: ChannelHandlerContext) -> ByteBuffer {
        var lent = GatherBuffers.ofThisThread.take(allocator: context.channel.allocator)
        lent.writeImmutableBuffer(bytes)
        return lent
    }

    /// Everything held, for the owner's flush; the gather is empty after. The owner writes it
    /// out with ``writeOut(_:context:)`` outside any access to its own state, then flushes.
    mutating func takeForFlush() -> Flush {
        let last = pending.take().map { Held(data: .byteBuffer($0), promise: promise.take(), lent: owned) }
        guard !held.isEmpty else { return Flush(earlier: [], last: last) }
        defer { held = [] }
        return Flush(earlier: held, last: last)
    }

    /// Writes `flush` down the pipeline with a flush whenever the next write's ciphertext would
    /// pass ``flushBudget``; the owner's own flush follows for the rest. A write that crosses the
    /// budget goes in slices, its promise with the last.
    static func writeOut(_ flush: Flush, context: ChannelHandlerContext) {
        // Ciphertext brought since the last flush, each write's record overhead included.
        var unflushed = 0
        var lender: GatherBuffers?
        func writeOut(_ held: Held) {
            guard case .byteBuffer(var bytes) = held.data else {
                context.write(NIOAny(held.data), promise: held.promise)
                return
            }
            // Each flush filled to the budget: as few flushes (socket writes) as the bytes need.
            while bytes.readableBytes > flushBudget - recordOverhead - unflushed {
                let room = flushBudget - recordOverhead - unflushed
                if room > 0 { context.write(NIOAny(IOData.byteBuffer(bytes.readSlice(length: room)!)), promise: nil) }
                context.flush()
                unflushed = 0
            }
            unflushed += bytes.readableBytes + recordOverhead
            context.write(NIOAny(IOData.byteBuffer(bytes)), promise: held.promise)
            if held.lent {
                // Given back once down the pipeline: the next to take it from this thread is its
                // only holder after TLS encrypted it, or it is replaced on `clear()`.
                if lender == nil { lender = GatherBuffers.ofThisThread }
                lender!.giveBack(bytes)
            }
        }
        for held in flush.earlier { writeOut(held) }
        if let last = flush.last { writeOut(last) }
    }

    /// The channel is gone: what was held is dropped and its writes fail.
    mutating func discard() {
        let flush = takeForFlush()
        for held in flush.earlier { held.promise?.fail(ChannelError.ioOnClosedChannel) }
        flush.last?.promise?.fail(ChannelError.ioOnClosedChannel)
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
