import Foundation
import NIOCore
import NIOHTTP1
import Testing

@testable import Gateway

/// The engine's gzip handling for rewritten bodies, checked against Debian's `gzip` program: what it
/// compresses the gateway must read, and what the gateway compresses it must read.
@Suite struct GzipTests {
    /// Passes bytes through unchanged, so only the coding is under test.
    private final class Unchanged: ResponseBodyTransform {
        func transform(_ chunk: ByteBuffer) -> ByteBuffer { chunk }
        func finish() -> ByteBuffer { ByteBuffer() }
    }

    private func gzip(_ data: Data) async throws -> Data {
        let result = try await runProcess("/bin/gzip", ["-c", "-n"], bytes: data)
        try #require(result.status == 0, "\(result.stderr)")
        return result.output
    }

    private func gunzip(_ data: Data) async throws -> ProcessResult {
        try await runProcess("/bin/gzip", ["-d", "-c"], bytes: data)
    }

    /// Runs `body` through a recoding transform in the given chunk sizes, as an origin's reads would split it.
    private func recode(_ body: Data, gzipToClient: Bool, chunks: [Int]) throws -> Data {
        let recoding = GzipRecoding(Unchanged(), gzipToClient: gzipToClient)
        var out = Data()
        var offset = 0
        var sizes = chunks.makeIterator()
        while offset < body.count {
            let size = min(body.count - offset, max(1, sizes.next() ?? body.count))
            out.append(contentsOf: try recoding.transform(ByteBuffer(bytes: body[offset..<offset + size])).readableBytesView)
            offset += size
        }
        out.append(contentsOf: try recoding.finish().readableBytesView)
        return out
    }

    private static func page(_ seed: Int, bytes: Int) -> Data {
        var generator = SplitMix(seed: UInt64(seed))
        var html = "<!doctype html><html><body>"
        while html.utf8.count < bytes {
            html += #"<p class="x\#(generator.next() % 97)">Item \#(generator.next())</p><a href="https://checkout.test/p/\#(generator.next() % 1000)">Buy</a>"#
        }
        return Data((html + "</body></html>").utf8)
    }

    @Test(arguments: [1, 7, 1000, 300_000])
    func whatGzipCompressesIsReadWhateverTheChunking(size: Int) async throws {
        let page = Self.page(size, bytes: size)
        let compressed = try await gzip(page)
        var generator = SplitMix(seed: UInt64(size))
        let randomChunks = (0..<10_000).map { _ in Int(generator.next() % 4096) + 1 }
        for chunks in [[compressed.count], [1], randomChunks] {
            #expect(try recode(compressed, gzipToClient: false, chunks: chunks) == page)
        }
    }

    @Test func everySplitPointOfASmallBodyGivesTheSameResult() async throws {
        let page = Self.page(2, bytes: 400)
        let compressed = try await gzip(page)
        for split in 1..<compressed.count {
            #expect(try recode(compressed, gzipToClient: false, chunks: [split, compressed.count]) == page, "split at \(split)")
        }
    }

    @Test func whatTheGatewayCompressesGzipReads() async throws {
        let page = Self.page(3, bytes: 200_000)
        let compressed = try await gzip(page)
        let recoded = try recode(compressed, gzipToClient: true, chunks: [1000, 20_000, 7, 65_536])
        let read = try await gunzip(recoded)
        #expect(read.status == 0, "\(read.stderr)")
        #expect(read.output == page)
    }

    @Test func concatenatedMembersReadAsOneBody() async throws {
        let first = Self.page(4, bytes: 5000)
        let second = Self.page(5, bytes: 3000)
        let joined = try await gzip(first) + (try await gzip(second))
        #expect(try recode(joined, gzipToClient: false, chunks: [4096]) == first + second)
    }

    @Test func corruptAndTruncatedBodiesAreErrors() async throws {
        let compressed = try await gzip(Self.page(6, bytes: 20_000))
        var corrupt = compressed
        corrupt[compressed.count / 2] ^= 0x55
        #expect(throws: GzipError.self) { try recode(corrupt, gzipToClient: false, chunks: [512]) }
        #expect(throws: GzipError.self) { try recode(compressed.prefix(compressed.count - 4), gzipToClient: true, chunks: [512]) }
        #expect(throws: GzipError.self) { try recode(Data("plain text, no gzip".utf8), gzipToClient: false, chunks: [5]) }
        #expect(throws: GzipError.self) { try recode(compressed + Data("trailing junk".utf8), gzipToClient: false, chunks: [512]) }
    }

    /// A small body that inflates enormously (a "gzip bomb") is refused for a client that takes it
    /// plain; toward a gzip client the output stays compressed, so it is streamed.
    @Test func aBombIsRefusedWhenItWouldBeSentPlain() async throws {
        let bomb = try await gzip(Data(count: 64 << 20))
        #expect(bomb.count < 100_000)
        #expect(throws: GzipError.self) { try recode(bomb, gzipToClient: false, chunks: [bomb.count]) }
        let recoded = try recode(bomb, gzipToClient: true, chunks: [bomb.count])
        #expect(recoded.count < 1 << 20)
        #expect(try await gunzip(recoded).output.count == 64 << 20)
    }

    @Test(arguments: [
        ("gzip, deflate, br", true), ("GZIP", true), ("br;q=1.0, gzip;q=0.8", true), ("x-gzip", true),
        ("gzip;q=0", false), ("gzip; q=0.000, *", false), ("*", true), ("*;q=0", false), ("identity", false),
        ("br, zstd", false), ("", false), (" gzip ; q=0.5 ", true),
    ])
    func acceptEncodingIsReadWithItsWeights(value: String, accepted: Bool) {
        #expect(acceptsGzip(HeaderFields([("accept-encoding", value)])) == accepted)
    }

    @Test func withoutAcceptEncodingGzipIsNotAssumed() {
        #expect(!acceptsGzip(HeaderFields()))
    }

    @Test func onlyIdentityAndGzipBodiesAreRewritten() {
        func coding(_ value: String?) -> ResponseCoding? {
            ResponseCoding(HeaderFields(value.map { [("content-encoding", $0)] } ?? []))
        }
        #expect(coding(nil).map { "\($0)" } == "identity")
        #expect(coding("identity").map { "\($0)" } == "identity")
        #expect(coding("gzip").map { "\($0)" } == "gzip")
        #expect(coding("X-Gzip").map { "\($0)" } == "gzip")
        for other in ["br", "deflate", "zstd", "gzip, br", "compress"] { #expect(coding(other) == nil, "\(other)") }
    }

    @Test func theHeadIsFittedToTheRewrittenBody() {
        var head = ResponseHead(version: .http1_1, status: .ok, headers: [
            "content-encoding": "gzip", "content-length": "1234", "etag": "\"v1\"", "accept-ranges": "bytes", "vary": "Cookie",
        ])
        let request = RequestHead(version: .http1_1, method: .GET, uri: "/", headers: ["accept-encoding": "br"])
        let transform = ResponseCoding.gzip.fit(Unchanged(), head: &head, request: request)
        #expect(transform is GzipRecoding)
        #expect(head.headers["content-length"].isEmpty && head.headers["accept-ranges"].isEmpty)
        #expect(head.headers["content-encoding"].isEmpty, "a client without gzip gets the body plain")
        #expect(head.headers["etag"] == ["W/\"v1\""])
        #expect(head.headers["vary"] == ["Cookie", "Accept-Encoding"])

        var plain = ResponseHead(version: .http1_1, status: .ok, headers: ["content-length": "10", "etag": "W/\"v2\"", "vary": "accept-encoding"])
        let gzipClient = RequestHead(version: .http1_1, method: .GET, uri: "/", headers: ["accept-encoding": "gzip"])
        #expect(ResponseCoding.identity.fit(Unchanged(), head: &plain, request: gzipClient) is Unchanged)
        #expect(plain.headers["etag"] == ["W/\"v2\""] && plain.headers["vary"] == ["accept-encoding"])
    }

    @Test(arguments: [
        (nil, "private"), ("public, max-age=600", "private, max-age=600"), ("max-age=60, s-maxage=3600", "private, max-age=60"),
        ("no-store", "no-store"), ("PRIVATE, max-age=5", "PRIVATE, max-age=5"),
    ] as [(String?, String)])
    func perVisitorAnswersStayOutOfSharedCaches(origin: String?, sent: String) {
        var headers = HeaderFields(origin.map { [("cache-control", $0)] } ?? [])
        HeaderRules.keepOutOfSharedCaches(&headers)
        #expect(headers["cache-control"] == [sent])
    }
}
