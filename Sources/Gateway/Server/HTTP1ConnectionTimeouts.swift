import NIOCore
import NIOHTTP1

/// Connection-level clocks of an HTTP/1.1 connection:
/// - header: from the connection's start, or from the first byte of a later request, to its full
///   head (slowloris) → 408 and close;
/// - idle: a kept-alive connection with nothing in flight and no byte arriving → quiet close.
///
/// Sits between the decoder and the pipelining handler, so it sees every head as it is parsed
/// and every response end as it is written. ``FirstByteObserver`` tells it when bytes start.
final class HTTP1ConnectionTimeouts: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let headerTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private var requestsInFlight = 0
    private var responseInProgress = false
    private var context: ChannelHandlerContext?
    /// True while the connection is idle and no byte of a next request has arrived.
    private(set) var awaitingFirstByte = false
    // Two clocks that move on every request without a scheduled task each time (see `StallTimer`).
    private lazy var headerClock = StallTimer { [weak self] in self?.headerTimedOut() }
    private lazy var idleClock = StallTimer { [weak self] in
        guard let self, self.awaitingFirstByte else { return }
        self.context?.close(promise: nil)
    }

    init(headerTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.headerTimeout = headerTimeout
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        startHeaderClock(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        headerClock.stop()
        idleClock.stop()
        self.context = nil
    }

    func firstByteArrived() {
        guard awaitingFirstByte, let context else { return }
        startHeaderClock(context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) {
            requestsInFlight += 1
            awaitingFirstByte = false
            headerClock.disarm()
            idleClock.disarm()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200:
            responseInProgress = true
        case .end:
            responseInProgress = false
            requestsInFlight = max(0, requestsInFlight - 1)
            if requestsInFlight == 0 { startIdleClock(context) }
        default:
            break
        }
        context.write(data, promise: promise)
    }

    private func startHeaderClock(_ context: ChannelHandlerContext) {
        awaitingFirstByte = false
        idleClock.disarm()
        headerClock.arm(on: context.eventLoop, timeout: headerTimeout)
    }

    private func startIdleClock(_ context: ChannelHandlerContext) {
        awaitingFirstByte = true
        headerClock.disarm()
        idleClock.arm(on: context.eventLoop, timeout: idleTimeout)
    }

    private func headerTimedOut() {
        guard requestsInFlight == 0, !responseInProgress, let context else { return }
        let body = ByteBuffer(string: "The request head did not arrive in time.\n")
        var head = HTTPResponseHead(version: .http1_1, status: .requestTimeout)
        head.headers.add(name: "connection", value: "close")
        head.headers.add(name: "content-type", value: "text/plain; charset=utf-8")
        head.headers.add(name: "content-length", value: String(body.readableBytes))
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

/// Placed before the HTTP decoder: tells ``HTTP1ConnectionTimeouts`` when an idle connection
/// starts receiving its next request, so the header clock (not the idle clock) applies.
final class FirstByteObserver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let timeouts: HTTP1ConnectionTimeouts

    init(timeouts: HTTP1ConnectionTimeouts) {
        self.timeouts = timeouts
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if timeouts.awaitingFirstByte { timeouts.firstByteArrived() }
        context.fireChannelRead(data)
    }
}
