import NIOCore
import NIOEmbedded
import Testing

@testable import Gateway

/// The HTTP/2 connection's flushes of one tick leave as one, its writes gathered, and a close
/// never strands a write.
@Suite struct TickFlushCoalescerTests {
    /// Sits where TLS would, counting the flushes that reach it.
    private final class FlushCounter: ChannelOutboundHandler {
        typealias OutboundIn = NIOAny
        var flushes = 0
        var flushesBeforeClose: Int?

        func flush(context: ChannelHandlerContext) {
            flushes += 1
            context.flush()
        }

        func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
            flushesBeforeClose = flushes
            context.close(mode: mode, promise: promise)
        }
    }

    @Test func theFlushesOfOneTickBecomeOne() throws {
        let counter = FlushCounter()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([counter, TickFlushCoalescer()])
        for chunk in ["a", "b", "c"] {
            channel.writeAndFlush(ByteBuffer(string: chunk), promise: nil)
        }
        #expect(counter.flushes == 0)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 1)
        // The tick's writes leave gathered, as one record's bytes.
        #expect(try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) } == "abc")
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.writeAndFlush(ByteBuffer(string: "d"), promise: nil)
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 2)
        _ = try channel.finish()
    }

    @Test func aCloseFlushesWhatWasWrittenFirst() throws {
        let counter = FlushCounter()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([counter, TickFlushCoalescer()])
        channel.writeAndFlush(ByteBuffer(string: "goaway"), promise: nil)
        channel.close(promise: nil)
        #expect(counter.flushesBeforeClose == 1)
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 1)
    }
}
