import NIOCore
import NIOHTTP1

/// Answers requests the HTTP/1 parser refused: 431 for oversized or too many headers, 400 for
/// anything else (bad chunking, Content-Length with Transfer-Encoding, malformed lines). The
/// decoder closes the connection right after, so a smuggled second request never runs.
final class ProtocolErrorResponder: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var responseInProgress = false
    private let onRefused: @Sendable (HTTPResponseStatus, String) -> Void

    /// - Parameter onRefused: told of each refusal, for the access log.
    init(onRefused: @escaping @Sendable (HTTPResponseStatus, String) -> Void) {
        self.onRefused = onRefused
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        let status: HTTPResponseStatus = parserError == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
        onRefused(status, "\(parserError)")
        if !responseInProgress {
            let body = ByteBuffer(string: "\(status.code) \(status.reasonPhrase): the request could not be parsed.\n")
            var head = HTTPResponseHead(version: .http1_1, status: status)
            head.headers.add(name: "connection", value: "close")
            head.headers.add(name: "content-type", value: "text/plain; charset=utf-8")
            head.headers.add(name: "content-length", value: String(body.readableBytes))
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        context.close(promise: nil)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200: responseInProgress = true
        case .end: responseInProgress = false
        default: break
        }
        context.write(data, promise: promise)
    }
}
