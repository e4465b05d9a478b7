import NIOCore
import NIOHTTP1
import Testing

@testable import Gateway

/// The gateway's own HTTP/1.1 request parser: what it reads, what it refuses (and with which
/// status), and that how the bytes are split into reads never changes either.
@Suite struct HTTP1RequestParserTests {
    /// What the parser made of a byte stream: the parts, written down, and the refusal if any.
    private struct Outcome: Equatable {
        var parts: [String] = []
        var refusal: HTTP1RequestParser.Refusal?
    }

    private func parse(_ reads: [[UInt8]], maxHeadBytes: Int = 4096, maxFieldCount: Int = 20) -> Outcome {
        var parser = HTTP1RequestParser(maxHeadBytes: maxHeadBytes, maxFieldCount: maxFieldCount)
        var outcome = Outcome()
        var body = ""
        for read in reads {
            parser.receive(ByteBuffer(bytes: read))
            do {
                while let part = try parser.next() {
                    switch part {
                    case .head(let head):
                        let fields = head.headers.map { "\($0.name)=\($0.value)" }.joined(separator: "|")
                        outcome.parts.append("head \(head.method.rawValue) \(head.uri) \(head.version) [\(fields)]")
                    case .body(let bytes):
                        body += String(buffer: bytes)
                    case .end(let trailers):
                        outcome.parts.append("body \(body)")
                        body = ""
                        outcome.parts.append("end \(trailers.map { $0.map { "\($0.name)=\($0.value)" }.joined(separator: "|") } ?? "-")")
                    }
                }
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

    @Test func pipelinedRequestsAreReadWithTheirBodiesAndTrailers() {
        let stream = "\r\nGET /lp?ttclid=E.C.P.x HTTP/1.1\r\nHost: lp.example\r\nX-Padded: \t value \t\r\n\r\n"
            + "POST /form HTTP/1.1\r\nHost: lp.example\r\nContent-Length: 5\r\n\r\nhello"
            + "PUT /up HTTP/1.1\r\nHost: lp.example\r\nTransfer-Encoding: Chunked\r\n\r\n"
            + "5;name=value\r\nhello\r\n6 \r\n world\r\n0\r\nX-Checksum: abc\r\nContent-Length: 9\r\n\r\n"
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
            var reads: [[UInt8]] = []
            var rest = stream[...]
            while !rest.isEmpty {
                let cut = Int.random(in: 1...min(rest.count, 40), using: &random)
                reads.append(Array(rest.prefix(cut)))
                rest = rest.dropFirst(cut)
            }
            let whole = parse([stream], maxHeadBytes: 512)
            let split = parse(reads, maxHeadBytes: 512)
            #expect(whole == split, "\(String(decoding: stream, as: UTF8.self).debugDescription)")
            if whole.refusal != nil { refused += 1 }
        }
        // Both kinds of stream were really tried.
        #expect((300...2700).contains(refused), "\(refused) of 3,000 streams refused")
    }
}
