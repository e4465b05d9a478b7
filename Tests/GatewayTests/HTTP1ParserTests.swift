import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import Gateway

/// The gateway's own HTTP/1.1 parsers, requests from clients and responses from origins: what they
/// read, what they refuse (and with which status), and that how the bytes are split into reads
/// never changes either.
@Suite struct HTTP1ParserTests {
    /// Parts written down as lines: each head as it comes, a message's body and end once it ends.
    /// Field values lose trailing whitespace, which llhttp keeps and RFC 9112 (and this parser) does not.
    private struct Transcript: Equatable {
        private(set) var lines: [String] = []
        private var body = ""

        mutating func record<Head>(_ part: HTTPPart<Head, ByteBuffer>, describing describe: (Head) -> String) {
            switch part {
            case .head(let head):
                lines.append("head " + describe(head))
            case .body(let bytes):
                body += String(buffer: bytes)
            case .end(let trailers):
                lines.append("body \(body)")
                body = ""
                lines.append("end \(trailers.map(Self.fields) ?? "-")")
            }
        }

        static func fields<Fields: Sequence>(_ headers: Fields) -> String where Fields.Element == (name: String, value: String) {
            headers.map { "\($0.name)=\(String($0.value.reversed().drop { $0 == " " || $0 == "\t" }.reversed()))" }.joined(separator: "|")
        }

        static func request(_ head: RequestHead) -> String {
            "\(head.method.rawValue) \(head.uri) \(head.version) [\(fields(head.headers))]"
        }

        /// The same for llhttp's heads.
        static func request(_ head: HTTPRequestHead) -> String {
            "\(head.method.rawValue) \(head.uri) \(head.version) [\(fields(head.headers))]"
        }

        static func response(_ head: ResponseHead) -> String {
            "\(head.status.code) \(head.status.reasonPhrase) \(head.version) [\(fields(head.headers))]"
        }

        /// Without the reason phrase: NIO keeps none for a code it has no name for.
        static func responseCode(_ head: ResponseHead) -> String {
            "\(head.status.code) \(head.version) [\(fields(head.headers))]"
        }

        static func responseCode(_ head: HTTPResponseHead) -> String {
            "\(head.status.code) \(head.version) [\(fields(head.headers))]"
        }
    }

    /// What the parser made of a byte stream: the parts, written down, and the refusal if any.
    private struct Outcome: Equatable {
        var transcript = Transcript()
        var refusal: HTTP1ParseError?
        var parts: [String] { transcript.lines }
    }

    private func parse(_ reads: [[UInt8]], maxHeadBytes: Int = 4096, maxFieldCount: Int = 20) -> Outcome {
        var parser = HTTP1RequestParser(maxHeadBytes: maxHeadBytes, maxFieldCount: maxFieldCount)
        var outcome = Outcome()
        for read in reads {
            parser.receive(ByteBuffer(bytes: read))
            do {
                while let part = try parser.next() { outcome.transcript.record(part, describing: Transcript.request) }
            } catch {
                outcome.refusal = error
                return outcome
            }
        }
        return outcome
    }

    private func parse(_ text: String, maxHeadBytes: Int = 4096, maxFieldCount: Int = 20) -> Outcome {
        parse([Array(text.utf8)], maxHeadBytes: maxHeadBytes, maxFieldCount: maxFieldCount)
    }

    /// Responses, the way an upstream connection reads them: each answers a GET unless `heads`
    /// says which answer a HEAD; the connection's close comes after the last read.
    private func parseResponses(
        _ reads: [[UInt8]], heads: Set<Int> = [], leavingOutConnectionFields: Bool = false,
        describing describe: (ResponseHead) -> String = Transcript.response
    ) -> Outcome {
        var parser = HTTP1ResponseParser(maxHeadBytes: 4096, maxFieldCount: 20, leavingOutConnectionFields: leavingOutConnectionFields)
        var outcome = Outcome()
        var answered = 0
        parser.answeringHead = heads.contains(0)
        func record(_ part: UpstreamResponsePart) {
            outcome.transcript.record(part, describing: describe)
            if case .end = part {
                answered += 1
                parser.answeringHead = heads.contains(answered)
            }
        }
        do {
            for read in reads {
                parser.receive(ByteBuffer(bytes: read))
                while let part = try parser.next() { record(part) }
            }
            if let last = try parser.finish() { record(last) }
        } catch {
            outcome.refusal = error
        }
        return outcome
    }

    private func parseResponses(_ text: String, heads: Set<Int> = []) -> Outcome {
        parseResponses([Array(text.utf8)], heads: heads)
    }

    @Test func pipelinedRequestsAreReadWithTheirBodiesAndTrailers() {
        let stream = "\r\nGET /lp?ttclid=E.C.P.x HTTP/1.1\r\nHost: lp.example\r\nX-Padded: \t value \t\r\n\r\n"
            + "POST /form HTTP/1.1\r\nHost: lp.example\r\nContent-Length: 5\r\n\r\nhello"
            + "PUT /up HTTP/1.1\r\nHost: lp.example\r\nTransfer-Encoding: Chunked\r\n\r\n"
            + "5;name=value\r\nhello\r\n6;x\r\n world\r\n0\r\nX-Checksum: abc\r\nContent-Length: 9\r\n\r\n"
            + "OPTIONS * HTTP/1.0\r\n\r\n"
        let outcome = parse(stream)
        #expect(outcome.refusal == nil)
        #expect(outcome.parts == [
            "head GET /lp?ttclid=E.C.P.x HTTP/1.1 [Host=lp.example|X-Padded=value]", "body ", "end -",
            "head POST /form HTTP/1.1 [Host=lp.example|Content-Length=5]", "body hello", "end -",
            "head PUT /up HTTP/1.1 [Host=lp.example|Transfer-Encoding=Chunked]", "body hello world", "end X-Checksum=abc",
            "head OPTIONS * HTTP/1.0 []", "body ", "end -",
        ])
    }

    @Test func aLaterMinorVersionIsReadAs11() {
        #expect(parse("GET / HTTP/1.7\r\nHost: a\r\n\r\n").parts.first == "head GET / HTTP/1.1 [Host=a]")
    }

    @Test(arguments: [
        ("CL.TE", "POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400),
        ("TE.CL", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
        ("duplicate CL", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
        ("CL list", "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
        ("signed CL", "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello", 400),
        ("huge CL", "POST / HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n", 400),
        ("TE twice", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("TE list", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400),
        ("obfuscated TE", "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
        ("TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("space before colon", "GET / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
        ("folded line", "GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n", 400),
        ("bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400),
        ("bare LF in a field", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400),
        ("CR in a value", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),
        ("NUL in a value", "GET / HTTP/1.1\r\nX: a\u{0}b\r\n\r\n", 400),
        ("empty name", "GET / HTTP/1.1\r\n: a\r\n\r\n", 400),
        ("space in the target", "GET /a b HTTP/1.1\r\n\r\n", 400),
        ("lowercase version", "GET / http/1.1\r\n\r\n", 400),
        ("no version", "GET /\r\n\r\n", 400),
        ("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        ("CONNECT", "CONNECT lp.example:443 HTTP/1.1\r\nHost: lp.example:443\r\n\r\n", 405),
        ("bad chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
        ("signed chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", 400),
        ("chunk size overflow", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n", 400),
        ("chunk without CRLF", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n", 400),
        ("chunk size bare LF", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400),
        ("control byte in a chunk extension", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\u{1}\r\nhello\r\n0\r\n\r\n", 400),
        ("garbage after the size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n", 400),
        ("whitespace after the size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\t\r\nhello\r\n0\r\n\r\n", 400),
    ])
    func refusals(name: String, request: String, status: Int) {
        let outcome = parse(request + "GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(outcome.refusal?.status.code == UInt(status), "\(name): \(outcome)")
        #expect(!outcome.parts.contains { $0.contains("/after") }, "\(name): a request after a refusal was read")
    }

    @Test func limitsOnHeadsAndFieldsAnswer414Or431() {
        let longTarget = "GET /" + String(repeating: "a", count: 5000) + " HTTP/1.1\r\n\r\n"
        #expect(parse(longTarget).refusal?.status == .uriTooLong)
        // Still incomplete, but already over the limit: refused without waiting for the rest.
        #expect(parse("GET / HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 5000)).refusal?.status == .requestHeaderFieldsTooLarge)
        #expect(parse("GET / HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 5000) + "\r\n\r\n").refusal?.status == .requestHeaderFieldsTooLarge)
        let many = "GET / HTTP/1.1\r\n" + (0..<21).map { "X-\($0): v\r\n" }.joined() + "\r\n"
        #expect(parse(many).refusal?.status == .requestHeaderFieldsTooLarge)
        let twenty = "GET / HTTP/1.1\r\n" + (0..<20).map { "X-\($0): v\r\n" }.joined() + "\r\n"
        #expect(parse(twenty).refusal == nil)
        let bigTrailers = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + String(repeating: "t", count: 5000) + "\r\n\r\n"
        #expect(parse(bigTrailers).refusal?.status == .requestHeaderFieldsTooLarge)
    }

    @Test func anIdleConnectionHoldsNoBytesAndAPartialHeadWaits() {
        var parser = HTTP1RequestParser(maxHeadBytes: 4096, maxFieldCount: 20)
        parser.receive(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHo"))
        #expect(throws: Never.self) {
            guard case .head = try parser.next() else { Issue.record("no head"); return }
            guard case .end = try parser.next() else { Issue.record("no end"); return }
            #expect(try parser.next() == nil)
            parser.receive(ByteBuffer(string: "st: a\r\n\r\n"))
            guard case .head(let head) = try parser.next() else { Issue.record("no second head"); return }
            #expect(head.uri == "/next")
            guard case .end = try parser.next() else { Issue.record("no second end"); return }
            #expect(try parser.next() == nil)
        }
    }

    /// Valid and broken streams, cut into reads at random places: the parts and the refusal are
    /// the same as when the whole stream comes in one read, and a refused stream yields nothing
    /// after its refusal.
    @Test func howBytesAreSplitNeverChangesWhatIsRead() {
        let pieces = [
            "GET /lp?ttclid=E.C.P.x HTTP/1.1\r\nHost: lp.example\r\nCookie: a=1; b=2\r\n\r\n",
            "POST /form HTTP/1.1\r\nHost: lp.example\r\nContent-Length: 11\r\n\r\nhello world",
            "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10;x=y\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n",
            "HEAD / HTTP/1.0\r\nHost: a\r\n\r\n",
            "\r\n",
        ]
        let breakers = ["\n", "\r", "\u{0}", " ", ":", "\r\n\r\n", "Content-Length: 3\r\n", "Transfer-Encoding: chunked\r\n", "zz\r\n", "5\r\n"]
        var random = SplitMix(seed: 8)
        var refused = 0
        for _ in 0..<3000 {
            var stream = Array((0..<Int.random(in: 1...5, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined().utf8)
            if Bool.random(using: &random) {
                let breaker = Array(breakers.randomElement(using: &random)!.utf8)
                stream.insert(contentsOf: breaker, at: Int.random(in: 0...stream.count, using: &random))
            }
            let reads = cutIntoReads(stream, longest: 40, using: &random)
            let whole = parse([stream], maxHeadBytes: 512)
            let split = parse(reads, maxHeadBytes: 512)
            #expect(whole == split, "\(String(decoding: stream, as: UTF8.self).debugDescription)")
            if whole.refusal != nil { refused += 1 }
        }
        // Both kinds of stream were really tried.
        #expect((300...2700).contains(refused), "\(refused) of 3,000 streams refused")
    }

    // MARK: Responses

    @Test func responsesAreFramedByLengthChunksTheRequestOrTheClose() {
        let stream = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"
            + "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n"
            + "HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\n\r\n"
            + "HTTP/1.1 299 Odd\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n"
            + "HTTP/1.1 204\r\n\r\n"
            + "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nruns to the close"
        let outcome = parseResponses(stream, heads: [1])
        #expect(outcome.refusal == nil, "\(outcome)")
        #expect(outcome.parts == [
            "head 200 OK HTTP/1.1 [Content-Length=2|Content-Length=2]", "body ok", "end -",
            "head 200 OK HTTP/1.1 [Content-Length=42]", "body ", "end -",
            "head 304 Not Modified HTTP/1.1 [Content-Length=42]", "body ", "end -",
            "head 299 Odd HTTP/1.1 [Transfer-Encoding=chunked]", "body abc", "end X-Sum=1",
            "head 204 No Content HTTP/1.1 []", "body ", "end -",
            "head 200 OK HTTP/1.0 [Content-Type=text/plain]", "body runs to the close", "end -",
        ])
    }

    /// What an upstream connection reads for the proxy: no connection-specific field and none a
    /// `Connection` field names, in any case, while framing and keep-alive are read from them.
    @Test func aProxysResponsesLeaveOutConnectionSpecificFields() {
        let stream = "HTTP/1.1 200 OK\r\nX-Early: named\r\nConnection: Keep-Alive, X-Early\r\nKeep-Alive: timeout=5\r\n"
            + "Transfer-Encoding: chunked\r\nTE: trailers\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\nProxy-Authenticate: Basic\r\n"
            + "X-Stay: 1\r\nCONNECTION: x-late , ,upgrade\r\nx-LATE: named\r\nProxy: no dash, kept\r\n\r\n"
            + "3\r\nabc\r\n0\r\nX-Sum: 6\r\nConnection: x\r\n\r\n"
            + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        let outcome = parseResponses([Array(stream.utf8)], leavingOutConnectionFields: true)
        #expect(outcome.refusal == nil, "\(outcome)")
        #expect(outcome.parts == [
            "head 200 OK HTTP/1.1 [X-Stay=1|Proxy=no dash, kept]", "body abc", "end X-Sum=6",
            "head 200 OK HTTP/1.1 [Content-Length=2]", "body ok", "end -",
        ])
        // Unasked, the same bytes read with every field.
        let everything = parseResponses([Array(stream.utf8)])
        #expect(everything.parts.first?.contains("Keep-Alive=timeout=5|Transfer-Encoding=chunked") == true, "\(everything)")
        var parser = HTTP1ResponseParser(maxHeadBytes: 4096, maxFieldCount: 20, leavingOutConnectionFields: true)
        parser.receive(ByteBuffer(string: "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"))
        #expect(throws: Never.self) { _ = try parser.next() }
        #expect(parser.messageClosesConnection, "`Connection: close` still ends the connection's use")
    }

    /// Interim responses are skipped in a loop: thousands in one read cost no stack.
    @Test func anyNumberOfInterimResponsesIsSkipped() {
        let stream = String(repeating: "HTTP/1.1 100 Continue\r\n\r\n", count: 20_000) + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        #expect(parseResponses(stream).parts == ["head 200 OK HTTP/1.1 [Content-Length=2]", "body ok", "end -"])
    }

    @Test(arguments: [
        ("lengths that differ", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("length beside chunks", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("another coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        ("switching protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
        ("not HTTP", "SPDY/9 what\r\n\r\n"),
        ("two-digit status", "HTTP/1.1 20 OK\r\n\r\n"),
        ("status without space", "HTTP/1.1 200OK\r\n\r\n"),
        ("control byte in the reason", "HTTP/1.1 200 O\u{1}K\r\n\r\n"),
        ("cut short", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nonly5"),
        ("chunks cut short", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"),
        ("head cut short", "HTTP/1.1 200 OK\r\nContent-Le"),
    ])
    func responsesThatCannotBeFramedAreRefused(name: String, response: String) {
        if name.hasSuffix("cut short") {
            // The origin closed inside the message.
            let outcome = parseResponses(response)
            #expect(outcome.refusal != nil && !outcome.parts.contains { $0.hasPrefix("end") }, "\(name): \(outcome)")
        } else {
            // Refused at once: not even a good response after it is read.
            let outcome = parseResponses(response + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            #expect(outcome.refusal != nil && outcome.parts.isEmpty, "\(name): \(outcome)")
        }
    }

    @Test func howResponseBytesAreSplitNeverChangesWhatIsRead() {
        let pieces = [
            "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nSet-Cookie: a=1\r\n\r\nhello world",
            "HTTP/1.1 100 Continue\r\n\r\n",
            "HTTP/1.1 302 Found\r\nLocation: /lp\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nmove\r\n0\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
        ]
        var random = SplitMix(seed: 11)
        for _ in 0..<1000 {
            var stream = Array((0..<Int.random(in: 1...4, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined().utf8)
            if Bool.random(using: &random) {
                stream += Array("HTTP/1.0 200 OK\r\n\r\nto the close".utf8)
            }
            if Int.random(in: 0..<4, using: &random) == 0 {
                stream.insert(contentsOf: Array(["\n", "\r", "\u{0}", " ", "Content-Length: 3\r\n"].randomElement(using: &random)!.utf8),
                    at: Int.random(in: 0...stream.count, using: &random))
            }
            let reads = cutIntoReads(stream, longest: 30, using: &random)
            #expect(parseResponses([stream]) == parseResponses(reads), "\(String(decoding: stream, as: UTF8.self).debugDescription)")
        }
    }

    // MARK: Beside llhttp

    /// What NIO's decoder (llhttp, which this parser replaced) makes of a stream, in the same
    /// notation; whether it failed, and with which error.
    private func parseWithLLHTTP<Decoder: ByteToMessageDecoder, Head>(
        _ stream: [UInt8], decoder: Decoder, requests: Int = 0, describing describe: (Head) -> String
    ) -> (lines: [String], error: (any Error)?) where Decoder.InboundOut == HTTPPart<Head, ByteBuffer> {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(decoder))
        var transcript = Transcript()
        var failure: (any Error)?
        do {
            // A response decoder learns each response's request from the writes going past it.
            for _ in 0..<requests { try channel.writeOutbound(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/"))) }
            try channel.writeInbound(ByteBuffer(bytes: stream))
            _ = try channel.finish()
        } catch {
            failure = error
        }
        while let part = try? channel.readInbound(as: HTTPPart<Head, ByteBuffer>.self) { transcript.record(part, describing: describe) }
        return (transcript.lines, failure)
    }

    /// The stream in reads of 1 to `longest` bytes, cut at random.
    private func cutIntoReads(_ stream: [UInt8], longest: Int, using random: inout SplitMix) -> [[UInt8]] {
        var reads: [[UInt8]] = []
        var rest = stream[...]
        while !rest.isEmpty {
            let cut = Int.random(in: 1...min(rest.count, longest), using: &random)
            reads.append(Array(rest.prefix(cut)))
            rest = rest.dropFirst(cut)
        }
        return reads
    }

    /// One to three of `pieces` joined, then one to three bytes inserted (from `alphabet`), dropped
    /// or replaced; the same streams for the same seed.
    private func mutatedStreams(_ count: Int, of pieces: [String], alphabet: [UInt8], seed: UInt64) -> [[UInt8]] {
        var random = SplitMix(seed: seed)
        return (0..<count).map { _ in
            var stream = Array((0..<Int.random(in: 1...3, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined().utf8)
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let at = Int.random(in: 0..<stream.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: stream.insert(alphabet.randomElement(using: &random)!, at: at)
                case 1: stream.remove(at: at)
                default: stream[at] = alphabet.randomElement(using: &random)!
                }
            }
            return stream
        }
    }

    /// Never laxer than llhttp where framing is concerned: on streams of valid requests mutated at
    /// random (bytes inserted, dropped, replaced), every message this parser reads, llhttp reads the
    /// same — same head, same body, same number of messages — unless llhttp refused a token this
    /// parser lets through on purpose (a method it has no name for, a byte in a target or version).
    /// Where the two would frame a stream differently, this parser is the one that refuses.
    @Test func whereverThisParserReadsAMessageLLHTTPReadsTheSame() {
        let pieces = [
            "GET /lp?ttclid=E.C.P.x HTTP/1.1\r\nHost: lp.example\r\nCookie: a=1\r\n\r\n",
            "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "HEAD / HTTP/1.0\r\nHost: a\r\n\r\n",
        ]
        let alphabet = Array("\r\n :;,0159aAzZ-\t\u{0}\u{7f}".utf8) + [0x80, 0xff] + Array("chunked".utf8) + Array("Content-Length".utf8)
        var compared = 0
        for stream in mutatedStreams(4000, of: pieces, alphabet: alphabet, seed: 21) {
            let ours = parse([stream], maxHeadBytes: 8192, maxFieldCount: 100)
            let llhttp = parseWithLLHTTP(stream, decoder: HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes), describing: Transcript.request)
            if let error = llhttp.error as? HTTPParserError, [.invalidMethod, .invalidURL, .invalidVersion, .invalidConstant].contains(error) { continue }
            compared += 1
            // What this parser completed, llhttp completed the same way (the last head may still
            // be waiting for its body in both).
            #expect(Array(llhttp.lines.prefix(ours.parts.count)) == ours.parts, "\(String(decoding: stream, as: UTF8.self).debugDescription)\nours \(ours)\nllhttp \(llhttp)")
        }
        #expect(compared > 2000, "only \(compared) streams compared")
    }

    /// The same beside llhttp for origins' responses (each answering a GET), the origin closing
    /// after the last byte.
    @Test func whereverThisParserReadsAResponseLLHTTPReadsTheSame() {
        let pieces = [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\n\r\nhello",
            "HTTP/1.1 302 Found\r\nLocation: /lp\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nmove\r\n0\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
            "HTTP/1.1 100 Continue\r\n\r\n",
        ]
        let alphabet = Array("\r\n :;,0159aAzZ-\t\u{0}".utf8) + Array("chunked".utf8) + Array("Content-Length".utf8)
        var compared = 0
        for stream in mutatedStreams(3000, of: pieces, alphabet: alphabet, seed: 34) {
            let ours = parseResponses([stream], describing: Transcript.responseCode)
            let llhttp = parseWithLLHTTP(stream, decoder: HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes), requests: 4, describing: Transcript.responseCode)
            if llhttp.error != nil, llhttp.lines.isEmpty { continue }
            compared += 1
            #expect(Array(llhttp.lines.prefix(ours.parts.count)) == ours.parts, "\(String(decoding: stream, as: UTF8.self).debugDescription)\nours \(ours)\nllhttp \(llhttp)")
        }
        #expect(compared > 1000, "only \(compared) streams compared")
    }
}
