import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import Testing

@testable import Gateway

/// One HTTP/2 stream as the proxy sees it: request parts from HEADERS and DATA payloads, response
/// parts back into payloads with HTTP/2's field rules, and `Set-Cookie` kept out of HPACK's table.
@Suite struct HTTP2StreamCodecTests {
    private func requestBlock(_ fields: [(String, String)]) -> HPACKHeaders {
        HPACKHeaders(fields)
    }

    private static let get = [(":method", "GET"), (":scheme", "https"), (":path", "/lp?ttclid=x"), (":authority", "lp.example:8443")]

    private func read(_ payloads: [HTTP2Frame.FramePayload]) throws -> (parts: [RequestPart], channel: EmbeddedChannel) {
        let channel = EmbeddedChannel(handler: HTTP2StreamCodec())
        for payload in payloads { try channel.writeInbound(payload) }
        var parts: [RequestPart] = []
        while let part = try channel.readInbound(as: RequestPart.self) { parts.append(part) }
        return (parts, channel)
    }

    @Test func aRequestHeadTakesItsHostFromTheAuthority() throws {
        let (parts, _) = try read([.headers(.init(headers: requestBlock(Self.get + [("user-agent", "h2"), ("cookie", "a=1")]), endStream: true))])
        #expect(parts.count == 2)
        guard case .head(let head) = parts.first, case .end(nil) = parts.last else { Issue.record("\(parts)"); return }
        #expect(head.method == .GET && head.uri == "/lp?ttclid=x" && head.version == HTTPVersion(major: 2, minor: 0))
        #expect(head.headers.map(\.name) == ["host", "user-agent", "cookie"])
        #expect(head.headers["host"] == ["lp.example:8443"])
    }

    @Test func bodiesAreFramedAsTheStreamSaysAndTrailersEndThem() throws {
        let post = [(":method", "POST"), (":scheme", "https"), (":path", "/form"), (":authority", "lp.example")]
        let (parts, _) = try read([
            .headers(.init(headers: requestBlock(post))), .data(.init(data: .byteBuffer(ByteBuffer(string: "a=1")))),
            .headers(.init(headers: requestBlock([("x-sum", "3")]), endStream: true)),
        ])
        guard parts.count == 3, case .head(let head) = parts[0], case .body(let body) = parts[1], case .end(let trailers?) = parts[2] else {
            Issue.record("\(parts)")
            return
        }
        #expect(head.headers["transfer-encoding"] == ["chunked"], "no length and more to come: chunked toward the origin")
        #expect(String(buffer: body) == "a=1" && trailers["x-sum"] == ["3"])

        let (ended, _) = try read([.headers(.init(headers: requestBlock(post), endStream: true))])
        guard case .head(let empty) = ended.first else { Issue.record("\(ended)"); return }
        #expect(empty.headers["content-length"] == ["0"] && empty.headers["transfer-encoding"].isEmpty)

        let (sized, _) = try read([
            .headers(.init(headers: requestBlock(post + [("content-length", "3")]))),
            .data(.init(data: .byteBuffer(ByteBuffer(string: "a=1")), endStream: true)),
        ])
        guard sized.count == 3, case .head(let withLength) = sized[0], case .end(nil) = sized[2] else { Issue.record("\(sized)"); return }
        #expect(withLength.headers["content-length"] == ["3"] && withLength.headers["transfer-encoding"].isEmpty)
    }

    @Test(arguments: [
        ([(":scheme", "https"), (":path", "/"), (":authority", "a")], HTTP2StreamCodec.RequestError.missingPseudoField(":method")),
        ([(":method", "GET"), (":scheme", "https"), (":authority", "a")], .missingPseudoField(":path")),
        ([(":method", "GET"), (":path", "/"), (":authority", "a")], .missingPseudoField(":scheme")),
        ([(":method", "GET"), (":scheme", "https"), (":path", "/")], .missingPseudoField(":authority")),
        ([(":method", "GET"), (":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "a")], .duplicatePseudoField(":method")),
        ([(":method", "GET"), (":scheme", "https"), (":path", "/ HTTP/1.1\r\nX-Smuggled: 1\r\n"), (":authority", "a")], .malformedPseudoField(":path")),
        ([(":method", "GET"), (":scheme", "https"), (":path", "/a b"), (":authority", "a")], .malformedPseudoField(":path")),
        ([(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "a\u{0}b")], .malformedPseudoField(":authority")),
        ([(":method", "GET"), (":scheme", "https"), (":path", ""), (":authority", "a")], .malformedPseudoField(":path")),
        (get + [(":status", "200")], .unknownPseudoField(":status")),
        ([(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"), (":path", "/"), (":authority", "a")], .unknownPseudoField(":protocol")),
        ([(":method", "GET"), (":scheme", "https"), ("accept", "*/*"), (":path", "/"), (":authority", "a")], .misplacedPseudoField(":path")),
        (get + [("User-Agent", "h2")], .malformedFieldName("User-Agent")),
        (get + [("x y", "1")], .malformedFieldName("x y")),
        (get + [("", "1")], .malformedFieldName("")),
        (get + [("x-a", "1\r\nx-b: 2")], .malformedFieldValue("x-a")),
        (get + [("x-a", "1\u{0}")], .malformedFieldValue("x-a")),
        (get + [("connection", "keep-alive")], .connectionSpecificField("connection")),
        (get + [("keep-alive", "timeout=5")], .connectionSpecificField("keep-alive")),
        (get + [("proxy-connection", "keep-alive")], .connectionSpecificField("proxy-connection")),
        (get + [("transfer-encoding", "chunked")], .connectionSpecificField("transfer-encoding")),
        (get + [("upgrade", "websocket")], .connectionSpecificField("upgrade")),
        (get + [("te", "gzip")], .connectionSpecificField("te")),
    ] as [([(String, String)], HTTP2StreamCodec.RequestError)])
    func malformedRequestsResetTheirStream(fields: [(String, String)], expected: HTTP2StreamCodec.RequestError) throws {
        #expect(throws: expected) { try HTTP2StreamCodec.requestHead(HPACKHeaders(fields), endStream: true) }
        let refused = NIOLockedValueBox<[HTTP2StreamCodec.RequestError]>([])
        let channel = EmbeddedChannel(handler: HTTP2StreamCodec { error in refused.withLockedValue { $0.append(error) } })
        #expect(throws: expected) { try channel.writeInbound(HTTP2Frame.FramePayload.headers(.init(headers: HPACKHeaders(fields)))) }
        #expect(try channel.readInbound(as: RequestPart.self) == nil, "nothing reaches the proxy")
        guard case .rstStream(let code) = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else { Issue.record("no reset"); return }
        #expect(code == .protocolError)
        #expect(refused.withLockedValue { $0 } == [expected], "told to the access log")
        // A body already read for the reset stream reaches nothing either.
        try channel.writeInbound(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer(string: "a=1")), endStream: true)))
        #expect(try channel.readInbound(as: RequestPart.self) == nil)
    }

    /// What RFC 9113 allows that a stricter reading might refuse: `te: trailers`, pseudo-fields
    /// in any order among themselves, bytes of 0x80 and above in a path, tabs in values.
    @Test func wellFormedEdgesPass() throws {
        let block = [(":path", "/caf\u{E9}?q=1"), (":authority", "a"), (":scheme", "https"), (":method", "GET"), ("te", "trailers"), ("x-a", "1\t2")]
        let head = try HTTP2StreamCodec.requestHead(HPACKHeaders(block), endStream: true)
        #expect(head.uri == "/caf\u{E9}?q=1" && head.headers["te"] == ["trailers"] && head.headers["x-a"] == ["1\t2"])
    }

    @Test(arguments: [
        ([(":status", "200")], HTTP2StreamCodec.RequestError.misplacedPseudoField(":status")),
        ([("X-Sum", "3")], .malformedFieldName("X-Sum")),
        ([("x-sum", "3\n")], .malformedFieldValue("x-sum")),
        ([("transfer-encoding", "chunked")], .connectionSpecificField("transfer-encoding")),
    ] as [([(String, String)], HTTP2StreamCodec.RequestError)])
    func malformedTrailersResetTheStream(fields: [(String, String)], expected: HTTP2StreamCodec.RequestError) throws {
        let post = [(":method", "POST"), (":scheme", "https"), (":path", "/form"), (":authority", "lp.example")]
        let channel = EmbeddedChannel(handler: HTTP2StreamCodec())
        try channel.writeInbound(HTTP2Frame.FramePayload.headers(.init(headers: HPACKHeaders(post))))
        #expect(throws: expected) { try channel.writeInbound(HTTP2Frame.FramePayload.headers(.init(headers: HPACKHeaders(fields), endStream: true))) }
        guard case .head = try channel.readInbound(as: RequestPart.self) else { Issue.record("no head"); return }
        #expect(try channel.readInbound(as: RequestPart.self) == nil, "no end reaches the proxy")
        guard case .rstStream(.protocolError) = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else { Issue.record("no reset"); return }
    }

    /// A response field that may not be sent fails the write, and every write after it, as the
    /// HTTP/1 encoder's refusal does; nothing reaches the connection.
    @Test(arguments: [("x-a", "1\r\nx-b: 2"), ("x a", "1"), ("", "1"), ("x-a", "\u{7F}")])
    func responseFieldsThatMayNotBeSentFailTheWrite(name: String, value: String) throws {
        let channel = EmbeddedChannel(handler: HTTP2StreamCodec())
        let head = ResponseHead(version: .http1_1, status: .ok, headers: HeaderFields([("content-type", "text/plain"), (name, value)]))
        #expect(throws: InvalidHeadError.self) { try channel.writeOutbound(ResponsePart.head(head)) }
        #expect(throws: InvalidHeadError.self) { try channel.writeOutbound(ResponsePart.end(nil)) }
        #expect(try channel.readOutbound(as: HTTP2Frame.FramePayload.self) == nil)
    }

    @Test func responsesFollowHTTP2FieldRulesAndNeverIndexCookies() throws {
        let channel = EmbeddedChannel(handler: HTTP2StreamCodec())
        let head = ResponseHead(version: .http1_1, status: .found, headers: HeaderFields([
            ("Location", "https://shop.example/?ttclid=x"), ("Set-Cookie", "ttclid=x; Secure"), ("Connection", "close"),
            ("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"), ("TE", "trailers"), ("te", "gzip"),
            ("set-cookie", "v=1"), ("Cache-Control", "private"),
        ]))
        try channel.writeOutbound(ResponsePart.head(head))
        try channel.writeOutbound(ResponsePart.body(.byteBuffer(ByteBuffer(string: "moved"))))
        try channel.writeOutbound(ResponsePart.end(nil))
        guard case .headers(let block) = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else { Issue.record("no HEADERS"); return }
        #expect(!block.endStream)
        #expect(block.headers.map(\.name) == [":status", "location", "set-cookie", "te", "set-cookie", "cache-control"])
        #expect(block.headers.first(name: ":status") == "302" && block.headers.first(name: "te") == "trailers")
        #expect(block.headers.filter { $0.name == "set-cookie" }.allSatisfy { $0.indexable == .neverIndexed })
        #expect(block.headers.filter { $0.name != "set-cookie" }.allSatisfy { $0.indexable == .indexable })
        guard case .data(let data) = try channel.readOutbound(as: HTTP2Frame.FramePayload.self), case .byteBuffer(let body) = data.data else {
            Issue.record("no DATA")
            return
        }
        #expect(String(buffer: body) == "moved" && !data.endStream)
        guard case .data(let end) = try channel.readOutbound(as: HTTP2Frame.FramePayload.self), case .byteBuffer(let empty) = end.data else {
            Issue.record("no end")
            return
        }
        #expect(end.endStream && empty.readableBytes == 0)

        try channel.writeOutbound(ResponsePart.end(HTTPHeaders([("X-Sum", "5")])))
        guard case .headers(let trailers) = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else { Issue.record("no trailers"); return }
        #expect(trailers.endStream && trailers.headers.map(\.name) == ["x-sum"])
    }

    /// The response's end rides on its last frame as END_STREAM when nothing flushed that frame
    /// first; a flush lets a held frame go as it is, and the end then comes as an empty DATA.
    @Test func theEndRidesOnTheLastFrame() throws {
        func frames(_ parts: [ResponsePart?]) throws -> [(kind: String, endStream: Bool, bytes: Int)] {
            let channel = EmbeddedChannel(handler: HTTP2StreamCodec())
            var promises: [EventLoopFuture<Void>] = []
            for part in parts {
                guard let part else {
                    channel.flush()
                    continue
                }
                let promise = channel.eventLoop.makePromise(of: Void.self)
                channel.write(part, promise: promise)
                promises.append(promise.futureResult)
            }
            channel.flush()
            for promise in promises { try promise.wait() }
            var out: [(String, Bool, Int)] = []
            while let payload = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) {
                switch payload {
                case .headers(let headers): out.append(("HEADERS", headers.endStream, 0))
                case .data(let data): out.append(("DATA", data.endStream, data.data.readableBytes))
                default: out.append(("other", false, 0))
                }
            }
            #expect(try channel.finish().isClean)
            return out
        }
        let head = ResponsePart.head(ResponseHead(version: .http1_1, status: .ok, headers: ["content-type": "text/html"]))
        let body = ResponsePart.body(.byteBuffer(ByteBuffer(string: "<p>hi</p>")))
        func shape(_ frames: [(kind: String, endStream: Bool, bytes: Int)]) -> [String] {
            frames.map { "\($0.kind)\($0.endStream ? "+end" : "")\($0.kind == "DATA" ? " \($0.bytes)" : "")" }
        }
        #expect(shape(try frames([head, body, body, .end(nil)])) == ["HEADERS", "DATA 9", "DATA+end 9"])
        #expect(shape(try frames([head, .end(nil)])) == ["HEADERS+end"])
        #expect(shape(try frames([head, body, nil, .end(nil)])) == ["HEADERS", "DATA 9", "DATA+end 0"])
        #expect(shape(try frames([head, body, .end(HTTPHeaders([("x-sum", "5")]))])) == ["HEADERS", "DATA 9", "HEADERS+end"])
    }

    /// A frame still held when the stream goes fails its write.
    @Test func aHeldFrameFailsWhenTheStreamCloses() throws {
        let channel = EmbeddedChannel(handler: HTTP2StreamCodec())
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.write(ResponsePart.head(ResponseHead(version: .http1_1, status: .ok, headers: [:])), promise: promise)
        _ = try? channel.finish()
        #expect(throws: ChannelError.self) { try promise.futureResult.wait() }
    }

    /// The common names come out as literals, every other name lower-cased as it is.
    @Test(arguments: [
        ("Date", "date"), ("ETAG", "etag"), ("Vary", "vary"), ("Server", "server"), ("LOCATION", "location"), ("set-cookie", "set-cookie"),
        ("Content-Type", "content-type"), ("Last-Modified", "last-modified"), ("Cache-Control", "cache-control"),
        ("Accept-Ranges", "accept-ranges"), ("Content-Length", "content-length"), ("Content-Encoding", "content-encoding"),
        ("Dave", "dave"), ("X-Served-By", "x-served-by"), ("content-typf", "content-typf"), ("a", "a"), ("", ""), ("X_Y-1", "x_y-1"),
    ])
    func fieldNamesAreLowerCased(name: String, expected: String) {
        #expect(name.withUTF8Buffer(HTTP2StreamCodec.lowercased) == expected)
    }
}
