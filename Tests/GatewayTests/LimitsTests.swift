import Foundation
import Testing

/// Limits and request-smuggling defences, driven with raw bytes on the plain-HTTP listener
/// (the same pipeline as HTTPS, minus TLS).
@Suite struct LimitsTests {
    @Test func slowHeadersGet408() async throws {
        try await withGateway(timeouts: "header: 2s") { gateway, origin in
            let started = ContinuousClock.now
            let trickle = ["GET /echo HTTP/1.1\r\n", "Host: localhost\r\n"] + (0..<20).map { "X-Slow-\($0): 1\r\n" }
            let (response, closed) = try await RawHTTP.exchange(port: gateway.httpPort, trickle, gap: .milliseconds(500), timeout: .seconds(15))
            #expect(response.hasPrefix("HTTP/1.1 408"), "\(response)")
            #expect(closed)
            // Well before the trickle (10 s) would have finished.
            #expect(ContinuousClock.now - started < .seconds(8))
            #expect(origin.connectionCount == 0)
        }
    }

    @Test func idleKeepAliveConnectionsAreClosedQuietly() async throws {
        try await withGateway(timeouts: "header: 10s, idle: 2s") { gateway, _ in
            let started = ContinuousClock.now
            let (response, closed) = try await RawHTTP.exchange(
                port: gateway.httpPort, ["GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n"], timeout: .seconds(9))
            #expect(closed)
            #expect(ContinuousClock.now - started < .seconds(8))
            #expect(response.hasPrefix("HTTP/1.1 200"))
            // Exactly one status line: an idle connection is closed without a second (408) response.
            #expect(response.components(separatedBy: "HTTP/1.1 ").count == 2, "\(response)")
        }
    }

    @Test func oversizedOrTooManyHeadersGet431() async throws {
        try await withGateway(limits: "max_header_bytes: 4KiB, max_header_count: 20") { gateway, _ in
            let big = "X-Big: " + String(repeating: "a", count: 5000) + "\r\n"
            let (r1, c1) = try await RawHTTP.exchange(port: gateway.httpPort, ["GET /echo HTTP/1.1\r\nHost: localhost\r\n" + big + "\r\n"])
            #expect(r1.hasPrefix("HTTP/1.1 431"), "\(r1)")
            #expect(c1)
            let many = (0..<30).map { "X-H\($0): v\r\n" }.joined()
            let (r2, _) = try await RawHTTP.exchange(port: gateway.httpPort, ["GET /echo HTTP/1.1\r\nHost: localhost\r\n" + many + "\r\n"])
            #expect(r2.hasPrefix("HTTP/1.1 431"), "\(r2)")
            // The same over HTTP/2, where HPACK carries the headers.
            let h2 = try await curl(["--http2", "-H", "X-Big: " + String(repeating: "b", count: 5000), "-o", "/dev/null", "-w", "%{http_code}", "https://localhost:\(gateway.httpsPort)/echo"])
            #expect(h2.stdout == "431" || h2.status != 0, "\(h2)")
        }
    }

    @Test func bodiesOverTheSiteLimitGet413() async throws {
        try await withGateway(site: "max_body_size: 1KiB") { gateway, origin in
            let declared = try await curl(["--http1.1", "--data-binary", String(repeating: "x", count: 2000), "-w", "%{http_code}", "-o", "/dev/null", "https://localhost:\(gateway.httpsPort)/upload"])
            #expect(declared.stdout == "413")
            let chunked = try await RawHTTP.exchange(port: gateway.httpPort, [
                "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
                "400\r\n" + String(repeating: "y", count: 1024) + "\r\n", "400\r\n" + String(repeating: "y", count: 1024) + "\r\n0\r\n\r\n",
            ], gap: .milliseconds(50))
            #expect(chunked.response.hasPrefix("HTTP/1.1 413"), "\(chunked.response)")
            #expect(chunked.closedByServer)
            let h2 = try await curl(["--http2", "--data-binary", String(repeating: "x", count: 2000), "-w", "%{http_code}", "-o", "/dev/null", "https://localhost:\(gateway.httpsPort)/upload"])
            #expect(h2.stdout == "413", "\(h2)")
            let small = try await curl(["--data-binary", "small", "https://localhost:\(gateway.httpsPort)/upload"])
            #expect(small.stdout == "5")
            _ = origin
        }
    }

    @Test(arguments: [
        ("CL.TE", "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"),
        ("TE.CL", "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"),
        ("duplicate CL", "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
        ("conflicting CL", "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("signed CL", "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: +5\r\n\r\nhello"),
        ("obfuscated TE", "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        ("TE list", "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        ("space before colon", "GET /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        ("two hosts", "GET /echo HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n"),
        ("no host", "GET /echo HTTP/1.1\r\n\r\n"),
        ("bare LF", "GET /echo HTTP/1.1\nHost: localhost\n\n"),
    ])
    func smugglingAttemptsGet400AndAClose(name: String, request: String) async throws {
        try await withGateway { gateway, origin in
            let (response, closed) = try await RawHTTP.exchange(port: gateway.httpPort, [request + "GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n"])
            #expect(response.hasPrefix("HTTP/1.1 400"), "\(name): \(response)")
            #expect(closed, "\(name): connection left open")
            #expect(response.components(separatedBy: "HTTP/1.1 ").count == 2, "\(name): a second response means a smuggled request ran")
            #expect(origin.connectionCount == 0, "\(name) reached the origin")
        }
    }

    /// `Transfer-Encoding` is hop-by-hop, so the gateway frames the body again toward the origin.
    /// A GET's body once went out bare after its head, and the origin read it as a second request.
    @Test func aChunkedGetBodyReachesTheOriginAsBodyNotAsARequest() async throws {
        try await withGateway { gateway, origin in
            let smuggled = "GET /hop HTTP/1.1\r\nHost: localhost\r\n\r\n"
            let chunk = String(smuggled.utf8.count, radix: 16) + "\r\n" + smuggled + "\r\n0\r\n\r\n"
            let (response, _) = try await RawHTTP.exchange(port: gateway.httpPort, [
                "GET /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk
                    + "HEAD /echo HTTP/1.1\r\nHost: localhost\r\n\r\n" + "GET /upload HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            ])
            let answers = response.components(separatedBy: "HTTP/1.1 ").dropFirst()
            #expect(answers.count == 3, "\(response)")
            #expect(answers.first?.contains("\"body_length\":\(smuggled.utf8.count)") == true, "\(response)")
            #expect(!response.contains("x-kept"), "the smuggled request reached the origin: \(response)")
            // The HEAD answer carries no body, so the third answer starts where it should.
            #expect(answers.dropFirst().first?.hasPrefix("200 OK") == true)
            #expect(answers.last?.hasSuffix("\r\n\r\n0") == true, "\(response)")
            _ = origin
        }
    }

    /// RFC 9112 §9.6: after a request that closes the connection (`Connection: close`, or HTTP/1.0
    /// without `keep-alive`), no later request on it is processed, even one already sent.
    @Test func nothingAfterARequestThatClosesTheConnectionRuns() async throws {
        try await withGateway { gateway, origin in
            for first in ["GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", "GET /echo HTTP/1.0\r\nHost: localhost\r\n\r\n"] {
                let (response, closed) = try await RawHTTP.exchange(port: gateway.httpPort, [first + "GET /hop HTTP/1.1\r\nHost: localhost\r\n\r\n"])
                #expect(response.components(separatedBy: " 200 OK").count == 2, "\(response)")
                #expect(!response.contains("x-kept"), "the second request reached the origin: \(response)")
                #expect(closed)
            }
            _ = origin
        }
    }

    /// The head is valid, so the request is already on its way upstream when the body turns bad:
    /// the client gets 400, the upstream connection is dropped, and nothing after it runs.
    @Test func badChunkingMidBodyGets400AndNothingElseRuns() async throws {
        try await withGateway { gateway, _ in
            let (response, closed) = try await RawHTTP.exchange(port: gateway.httpPort, [
                "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
                    + "GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n"
            ])
            #expect(response.hasPrefix("HTTP/1.1 400"), "\(response)")
            #expect(closed)
            #expect(response.components(separatedBy: "HTTP/1.1 ").count == 2)
        }
    }

    @Test func aStalledRequestBodyGets408() async throws {
        try await withGateway(timeouts: "body: 2s") { gateway, _ in
            let (response, closed) = try await RawHTTP.exchange(
                port: gateway.httpPort, ["POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nonly-a-little"], timeout: .seconds(9))
            #expect(response.hasPrefix("HTTP/1.1 408"), "\(response)")
            #expect(closed)
        }
    }

    /// CVE-2023-44487: streams opened and reset at once, over and over. The gateway answers with
    /// GOAWAY and closes that connection; everyone else is served as before.
    @Test func http2RapidResetEndsTheConnection() async throws {
        try await withGateway { gateway, origin in
            var flood: [UInt8] = []
            for i in 0..<2000 {
                let stream = UInt32(2 * i + 1)
                flood += RawHTTP2.getHeaders(stream: stream) + RawHTTP2.reset(stream: stream)
            }
            // Returns as soon as the gateway closes: alone that takes under a second, but with the
            // whole suite on two cores the 2,000 streams before the GOAWAY took up to 5 s.
            let (frames, closed) = try await RawHTTP2.exchange(port: gateway.httpsPort, flood, timeout: .seconds(15))
            #expect(frames.types.contains(0x7), "no GOAWAY among \(Set(frames.types))")
            #expect(closed)
            #expect(origin.connectionCount < 400, "\(origin.connectionCount) upstream connections for a reset flood")
            let ok = try await curl(["--http2", "-o", "/dev/null", "-w", "%{http_code}", "https://localhost:\(gateway.httpsPort)/echo"])
            #expect(ok.stdout == "200")
        }
    }

    /// CVE-2024-27316: a header block that never ends, CONTINUATION after CONTINUATION. The gateway
    /// stops after a few frames and closes the connection; others are served.
    @Test func http2ContinuationFloodEndsTheConnection() async throws {
        try await withGateway { gateway, _ in
            // HEADERS without END_HEADERS, then CONTINUATION frames without END_HEADERS, each adding a header.
            var flood = RawHTTP2.frame(type: 0x1, flags: 0x1, stream: 1, payload: [0x82, 0x87, 0x84, 0x41, 0x09] + Array("localhost".utf8))
            for i in 0..<2000 { flood += RawHTTP2.frame(type: 0x9, flags: 0x0, stream: 1, payload: [0x40, 0x03] + Array("x-f".utf8) + [0x04] + Array(String(format: "%04d", i % 10000).utf8)) }
            let (frames, closed) = try await RawHTTP2.exchange(port: gateway.httpsPort, flood, timeout: .seconds(5))
            #expect(closed, "the connection stayed open through a CONTINUATION flood")
            #expect(frames.types.contains(0x7), "no GOAWAY among \(Set(frames.types))")
            let ok = try await curl(["--http2", "-o", "/dev/null", "-w", "%{http_code}", "https://localhost:\(gateway.httpsPort)/echo"])
            #expect(ok.stdout == "200")
        }
    }

    /// SETTINGS (and PING) frames faster than their acknowledgements can be written: the buffered
    /// control frames are bounded and the connection is closed.
    @Test func http2ControlFrameFloodEndsTheConnection() async throws {
        try await withGateway { gateway, _ in
            var flood: [UInt8] = []
            for i in 0..<20_000 {
                flood += i % 2 == 0
                    ? RawHTTP2.frame(type: 0x4, flags: 0, stream: 0, payload: [0x00, 0x03, 0x00, 0x00, 0x00, 0x64])
                    : RawHTTP2.frame(type: 0x6, flags: 0, stream: 0, payload: [UInt8](repeating: UInt8(i & 0xff), count: 8))
            }
            let (_, closed) = try await RawHTTP2.exchange(port: gateway.httpsPort, flood, timeout: .seconds(8), readPaused: true)
            #expect(closed, "the connection stayed open through a control-frame flood it could not answer")
            let ok = try await curl(["--http2", "-o", "/dev/null", "-w", "%{http_code}", "https://localhost:\(gateway.httpsPort)/echo"])
            #expect(ok.stdout == "200")
        }
    }

    /// An HTTP/2 request whose END_STREAM comes after the response was complete (AsyncHTTPClient
    /// sends it in a frame of its own): the stream is not reset; its complete response stands.
    @Test func http2ResponsesCompleteBeforeTheRequestEndAreNotReset() async throws {
        try await withGateway { gateway, _ in
            // HEADERS for GET /echo without END_STREAM; the request's end never comes within the wait.
            let headers = RawHTTP2.frame(type: 0x1, flags: 0x4, stream: 1, payload: [0x82, 0x87, 0x44, 0x05] + Array("/echo".utf8) + [0x41, 0x09] + Array("localhost".utf8))
            let (frames, closed) = try await RawHTTP2.exchange(port: gateway.httpsPort, headers, timeout: .seconds(3))
            #expect(frames.types.contains(0x1) && frames.types.contains(0x0), "the response: \(frames.types)")
            #expect(!frames.types.contains(0x3), "the stream was reset after its response: \(frames.types)")
            #expect(!closed)
        }
    }

    /// Bytes that are not TLS, and a TLS record with an impossible length, on the HTTPS port: the
    /// connection is closed and the listener keeps serving.
    @Test(arguments: [
        ("plain HTTP", Array("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)),
        ("oversized record", [0x16, 0x03, 0x01, 0xff, 0xff] + [UInt8](repeating: 0x41, count: 512)),
        ("garbage handshake", [0x16, 0x03, 0x03, 0x00, 0x20] + [UInt8](repeating: 0x00, count: 32)),
    ])
    func malformedTLSIsDropped(name: String, bytes: [UInt8]) async throws {
        try await withGateway { gateway, _ in
            let (_, closed) = try await RawHTTP.exchange(port: gateway.httpsPort, [String(decoding: bytes, as: UTF8.self)], timeout: .seconds(5))
            #expect(closed, "\(name): the connection stayed open")
            let ok = try await curl(["-o", "/dev/null", "-w", "%{http_code}", "https://localhost:\(gateway.httpsPort)/echo"])
            #expect(ok.stdout == "200", "\(name): the listener stopped serving")
        }
    }

    /// Requests HTTP/2 calls malformed (RFC 9113 §8.1.1, §8.2, §8.3), written byte by byte as no
    /// client library would: each stream is reset with PROTOCOL_ERROR and the access log says why,
    /// no byte reaches the origin, and a good request on the same connection is still answered.
    @Test(arguments: [
        ("upper-case name", RawHTTP2.literal("X-Smuggle", "1")),
        ("connection-specific", RawHTTP2.literal("transfer-encoding", "chunked")),
        ("te other than trailers", RawHTTP2.literal("te", "gzip")),
        ("CR LF in a value", RawHTTP2.literal("x-a", "1\r\nx-b: 2")),
        ("pseudo-field after a regular one", RawHTTP2.literal("x-a", "1") + RawHTTP2.literal(":path", "/")),
        ("unknown pseudo-field", RawHTTP2.literal(":status", "200")),
    ])
    func malformedHTTP2RequestsResetTheirStream(name: String, extra: [UInt8]) async throws {
        try await withGateway { gateway, origin in
            let bad = RawHTTP2.frame(type: 0x1, flags: 0x5, stream: 1, payload: [0x82, 0x87, 0x84, 0x41, 0x09] + Array("localhost".utf8) + extra)
            let (frames, closed) = try await RawHTTP2.exchange(port: gateway.httpsPort, bad + RawHTTP2.getHeaders(stream: 3), timeout: .seconds(2))
            let reset = frames.first { $0.type == 0x3 && $0.stream == 1 }
            #expect(reset?.payload == [0, 0, 0, 1], "\(name): stream 1 not reset with PROTOCOL_ERROR: \(frames.map { ($0.type, $0.stream) })")
            #expect(frames.contains { $0.type == 0x1 && $0.stream == 3 }, "\(name): the good request was not answered")
            #expect(!closed)
            #expect(origin.connectionCount == 1, "\(name): only the good request goes upstream")
            let line = await gateway.awaitAccessLine { $0["proto"] == "h2" && $0["error"]?.hasPrefix("stream reset (PROTOCOL_ERROR)") == true }
            #expect(line?["client"] == "127.0.0.1", "\(name): the refusal is in the access log: \(gateway.accessLog())")
        }
    }

    @Test func http2StreamsBeyondTheConcurrencyLimitAreRefused() async throws {
        try await withGateway(limits: "h2_max_concurrent_streams: 4") { gateway, _ in
            // Ten requests that stay open (the origin never answers /hang) on one connection, after
            // acknowledging the server's SETTINGS (its limit applies from then on).
            var frames = RawHTTP2.frame(type: 0x4, flags: 0x1, stream: 0, payload: [])
            for i in 0..<10 {
                let stream = UInt32(2 * i + 1)
                frames += RawHTTP2.frame(type: 0x1, flags: 0x5, stream: stream, payload: [0x82, 0x87, 0x44, 0x05] + Array("/hang".utf8) + [0x41, 0x09] + Array("localhost".utf8))
            }
            let types = try await RawHTTP2.exchange(port: gateway.httpsPort, frames, timeout: .seconds(2)).frames.types
            // RST_STREAM (REFUSED_STREAM) or GOAWAY for the streams above the advertised limit.
            #expect(types.contains(0x3) || types.contains(0x7), "\(types)")
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await withGateway { gateway, _ in
            let one = "GET /slow/200 HTTP/1.1\r\nHost: localhost\r\n\r\n"
            let two = "GET /slow/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            let (response, closed) = try await RawHTTP.exchange(port: gateway.httpPort, [one + two])
            let first = try #require(response.range(of: "slow 200"))
            let second = try #require(response.range(of: "slow 1"))
            #expect(first.lowerBound < second.lowerBound)
            #expect(closed)
        }
    }

    /// A smartlink is answered from the request's head, before its end has been read: the
    /// connection must still take the next request, whether it comes later or in the same packet.
    @Test func aRequestAnsweredBeforeItsEndKeepsTheConnectionServing() async throws {
        try await withGateway(top: "smartlinks: [ { path: /go/a, targets: [ { url: \"https://localhost/a\" } ] } ]") { gateway, _ in
            let go = "GET /go/a?ttclid=E.C.P.x HTTP/1.1\r\nHost: localhost\r\n\r\n"
            let echo = "GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            let (separate, closedSeparate) = try await RawHTTP.exchange(port: gateway.httpPort, [go, go, echo], gap: .milliseconds(200))
            let (together, closedTogether) = try await RawHTTP.exchange(port: gateway.httpPort, [go + go + echo])
            for response in [separate, together] {
                let statuses = response.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) }
                #expect(statuses == ["302", "302", "200"], "\(response)")
            }
            #expect(closedSeparate && closedTogether)
        }
    }

    /// Requests sent behind a slow one wait their turn, a body included; a malformed request among
    /// them is refused only when its turn comes, after the answers before it, and never runs.
    @Test func aMalformedPipelinedRequestIsRefusedInItsTurn() async throws {
        try await withGateway { gateway, _ in
            let slow = "GET /slow/300 HTTP/1.1\r\nHost: localhost\r\n\r\n"
            let upload = "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\nhello world"
            let malformed = "GET /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
            let (response, closed) = try await RawHTTP.exchange(port: gateway.httpPort, [slow + upload + malformed])
            let answers = response.components(separatedBy: "HTTP/1.1 ").dropFirst()
            #expect(answers.count == 3, "\(response)")
            #expect(answers.first?.contains("slow 300") == true)
            #expect(answers.dropFirst().first?.hasSuffix("\r\n\r\n11") == true, "\(response)")
            #expect(answers.last?.hasPrefix("400") == true)
            #expect(closed)
        }
    }
}
