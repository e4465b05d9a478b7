import NIOCore
import NIOHTTP1

/// Serves small local HTTP/1.1 endpoints (the admin listener, the demo origin) from a router
/// over whole requests. Bodies are capped; it is not for the proxy path.
final class LocalHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    typealias Router = @Sendable (HTTPRequestHead, ByteBuffer) async -> LocalResponse

    private let router: Router
    private let maxBody: Int
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    init(maxBody: Int = 1 << 20, router: @escaping Router) {
        self.router = router
        self.maxBody = maxBody
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
        case .body(var chunk):
            guard body.readableBytes + chunk.readableBytes <= maxBody else {
                respond(LocalResponse(status: .payloadTooLarge, contentType: "text/plain", body: "too large\n"), keepAlive: false, context)
                return
            }
            body.writeBuffer(&chunk)
        case .end:
            guard let head else { return }
            self.head = nil
            let body = self.body
            let router = self.router
            let promise = context.eventLoop.makePromise(of: LocalResponse.self)
            promise.completeWithTask { await router(head, body) }
            promise.futureResult.assumeIsolated().whenSuccess { [self] response in
                respond(response, keepAlive: head.isKeepAlive, context, isHead: head.method == .HEAD)
            }
        }
    }

    private func respond(_ response: LocalResponse, keepAlive: Bool, _ context: ChannelHandlerContext, isHead: Bool = false) {
        var head = HTTPResponseHead(version: .http1_1, status: response.status, headers: response.headers)
        head.headers.replaceOrAdd(name: "content-length", value: String(response.body.readableBytes))
        if !keepAlive { head.headers.replaceOrAdd(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !isHead, response.body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil) }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }
}
