import NIOCore
import NIOEmbedded
import Testing

@testable import Gateway

/// Small writes leave a flush gathered into one buffer, in order, with every promise kept;
/// large writes go on uncopied; nothing gathered outlives the channel.
@Suite struct WriteGatherTests {
    /// Gathers what is written through it until a flush, as the HTTP/1 encoder and the HTTP/2
    /// connection's coalescer do.
    private final class Gathering: ChannelOutboundHandler {
        typealias OutboundIn = IOData
        var gather: WriteGather

        init(copiesFirstWrite: Bool = false) {
            gather = WriteGather(copiesFirstWrite: copiesFirstWrite)
        }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            gather.write(unwrapOutboundIn(data), promise: promise, context: context)
        }

        func flush(context: ChannelHandlerContext) {
            gather.release(context: context)
            context.flush()
        }

        func handlerRemoved(context: ChannelHandlerContext) {
            gather.discard()
        }
    }

    private func outbound(_ channel: EmbeddedChannel) throws -> [ByteBuffer] {
        var out: [ByteBuffer] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { out.append(buffer) }
        return out
    }

    /// Where a buffer's bytes lie: the same address, the same memory.
    private func address(_ buffer: ByteBuffer) -> UInt? {
        buffer.withUnsafeReadableBytes { $0.baseAddress.map { UInt(bitPattern: $0) } }
    }

    private func bytes(_ count: Int, _ byte: Character) -> ByteBuffer {
        ByteBuffer(string: String(repeating: byte, count: count))
    }

    @Test func smallWritesLeaveAsOneBufferWithEveryPromiseKept() throws {
        let channel = EmbeddedChannel(handler: Gathering())
        let promises = (0..<3).map { _ in channel.eventLoop.makePromise(of: Void.self) }
        for (text, promise) in zip(["HTTP/1.1 200 OK\r\n\r\n", "<p>", "hi</p>"], promises) {
            channel.write(ByteBuffer(string: text), promise: promise)
        }
        #expect(try outbound(channel).isEmpty)
        channel.flush()
        #expect(try outbound(channel).map { String(buffer: $0) } == ["HTTP/1.1 200 OK\r\n\r\n<p>hi</p>"])
        for promise in promises { try promise.futureResult.wait() }
        #expect(try channel.finish().isClean)
    }

    @Test func aLargeWriteGoesOnAsItIsAfterWhatWasGathered() throws {
        let channel = EmbeddedChannel(handler: Gathering())
        channel.write(ByteBuffer(string: "head"), promise: nil)
        channel.write(bytes(WriteGather.copyLimit + 1, "x"), promise: nil)
        channel.write(ByteBuffer(string: "tail"), promise: nil)
        channel.flush()
        #expect(try outbound(channel).map(\.readableBytes) == [4, WriteGather.copyLimit + 1, 4])
        #expect(try channel.finish().isClean)
    }

    /// A full buffer goes down and the gathering goes on in another, all of it at the flush.
    @Test func aGatheredBufferNeverExceedsARecord() throws {
        let channel = EmbeddedChannel(handler: Gathering())
        let half = WriteGather.bufferSize / 2
        for byte in ["a", "b", "c"] as [Character] { channel.write(bytes(half, byte), promise: nil) }
        #expect(try outbound(channel).isEmpty)
        channel.flush()
        let out = try outbound(channel)
        #expect(out.map(\.readableBytes) == [WriteGather.bufferSize, half])
        #expect(out.first.map { String(buffer: $0) } == String(repeating: "a", count: half) + String(repeating: "b", count: half))
        #expect(try channel.finish().isClean)
    }

    /// The thread's buffers are lent again once what was gathered in them has left: no new
    /// buffer a flush, also when a flush's writes fill more than one.
    @Test func theBuffersAreLentAgainOnceTheirBytesHaveLeft() throws {
        let channel = EmbeddedChannel(handler: Gathering(copiesFirstWrite: true))
        let half = WriteGather.bufferSize / 2
        func gatheredAddresses() throws -> Set<UInt> {
            for byte in ["a", "b", "c"] as [Character] { channel.write(bytes(half, byte), promise: nil) }
            channel.flush()
            let out = try outbound(channel)
            #expect(out.map(\.readableBytes) == [WriteGather.bufferSize, half])
            return Set(out.compactMap(address))
        }
        let first = try gatheredAddresses()
        #expect(first.count == 2)
        #expect(try gatheredAddresses() == first)
        #expect(try channel.finish().isClean)
    }

    /// Copied at once, a writer's buffer is its own again before the flush (nio-http2 reuses its
    /// frame buffer, and makes a new one while the last is still held below).
    @Test func aFirstWriteCanBeCopiedSoItsBufferIsFreeAtOnce() throws {
        for copies in [false, true] {
            let channel = EmbeddedChannel(handler: Gathering(copiesFirstWrite: copies))
            let frame = ByteBuffer(string: "a frame")
            channel.write(frame, promise: nil)
            channel.flush()
            let out = try outbound(channel)
            #expect(out.map { String(buffer: $0) } == ["a frame"])
            #expect((out.first.flatMap(address) == address(frame)) == !copies)
            #expect(try channel.finish().isClean)
        }
    }

    /// An empty write only orders a promise: alone it goes on; behind gathered bytes it completes with them.
    @Test func emptyWritesKeepTheirPromisesInOrder() throws {
        let channel = EmbeddedChannel(handler: Gathering())
        let alone = channel.eventLoop.makePromise(of: Void.self)
        channel.write(ByteBuffer(), promise: alone)
        channel.flush()
        try alone.futureResult.wait()
        #expect(try outbound(channel).map(\.readableBytes) == [0])
        let behind = channel.eventLoop.makePromise(of: Void.self)
        channel.write(ByteBuffer(string: "body"), promise: nil)
        channel.write(ByteBuffer(), promise: behind)
        channel.flush()
        try behind.futureResult.wait()
        #expect(try outbound(channel).map { String(buffer: $0) } == ["body"])
        #expect(try channel.finish().isClean)
    }

    @Test func whatIsStillGatheredWhenTheChannelGoesFailsItsWrites() throws {
        let channel = EmbeddedChannel(handler: Gathering())
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.write(ByteBuffer(string: "never flushed"), promise: promise)
        _ = try? channel.finish()
        #expect(throws: ChannelError.self) { try promise.futureResult.wait() }
    }
}
