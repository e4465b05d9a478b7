import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTPCompression
import NIOPosix
import NIOSSL

/// A real HTTP/1.1 origin for the proxy to talk to, with routes that misbehave on purpose.
///
/// - `/echo…`: JSON of the request as received (method, uri, headers, body length).
/// - `/bytes/N`: N bytes, streamed as the connection can take them.
/// - `/upload`: reads the whole body, answers its length.
/// - `/slow/MS`: answers after MS milliseconds.  `/hang`: never answers.
/// - `/drop-reused`: on a connection that already answered, closes without an answer (an origin
///   closing a kept-alive connection as the request arrives); on a new one, answers `fresh`.
/// - `/reset`: promises 1,000,000 bytes, sends 10, closes.  `/stall`: the same, but stays open.
/// - `/raw/NAME`: one of ``rawAnswers`` written straight onto the socket, then a close: non-HTTP,
///   interim responses before the final one, a body that runs to the close, conflicting lengths.
/// - `/hop`: answers with hop-by-hop headers that must not reach the client.
/// - `/redirect`: 302 to `/landing`.
/// - `/gzip-broken/corrupt`, `/gzip-broken/truncated`: HTML that claims gzip and is not whole.
/// - HTML answers are gzip-compressed when the request accepts it (swift-nio-extras' compressor).
/// - `/journey/…`: the pages of a landing site (`shop` links and posts to the checkout) and its
///   cross-domain checkout, for the browser tests
///   (see ``journeyStep(_:host:)``).
/// - `/chain/…`: a redirect chain through every hop type a browser follows, for `clickgate trace`
///   (see ``chainStep(_:query:cookie:)``).
final class TestOrigin: Sendable {
    let channel: any Channel
    private let accepted: NIOLockedValueBox<[any Channel]>

    var port: Int { channel.localAddress!.port! }
    var url: String { "http://127.0.0.1:\(port)" }
    /// Connections the origin has accepted so far.
    var connectionCount: Int { accepted.withLockedValue { $0.count } }
    /// Accepted connections not closed yet.
    var openConnectionCount: Int { accepted.withLockedValue { $0.filter(\.isActive).count } }

    private init(channel: any Channel, accepted: NIOLockedValueBox<[any Channel]>) {
        self.channel = channel
        self.accepted = accepted
    }

    /// - Parameters:
    ///   - tls: serve HTTPS with the test CA's `localhost` certificate.
    ///   - group: the event loops to serve on; a test streaming gigabytes passes its own, so the
    ///     loops the other tests' clients and origins share are not busy with its bytes.
    static func start(tls: Bool = false, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> TestOrigin {
        let accepted = NIOLockedValueBox<[any Channel]>([])
        let context = try tls ? NIOSSLContext(configuration: .makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(TestFiles.certs + "/localhost.pem").map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: TestFiles.certs + "/localhost.key", format: .pem)))) : nil
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // `/bytes` writes up to the high watermark per turn of the loop (see `pump`).
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 << 10, high: 1 << 20))
            .childChannelInitializer { channel in
                accepted.withLockedValue { $0.append(channel) }
                return channel.eventLoop.makeCompletedFuture {
                    if let context { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context)) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    // swift-nio-extras' compressor: gzip from a second implementation, as origins send it.
                    try channel.pipeline.syncOperations.addHandler(HTTPResponseCompressor(responseCompressionPredicate: { head, _ in
                        let html = head.headers.first(name: "content-type")?.hasPrefix("text/html") == true
                        return html && !head.headers.contains(name: "content-encoding") ? .compressIfPossible : .doNotCompress
                    }))
                    try channel.pipeline.syncOperations.addHandler(OriginHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return TestOrigin(channel: channel, accepted: accepted)
    }

    /// Closes every accepted connection, as an origin restarting would.
    func closeAllConnections() async {
        for connection in accepted.withLockedValue({ $0 }) { try? await connection.close() }
    }

    func stop() async {
        await closeAllConnections()
        try? await channel.close()
    }
}

private final class OriginHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var head: HTTPRequestHead?
    private var bodyLength = 0
    private var answered = 0
    private var streamRemaining = 0
    private var pumping = false
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            bodyLength = 0
        case .body(let body):
            bodyLength += body.readableBytes
        case .end:
            guard let head else { return }
            respond(to: head, context: context)
            answered += 1
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { pump(context) }
        context.fireChannelWritabilityChanged()
    }

    static let rawAnswers = [
        "garbage": "SPDY/9 what\r\n\r\n",
        "interim": "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
            + "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal",
        "until-close": "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthis body runs until the origin closes",
        "two-lengths": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ]

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = String(head.uri.split(separator: "?").first ?? "")
        let parts = path.split(separator: "/").map(String.init)
        switch parts.first ?? "" {
        case "echo":
            var headers: [[String]] = []
            for (name, value) in head.headers { headers.append([name, value]) }
            let object: [String: Any] = ["method": head.method.rawValue, "uri": head.uri, "headers": headers, "body_length": bodyLength]
            let json = try! JSONSerialization.data(withJSONObject: object)
            send(.ok, ["content-type": "application/json"], String(decoding: json, as: UTF8.self), context)
        case "bytes":
            streamRemaining = Int(parts.dropFirst().first ?? "0") ?? 0
            context.write(wrapOutboundOut(.head(HTTPResponseHead(
                version: .http1_1, status: .ok,
                headers: ["content-length": String(streamRemaining), "content-type": "application/octet-stream"]))), promise: nil)
            pump(context)
        case "upload":
            send(.ok, ["content-type": "text/plain"], String(bodyLength), context)
        case "slow":
            let ms = Int64(parts.dropFirst().first ?? "0") ?? 0
            context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(ms)) { [self] in
                send(.ok, ["content-type": "text/plain"], "slow \(ms)", context)
            }
        case "hang":
            return
        case "drop-reused":
            if answered > 0 { return context.close(promise: nil) }
            send(.ok, ["content-type": "text/plain"], "fresh", context)
        case "reset", "stall":
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: ["content-length": "1000000"]))), promise: nil)
            let sent = context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "0123456789")))))
            if parts.first == "reset" { sent.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
        case "raw":
            // Written below the HTTP encoder, straight onto the socket.
            let encoder = try! context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self)
            let answer = Self.rawAnswers[parts.dropFirst().first ?? ""] ?? "no such raw answer"
            encoder.writeAndFlush(NIOAny(ByteBuffer(string: answer))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        case "hop":
            send(.ok, [
                "connection": "x-secret, keep-alive", "x-secret": "1", "keep-alive": "timeout=5", "proxy-authenticate": "Basic",
                "upgrade": "h2c", "x-kept": "yes", "content-type": "text/plain",
            ], "hop", context)
        case "redirect":
            send(.found, ["location": "/landing"], "", context)
        case "redirect-to":
            // `/redirect-to?status=302&to=<percent-encoded Location>`; `refresh=` sends a Refresh header instead.
            let query = head.uri.split(separator: "?", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
            var fields: [String: String] = [:]
            for pair in query.split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
                fields[kv[0]] = kv.count > 1 ? kv[1].removingPercentEncoding : ""
            }
            if let refresh = fields["refresh"] {
                send(.ok, ["refresh": refresh, "content-type": "text/plain"], "refresh", context)
            } else {
                let status = HTTPResponseStatus(statusCode: Int(fields["status"] ?? "302") ?? 302)
                send(status, ["location": fields["to"] ?? "/"], "", context)
            }
        case "gzip-broken":
            // A gzip header, then either data that is no deflate stream or a stream cut short.
            let header: [UInt8] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3]
            let body = parts.dropFirst().first == "truncated"
                ? header + [179, 81, 76, 201, 79, 46, 169, 44, 72, 85, 200, 40, 201, 205, 177, 179, 129, 144, 73, 249, 41]
                : header + Array("this is not deflate data".utf8)
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: [
                "content-type": "text/html", "content-encoding": "gzip", "content-length": String(body.count),
            ]))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        case "journey":
            let (status, headers, body) = Self.journeyStep(parts.dropFirst().first ?? "", host: head.headers.first(name: "host") ?? "")
            send(status, headers, body, context)
        case "chain":
            let query = head.uri.split(separator: "?", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
            let (status, headers, body) = Self.chainStep(parts.dropFirst().first ?? "", query: query, cookie: head.headers.first(name: "cookie"))
            send(status, headers, body, context)
        default:
            send(.notFound, ["content-type": "text/plain"], "no route \(path)", context)
        }
    }

    /// `landing`, `offer`: pages that show the cookies their script can read. `hop`: 302 to `offer`
    /// dropping the query. `to-checkout` / `to-thirdparty`: 302 to the checkout host or a third party
    /// (same port) without the query. `checkout`: sets `_ttp` as TikTok's Pixel would, then posts one
    /// Purchase twice to the first-party events path; `window.journey` holds the event id and both answers.
    static func journeyStep(_ step: String, host: String) -> (HTTPResponseStatus, HTTPHeaders, String) {
        let html: HTTPHeaders = ["content-type": "text/html; charset=utf-8"]
        let port = host.split(separator: ":").last.map(String.init) ?? "443"
        func page(_ title: String, _ script: String = "") -> String {
            """
            <!doctype html><html><head><title>\(title)</title></head><body><h1>\(title)</h1>
            <p id="cookies"></p><script>document.getElementById('cookies').textContent = document.cookie;\(script)</script></body></html>
            """
        }
        switch step {
        case "landing", "offer": return (.ok, html, page(step))
        case "shop":
            return (.ok, html, """
                <!doctype html><html><head><title>shop</title></head><body><h1>shop</h1>
                <a id="checkout" href="https://checkout.test:\(port)/journey/checkout">Checkout</a>
                <a id="third" href="https://thirdparty.test:\(port)/journey/landing">Elsewhere</a>
                <form id="buy" action="https://checkout.test:\(port)/journey/checkout"><input name="sku" value="42"><button>Buy</button></form>
                </body></html>
                """)
        case "hop": return (.found, ["location": "/journey/offer"], "")
        case "to-checkout": return (.found, ["location": "https://checkout.test:\(port)/journey/checkout"], "")
        case "to-thirdparty": return (.found, ["location": "https://thirdparty.test:\(port)/journey/landing"], "")
        case "checkout":
            return (.ok, html, page("checkout", """
                document.cookie = "_ttp=ttp.journey-1; path=/; max-age=3600";
                window.journey = { eventId: crypto.randomUUID(), answers: [] };
                const body = JSON.stringify({ event: "Purchase", event_id: window.journey.eventId,
                  properties: { value: 42.5, currency: "EUR", order_id: "o-" + window.journey.eventId },
                  user: { email: "Buyer@Example.com" } });
                const post = () => fetch("/_clickgate/events", { method: "POST", headers: { "content-type": "application/json" }, body })
                  .then(r => r.text().then(t => window.journey.answers.push(r.status + " " + t)));
                post().then(post);
                """))
        default: return (.notFound, ["content-type": "text/plain"], "no journey step \(step)")
        }
    }

    /// `start` (302 Location) → `refresh` (Refresh header) → `meta` (meta refresh, with decoys in a
    /// comment and a noscript) → `js` (`location.href = … + location.search`) → `js2`
    /// (`location.replace` with escaped slashes) → `landing`. Each step passes the query on, except
    /// the step named by `lose=`, which drops it. `cookie` sets a cookie and redirects to itself; it
    /// goes on only when the cookie comes back. `loop` and `loop2` send to each other.
    static func chainStep(_ step: String, query: String, cookie: String?) -> (HTTPResponseStatus, HTTPHeaders, String) {
        let html: HTTPHeaders = ["content-type": "text/html; charset=utf-8"]
        let dropping = query.split(separator: "&").contains { $0 == "lose=\(step)" }
        let carried = dropping || query.isEmpty ? "" : "?" + query
        switch step {
        case "start":
            return (.found, ["location": "/chain/refresh" + carried], "")
        case "refresh":
            return (.ok, ["refresh": "0; url=/chain/meta" + carried, "content-type": "text/plain"], "refreshing")
        case "meta":
            let target = ("/chain/js" + carried).replacingOccurrences(of: "&", with: "&amp;")
            return (.ok, html, """
                <!doctype html><html><head><!-- <meta http-equiv="refresh" content="0; url=/decoy-comment"> -->
                <noscript><meta http-equiv="refresh" content="0; url=/decoy-noscript"></noscript>
                <META HTTP-EQUIV="Refresh" CONTENT="1; URL='\(target)'"></head><body>wait</body></html>
                """)
        case "js":
            let search = dropping ? "" : " + window.location.search"
            return (.ok, html, "<html><script>var seen = 1;\nif (location.href == \"x\") {}\nwindow.location.href = \"/chain/js2\"\(search);</script></html>")
        case "js2":
            let target = ("/chain/landing" + carried).replacingOccurrences(of: "/", with: "\\/")
            return (.ok, html, "<html><body><script type=\"text/javascript\">location.replace('\(target)')</script></body></html>")
        case "landing":
            return (.ok, html, "<html><body><h1>landing</h1><script src=\"/app.js\"></script></body></html>")
        case "cookie":
            if cookie?.contains("gate=1") == true { return (.found, ["location": "/chain/landing" + carried], "") }
            return (.found, ["location": "/chain/cookie" + carried, "set-cookie": "gate=1; Path=/; HttpOnly"], "")
        case "loop":
            return (.found, ["location": "/chain/loop2"], "")
        case "loop2":
            return (.found, ["location": "/chain/loop"], "")
        default:
            return (.notFound, ["content-type": "text/plain"], "no chain step \(step)")
        }
    }

    /// Writes one high watermark's worth of `/bytes` (1 MiB) per millisecond at most. A reader that
    /// keeps up with every flush would otherwise keep this loop writing for the whole body (seconds
    /// for 1 GiB) while the other tests' clients and origins on it wait: the soak saw requests this
    /// origin had accepted go unanswered for ten seconds.
    private func pump(_ context: ChannelHandlerContext) {
        // The flush below can report writability synchronously: that turn is this one.
        guard !pumping else { return }
        pumping = true
        let chunk = 64 * 1024
        while streamRemaining > 0, context.channel.isWritable {
            let n = min(chunk, streamRemaining)
            streamRemaining -= n
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(repeating: 0x61, count: n)))), promise: nil)
            if streamRemaining == 0 { context.write(wrapOutboundOut(.end(nil)), promise: nil) }
        }
        context.flush()
        pumping = false
        if streamRemaining > 0, context.channel.isWritable {
            // Not `execute`, nor a timer shorter than this turn took: the loop runs tasks until none
            // is due, and only then polls its sockets.
            context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(1)) { [self] in pump(context) }
        }
    }

    private func send(_ status: HTTPResponseStatus, _ headers: HTTPHeaders, _ body: String, _ context: ChannelHandlerContext) {
        var headers = headers
        headers.replaceOrAdd(name: "content-length", value: String(body.utf8.count))
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if !body.isEmpty { context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}
