import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import Gateway

/// The gateway's own HTTP/1 encoders: the bytes of a head, the checks that keep a field from
/// splitting it, and NIO's framing rules (which these replace) kept case by case.
@Suite struct HTTP1EncoderTests {
    /// Everything the channel wrote, as one string.
    private func written(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let data = try channel.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let buffer) = data else { Issue.record("a file region"); continue }
            text += String(buffer: buffer)
        }
        return text
    }

    /// Writes response parts through the encoder, the way ``HTTP1Connection`` does behind TLS
    /// (writes gathered until a flush: what is written reads the same either way).
    private final class ResponseWriter: ChannelOutboundHandler {
        typealias OutboundIn = ResponsePart
        let encoder = ResponseEncoder(gathering: true)

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            encoder.write(unwrapOutboundIn(data), context: context, promise: promise)
        }

        func flush(context: ChannelHandlerContext) {
            encoder.flush(context: context)
            context.flush()
        }
    }

    /// Writes request parts through the encoder, the way ``UpstreamConnection`` does.
    private final class RequestWriter: ChannelOutboundHandler {
        typealias OutboundIn = UpstreamRequestPart
        let encoder = UpstreamRequestEncoder()

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            encoder.write(unwrapOutboundIn(data), context: context, promise: promise)
        }

        func flush(context: ChannelHandlerContext) {
            encoder.flush(context: context)
            context.flush()
        }
    }

    private func responseChannel() throws -> (EmbeddedChannel, ResponseEncoder) {
        let writer = ResponseWriter()
        return (EmbeddedChannel(handler: writer), writer.encoder)
    }

    @Test func aResponseHeadIsWrittenInOrderWithItsFraming() throws {
        let (channel, encoder) = try responseChannel()
        encoder.requestArrived(.GET)
        let head = ResponseHead(version: .http1_1, status: .ok, headers: [
            "Content-Type": "text/html", "Set-Cookie": "a=1", "Set-Cookie": "b=2", "Content-Length": "5", "Transfer-Encoding": "chunked",
        ])
        try channel.writeOutbound(ResponsePart.head(head))
        try channel.writeOutbound(ResponsePart.body(.byteBuffer(ByteBuffer(string: "hello"))))
        try channel.writeOutbound(ResponsePart.end(nil))
        // Content-Length wins; the Transfer-Encoding beside it is dropped, as NIO's encoder did.
        #expect(try written(channel) == "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n\r\nhello")
    }

    @Test func aBodyWithoutLengthIsChunkedOn11AndBareOn10() throws {
        let (channel, encoder) = try responseChannel()
        encoder.requestArrived(.GET)
        try channel.writeOutbound(ResponsePart.head(ResponseHead(version: .http1_1, status: .ok)))
        try channel.writeOutbound(ResponsePart.body(.byteBuffer(ByteBuffer(string: String(repeating: "x", count: 300)))))
        try channel.writeOutbound(ResponsePart.body(.byteBuffer(ByteBuffer())))
        try channel.writeOutbound(ResponsePart.end(["x-checksum": "abc"]))
        #expect(try written(channel) == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n12c\r\n" + String(repeating: "x", count: 300) + "\r\n0\r\nx-checksum: abc\r\n\r\n")

        encoder.requestArrived(.GET)
        try channel.writeOutbound(ResponsePart.head(ResponseHead(version: .http1_0, status: .ok)))
        try channel.writeOutbound(ResponsePart.body(.byteBuffer(ByteBuffer(string: "old"))))
        try channel.writeOutbound(ResponsePart.end(nil))
        #expect(try written(channel) == "HTTP/1.0 200 OK\r\n\r\nold")
    }

    @Test func answersToHeadAndBodylessStatusesCarryNoBody() throws {
        let (channel, encoder) = try responseChannel()
        encoder.requestArrived(.HEAD)
        encoder.requestArrived(.GET)
        // The HEAD answer keeps the length a GET would have had, and sends no chunk terminator.
        try channel.writeOutbound(ResponsePart.head(ResponseHead(version: .http1_1, status: .ok, headers: ["content-length": "42"])))
        let refusedBody = channel.eventLoop.makePromise(of: Void.self)
        channel.write(ResponsePart.body(.byteBuffer(ByteBuffer(string: "nope"))), promise: refusedBody)
        #expect(throws: NIOHTTPResponseEncoderError.self) { try refusedBody.futureResult.wait() }
        try channel.writeOutbound(ResponsePart.end(nil))
        #expect(try written(channel) == "HTTP/1.1 200 OK\r\ncontent-length: 42\r\n\r\n")
        // The next answer is the GET's: a 304 loses its framing fields.
        try channel.writeOutbound(ResponsePart.head(ResponseHead(version: .http1_1, status: .notModified, headers: ["content-length": "42", "etag": "\"v1\""])))
        try channel.writeOutbound(ResponsePart.end(nil))
        #expect(try written(channel) == "HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n")
    }

    @Test func aHeadThatWouldSplitIsRefusedAndNothingFollows() throws {
        let cases: [HeaderFields] = [
            ["x-evil": "a\r\nset-cookie: stolen=1"], ["x-evil": "a\nb"], ["x-nul": "a\u{0}b"], ["x-del": "a\u{7F}"],
            ["bad name": "v"], ["bad:name": "v"], ["": "v"],
        ]
        for headers in cases {
            let (channel, encoder) = try responseChannel()
            encoder.requestArrived(.GET)
            let head = channel.eventLoop.makePromise(of: Void.self)
            channel.write(ResponsePart.head(ResponseHead(version: .http1_1, status: .ok, headers: headers)), promise: head)
            #expect(throws: InvalidHeadError.self) { try head.futureResult.wait() }
            #expect(throws: InvalidHeadError.self) { try channel.throwIfErrorCaught() }
            let later = channel.eventLoop.makePromise(of: Void.self)
            channel.write(ResponsePart.end(nil), promise: later)
            #expect(throws: InvalidHeadError.self) { try later.futureResult.wait() }
            #expect(try written(channel) == "", "\(headers)")
        }
        // Tabs and bytes above 0x7F (obs-text) are allowed in values.
        let (channel, encoder) = try responseChannel()
        encoder.requestArrived(.GET)
        try channel.writeOutbound(ResponsePart.head(ResponseHead(version: .http1_1, status: .noContent, headers: ["x-note": "a\tcafé"])))
        #expect(try written(channel) == "HTTP/1.1 204 No Content\r\nx-note: a\tcafé\r\n\r\n")
    }

    /// A head far past the usual field size (a long cookie, many fields, a long target) is
    /// written whole as the buffer grows; a bad field after all that still leaves nothing written.
    @Test func aLongHeadIsWrittenWhole() throws {
        let cookie = String(repeating: "c", count: 6_000)
        var headers: HeaderFields = ["cookie": cookie]
        for i in 0..<60 { headers.add(name: "x-field-\(i)", value: String(repeating: "v", count: i * 7)) }
        headers.add(name: "content-length", value: "0")
        let target = "/" + String(repeating: "p", count: 3_000)
        let channel = EmbeddedChannel(handler: RequestWriter())
        try channel.writeOutbound(UpstreamRequestPart.head(RequestHead(version: .http1_1, method: .GET, uri: target, headers: headers)))
        try channel.writeOutbound(UpstreamRequestPart.end(nil))
        let expected = "GET \(target) HTTP/1.1\r\n" + headers.map { "\($0.name): \($0.value)\r\n" }.joined() + "\r\n"
        #expect(try written(channel) == expected)

        headers.add(name: "x-evil", value: "a\r\nb")
        let (responses, encoder) = try responseChannel()
        encoder.requestArrived(.GET)
        let head = responses.eventLoop.makePromise(of: Void.self)
        responses.write(ResponsePart.head(ResponseHead(version: .http1_1, status: .ok, headers: headers)), promise: head)
        #expect(throws: InvalidHeadError.self) { try head.futureResult.wait() }
        #expect(try written(responses) == "")
    }

    @Test func upstreamRequestsKeepTheirFramingAndAGetWithABodyIsChunked() throws {
        let channel = EmbeddedChannel(handler: RequestWriter())
        // A GET without a body: the head waits for its end, then goes out unframed.
        // (`write`, not `writeOutbound`: that waits for the held head's promise.)
        channel.write(UpstreamRequestPart.head(RequestHead(version: .http1_1, method: .GET, uri: "/lp?ttclid=E.C.P.x", headers: ["host": "o"])), promise: nil)
        #expect(try written(channel) == "")
        try channel.writeOutbound(UpstreamRequestPart.end(nil))
        #expect(try written(channel) == "GET /lp?ttclid=E.C.P.x HTTP/1.1\r\nhost: o\r\n\r\n")
        // A GET whose body arrives (HTTP/2 DATA, or chunks whose Transfer-Encoding was hop-by-hop): chunked.
        channel.write(UpstreamRequestPart.head(RequestHead(version: .http1_1, method: .GET, uri: "/q", headers: ["host": "o"])), promise: nil)
        try channel.writeOutbound(UpstreamRequestPart.body(.byteBuffer(ByteBuffer(string: "GET /smuggled HTTP/1.1\r\n\r\n"))))
        try channel.writeOutbound(UpstreamRequestPart.end(nil))
        #expect(try written(channel) == "GET /q HTTP/1.1\r\nhost: o\r\ntransfer-encoding: chunked\r\n\r\n1a\r\nGET /smuggled HTTP/1.1\r\n\r\n\r\n0\r\n\r\n")
        // POST without a length: chunked at once. With one: as it is.
        try channel.writeOutbound(UpstreamRequestPart.head(RequestHead(version: .http1_1, method: .POST, uri: "/u", headers: ["host": "o"])))
        #expect(try written(channel) == "POST /u HTTP/1.1\r\nhost: o\r\ntransfer-encoding: chunked\r\n\r\n")
        try channel.writeOutbound(UpstreamRequestPart.end(nil))
        #expect(try written(channel) == "0\r\n\r\n")
        // Chunked already (the gateway restores a client's chunking, which is hop-by-hop): one field, not two.
        try channel.writeOutbound(UpstreamRequestPart.head(RequestHead(version: .http1_1, method: .GET, uri: "/c", headers: ["Transfer-Encoding": "chunked", "host": "o"])))
        try channel.writeOutbound(UpstreamRequestPart.end(nil))
        #expect(try written(channel) == "GET /c HTTP/1.1\r\nhost: o\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n")
        try channel.writeOutbound(UpstreamRequestPart.head(RequestHead(version: .http1_1, method: .PUT, uri: "/u", headers: ["content-length": "2"])))
        try channel.writeOutbound(UpstreamRequestPart.body(.byteBuffer(ByteBuffer(string: "ok"))))
        try channel.writeOutbound(UpstreamRequestPart.end(nil))
        #expect(try written(channel) == "PUT /u HTTP/1.1\r\ncontent-length: 2\r\n\r\nok")
    }

    /// A flush sends a held head as it is; a body that turns up after that cannot be framed and is
    /// refused rather than sent bare.
    @Test func aBodyAfterAnUnframedHeadWasSentIsRefused() throws {
        let channel = EmbeddedChannel(handler: RequestWriter())
        channel.write(UpstreamRequestPart.head(RequestHead(version: .http1_1, method: .DELETE, uri: "/x", headers: ["host": "o"])), promise: nil)
        channel.flush()
        #expect(try written(channel) == "DELETE /x HTTP/1.1\r\nhost: o\r\n\r\n")
        let late = channel.eventLoop.makePromise(of: Void.self)
        channel.writeAndFlush(UpstreamRequestPart.body(.byteBuffer(ByteBuffer(string: "GET /smuggled HTTP/1.1\r\n\r\n"))), promise: late)
        #expect(throws: InvalidHeadError.self) { try late.futureResult.wait() }
        #expect(throws: InvalidHeadError.self) { try channel.throwIfErrorCaught() }
        #expect(try written(channel) == "")
    }

    /// Random bytes in names and values (CR, LF, NUL, DEL, tabs, non-ASCII among them): a head is
    /// either refused or written as exactly its own lines; no value ever adds a line.
    @Test func noFieldValueCanAddALine() throws {
        var random = SplitMix(seed: 13)
        let hostile: [UInt8] = [0x0D, 0x0A, 0x00, 0x7F, 0x01, 0x1F, 0x20, 0x3A, 0xC3]
        let plain: [UInt8] = [0x61, 0x41, 0x2D, 0x31, 0x09, 0x20]
        // Mostly plain bytes, one in forty hostile: most heads carry a hostile byte somewhere, and
        // enough carry none to be written.
        func draw(_ count: ClosedRange<Int>) -> String {
            let bytes = (0..<Int.random(in: count, using: &random)).map { _ in
                Int.random(in: 0..<40, using: &random) == 0 ? hostile.randomElement(using: &random)! : plain.randomElement(using: &random)!
            }
            return String(decoding: bytes, as: UTF8.self)
        }
        var written = 0
        for _ in 0..<3_000 {
            var headers = HeaderFields()
            let fieldCount = Int.random(in: 1...4, using: &random)
            for _ in 0..<fieldCount {
                headers.add(contentsOf: HeaderFields([(draw(0...6), draw(0...24))]))
            }
            let head = ResponseHead(version: .http1_1, status: .ok, headers: headers)
            guard let draft = HeadWriter.draft(head, allocator: ByteBufferAllocator()),
                let buffer = HeadWriter.finish(draft, of: head, edit: HeadWriter.FramingEdit(), allocator: ByteBufferAllocator())
            else { continue }
            written += 1
            let bytes = Array(buffer.readableBytesView)
            // Every CR is followed by LF and every LF preceded by CR; the lines are the status line,
            // one per field and the blank one.
            let lines = String(decoding: bytes, as: UTF8.self).components(separatedBy: "\r\n")
            #expect(lines.count == fieldCount + 3, "\(bytes)")
            #expect(lines.allSatisfy { !$0.utf8.contains(0x0D) && !$0.utf8.contains(0x0A) && !$0.utf8.contains(0x00) })
            for (line, (name, value)) in zip(lines.dropFirst(), headers) {
                #expect(line == name + ": " + value)
            }
        }
        #expect(written > 50, "too few valid heads drawn to test anything")
    }

    @Test func requestTargetsAndMethodsMustBeSendable() throws {
        for (method, uri) in [(HTTPMethod.GET, "/a b"), (.GET, "/a\r\nx: y"), (.GET, ""), (.RAW(value: "GE T"), "/"), (.GET, "/a\u{7F}")] {
            let channel = EmbeddedChannel(handler: RequestWriter())
            let head = channel.eventLoop.makePromise(of: Void.self)
            channel.write(UpstreamRequestPart.head(RequestHead(version: .http1_1, method: method, uri: uri, headers: ["content-length": "0"])), promise: head)
            #expect(throws: InvalidHeadError.self, "\(method) \(uri)") { try head.futureResult.wait() }
            #expect(try written(channel) == "")
        }
        let channel = EmbeddedChannel(handler: RequestWriter())
        try channel.writeOutbound(UpstreamRequestPart.head(RequestHead(
            version: .http1_1, method: .RAW(value: "PURGE-ALL"), uri: "/p%20q?a=[1]&b=~!$'()*+,;=:@", headers: ["content-length": "0"])))
        #expect(try written(channel) == "PURGE-ALL /p%20q?a=[1]&b=~!$'()*+,;=:@ HTTP/1.1\r\ncontent-length: 0\r\n\r\n")
    }

    /// Bytes clients send unencoded though RFC 9112 does not allow them (an unfilled ad macro's
    /// braces, quotes, raw UTF-8) reach the origin percent-encoded, not refused.
    @Test(arguments: [
        ("/lp?utm_content={{ad.name}}&ttclid=x", "/lp?utm_content=%7B%7Bad.name%7D%7D&ttclid=x"),
        ("/caf\u{E9}?q=\"a|b\"", "/caf%C3%A9?q=%22a%7Cb%22"), ("/a\\b^c`d<e>", "/a%5Cb%5Ec%60d%3Ce%3E"),
    ])
    func targetBytesClientsSendUnencodedArePercentEncoded(uri: String, expected: String) throws {
        let channel = EmbeddedChannel(handler: RequestWriter())
        try channel.writeOutbound(UpstreamRequestPart.head(RequestHead(version: .http1_1, method: .GET, uri: uri, headers: ["host": "o"])))
        #expect(try written(channel) == "GET \(expected) HTTP/1.1\r\nhost: o\r\n\r\n")
    }
}
