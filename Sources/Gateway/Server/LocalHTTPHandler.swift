import NIOCore
import NIOHTTP1

/// Serves small local HTTP/1.1 endpoints (the admin listener, the demo origin) from a router
/// over whole requests. Bodies are capped; it is not for the proxy path.
final class LocalHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = RequestPart
    typealias OutboundOut = ResponsePart
    typealias Router = @Sendable (RequestHead, ByteBuffer) async -> LocalResponse

    private let router: Router
    private let maxBody: Int
    private var head: RequestHead?
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
                LocalResponse(status: .payloadTooLarge, contentType: "text/plain", body: "too large\n").write(to: context, keepAlive: false)
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
            promise.futureResult.assumeIsolated().whenSuccess { response in
                response.write(to: context, keepAlive: HeaderRules.keepsAlive(head.headers, version: head.version), isHead: head.method == .HEAD)
            }
        }
    }

}

extension LocalResponse {
    /// Writes the whole response from a handler whose outbound messages are
    /// `ResponsePart`s; closes the connection after it unless it is kept alive.
    func write(to context: ChannelHandlerContext, keepAlive: Bool, isHead: Bool = false) {
        let parts = parts(keepAlive: keepAlive, isHead: isHead)
        for part in parts.dropLast() { context.write(NIOAny(part), promise: nil) }
        let done = context.writeAndFlush(NIOAny(parts[parts.count - 1]))
        if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }

    /// The head (with its length, and `connection: close` unless kept alive), the body, the end.
    func parts(keepAlive: Bool, isHead: Bool = false) -> [ResponsePart] {
        var head = ResponseHead(version: .http1_1, status: status, headers: headers)
        head.headers.replaceOrAdd(name: "content-length", value: String(body.readableBytes))
        if !keepAlive { head.headers.replaceOrAdd(name: "connection", value: "close") }
        if isHead || body.readableBytes == 0 { return [.head(head), .end(nil)] }
        return [.head(head), .body(.byteBuffer(body)), .end(nil)]
    }
}
