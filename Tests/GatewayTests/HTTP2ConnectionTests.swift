import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import Testing

@testable import Gateway

/// An HTTP/2 connection's streams as their proxies see them: request parts from HEADERS and DATA
/// frames, response parts back into frames under HTTP/2's field rules with `Set-Cookie` kept out of
/// HPACK's table, and the flow control the stream channels did: windows given back as the proxy
/// takes bytes, writability from what waits to be sent.
@Suite struct HTTP2ConnectionTests {
    /// Stands in for a stream's proxy: records what the stream tells it.
    private final class Recorder: RequestReceiver {
        var parts: [RequestPart] = []
        var admits = true
        var completes = 0
        var writability: [Bool] = []
        var failures: [any Error] = []
        var closed = 0
        func receive(_ part: RequestPart) { parts.append(part) }
        func receiveComplete() { completes += 1 }
        func admitsRead() -> Bool { admits }
        func writabilityChanged(isWritable: Bool) { writability.append(isWritable) }
        func downstreamFailed(_ error: any Error) { failures.append(error) }
        func downstreamClosed() { closed += 1 }
    }

    /// One connection handler in an embedded channel, with the streams it made.
    private final class Connection {
        let channel: EmbeddedChannel
        let handler: HTTP2Connection
        init() throws {
            let made = Made()
            handler = HTTP2Connection(targetWindowSize: 1 << 20) { stream in
                let recorder = Recorder()
                made.streams.append(stream)
                made.recorders.append(recorder)
                return recorder
            } onRefused: { made.refused.append($0) }
            channel = EmbeddedChannel(handler: handler)
            self.made = made
        }

        private final class Made {
            var streams: [HTTP2Stream] = []
            var recorders: [Recorder] = []
            var refused: [HTTP2Fields.RequestError] = []
        }
        private let made: Made
        var stream: HTTP2Stream { made.streams[0] }
        var streamsMade: [HTTP2Stream] { made.streams }
        var recorder: Recorder { made.recorders[0] }
        var allRecorders: [Recorder] { made.recorders }
        var refusals: [HTTP2Fields.RequestError] { made.refused }

        /// Frames of one network read, then its end.
        func read(_ frames: [(UInt32, HTTP2Frame.FramePayload)]) throws {
            for (id, payload) in frames { channel.pipeline.fireChannelRead(HTTP2Frame(streamID: HTTP2StreamID(Int(id)), payload: payload)) }
            channel.pipeline.fireChannelReadComplete()
            try channel.throwIfErrorCaught()
        }

        func event(_ event: some Sendable) {
            channel.pipeline.fireUserInboundEventTriggered(event)
        }

        func written() throws -> [HTTP2Frame] {
            var frames: [HTTP2Frame] = []
            while let frame = try channel.readOutbound(as: HTTP2Frame.self) { frames.append(frame) }
            return frames
        }
    }

    private static let get = [(":method", "GET"), (":scheme", "https"), (":path", "/lp?ttclid=x"), (":authority", "lp.example:8443")]
    private static let post = [(":method", "POST"), (":scheme", "https"), (":path", "/form"), (":authority", "lp.example")]

    private static func headers(_ fields: [(String, String)], end: Bool = false) -> HTTP2Frame.FramePayload {
        .headers(.init(headers: HPACKHeaders(fields), endStream: end))
    }

    private static func data(_ text: String, end: Bool = false) -> HTTP2Frame.FramePayload {
        .data(.init(data: .byteBuffer(ByteBuffer(string: text)), endStream: end))
    }

    @Test func aRequestHeadTakesItsHostFromTheAuthority() throws {
        let connection = try Connection()
        try connection.read([(1, Self.headers(Self.get + [("user-agent", "h2"), ("cookie", "a=1")], end: true))])
        let parts = connection.recorder.parts
        #expect(parts.count == 2)
        guard case .head(let head) = parts.first, case .end(nil) = parts.last else { Issue.record("\(parts)"); return }
        #expect(head.method == .GET && head.uri == "/lp?ttclid=x" && head.version == HTTPVersion(major: 2, minor: 0))
        #expect(head.headers.map(\.name) == ["host", "user-agent", "cookie"])
        #expect(head.headers["host"] == ["lp.example:8443"])
        #expect(connection.recorder.completes == 1, "told once when the read completed")
    }

    @Test func bodiesAreFramedAsTheStreamSaysAndTrailersEndThem() throws {
        let connection = try Connection()
        try connection.read([
            (1, Self.headers(Self.post)), (1, Self.data("a=1")), (1, Self.headers([("x-sum", "3")], end: true)),
            (3, Self.headers(Self.post, end: true)),
            (5, Self.headers(Self.post + [("content-length", "3")])), (5, Self.data("a=1", end: true)),
        ])
        let (chunked, ended, sized) = (connection.allRecorders[0].parts, connection.allRecorders[1].parts, connection.allRecorders[2].parts)
        guard chunked.count == 3, case .head(let head) = chunked[0], case .body(let body) = chunked[1], case .end(let trailers?) = chunked[2] else {
            Issue.record("\(chunked)")
            return
        }
        #expect(head.headers["transfer-encoding"] == ["chunked"], "no length and more to come: chunked toward the origin")
        #expect(String(buffer: body) == "a=1" && trailers["x-sum"] == ["3"])

        guard case .head(let empty) = ended.first else { Issue.record("\(ended)"); return }
        #expect(empty.headers["content-length"] == ["0"] && empty.headers["transfer-encoding"].isEmpty)

        guard sized.count == 3, case .head(let withLength) = sized[0], case .end(nil) = sized[2] else { Issue.record("\(sized)"); return }
        #expect(withLength.headers["content-length"] == ["3"] && withLength.headers["transfer-encoding"].isEmpty)
        #expect(connection.allRecorders.allSatisfy { $0.completes == 1 })
    }

    @Test(arguments: [
        ([(":scheme", "https"), (":path", "/"), (":authority", "a")], HTTP2Fields.RequestError.missingPseudoField(":method")),
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
    ] as [([(String, String)], HTTP2Fields.RequestError)])
    func malformedRequestsResetTheirStream(fields: [(String, String)], expected: HTTP2Fields.RequestError) throws {
        #expect(throws: expected) { try HTTP2Fields.requestHead(HPACKHeaders(fields), endStream: true) }
        let connection = try Connection()
        try connection.read([(1, Self.headers(fields))])
        #expect(connection.recorder.parts.isEmpty, "nothing reaches the proxy")
        #expect(connection.recorder.closed == 1)
        let frames = try connection.written()
        guard frames.count == 1, case .rstStream(let code) = frames[0].payload else { Issue.record("no reset: \(frames)"); return }
        #expect(code == .protocolError && frames[0].streamID == 1)
        #expect(connection.refusals == [expected], "told to the access log")
        // A body already read for the reset stream reaches nothing, and makes no stream of its own.
        try connection.read([(1, Self.data("a=1", end: true))])
        #expect(connection.recorder.parts.isEmpty && connection.allRecorders.count == 1)
        #expect(try connection.written().isEmpty)
    }

    /// What RFC 9113 allows that a stricter reading might refuse: `te: trailers`, pseudo-fields
    /// in any order among themselves, bytes of 0x80 and above in a path, tabs in values.
    @Test func wellFormedEdgesPass() throws {
        let block = [(":path", "/caf\u{E9}?q=1"), (":authority", "a"), (":scheme", "https"), (":method", "GET"), ("te", "trailers"), ("x-a", "1\t2")]
        let head = try HTTP2Fields.requestHead(HPACKHeaders(block), endStream: true)
        #expect(head.uri == "/caf\u{E9}?q=1" && head.headers["te"] == ["trailers"] && head.headers["x-a"] == ["1\t2"])
    }

    @Test(arguments: [
        ([(":status", "200")], HTTP2Fields.RequestError.misplacedPseudoField(":status")),
        ([("X-Sum", "3")], .malformedFieldName("X-Sum")),
        ([("x-sum", "3\n")], .malformedFieldValue("x-sum")),
        ([("transfer-encoding", "chunked")], .connectionSpecificField("transfer-encoding")),
    ] as [([(String, String)], HTTP2Fields.RequestError)])
    func malformedTrailersResetTheStream(fields: [(String, String)], expected: HTTP2Fields.RequestError) throws {
        let connection = try Connection()
        try connection.read([(1, Self.headers(Self.post)), (1, Self.headers(fields, end: true))])
        let parts = connection.recorder.parts
        guard parts.count == 1, case .head = parts[0] else { Issue.record("\(parts)"); return }
        #expect(connection.refusals == [expected])
        #expect(connection.recorder.closed == 1, "the proxy hears the stream is gone")
        guard case .rstStream(.protocolError) = try connection.written().first?.payload else { Issue.record("no reset"); return }
    }

    /// A response field that may not be sent fails the write, and every write after it, as the
    /// HTTP/1 encoder's refusal does; the proxy is told, and nothing reaches the connection.
    @Test(arguments: [("x-a", "1\r\nx-b: 2"), ("x a", "1"), ("", "1"), ("x-a", "\u{7F}")])
    func responseFieldsThatMayNotBeSentFailTheWrite(name: String, value: String) throws {
        let connection = try Connection()
        try connection.read([(1, Self.headers(Self.get, end: true))])
        let head = ResponseHead(version: .http1_1, status: .ok, headers: HeaderFields([("content-type", "text/plain"), (name, value)]))
        let first = connection.channel.eventLoop.makePromise(of: Void.self)
        let later = connection.channel.eventLoop.makePromise(of: Void.self)
        connection.stream.write(.head(head), promise: first)
        connection.stream.write(.end(nil), promise: later)
        connection.stream.flush()
        #expect(throws: InvalidHeadError.self) { try first.futureResult.wait() }
        #expect(throws: InvalidHeadError.self) { try later.futureResult.wait() }
        #expect(connection.recorder.failures.count == 1 && connection.recorder.failures.first is InvalidHeadError)
        #expect(try connection.written().isEmpty)
    }

    @Test func responsesFollowHTTP2FieldRulesAndNeverIndexCookies() throws {
        let connection = try Connection()
        try connection.read([(1, Self.headers(Self.get, end: true))])
        let stream = connection.stream
        let head = ResponseHead(version: .http1_1, status: .found, headers: HeaderFields([
            ("Location", "https://shop.example/?ttclid=x"), ("Set-Cookie", "ttclid=x; Secure"), ("Connection", "close"),
            ("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"), ("TE", "trailers"), ("te", "gzip"),
            ("set-cookie", "v=1"), ("Cache-Control", "private"),
        ]))
        stream.write(.head(head), promise: nil)
        stream.write(.body(.byteBuffer(ByteBuffer(string: "moved"))), promise: nil)
        stream.flush()
        stream.write(.end(nil), promise: nil)
        stream.flush()
        let frames = try connection.written()
        #expect(frames.allSatisfy { $0.streamID == 1 })
        guard frames.count == 3, case .headers(let block) = frames[0].payload else { Issue.record("\(frames)"); return }
        #expect(!block.endStream)
        #expect(block.headers.map(\.name) == [":status", "location", "set-cookie", "te", "set-cookie", "cache-control"])
        #expect(block.headers.first(name: ":status") == "302" && block.headers.first(name: "te") == "trailers")
        #expect(block.headers.filter { $0.name == "set-cookie" }.allSatisfy { $0.indexable == .neverIndexed })
        #expect(block.headers.filter { $0.name != "set-cookie" }.allSatisfy { $0.indexable == .indexable })
        guard case .data(let data) = frames[1].payload, case .byteBuffer(let body) = data.data else { Issue.record("no DATA"); return }
        #expect(String(buffer: body) == "moved" && !data.endStream)
        guard case .data(let end) = frames[2].payload else { Issue.record("no end"); return }
        #expect(end.endStream && end.data.readableBytes == 0)

        try connection.read([(3, Self.headers(Self.get, end: true))])
        let second = try #require(connection.allRecorders.count == 2 ? connection.streamsMade[1] : nil)
        second.write(.head(ResponseHead(version: .http1_1, status: .ok, headers: [:])), promise: nil)
        second.write(.end(HTTPHeaders([("X-Sum", "5")])), promise: nil)
        second.flush()
        let trailed = try connection.written()
        guard trailed.count == 2, case .headers(let trailers) = trailed[1].payload else { Issue.record("no trailers: \(trailed)"); return }
        #expect(trailers.endStream && trailers.headers.map(\.name) == ["x-sum"] && trailed[1].streamID == 3)
    }

    /// The response's end rides on its last frame as END_STREAM when nothing flushed that frame
    /// first; a flush lets a held frame go as it is, and the end then comes as an empty DATA.
    @Test func theEndRidesOnTheLastFrame() throws {
        func frames(_ parts: [ResponsePart?]) throws -> [String] {
            let connection = try Connection()
            try connection.read([(1, Self.headers(Self.get, end: true))])
            var promises: [EventLoopFuture<Void>] = []
            for part in parts {
                guard let part else {
                    connection.stream.flush()
                    continue
                }
                let promise = connection.channel.eventLoop.makePromise(of: Void.self)
                connection.stream.write(part, promise: promise)
                promises.append(promise.futureResult)
            }
            connection.stream.flush()
            for promise in promises { try promise.wait() }
            return try connection.written().map { frame in
                switch frame.payload {
                case .headers(let headers): "HEADERS\(headers.endStream ? "+end" : "")"
                case .data(let data): "DATA\(data.endStream ? "+end" : "") \(data.data.readableBytes)"
                default: "other"
                }
            }
        }
        let head = ResponsePart.head(ResponseHead(version: .http1_1, status: .ok, headers: ["content-type": "text/html"]))
        let body = ResponsePart.body(.byteBuffer(ByteBuffer(string: "<p>hi</p>")))
        #expect(try frames([head, body, body, .end(nil)]) == ["HEADERS", "DATA 9", "DATA+end 9"])
        #expect(try frames([head, .end(nil)]) == ["HEADERS+end"])
        #expect(try frames([head, body, nil, .end(nil)]) == ["HEADERS", "DATA 9", "DATA+end 0"])
        #expect(try frames([head, body, .end(HTTPHeaders([("x-sum", "5")]))]) == ["HEADERS", "DATA 9", "HEADERS+end"])
    }

    /// A frame still held when the stream goes fails its write; writes after it fail too, and the
    /// proxy hears of the close once.
    @Test func aHeldFrameFailsWhenTheStreamCloses() throws {
        let connection = try Connection()
        try connection.read([(1, Self.headers(Self.get, end: true))])
        let promise = connection.channel.eventLoop.makePromise(of: Void.self)
        connection.stream.write(.head(ResponseHead(version: .http1_1, status: .ok, headers: [:])), promise: promise)
        connection.event(StreamClosedEvent(streamID: 1, reason: .cancel))
        #expect(throws: ChannelError.self) { try promise.futureResult.wait() }
        let late = connection.channel.eventLoop.makePromise(of: Void.self)
        connection.stream.write(.end(nil), promise: late)
        #expect(throws: ChannelError.self) { try late.futureResult.wait() }
        _ = try connection.channel.finish()
        #expect(connection.recorder.closed == 1)
    }

    /// A stream whose proxy holds reads back keeps what arrives and the window it stands for; when
    /// the proxy takes the parts, the window goes back in one WINDOW_UPDATE.
    @Test func aPausedStreamHoldsItsWindowUntilItsProxyReads() throws {
        let connection = try Connection()
        try connection.read([(1, Self.headers(Self.post))])
        let recorder = connection.recorder
        recorder.admits = false
        let chunk = String(repeating: "a", count: 300 * 1024)
        try connection.read([(1, Self.data(chunk)), (1, Self.data(chunk))])
        // nio-http2 reports the window after the two frames: 1 MiB - 600 KiB.
        connection.event(NIOHTTP2WindowUpdatedEvent(streamID: 1, inboundWindowSize: (1 << 20) - 600 * 1024, outboundWindowSize: nil))
        #expect(recorder.parts.count == 1, "the body waits")
        #expect(try connection.written().isEmpty, "no window goes back for bytes the proxy has not taken")

        recorder.admits = true
        connection.stream.read()
        #expect(recorder.parts.count == 3)
        let frames = try connection.written()
        guard frames.count == 1, case .windowUpdate(let increment) = frames[0].payload else { Issue.record("\(frames)"); return }
        #expect(increment == 600 * 1024 && frames[0].streamID == 1)
        // The window is back at its target: the next report asks for nothing.
        connection.event(NIOHTTP2WindowUpdatedEvent(streamID: 1, inboundWindowSize: 1 << 20, outboundWindowSize: nil))
        #expect(try connection.written().isEmpty)
        // After the request's END_STREAM no window goes back (nio-http2 would refuse the frame).
        try connection.read([(1, Self.data(chunk)), (1, Self.data(chunk, end: true))])
        connection.event(NIOHTTP2WindowUpdatedEvent(streamID: 1, inboundWindowSize: (1 << 20) - 600 * 1024, outboundWindowSize: nil))
        #expect(recorder.parts.count == 6)
        #expect(try connection.written().isEmpty)
    }

    /// The connection's window goes back as frames arrive, once it is down to half.
    @Test func theConnectionWindowIsKeptAtItsTarget() throws {
        let connection = try Connection()
        connection.event(NIOHTTP2WindowUpdatedEvent(streamID: .rootStream, inboundWindowSize: (1 << 20) - 1000, outboundWindowSize: nil))
        #expect(try connection.written().isEmpty)
        connection.event(NIOHTTP2WindowUpdatedEvent(streamID: .rootStream, inboundWindowSize: 65_535 - 1000, outboundWindowSize: nil))
        let frames = try connection.written()
        guard frames.count == 1, case .windowUpdate(let increment) = frames[0].payload else { Issue.record("\(frames)"); return }
        #expect(frames[0].streamID == .rootStream && increment == (1 << 20) - 64_535)
    }

    /// A stream stops being writable while 8 KiB of its DATA wait in nio-http2's buffer, and is
    /// writable again once they are down to 4 KiB.
    @Test func writabilityFollowsWhatWaitsToBeSent() throws {
        let connection = try Connection()
        try connection.read([(1, Self.headers(Self.get, end: true))])
        let stream = connection.stream
        #expect(stream.isWritable)
        stream.write(.head(ResponseHead(version: .http1_1, status: .ok, headers: [:])), promise: nil)
        stream.write(.body(.byteBuffer(ByteBuffer(repeating: 0x61, count: 6000))), promise: nil)
        stream.write(.body(.byteBuffer(ByteBuffer(repeating: 0x61, count: 6000))), promise: nil)
        stream.flush()
        #expect(!stream.isWritable && connection.recorder.writability == [false])
        let sent = HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(ByteBuffer(repeating: 0x61, count: 6000)))))
        connection.handler.wroteFrame(sent)
        #expect(stream.isWritable == false, "6,000 bytes still wait")
        connection.handler.wroteFrame(sent)
        #expect(stream.isWritable && connection.recorder.writability == [false, true])
    }

    /// The proxy's close resets a stream still open, once; a stream closed by nio-http2 is not reset.
    @Test func closingResetsAnOpenStreamOnce() throws {
        let connection = try Connection()
        try connection.read([(1, Self.headers(Self.get)), (3, Self.headers(Self.get, end: true))])
        connection.stream.close()
        connection.stream.close()
        let frames = try connection.written()
        guard frames.count == 1, case .rstStream(.cancel) = frames[0].payload else { Issue.record("\(frames)"); return }
        #expect(connection.recorder.closed == 1)
        connection.event(StreamClosedEvent(streamID: 3, reason: nil))
        connection.streamsMade[1].close()
        #expect(try connection.written().isEmpty)
        #expect(connection.allRecorders[1].closed == 1)
    }

    /// The common names come out as literals, every other name lower-cased as it is.
    @Test(arguments: [
        ("Date", "date"), ("ETAG", "etag"), ("Vary", "vary"), ("Server", "server"), ("LOCATION", "location"), ("set-cookie", "set-cookie"),
        ("Content-Type", "content-type"), ("Last-Modified", "last-modified"), ("Cache-Control", "cache-control"),
        ("Accept-Ranges", "accept-ranges"), ("Content-Length", "content-length"), ("Content-Encoding", "content-encoding"),
        ("Dave", "dave"), ("X-Served-By", "x-served-by"), ("content-typf", "content-typf"), ("a", "a"), ("", ""), ("X_Y-1", "x_y-1"),
    ])
    func fieldNamesAreLowerCased(name: String, expected: String) {
        #expect(name.withUTF8Buffer(HTTP2Fields.lowercased) == expected)
    }
}
