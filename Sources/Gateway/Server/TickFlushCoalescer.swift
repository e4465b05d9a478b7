import NIOCore

/// Between the HTTP/2 handler and TLS: the flushes of one event-loop tick become one (a record's
/// worth at a time), and the frames written before it a few TLS records (``WriteGather``).
///
/// A stream's response is written when its upstream connection reads it, outside the HTTP/2
/// connection's own reads, where the HTTP/2 handler coalesces nothing: each stream's flush was one
/// TLS record and one `write` on the socket. Deferred to the loop's task phase, which runs after
/// every ready socket of the tick was read, the responses completed in a tick leave together.
final class TickFlushCoalescer: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = IOData

    private var flushScheduled = false
    /// nio-http2 encodes every frame into one buffer of its own, replaced while the last is held.
    private var gather = WriteGather(copiesFirstWrite: true)

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        gather.write(unwrapOutboundIn(data), promise: promise, context: context)
    }

    func flush(context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in
            flushNowIfScheduled(context)
        }
    }

    /// A GOAWAY written just before a close must not be left behind unflushed.
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        flushNowIfScheduled(context)
        context.close(mode: mode, promise: promise)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        flushNowIfScheduled(context)
        gather.discard()
    }

    private func flushNowIfScheduled(_ context: ChannelHandlerContext) {
        guard flushScheduled else { return }
        flushScheduled = false
        WriteGather.writeOut(gather.takeForFlush(), context: context)
        context.flush()
    }
}
