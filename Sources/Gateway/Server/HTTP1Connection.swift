import NIOCore
import NIOHTTP1

/// What one HTTP/1.1 connection owes its client beyond a single exchange, in one handler between
/// the decoder and ``ProxyHandler`` (one hop instead of three on every request part):
/// - pipelining: a request that arrives while the previous response is still being written waits
///   here, and reads pause only then, so a client with one request at a time never has its reads
///   switched off and on (NIO's pipelining handler pauses them during every response);
/// - clocks: header (from the connection's start, or from the first byte of a later request, to its
///   full head; slowloris → 408 and close) and idle (nothing in flight, no byte arriving → quiet close);
/// - requests the parser refused: 431 for oversized or too many headers, 400 for anything else (bad
///   chunking, Content-Length with Transfer-Encoding); the decoder stops after an error, so a
///   smuggled second request never runs;
/// - graceful drain: an idle connection closes at once, a busy one after its response, which says
///   `connection: close`.
final class HTTP1Connection: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum Waiting {
        case part(HTTPServerRequestPart)
        case refused(HTTPParserError)
    }

    private let headerTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    /// Told each request's method, so answers to HEAD and CONNECT go out without a body.
    private let encoder: ResponseEncoder
    private let onRefused: @Sendable (HTTPResponseStatus, String) -> Void
    private var context: ChannelHandlerContext?
    /// Heads parsed whose responses have not ended (passed on or waiting).
    private var requestsInFlight = 0
    /// The exchange passed on: it is over when both its request and its response have ended, in
    /// either order (a filter may answer before the request's end arrives).
    private var exchange: (requestEnded: Bool, responseEnded: Bool)?
    private var responseInProgress = false
    private var waiting = CircularBuffer<Waiting>(initialCapacity: 0)
    private var readPending = false
    private var draining = false
    /// True while the connection is idle and no byte of a next request has arrived.
    private(set) var awaitingFirstByte = false
    // Two clocks that move on every request without a scheduled task each time (see `StallTimer`).
    private lazy var headerClock = StallTimer { [weak self] in self?.headerTimedOut() }
    private lazy var idleClock = StallTimer { [weak self] in
        guard let self, self.awaitingFirstByte else { return }
        self.context?.close(promise: nil)
    }

    /// - Parameter onRefused: told of each request the parser refused, for the access log.
    init(
        encoder: ResponseEncoder, headerTimeout: TimeAmount, idleTimeout: TimeAmount,
        onRefused: @escaping @Sendable (HTTPResponseStatus, String) -> Void
    ) {
        self.encoder = encoder
        self.headerTimeout = headerTimeout
        self.idleTimeout = idleTimeout
        self.onRefused = onRefused
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

    /// From ``FirstByteObserver``: bytes of a next request started arriving.
    func firstByteArrived() {
        guard awaitingFirstByte, let context else { return }
        startHeaderClock(context)
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if case .head(let head) = part {
            encoder.requestArrived(head.method)
            requestsInFlight += 1
            awaitingFirstByte = false
            headerClock.disarm()
            idleClock.disarm()
        }
        if draining {
            // Only the rest of the request being answered still matters.
            if let exchange, !exchange.requestEnded { deliver(part, context: context) }
            return
        }
        if waiting.isEmpty, exchange?.requestEnded != true {
            deliver(part, context: context)
        } else {
            waiting.append(.part(part))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let refused = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        if waiting.isEmpty, exchange?.requestEnded != true {
            refuse(refused, context: context)
        } else {
            waiting.append(.refused(refused))
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        draining = true
        waiting.removeAll()
        requestsInFlight = min(requestsInFlight, 1)
        if requestsInFlight == 0 { context.close(promise: nil) }
    }

    func read(context: ChannelHandlerContext) {
        if waiting.isEmpty, !draining || requestsInFlight > 0 {
            context.read()
        } else {
            readPending = true
        }
    }

    private func deliver(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head: exchange = (requestEnded: false, responseEnded: false)
        case .body: break
        case .end:
            exchange?.requestEnded = true
            if exchange?.responseEnded == true { exchange = nil }
        }
        context.fireChannelRead(wrapInboundOut(part))
    }

    private func refuse(_ error: HTTPParserError, context: ChannelHandlerContext) {
        let status: HTTPResponseStatus = error == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
        onRefused(status, "\(error)")
        if !responseInProgress {
            plainText(status, "\(status.code) \(status.reasonPhrase): the request could not be parsed.\n").write(to: context, keepAlive: false)
        } else {
            context.close(promise: nil)
        }
    }

    // MARK: Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.status.code >= 200:
            responseInProgress = true
            if draining, head.isKeepAlive {
                head.headers.replaceOrAdd(name: "connection", value: "close")
                context.write(wrapOutboundOut(.head(head)), promise: promise)
                return
            }
        case .end:
            responseInProgress = false
            requestsInFlight = max(0, requestsInFlight - 1)
            exchange?.responseEnded = true
            if exchange?.requestEnded == true { exchange = nil }
            if draining {
                context.write(data).assumeIsolated().flatMap { context.close() }.nonisolated().cascade(to: promise)
                return
            }
            context.write(data, promise: promise)
            if requestsInFlight == 0 { startIdleClock(context) }
            deliverWaiting(context: context)
            return
        default:
            break
        }
        context.write(data, promise: promise)
    }

    /// After a response: the next pipelined request goes on, up to its end; held reads resume
    /// once nothing waits.
    private func deliverWaiting(context: ChannelHandlerContext) {
        var delivered = false
        while exchange?.requestEnded != true, let next = waiting.popFirst() {
            switch next {
            case .part(let part):
                deliver(part, context: context)
                delivered = true
            case .refused(let error):
                refuse(error, context: context)
                waiting.removeAll()
                return
            }
        }
        if delivered { context.fireChannelReadComplete() }
        if readPending, waiting.isEmpty {
            readPending = false
            context.read()
        }
    }

    // MARK: Clocks

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
        plainText(.requestTimeout, "The request head did not arrive in time.\n").write(to: context, keepAlive: false)
    }

    private func plainText(_ status: HTTPResponseStatus, _ text: String) -> LocalResponse {
        LocalResponse(status: status, contentType: "text/plain; charset=utf-8", body: text)
    }
}

/// Placed before the HTTP decoder: tells ``HTTP1Connection`` when an idle connection starts
/// receiving its next request, so the header clock (not the idle clock) applies.
final class FirstByteObserver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let connection: HTTP1Connection

    init(connection: HTTP1Connection) {
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if connection.awaitingFirstByte { connection.firstByteArrived() }
        context.fireChannelRead(data)
    }
}
