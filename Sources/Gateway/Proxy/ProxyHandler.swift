import Config
import Logging
import NIOCore
import NIOHTTP1

/// The proxy of one ``Downstream`` (an HTTP/1.1 connection or an HTTP/2 stream): runs the filter
/// phases, leases an upstream connection and streams both bodies with back-pressure.
///
/// Downstream and upstream live on the same event loop, so the handler drives both by direct
/// calls; neither side ever buffers more than one read while its partner is not writable.
final class ProxyHandler: UpstreamSink {
    private let live: LiveConfiguration
    /// The engine of the current request, taken from `live` as each request begins.
    private var engine: ProxyEngine
    private let downstream: DownstreamInfo
    private let eventLoop: any EventLoop
    /// False once the downstream is gone.
    private var open = true
    private var gate = ReadGate()
    private var exchange: Exchange?
    /// Set once the connection is to close: nothing that arrives after may start.
    private var closing = false
    /// HTTP/2 only: the response ended before the request did; the stream waits for the request's
    /// END_STREAM (it then closes by itself) until this fires.
    private var awaitingRequestEnd: Scheduled<Void>?
    private var trustVerdict: (engine: ProxyEngine, trusted: Bool)?
    /// Inside `channelRead`: a `channelReadComplete` follows.
    private var reading = false
    /// The exchange's clocks belong to the handler, not the exchange: a kept-alive connection
    /// reuses them, and a disarmed clock's pending check serves the next request (see `StallTimer`).
    /// Each fires only while armed, and every exchange disarms them as it ends. Made on first arming
    /// (an HTTP/2 stream with a bodiless request never needs the body clock).
    ///
    /// One clock for the upstream: the response head's wait, then the body's stalls. An HTTP/2
    /// stream's handler takes its clocks from its connection's pool and gives them back.
    private struct Clocks {
        var body: StallTimer<ProxyHandler>?
        var upstream: StallTimer<ProxyHandler>?
    }
    private var clocks = Clocks()
    private let clockPool: StreamClockPool<ProxyHandler>?
    /// Where the requests come from and the responses go. The downstream holds this handler as its
    /// receiver until it closes.
    private let responses: any Downstream

    /// - Parameters:
    ///   - responses: where the responses go; it is to make this handler its receiver.
    ///   - clockPool: an HTTP/2 stream's connection's clocks.
    init(
        live: LiveConfiguration, downstream: DownstreamInfo, responses: any Downstream, eventLoop: any EventLoop,
        clockPool: StreamClockPool<ProxyHandler>? = nil
    ) {
        self.live = live
        self.engine = live.engine
        self.downstream = downstream
        self.responses = responses
        self.eventLoop = eventLoop
        self.clockPool = clockPool
    }
}

// MARK: Downstream events

extension ProxyHandler: RequestReceiver {
    func downstreamClosed() {
        guard open else { return }
        abortExchange(reason: "client closed the connection")
        open = false
        awaitingRequestEnd?.cancel()
        awaitingRequestEnd = nil
        func release(_ clock: StallTimer<ProxyHandler>?) {
            guard let clock else { return }
            if let clockPool { clockPool.giveBack(clock) } else { clock.stop() }
        }
        release(clocks.body)
        release(clocks.upstream)
        // Given back, they belong to the next stream.
        clocks = Clocks()
    }

    func receive(_ part: RequestPart) {
        guard open, !closing else { return }
        reading = true
        defer { reading = false }
        switch part {
        case .head(let head): begin(head)
        case .body(let body): requestBody(body)
        case .end:
            if let pending = awaitingRequestEnd {
                pending.cancel()
                awaitingRequestEnd = nil
            }
            requestEnd()
        }
    }

    func receiveComplete() {
        if let exchange {
            if exchange.upstreamNeedsFlush, let upstream = exchange.upstream {
                exchange.upstreamNeedsFlush = false
                upstream.flush()
            }
            // Armed lazily: a bodiless request ends in the same read and never pays for a timer.
            if !exchange.requestEnded {
                if let body = clocks.body, body.isArmed {
                    body.touch()
                } else {
                    arm(&clocks.body, timeout: engine.clockTimeouts.body) { $0.exchange.map($0.requestBodyStalled) }
                }
            }
        }
    }

    func writabilityChanged(isWritable: Bool) {
        if let exchange, let upstream = exchange.upstream {
            if isWritable {
                upstream.resumeReads()
                if exchange.responseHeadSent, !exchange.responseEnded { armUpstreamIdleClock() }
            } else {
                upstream.pauseReads()
                if exchange.responseHeadAt != nil { clocks.upstream?.disarm() }
            }
        }
    }

    func downstreamFailed(_ error: any Error) {
        engine.logger.debug("downstream error", metadata: ["error": "\(error)", "peer": "\(downstream.peerAddress)"])
        responses.close()
    }

    func admitsRead() -> Bool {
        gate.admitRead()
    }
}

extension ProxyHandler {
    private func resumeReads(_ reason: ReadGate.Reason) {
        if gate.resume(reason), open { responses.read() }
    }

    // MARK: Request phase

    /// Whether the peer is one of the configured trusted proxies: the peer is fixed for the
    /// connection, so this is decided once per configuration, not per request.
    private var peerIsTrusted: Bool {
        if let verdict = trustVerdict, verdict.engine === engine { return verdict.trusted }
        let trusted = downstream.peerIP.map { peer in engine.config.trustedProxies.contains { $0.contains(peer) } } ?? false
        trustVerdict = (engine, trusted)
        return trusted
    }

    private func begin(_ head: RequestHead) {
        engine = live.engine
        let fields = HeaderRules.RequestFields(head.headers)
        let peerTrusted = peerIsTrusted
        let exchange = Exchange(
            context: RequestContext(
                requestID: RequestID(trustedValue: peerTrusted ? fields.requestID : nil), peerAddress: downstream.peerAddress, scheme: downstream.scheme,
                httpVersion: downstream.httpVersion, host: SiteTable.normalizedHost(fields.host ?? "") ?? "", authority: fields.host ?? ""),
            head: head, connection: fields.connection)
        exchange.context.userAgent = fields.userAgent
        exchange.context.referrer = fields.referrer
        self.exchange = exchange

        guard fields.hostCount == 1, let host = fields.host, !exchange.context.host.isEmpty else {
            return respondError(.badRequest, detail: "The request has no valid Host.", close: true)
        }
        let limits = engine.config.limits
        // HTTP/1 heads were held to these limits (more strictly: the whole head) by the parser.
        if downstream.httpVersion == "h2",
            head.headers.count > limits.maxHeaderCount
                || head.headers.nameAndValueBytes > limits.maxHeaderBytes
        {
            return respondError(.requestHeaderFieldsTooLarge, detail: "The request headers are too large.", close: true)
        }
        let framing = Self.framing(of: fields)
        if case .refused(let problem) = framing {
            return respondError(.badRequest, detail: problem, close: true)
        }
        guard let site = engine.sites.route(host: exchange.context.host) else {
            return respondError(.misdirectedRequest, detail: "This gateway serves no site for that host.", close: false)
        }
        exchange.context.site = site
        if let length = fields.contentLength.flatMap(Int.init), length > site.maxBodySize {
            return respondError(.payloadTooLarge, detail: "The request body is larger than this site accepts.", close: true)
        }

        exchange.context.clientAddress = HeaderRules.clientAddress(
            head.headers, peer: downstream.peerAddress, peerTrusted: peerTrusted, trusted: engine.config.trustedProxies)
        switch engine.filters.request(head, context: &exchange.context) {
        case .proxy: break
        case .respond(let response): return respondLocal(response, close: false)
        case .serve(let service):
            exchange.mode = .collecting(service)
            if exchange.requestEnded { runService(service, exchange) }
            return
        }

        // Only a request that goes to the origin pays for its head: smartlinks and the events
        // path answered above never build one.
        let upstream = site.config.upstream
        let rewritesHost = !site.config.preserveHost && upstream.scheme != .builtinDemo
        var upstreamHead = head
        upstreamHead.headers = HeaderRules.forwardable(head.headers, connection: fields.connection) { name in
            switch name.count {
            case 4: rewritesHost && name.matches("host")
            case 12: name.matches("x-request-id")
            default: false
            }
        }
        // `Transfer-Encoding` is hop-by-hop, but a chunked body is chunked toward the origin too.
        if framing == .chunked { upstreamHead.headers.add(name: "transfer-encoding", value: "chunked") }
        if downstream.httpVersion == "h2" { HeaderRules.joinCookieCrumbs(&upstreamHead.headers) }
        HeaderRules.applyForwarding(
            &upstreamHead.headers, peer: downstream.peerAddress, peerTrusted: peerTrusted, scheme: downstream.scheme, host: host)

        if fields.expect?.withUTF8Buffer({ $0.matches("100-continue") }) == true {
            upstreamHead.headers.remove(name: "expect")
            send(.head(ResponseHead(version: head.version, status: .continue)), flush: true)
        }
        upstreamHead.version = .http1_1
        exchange.context.requestID.append(to: &upstreamHead.headers)
        if rewritesHost {
            let defaultPort = upstream.scheme == .https ? 443 : 80
            let authority = upstream.port == defaultPort ? upstream.host : HostPort(host: upstream.host, port: upstream.port).description
            upstreamHead.headers.add(name: "host", value: authority)
        }
        engine.filters.upstreamRequest(&upstreamHead, context: &exchange.context)
        exchange.upstreamHead = upstreamHead
        connectUpstream(exchange)
    }

    enum RequestFraming: Equatable {
        case none, contentLength, chunked
        case refused(String)
    }

    /// Smuggling defence beyond the HTTP/1 parser: a request must be framed one unambiguous way.
    static func framing(of fields: HeaderRules.RequestFields) -> RequestFraming {
        let encodings = fields.transferEncodings
        if fields.contentLengthCount > 0 && !encodings.isEmpty { return .refused("Content-Length and Transfer-Encoding together are refused.") }
        if fields.contentLengthCount > 1 { return .refused("More than one Content-Length is refused.") }
        if let length = fields.contentLength {
            let digitsOnly = !length.isEmpty && length.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) && length.utf8.count <= 18
            return digitsOnly ? .contentLength : .refused("Content-Length must be digits only.")
        }
        if encodings.isEmpty { return .none }
        if encodings.joined(separator: ",").lowercased().trimmingCharacters(in: .whitespaces) != "chunked" {
            return .refused("Only Transfer-Encoding: chunked is accepted.")
        }
        return .chunked
    }

    private func requestBody(_ body: ByteBuffer) {
        guard let exchange else { return }
        clocks.body?.touch()
        exchange.requestBodyBytes += body.readableBytes
        if let site = exchange.context.site, exchange.requestBodyBytes > site.maxBodySize {
            exchange.upstream?.abandon()
            exchange.upstream = nil
            if exchange.responseHeadSent { return closeConnection(exchange, error: "request body too large") }
            return respondError(.payloadTooLarge, detail: "The request body is larger than this site accepts.", close: true)
        }
        switch exchange.mode {
        case .discarding:
            return
        case .collecting:
            var body = body
            exchange.collected.writeBuffer(&body)
        case .proxying:
            if let upstream = exchange.upstream {
                upstream.write(.body(.byteBuffer(body)))
                exchange.upstreamNeedsFlush = true
            } else {
                exchange.pending.append(.body(.byteBuffer(body)))
            }
        }
    }

    private func requestEnd() {
        guard let exchange else { return }
        exchange.requestEnded = true
        clocks.body?.disarm()
        switch exchange.mode {
        case .discarding:
            if exchange.responseEnded { finish(exchange, writingEnd: false) }
        case .collecting(let service):
            runService(service, exchange)
        case .proxying:
            guard let upstream = exchange.upstream else {
                exchange.pending.append(.end(nil))
                return
            }
            exchange.upstreamNeedsFlush = false
            upstream.write(.end(nil))
            upstream.flush()
            startResponseHeaderTimer(exchange)
        }
    }

    private func requestBodyStalled(_ exchange: Exchange) {
        exchange.upstream?.abandon()
        exchange.upstream = nil
        if exchange.responseHeadSent { return closeConnection(exchange, error: "request body stalled") }
        respondError(.requestTimeout, detail: "The request body stopped arriving.", close: true)
    }

    private func runService(_ service: any LocalService, _ exchange: Exchange) {
        guard open else { return }
        let head = exchange.requestHead
        let body = exchange.collected
        let requestContext = exchange.context
        let promise = eventLoop.makePromise(of: LocalResponse.self)
        promise.completeWithTask { await service.handle(head: head, body: body, context: requestContext) }
        promise.futureResult.assumeIsolated().whenSuccess { [self] response in
            guard self.exchange === exchange else { return }
            respondLocal(response, close: false)
        }
    }

    // MARK: Upstream

    private func connectUpstream(_ exchange: Exchange) {
        guard let site = exchange.context.site else { return }
        let key = site.upstreamKey
        gate.pause(.connecting)
        let pool = engine.pools.pool(for: eventLoop)
        if let parked = pool.takeParked(key) { return attach(parked, to: exchange) }
        pool.connect(key, address: engine.address(of: site.config.upstream)).assumeIsolated().whenComplete { [self] result in
            guard self.exchange === exchange, self.open else {
                if case .success(let connection) = result { pool.release(connection) }
                return
            }
            switch result {
            case .success(let connection): attach(connection, to: exchange)
            case .failure(let error): upstreamFailed(error, exchange: exchange)
            }
        }
    }

    private func attach(_ upstream: UpstreamConnection, to exchange: Exchange) {
        guard open, let head = exchange.upstreamHead else { return }
        exchange.upstream = upstream
        exchange.connectedAt = .now()
        upstream.sink = self
        upstream.requestCount += 1
        exchange.reusedConnection = upstream.requestCount > 1
        upstream.write(.head(head))
        for part in exchange.pending { upstream.write(part) }
        exchange.pending.removeAll()
        // Inside a downstream read (a parked connection is handed over there), the flush waits
        // for the read's end: a body part or end that came in the same read then goes with the
        // head, which tells the encoder how to frame it (see `UpstreamRequestEncoder`).
        if reading { exchange.upstreamNeedsFlush = true } else { upstream.flush() }
        if exchange.requestEnded { startResponseHeaderTimer(exchange) }
        if !upstream.isWritable { gate.pause(.partnerBusy) }
        if responses.isWritable { upstream.resumeReads() } else { upstream.pauseReads() }
        resumeReads(.connecting)
    }

    private func startResponseHeaderTimer(_ exchange: Exchange) {
        guard !exchange.responseHeadSent, clocks.upstream?.isArmed != true else { return }
        armUpstreamClock(timeout: engine.clockTimeouts.upstreamResponseHeader)
    }

    private func armUpstreamIdleClock() {
        armUpstreamClock(timeout: engine.clockTimeouts.upstreamIdle)
    }

    private func armUpstreamClock(timeout: TimeAmount) {
        arm(&clocks.upstream, timeout: timeout) { handler in
            handler.upstreamTimedOut(handler.exchange?.responseHeadAt == nil ? .responseHeaderTimeout : .stalled)
        }
    }

    /// Arms one of the clocks, making it on first use with `onStall` (later arms keep the first).
    private func arm(_ clock: inout StallTimer<ProxyHandler>?, timeout: TimeAmount, onStall: @escaping (ProxyHandler) -> Void) {
        guard open else { return }
        let armed = clock ?? clockPool?.take(for: self, onStall: onStall) ?? StallTimer(owner: self, onStall: onStall)
        clock = armed
        armed.arm(on: eventLoop, timeout: timeout)
    }

    private func upstreamTimedOut(_ error: UpstreamError) {
        guard let exchange else { return }
        exchange.upstream?.abandon()
        exchange.upstream = nil
        upstreamFailed(error, exchange: exchange)
    }

    private func disarmClocks() {
        clocks.body?.disarm()
        clocks.upstream?.disarm()
    }

    func upstreamResponseHead(_ head: consuming ResponseHead) {
        guard let exchange, open else { return }
        clocks.upstream?.disarm()
        exchange.responseHeadAt = .now()
        // The parser left the connection-specific fields out (``UpstreamConnection``).
        var head = head
        engine.filters.upstreamResponse(&head, context: &exchange.context)
        if exchange.requestHead.method != .HEAD, let coding = ResponseCoding(head.headers),
            let transform = engine.filters.responseBody(for: head, context: &exchange.context)
        {
            exchange.bodyTransform = coding.fit(transform, head: &head, request: exchange.requestHead)
        }
        if responses.isWritable { armUpstreamIdleClock() }
        sendResponseHead(&head, exchange: exchange)
    }

    func upstreamResponseBody(_ body: ByteBuffer) {
        guard let exchange, open else { return }
        clocks.upstream?.touch()
        var body = body
        if let transform = exchange.bodyTransform {
            do {
                body = try transform.transform(body)
            } catch {
                exchange.upstream?.abandon()
                exchange.upstream = nil
                return upstreamFailed(error, exchange: exchange)
            }
        }
        guard body.readableBytes > 0 else { return }
        exchange.responseBodyBytes += body.readableBytes
        exchange.downstreamNeedsFlush = true
        send(.body(.byteBuffer(body)))
    }

    func upstreamReadComplete() {
        guard let exchange, exchange.downstreamNeedsFlush, open else { return }
        exchange.downstreamNeedsFlush = false
        responses.flush()
    }

    func upstreamResponseEnd() {
        guard let exchange, open, let upstream = exchange.upstream else { return }
        disarmClocks()
        exchange.upstream = nil
        if exchange.requestEnded {
            engine.pools.pool(for: eventLoop).release(upstream)
        } else {
            // The origin answered before reading the whole request: that connection is out of step,
            // and so is an HTTP/1.1 client's; an HTTP/2 stream is not (see `finish`).
            upstream.abandon()
            if downstream.httpVersion != "h2" { exchange.keepAlive = false }
        }
        resumeReads(.partnerBusy)
        do {
            if let rest = try exchange.bodyTransform?.finish(), rest.readableBytes > 0 {
                exchange.responseBodyBytes += rest.readableBytes
                send(.body(.byteBuffer(rest)))
            }
        } catch {
            return upstreamFailed(error, exchange: exchange)
        }
        exchange.responseEnded = true
        exchange.downstreamNeedsFlush = false
        finish(exchange, writingEnd: true)
    }

    func upstreamFailed(_ error: any Error) {
        guard let exchange else { return }
        exchange.upstream = nil
        upstreamFailed(error, exchange: exchange)
    }

    private func upstreamFailed(_ error: any Error, exchange: Exchange) {
        guard open, self.exchange === exchange, !exchange.responseEnded else { return }
        disarmClocks()
        resumeReads(.partnerBusy)
        if exchange.responseHeadSent {
            // The client has part of a response; all it can be told is that the stream ended early.
            return closeConnection(exchange, error: "upstream failed mid-response: \(error)")
        }
        // A kept-alive connection the origin had just closed: try once more on a fresh one. Not
        // after a timeout: the origin had the request and was silent, and a second wait would
        // double the client's.
        if exchange.reusedConnection, !exchange.retried, exchange.requestBodyBytes == 0, !Self.isTimeout(error) {
            exchange.retried = true
            exchange.reusedConnection = false
            if exchange.requestEnded { exchange.pending = [.end(nil)] }
            return connectUpstream(exchange)
        }
        resumeReads(.connecting)
        switch error {
        case UpstreamError.connectTimeout:
            exchange.error = "upstream connect timeout"
            respondError(.gatewayTimeout, detail: "The site's server did not accept a connection in time.", close: false)
        case UpstreamError.responseHeaderTimeout:
            exchange.error = "upstream response timeout"
            respondError(.gatewayTimeout, detail: "The site's server did not answer in time.", close: !exchange.requestEnded)
        case UpstreamError.connectFailed(let cause):
            exchange.error = "upstream connect failed: \(cause)"
            respondError(.badGateway, detail: "The site's server refused the connection.", close: !exchange.requestEnded)
        default:
            exchange.error = "upstream failed: \(error)"
            respondError(.badGateway, detail: "The site's server closed the connection without an answer.", close: !exchange.requestEnded)
        }
    }

    private static func isTimeout(_ error: any Error) -> Bool {
        switch error {
        case UpstreamError.responseHeaderTimeout, UpstreamError.stalled, UpstreamError.connectTimeout: true
        default: false
        }
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        if isWritable { resumeReads(.partnerBusy) } else { gate.pause(.partnerBusy) }
    }

    // MARK: Response phase

    /// `head` is the caller's, changed in place: a copy left with the caller made the filters' first
    /// change copy every field.
    private func sendResponseHead(_ head: inout ResponseHead, exchange: Exchange) {
        // Set only when it differs: setting copies the head's shared storage.
        if head.version != .http1_1 { head.version = .http1_1 }
        engine.filters.response(&head, context: &exchange.context)
        if downstream.scheme == "https", let hsts = engine.config.tls.hstsMaxAge {
            head.headers.replaceOrAdd(name: "strict-transport-security", value: "max-age=\(hsts.components.seconds)")
        }
        if downstream.httpVersion == "h1" {
            // An HTTP/1.0 client cannot read chunked framing: end the body by closing instead.
            if exchange.requestHead.version.minor == 0, !head.headers.contains(name: "content-length") { exchange.keepAlive = false }
            if !exchange.keepAlive { head.headers.replaceOrAdd(name: "connection", value: "close") }
        }
        exchange.status = head.status
        exchange.responseHeadSent = true
        send(.head(head))
    }

    private func respondError(_ status: HTTPResponseStatus, detail: String, close: Bool) {
        guard let exchange else { return }
        if exchange.error == nil { exchange.error = detail }
        var response = ErrorPage.response(status, requestID: exchange.context.requestID.description, detail: detail)
        response.headers.add(name: "x-request-id", value: exchange.context.requestID.description)
        respondLocal(response, close: close)
    }

    private func respondLocal(_ response: LocalResponse, close: Bool) {
        guard let exchange, open, !exchange.responseHeadSent else { return }
        disarmClocks()
        exchange.mode = .discarding
        if close { exchange.keepAlive = false }
        var head = ResponseHead(version: .http1_1, status: response.status, headers: response.headers)
        head.headers.replaceOrAdd(name: "content-length", value: String(response.body.readableBytes))
        sendResponseHead(&head, exchange: exchange)
        if response.body.readableBytes > 0, exchange.requestHead.method != .HEAD {
            exchange.responseBodyBytes = response.body.readableBytes
            send(.body(.byteBuffer(response.body)))
        }
        exchange.responseEnded = true
        resumeReads(.connecting)
        resumeReads(.partnerBusy)
        if exchange.requestEnded || !exchange.keepAlive {
            finish(exchange, writingEnd: true)
        } else {
            // The rest of the request body is read and dropped; the exchange ends with it.
            send(.end(nil), flush: true)
        }
    }

    /// Logs the exchange and readies the handler for the next request (or closes, when it must).
    ///
    /// The exchange is complete before the response's end is written: that write can close the
    /// downstream synchronously, and its `downstreamClosed()` must find nothing to abort.
    private func finish(_ exchange: Exchange, writingEnd: Bool) {
        guard self.exchange === exchange, open else { return }
        disarmClocks()
        self.exchange = nil
        log(exchange, status: exchange.status.map { Int($0.code) } ?? 0)
        // On HTTP/1.1 a request still arriving leaves the connection out of step: it closes. An HTTP/2
        // stream is on its own: some clients send END_STREAM in a frame after the headers, and a
        // response can be complete before it arrives. Closing the stream then would reset it
        // (RST_STREAM CANCEL) and the client would see its complete response fail.
        let waitForRequest = !exchange.requestEnded && exchange.keepAlive && downstream.httpVersion == "h2"
        let mustClose = !exchange.keepAlive || (!exchange.requestEnded && !waitForRequest)
        // Before the end is written: that write may hand us the next pipelined request at once.
        if mustClose { closing = true }
        if writingEnd, mustClose, downstream.httpVersion == "h2" {
            // Closing a stream resets it at once, and nio-http2 drops what it still holds for the
            // stream (its flushes wait for the connection's read to complete): the client saw the
            // head and a RST_STREAM, not the answer. The stream closes once its end is written.
            let ended = eventLoop.makePromise(of: Void.self)
            responses.write(.end(nil), promise: ended)
            responses.flush()
            ended.futureResult.assumeIsolated().whenComplete { [self] _ in responses.close() }
            return
        }
        if writingEnd {
            send(.end(nil), flush: true)
        } else if mustClose {
            // What was written of a response cut short still goes, ahead of the close.
            responses.flush()
        }
        if mustClose { responses.close() }
        if waitForRequest {
            // A request that never ends is not kept forever: the body timeout closes (resets) the stream.
            awaitingRequestEnd = eventLoop.assumeIsolated().scheduleTask(in: engine.clockTimeouts.body) { [weak self] in
                guard let self, self.awaitingRequestEnd != nil else { return }
                self.awaitingRequestEnd = nil
                self.responses.close()
            }
        }
    }

    private func closeConnection(_ exchange: Exchange, error: String) {
        exchange.error = error
        exchange.keepAlive = false
        finish(exchange, writingEnd: false)
    }

    private func abortExchange(reason: String) {
        guard let exchange else { return }
        disarmClocks()
        exchange.upstream?.abandon()
        exchange.upstream = nil
        self.exchange = nil
        if exchange.error == nil { exchange.error = reason }
        // 499, as nginx logs it: the client went away before the response was complete.
        log(exchange, status: exchange.responseEnded ? Int(exchange.status?.code ?? 0) : 499)
    }

    private func send(_ part: ResponsePart, flush: Bool = false) {
        responses.write(part, promise: nil)
        if flush { responses.flush() }
    }

    // MARK: Logging phase

    private func log(_ exchange: Exchange, status: Int) {
        engine.metrics.countRequest(site: exchange.context.site, status: status)
        if let site = exchange.context.site, let headAt = exchange.responseHeadAt {
            engine.metrics.recordUpstream(site: site, headerAfter: headAt - exchange.startedAt)
        }
        var fields = AccessLogFields(isEnabled: engine.accessLog.logLevel <= .info)
        if fields.isEnabled { addAccessFields(exchange, status: status, to: &fields) }
        engine.filters.logging(&fields, context: &exchange.context)
        guard fields.isEnabled else { return }
        engine.accessLog.info("access", metadata: fields.values.mapValues { .string($0) })
    }

    private func addAccessFields(_ exchange: Exchange, status: Int, to fields: inout AccessLogFields) {
        let now = NIODeadline.now()
        func milliseconds(_ from: NIODeadline, _ to: NIODeadline) -> String {
            String(Double((to - from).nanoseconds) / 1_000_000)
        }
        let head = exchange.requestHead
        fields.set("request_id", exchange.context.requestID.description)
        fields.set("client", exchange.context.clientAddress)
        fields.set("method", head.method.rawValue)
        fields.set("host", exchange.context.host)
        fields.set("path", head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri)
        fields.set("proto", downstream.httpVersion)
        fields.set("status", String(status))
        fields.set("bytes_in", String(exchange.requestBodyBytes))
        fields.set("bytes_out", String(exchange.responseBodyBytes))
        fields.set("duration_ms", milliseconds(exchange.startedAt, now))
        if let site = exchange.context.site, case .proxying = exchange.mode, exchange.upstreamHead != nil {
            fields.set("upstream", site.config.upstream.description)
        }
        if let connected = exchange.connectedAt { fields.set("upstream_connect_ms", milliseconds(exchange.startedAt, connected)) }
        if let headAt = exchange.responseHeadAt { fields.set("upstream_header_ms", milliseconds(exchange.startedAt, headAt)) }
        if let error = exchange.error { fields.set("error", error) }
    }
}
