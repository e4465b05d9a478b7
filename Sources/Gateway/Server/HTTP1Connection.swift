import NIOCore
import NIOHTTP1

/// What one HTTP/1.1 connection owes its client beyond a single exchange, in one handler between
/// the bytes and ``ProxyHandler`` (one hop where NIO's handlers took five on every request part
/// and two on every response part):
/// - parsing and writing: requests are read with ``HTTP1RequestParser``, responses written with
///   ``ResponseEncoder``;
/// - pipelining: a request that arrives while the previous response is still being written waits
///   here, and reads pause only then, so a client with one request at a time never has its reads
///   switched off and on (NIO's pipelining handler pauses them during every response);
/// - clocks: header (from the connection's start, or from the first byte of a later request, to its
///   full head; slowloris → 408 and close) and idle (nothing in flight, no byte arriving → quiet close);
/// - requests the parser refused: 431 for oversized or too many headers, 414 for an oversized
///   request line, 405 for CONNECT, 505 for a version other than 1.x, 400 for anything else (bad
///   chunking, Content-Length with Transfer-Encoding); the parser stops after a refusal and the
///   connection closes, so a smuggled second request never runs;
/// - graceful drain: an idle connection closes at once, a busy one after its response, which says
///   `connection: close`.
final class HTTP1Connection: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = RequestPart
    typealias OutboundIn = ResponsePart
    typealias OutboundOut = IOData

    private enum Waiting {
        case part(RequestPart)
        case refused(HTTP1ParseError)
    }

    private var parser: HTTP1RequestParser
    /// A read that arrives while parts are being delivered leaves its bytes to the loop running.
    private var parsing = false

    private let headerTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    /// Writes the responses; told each request's method, so answers to HEAD go out without a body.
    private let encoder: ResponseEncoder
    private let onRefused: @Sendable (HTTPResponseStatus, String) -> Void
    private var context: ChannelHandlerContext?
    /// The proxy, when one registered (the admin and demo listeners have none).
    var receiver: (any RequestReceiver)?
    /// Heads parsed whose responses have not ended (passed on or waiting).
    private var requestsInFlight = 0
    /// The exchange passed on: it is over when both its request and its response have ended, in
    /// either order (a filter may answer before the request's end arrives).
    private var exchange: (requestEnded: Bool, responseEnded: Bool)?
    private var responseInProgress = false
    /// Made for the first part that waits and dropped once none does: an idle connection holds
    /// no queue (even an empty one allocates its first slot, 1 MiB over 10,000 connections).
    private var waiting: CircularBuffer<Waiting>?
    private var nothingWaits: Bool { waiting?.isEmpty ?? true }
    private var readPending = false
    private var draining = false
    /// True while the connection is idle and no byte of a next request has arrived.
    private var awaitingFirstByte = false
    // Two clocks that move on every request without a scheduled task each time (see `StallTimer`).
    private lazy var headerClock = StallTimer(owner: self) { $0.headerTimedOut() }
    private lazy var idleClock = StallTimer(owner: self) { connection in
        guard connection.awaitingFirstByte else { return }
        connection.context?.close(promise: nil)
    }

    /// - Parameters:
    ///   - gatheringWrites: behind TLS, where each write is a record (``WriteGather``).
    ///   - onRefused: told of each request the parser refused, for the access log.
    init(
        parser: HTTP1RequestParser, headerTimeout: TimeAmount, idleTimeout: TimeAmount, gatheringWrites: Bool = false,
        onRefused: @escaping @Sendable (HTTPResponseStatus, String) -> Void
    ) {
        self.encoder = ResponseEncoder(gathering: gatheringWrites)
        self.parser = parser
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
        // The proxy holds this connection too.
        receiver?.downstreamClosed()
        receiver = nil
        encoder.discard()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let receiver { receiver.downstreamClosed() } else { context.fireChannelInactive() }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let receiver { receiver.receiveComplete() } else { context.fireChannelReadComplete() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if let receiver { receiver.writabilityChanged(isWritable: context.channel.isWritable) } else { context.fireChannelWritabilityChanged() }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let receiver { receiver.downstreamFailed(error) } else { context.fireErrorCaught(error) }
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        // Bytes of a next request: the header clock applies, not the idle one.
        if awaitingFirstByte, bytes.readableBytes > 0 { startHeaderClock(context) }
        parser.receive(bytes)
        guard !parsing else { return }
        parsing = true
        defer { parsing = false }
        while true {
            let part: RequestPart
            do {
                guard let next = try parser.next() else { return }
                part = next
            } catch {
                received(error, context: context)
                return
            }
            received(part, context: context)
        }
    }

    private func received(_ part: RequestPart, context: ChannelHandlerContext) {
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
        if nothingWaits, exchange?.requestEnded != true {
            deliver(part, context: context)
        } else {
            wait(.part(part))
        }
    }

    private func received(_ refused: HTTP1ParseError, context: ChannelHandlerContext) {
        if nothingWaits, exchange?.requestEnded != true {
            refuse(refused, context: context)
        } else {
            wait(.refused(refused))
        }
    }

    private func wait(_ item: Waiting) {
        if waiting == nil { waiting = CircularBuffer(initialCapacity: 4) }
        waiting?.append(item)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        draining = true
        waiting = nil
        requestsInFlight = min(requestsInFlight, 1)
        if requestsInFlight == 0 { context.close(promise: nil) }
    }

    func read(context: ChannelHandlerContext) {
        // The proxy remembers a read it holds back and asks again through `read()`.
        if let receiver, !receiver.admitsRead() { return }
        if nothingWaits, !draining || requestsInFlight > 0 {
            context.read()
        } else {
            readPending = true
        }
    }

    private func deliver(_ part: RequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head: exchange = (requestEnded: false, responseEnded: false)
        case .body: break
        case .end:
            exchange?.requestEnded = true
            if exchange?.responseEnded == true { exchange = nil }
        }
        if let receiver {
            receiver.receive(part)
        } else {
            context.fireChannelRead(wrapInboundOut(part))
        }
    }

    private func refuse(_ refusal: HTTP1ParseError, context: ChannelHandlerContext) {
        let status = refusal.status
        onRefused(status, refusal.reason)
        if !responseInProgress {
            answerAndClose(plainText(status, "\(status.code) \(status.reasonPhrase): \(refusal.reason).\n"), context: context)
        } else {
            context.close(promise: nil)
        }
    }

    // MARK: Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        send(unwrapOutboundIn(data), context: context, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        encoder.flush(context: context)
        context.flush()
    }

    private func send(_ part: ResponsePart, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        switch part {
        case .head(var head) where head.status.code >= 200:
            responseInProgress = true
            if draining, HeaderRules.keepsAlive(head.headers, version: head.version) {
                head.headers.replaceOrAdd(name: "connection", value: "close")
                encoder.write(.head(head), context: context, promise: promise)
                return
            }
        case .end:
            responseInProgress = false
            requestsInFlight = max(0, requestsInFlight - 1)
            exchange?.responseEnded = true
            if exchange?.requestEnded == true { exchange = nil }
            if draining {
                let written = context.eventLoop.makePromise(of: Void.self)
                encoder.write(part, context: context, promise: written)
                written.futureResult.assumeIsolated().flatMap { context.close() }.nonisolated().cascade(to: promise)
                return
            }
            encoder.write(part, context: context, promise: promise)
            if requestsInFlight == 0 { startIdleClock(context) }
            deliverWaiting(context: context)
            return
        default:
            break
        }
        encoder.write(part, context: context, promise: promise)
    }

    /// After a response: the next pipelined request goes on, up to its end; held reads resume
    /// once nothing waits.
    private func deliverWaiting(context: ChannelHandlerContext) {
        var delivered = false
        while exchange?.requestEnded != true, let next = waiting?.popFirst() {
            switch next {
            case .part(let part):
                deliver(part, context: context)
                delivered = true
            case .refused(let error):
                refuse(error, context: context)
                waiting = nil
                return
            }
        }
        if delivered { channelReadComplete(context: context) }
        if nothingWaits { waiting = nil }
        if readPending, nothingWaits {
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
        answerAndClose(plainText(.requestTimeout, "The request head did not arrive in time.\n"), context: context)
    }

    /// The connection's own answer (a refusal, a timeout), written past the exchange bookkeeping:
    /// no exchange is in progress, and the connection closes after it.
    private func answerAndClose(_ response: LocalResponse, context: ChannelHandlerContext) {
        let parts = response.parts(keepAlive: false)
        for part in parts.dropLast() { encoder.write(part, context: context, promise: nil) }
        let written = context.eventLoop.makePromise(of: Void.self)
        encoder.write(parts[parts.count - 1], context: context, promise: written)
        flush(context: context)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    private func plainText(_ status: HTTPResponseStatus, _ text: String) -> LocalResponse {
        LocalResponse(status: status, contentType: "text/plain; charset=utf-8", body: text)
    }
}

/// ``ProxyHandler`` writes its responses here directly: a pipeline hop boxed each part and cast
/// it back (2,100 instructions a proxied request).
extension HTTP1Connection: Downstream {
    var isWritable: Bool { context?.channel.isWritable ?? false }

    func write(_ part: ResponsePart, promise: EventLoopPromise<Void>?) {
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        send(part, context: context, promise: promise)
    }

    /// What the encoder gathered goes first.
    func flush() {
        guard let context else { return }
        flush(context: context)
    }

    func read() {
        guard let context else { return }
        read(context: context)
    }

    func close() {
        context?.close(promise: nil)
    }
}
