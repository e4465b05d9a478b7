import NIOCore

/// Small writes gathered into one buffer until the next flush.
///
/// Behind TLS every write becomes a record of its own (swift-nio-ssl calls `SSL_write` once a
/// write): an HTTP/1 response was two records (head, body; a chunk three), an HTTP/2 response
/// three (HEADERS, a DATA frame's header, its payload), each ≈ 3,000 instructions of record
/// work besides the bytes' encryption, and each write a trip down NIO's pipeline. nginx gathers
/// the same way into its 16 KiB `ssl_buffer_size`. Bytes are copied only up to ``copyLimit`` a
/// write; a larger write goes on as it is, after what was gathered.
struct WriteGather {
    /// A TLS record's largest plaintext.
    static let bufferSize = 16 * 1024
    static let copyLimit = 8 * 1024

    private var pending: ByteBuffer?
    /// Whether `pending` is a buffer of our own, or the first write's, held without a copy.
    private var owned = false
    private var promise: EventLoopPromise<Void>?

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
            (pending, owned, self.promise) = (bytes, false, promise)
            return
        }
        if gathered.readableBytes + bytes.readableBytes > Self.bufferSize {
            context.write(NIOAny(IOData.byteBuffer(gathered)), promise: self.promise.take())
            (pending, owned, self.promise) = (bytes, false, promise)
            return
        }
        if !owned {
            var own = context.channel.allocator.buffer(capacity: Self.bufferSize)
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
    }

    /// The channel is gone: what was gathered is dropped and its writes fail.
    mutating func discard() {
        pending = nil
        promise.take()?.fail(ChannelError.ioOnClosedChannel)
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
