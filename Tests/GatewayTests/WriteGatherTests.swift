import Foundation
@_spi(CustomByteBufferAllocator) import NIOCore
import NIOEmbedded
import NIOSSL
import Synchronization
import Testing

@testable import Gateway

/// Small writes leave a flush gathered into one buffer, in order, with every promise kept;
/// large writes go on uncopied; no flush brings more than a record; nothing held outlives the channel.
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
            WriteGather.writeOut(gather.takeForFlush(), context: context)
            context.flush()
        }

        func handlerRemoved(context: ChannelHandlerContext) {
            gather.discard()
        }
    }

    /// Below the gathering: the ciphertext each flush brings as TLS would encrypt it, a record a write.
    private final class FlushRecorder: ChannelOutboundHandler {
        typealias OutboundIn = IOData
        private(set) var flushed: [Int] = []
        private var unflushed = 0

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            if case .byteBuffer(let bytes) = unwrapOutboundIn(data) { unflushed += bytes.readableBytes + WriteGather.recordOverhead }
            context.write(data, promise: promise)
        }

        func flush(context: ChannelHandlerContext) {
            if unflushed > 0 { flushed.append(unflushed) }
            unflushed = 0
            context.flush()
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

    /// swift-nio-ssl encrypts what one flush brings into a buffer it keeps at the largest size
    /// it grew to: no flush brings more than the budget, also when small and large writes
    /// alternate (a chunked body's framing around its chunks), each flush is filled, and every
    /// byte arrives in order with the promises kept.
    @Test func noFlushBringsTLSMoreThanItsBudget() throws {
        let recorder = FlushRecorder()
        let channel = EmbeddedChannel(handlers: [recorder, Gathering()])
        let budget = WriteGather.flushBudget
        let large = channel.eventLoop.makePromise(of: Void.self)
        let last = channel.eventLoop.makePromise(of: Void.self)
        var expected = ""
        func write(_ count: Int, _ byte: Character, _ promise: EventLoopPromise<Void>? = nil) {
            channel.write(bytes(count, byte), promise: promise)
            expected += String(repeating: byte, count: count)
        }
        write(100, "h")
        write(budget * 3 + budget / 2, "l", large)
        for chunk in ["1", "2", "3"] as [Character] {
            write(8, "\r")
            write(WriteGather.copyLimit + 1, chunk)
        }
        write(WriteGather.copyLimit, "a")
        write(WriteGather.copyLimit, "b")
        write(10, "c", last)
        channel.flush()
        let out = try outbound(channel)
        #expect(out.map { String(buffer: $0) }.joined() == expected)
        #expect(recorder.flushed.reduce(0, +) == expected.utf8.count + out.count * WriteGather.recordOverhead)
        #expect(recorder.flushed.allSatisfy { $0 <= budget })
        // Filled: only the last flush falls short of the budget by more than a record's overhead.
        #expect(recorder.flushed.dropLast().allSatisfy { $0 > budget - WriteGather.recordOverhead })
        try large.futureResult.wait()
        try last.futureResult.wait()
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

    /// Through swift-nio-ssl itself: after a 350 KB response over TLS 1.3, no buffer of the
    /// server's channel ever grew past 16 KiB (its outbound buffer keeps the largest size it grew
    /// to for the connection's life). The first flush after the handshake carries BoringSSL's
    /// session tickets too.
    @Test func aLargeResponseThroughTLSNeverGrowsItsOutboundBuffer() throws {
        let serverContext = try NIOSSLContext(configuration: .makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(TestFiles.certs + "/localhost.pem").map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: TestFiles.certs + "/localhost.key", format: .pem))))
        var clientConfiguration = TLSConfiguration.makeClientConfiguration()
        clientConfiguration.certificateVerification = .none
        // The allocator first: the TLS handler takes the channel's when it is added.
        let server = EmbeddedChannel()
        server.allocator = ByteBufferAllocator(
            allocate: { malloc($0) },
            reallocate: { pointer, _, newSize in
                serverGrowth.withLock { $0 = max($0, newSize) }
                return realloc(pointer, newSize)
            },
            deallocate: { free($0) },
            copy: { $0.copyMemory(from: $1, byteCount: $2) })
        try server.pipeline.syncOperations.addHandlers(NIOSSLServerHandler(context: serverContext), Gathering())
        let client = EmbeddedChannel(handler: try NIOSSLClientHandler(context: NIOSSLContext(configuration: clientConfiguration), serverHostname: "localhost"))
        var received = 0
        func exchange() throws {
            var moved = true
            while moved {
                moved = false
                while let bytes = try server.readOutbound(as: ByteBuffer.self) { try client.writeInbound(bytes); moved = true }
                while let bytes = try client.readOutbound(as: ByteBuffer.self) { try server.writeInbound(bytes); moved = true }
                while let plaintext = try client.readInbound(as: ByteBuffer.self) { received += plaintext.readableBytes }
            }
        }
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 443)
        try server.connect(to: address).wait()
        try client.connect(to: address).wait()
        try exchange()
        try client.writeAndFlush(ByteBuffer(string: "GET /page HTTP/1.1\r\nhost: localhost\r\n\r\n")).wait()
        try exchange()
        #expect(try server.readInbound(as: ByteBuffer.self).map { String(buffer: $0) }?.hasPrefix("GET /page") == true)
        // As the proxy writes a page: its head, then each upstream read, one flush for them all.
        let page = 350 * 1024
        server.write(ByteBuffer(string: "HTTP/1.1 200 OK\r\ncontent-length: \(page)\r\n\r\n"), promise: nil)
        for _ in 0..<(page / (64 * 1024)) { server.write(bytes(64 * 1024, "p"), promise: nil) }
        server.write(bytes(page % (64 * 1024), "p"), promise: nil)
        server.flush()
        try exchange()
        #expect(received > page)
        #expect(serverGrowth.withLock { $0 } <= 16 * 1024)
        // A TLS close waits for the peer's close_notify, or for its timeout on the loop's clock.
        let closed = client.close()
        try exchange()
        client.embeddedEventLoop.advanceTime(by: .seconds(10))
        server.embeddedEventLoop.advanceTime(by: .seconds(10))
        _ = try? closed.wait()
        _ = try? server.finish(acceptAlreadyClosed: true)
    }

    @Test func whatIsStillHeldWhenTheChannelGoesFailsItsWrites() throws {
        let channel = EmbeddedChannel(handler: Gathering())
        let promises = (0..<3).map { _ in channel.eventLoop.makePromise(of: Void.self) }
        channel.write(ByteBuffer(string: "never flushed"), promise: promises[0])
        channel.write(bytes(WriteGather.copyLimit + 1, "x"), promise: promises[1])
        channel.write(ByteBuffer(string: "nor this"), promise: promises[2])
        _ = try? channel.finish()
        for promise in promises { #expect(throws: ChannelError.self) { try promise.futureResult.wait() } }
    }
}

/// The largest size a buffer of ``WriteGatherTests/aLargeResponseThroughTLSNeverGrowsItsOutboundBuffer()``'s
/// server channel was grown to (its allocator's hooks are C functions: no context of their own).
private let serverGrowth = Mutex<Int>(0)
