import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// Raw HTTP/2 frames over TLS (ALPN h2): for abuse no real client would commit.
enum RawHTTP2 {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    static func frame(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8]) -> [UInt8] {
        let length = payload.count
        return [UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags,
            UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)] + payload
    }

    /// `GET /` for `localhost`, HPACK-encoded from the static table, END_STREAM | END_HEADERS.
    static func getHeaders(stream: UInt32) -> [UInt8] {
        frame(type: 0x1, flags: 0x5, stream: stream, payload: [0x82, 0x87, 0x84, 0x41, 0x09] + Array("localhost".utf8))
    }

    /// An HPACK literal field without indexing, name and value as they are (no Huffman): bytes
    /// no HPACK encoder of a real client would let through.
    static func literal(_ name: String, _ value: String) -> [UInt8] {
        [0x00, UInt8(name.utf8.count)] + Array(name.utf8) + [UInt8(value.utf8.count)] + Array(value.utf8)
    }

    static func reset(stream: UInt32) -> [UInt8] {
        frame(type: 0x3, flags: 0, stream: stream, payload: [0, 0, 0, 8])
    }

    struct Frame {
        var type: UInt8
        var stream: UInt32
        var payload: [UInt8]
    }

    /// Sends `bytes` after the preface and an empty SETTINGS; returns the frames the server sent
    /// and whether it closed the connection within `timeout`. With `readPaused`, nothing the server
    /// writes is read, so its acknowledgements pile up on its side.
    static func exchange(port: Int, _ bytes: [UInt8], timeout: Duration, readPaused: Bool = false) async throws -> (frames: [Frame], closed: Bool) {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(TestFiles.caFile)
        tls.applicationProtocols = ["h2"]
        let context = try NIOSSLContext(configuration: tls)
        let collector = Collector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        if readPaused {
            // TLS must finish its handshake first; after that, stop reading.
            try await Task.sleep(for: .milliseconds(300))
            try await channel.setOption(.autoRead, value: false).get()
            try await channel.setOption(.socketOption(.so_rcvbuf), value: 4096)
        }
        do {
            try await channel.writeAndFlush(ByteBuffer(bytes: preface + frame(type: 0x4, flags: 0, stream: 0, payload: []) + bytes))
        } catch let error as IOError where [EPIPE, ECONNRESET].contains(error.errnoCode) {
            // The gateway ended the connection while a flood was still being written: the
            // outcome the flood tests look for, reported through `closed` below.
        }
        let deadline = ContinuousClock.now + timeout
        while channel.isActive, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let closed = !channel.isActive
        try? await channel.close()
        return (collector.frames(), closed)
    }

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        private let received = NIOLockedValueBox([UInt8]())

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            received.withLockedValue { $0 += buffer.readableBytesView }
        }

        func frames() -> [Frame] {
            let bytes = received.withLockedValue { $0 }
            var frames: [Frame] = []
            var offset = 0
            while offset + 9 <= bytes.count {
                let length = Int(bytes[offset]) << 16 | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2])
                let stream = bytes[offset + 5..<offset + 9].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & 0x7fff_ffff
                frames.append(Frame(type: bytes[offset + 3], stream: stream, payload: Array(bytes[offset + 9..<min(bytes.count, offset + 9 + length)])))
                offset += 9 + length
            }
            return frames
        }
    }
}

extension [RawHTTP2.Frame] {
    var types: [UInt8] { map(\.type) }
}
