import Config
import NIOCore
import NIOHTTP1
import Testing

@testable import Gateway

/// The per-request header work, as pure functions: host normalisation, hop-by-hop removal and
/// the forwarding headers. These run on every request, so they work on bytes; the cases here pin
/// what they accept.
@Suite struct HeaderRulesTests {
    @Test func hostsAreLowerCasedWithoutPortOrTrailingDot() {
        let cases: [(String, String?)] = [
            ("LP.Example.COM", "lp.example.com"), ("lp.example.com:8443", "lp.example.com"), ("lp.example.com.", "lp.example.com"),
            ("lp.example.com:", "lp.example.com"), ("[::1]:443", "[::1]"), ("[::1]", "[::1]"), ("127.0.0.1:80", "127.0.0.1"),
            ("under_score.example", "under_score.example"),
            ("", nil), (":80", nil), ("lp.example.com:80x", nil), ("[::1", nil), ("[::1]x", nil), ("[::1]:x", nil),
            ("lp example.com", nil), ("lp.exämple.com", nil), ("lp.example.com/", nil), ("lp.example.com:٣", nil),
        ]
        for (raw, expected) in cases {
            #expect(SiteTable.normalizedHost(raw) == expected, "\(raw)")
        }
    }

    @Test func theEngineReadsItsRequestFieldsInOnePass() {
        let fields = HeaderRules.RequestFields(HeaderFields([
            ("HOST", "LP.example:8443"), ("User-Agent", "ua/1"), ("host", "second"), ("Referer", "https://r.example/"),
            ("X-Request-ID", "abc"), ("Content-Length", "5"), ("content-length", "6"), ("Expect", "100-Continue"),
            ("Transfer-Encoding", "gzip"), ("transfer-encoding", "chunked"), ("user-agent", "later"), ("X-Other", "x"),
        ]))
        #expect(fields.hostCount == 2 && fields.host == "LP.example:8443")
        #expect(fields.userAgent == "ua/1" && fields.referrer == "https://r.example/" && fields.requestID == "abc")
        #expect(fields.contentLengthCount == 2 && fields.contentLength == "5")
        #expect(fields.transferEncodings == ["gzip", "chunked"] && fields.expect == "100-Continue")
        let none = HeaderRules.RequestFields(HeaderFields([("x-host", "no"), ("hosts", "no")]))
        #expect(none.hostCount == 0 && none.host == nil && none.transferEncodings.isEmpty && none.contentLength == nil)
    }

    /// What the HTTP/1 parser refuses on its own, HTTP/2 requests meet here: one way to frame a body.
    @Test(arguments: [
        ([], ProxyHandler.RequestFraming.none), ([("Content-Length", "12")], .contentLength),
        ([("Transfer-Encoding", "chunked")], .chunked), ([("transfer-encoding", " Chunked ")], .chunked),
        ([("Content-Length", "1"), ("Transfer-Encoding", "chunked")], .refused("Content-Length and Transfer-Encoding together are refused.")),
        ([("Content-Length", "1"), ("content-length", "1")], .refused("More than one Content-Length is refused.")),
        ([("Content-Length", "1e3")], .refused("Content-Length must be digits only.")),
        ([("Content-Length", "")], .refused("Content-Length must be digits only.")),
        ([("Transfer-Encoding", "gzip, chunked")], .refused("Only Transfer-Encoding: chunked is accepted.")),
        ([("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")], .refused("Only Transfer-Encoding: chunked is accepted.")),
    ] as [([(String, String)], ProxyHandler.RequestFraming)])
    func requestBodiesAreFramedOneWayOrRefused(fields: [(String, String)], expected: ProxyHandler.RequestFraming) {
        #expect(ProxyHandler.framing(of: HeaderRules.RequestFields(HeaderFields(fields))) == expected)
    }

    @Test func hopByHopFieldsAndThoseConnectionNamesGo() {
        let headers = HeaderFields([
            ("Host", "a"), ("Connection", "keep-alive, X-Secret"), ("Keep-Alive", "timeout=5"), ("x-secret", "1"),
            ("TE", "trailers"), ("Proxy-Authorization", "x"), ("Upgrade", "h2c"), ("Accept", "*/*"), ("X-Secret", "2"),
        ])
        #expect(HeaderRules.forwardable(headers, connection: HeaderRules.connectionOptions(headers)).map(\.name) == ["Host", "Accept"])
        let untouched = HeaderFields([("Host", "a"), ("User-Agent", "curl"), ("Proxy", "not-a-prefix-match")])
        #expect(HeaderRules.forwardable(untouched, connection: HeaderRules.connectionOptions(untouched)).map(\.name) == ["Host", "User-Agent", "Proxy"])
        // Fields the proxy sets itself go too; the rest keep their order and values.
        let own = HeaderRules.forwardable(untouched, connection: HeaderRules.connectionOptions(untouched)) { $0.matches("host") }
        #expect(own.map(\.name) == ["User-Agent", "Proxy"] && own.map(\.value) == ["curl", "not-a-prefix-match"])
        // Every length of name: `proxy-` names of 7, 10 and 17 bytes share lengths with the fixed names;
        // Connection options in several fields, with odd spacing and empty members.
        let mixed = HeaderFields([
            ("proxy-x", "1"), ("PROXY-AUTH", "2"), ("Proxy-Connection1", "3"), ("Transfer-Encoding", "chunked"), ("Trailer", "x"),
            ("Connection", " close ,,\tX-A "), ("connection", "x-b"), ("X-A", "a"), ("x-b", "b"), ("X-C", "c"), ("Teapot", "t"),
        ])
        #expect(HeaderRules.forwardable(mixed, connection: HeaderRules.connectionOptions(mixed)).map(\.name) == ["X-C", "Teapot"])
    }

    @Test func anUntrustedPeerCannotForgeForwardingHeaders() {
        var headers = HeaderFields([
            ("Host", "lp.example.com"), ("X-Forwarded-For", "6.6.6.6"), ("forwarded", "for=6.6.6.6"), ("X-Forwarded-Host", "evil"),
        ])
        #expect(HeaderRules.clientAddress(headers, peer: "203.0.113.7", peerTrusted: false, trusted: []) == "203.0.113.7")
        HeaderRules.applyForwarding(&headers, peer: "203.0.113.7", peerTrusted: false, scheme: "https", host: "lp.example.com")
        #expect(headers["x-forwarded-for"] == ["203.0.113.7"])
        #expect(headers["x-forwarded-host"] == ["lp.example.com"])
        #expect(headers["x-forwarded-proto"] == ["https"])
        #expect(headers["forwarded"] == ["for=203.0.113.7;proto=https;host=\"lp.example.com\""])
        var fromIPv6 = HeaderFields([("Host", "[::1]:8443")])
        HeaderRules.applyForwarding(&fromIPv6, peer: "2001:db8::7", peerTrusted: false, scheme: "https", host: "[::1]:8443")
        #expect(fromIPv6["forwarded"] == ["for=\"[2001:db8::7]\";proto=https;host=\"[::1]:8443\""])
        #expect(fromIPv6.isWritable)
        // The four lines go in with one append and are written out as any others.
        #expect(headers.map(\.name) == ["Host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"])
        let head = RequestHead(version: .http1_1, method: .GET, uri: "/", headers: headers)
        let written = HeadWriter.draft(head, allocator: ByteBufferAllocator()).flatMap {
            HeadWriter.finish($0, of: head, edit: HeadWriter.FramingEdit(), allocator: ByteBufferAllocator())
        }
        #expect(written.map { String(buffer: $0) } == """
            GET / HTTP/1.1\r\nHost: lp.example.com\r\nx-forwarded-for: 203.0.113.7\r\nx-forwarded-proto: https\r\n\
            x-forwarded-host: lp.example.com\r\nforwarded: for=203.0.113.7;proto=https;host="lp.example.com"\r\n\r\n
            """)
    }

    @Test func aTrustedPeerExtendsTheChain() throws {
        let trusted = [try CIDR.parse("10.0.0.0/8").get()]
        var headers = HeaderFields([("Host", "lp.example.com"), ("X-Forwarded-For", "198.51.100.4, 10.1.1.1"), ("X-Forwarded-Proto", "http")])
        #expect(HeaderRules.clientAddress(headers, peer: "10.0.0.2", peerTrusted: true, trusted: trusted) == "198.51.100.4")
        // Every hop ours: the oldest; one that is not an address: the peer.
        let allOurs = HeaderFields([("X-Forwarded-For", "10.9.9.9, 10.1.1.1")])
        #expect(HeaderRules.clientAddress(allOurs, peer: "10.0.0.2", peerTrusted: true, trusted: trusted) == "10.9.9.9")
        let junk = HeaderFields([("X-Forwarded-For", "unknown")])
        #expect(HeaderRules.clientAddress(junk, peer: "10.0.0.2", peerTrusted: true, trusted: trusted) == "10.0.0.2")
        HeaderRules.applyForwarding(&headers, peer: "10.0.0.2", peerTrusted: true, scheme: "https", host: "lp.example.com")
        #expect(headers["x-forwarded-for"] == ["198.51.100.4, 10.1.1.1, 10.0.0.2"])
        #expect(headers["x-forwarded-proto"] == ["http"])
        #expect(headers["x-forwarded-host"] == ["lp.example.com"])
        #expect(headers["forwarded"] == ["for=10.0.0.2;proto=https;host=\"lp.example.com\""])
        // RFC 7239 §6: an IPv6 node is bracketed and quoted.
        #expect(HeaderRules.ForwardedElement(address: "::1", scheme: "http", host: "[::1]:8080").text == "for=\"[::1]\";proto=http;host=\"[::1]:8080\"")
    }

    /// The gateway's keep-alive reading agrees with NIO's (which it replaces for speed) on every case.
    @Test func keepAliveIsReadAsNIOReadsIt() {
        let values: [[String]] = [
            [], ["close"], ["Close"], ["keep-alive"], ["Keep-Alive"], ["upgrade, close"], [" keep-alive , x-foo"], ["closed"],
            ["x-foo", "close"], ["keep-alive", "close"], [""], [",,close,"], ["te"],
        ]
        for version in [HTTPVersion.http1_0, .http1_1] {
            for connection in values {
                let fields = connection.map { ("Connection", $0) } + [("Host", "a")]
                let headers = HeaderFields(fields)
                let nio = HTTPRequestHead(version: version, method: .GET, uri: "/", headers: HTTPHeaders(fields)).isKeepAlive
                #expect(HeaderRules.keepsAlive(headers, version: version) == nio, "\(version) \(connection)")
            }
        }
    }
}
