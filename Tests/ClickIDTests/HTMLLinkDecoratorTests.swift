import ClickID
import Testing

private let landing = URLReference("https://lp.example.com/landing?ttclid=E.C.P.abc&utm_source=tiktok&q=1")!
private let added = "ttclid=E.C.P.abc&amp;utm_source=tiktok"

/// The landing page's decorator: its own host is not decorated (its pages read the cookie); the
/// checkout domain is.
private func decorator() -> HTMLLinkDecorator {
    HTMLLinkDecorator(rewriter: RedirectRewriter(
        requestURL: landing, clickIDs: [("ttclid", "E.C.P.abc")],
        passThrough: RedirectRewriter.passThroughPieces(from: landing.query, patterns: ["utm_*"]),
        allowlist: HostAllowlist(siteHosts: [], decorateHosts: ["checkout.example-pay.com"])))
}

/// The document fed in `pieces`, then finished.
private func decorated(_ pieces: [[UInt8]]) -> String {
    var decorator = decorator()
    var out: [UInt8] = []
    for piece in pieces { out += decorator.feed(piece) }
    out += decorator.finish()
    return String(decoding: out, as: UTF8.self)
}

private func decorated(_ html: String) -> String { decorated([Array(html.utf8)]) }

@Suite struct HTMLLinkDecoratorTests {
    static let cases: [(String, String)] = [
        (#"<a href="https://checkout.example-pay.com/pay">Pay</a>"#, #"<a href="https://checkout.example-pay.com/pay?\#(added)">Pay</a>"#),
        // Upper-case names, single quotes, an existing query and a fragment.
        (#"<A HREF='https://checkout.example-pay.com/p?x=1#top'>"#, #"<A HREF='https://checkout.example-pay.com/p?x=1&amp;\#(added)#top'>"#),
        // An unquoted value gains quotes.
        (#"<a class=btn href=https://checkout.example-pay.com/p>"#, #"<a class=btn href="https://checkout.example-pay.com/p?\#(added)">"#),
        // Character references in the value are read; the result is written back escaped.
        (#"<a href="https://checkout.example-pay.com/p?a=1&amp;b=2">"#, #"<a href="https://checkout.example-pay.com/p?a=1&amp;b=2&amp;\#(added)">"#),
        // A click id already there is never replaced.
        (#"<a href="https://checkout.example-pay.com/p?ttclid=OTHER">"#, #"<a href="https://checkout.example-pay.com/p?ttclid=OTHER&amp;utm_source=tiktok">"#),
        (#"<area shape=rect href="//checkout.example-pay.com/map">"#, #"<area shape=rect href="//checkout.example-pay.com/map?\#(added)">"#),
        // `>` inside a quoted value does not end the tag.
        (#"<a title="a>b" href="https://checkout.example-pay.com/p">"#, #"<a title="a>b" href="https://checkout.example-pay.com/p?\#(added)">"#),
        // <base href> makes a relative link point at the checkout.
        (#"<base href="https://checkout.example-pay.com/shop/"><a href="cart">"#, #"<base href="https://checkout.example-pay.com/shop/"><a href="cart?\#(added)">"#),
        // A POST form keeps its action's query; a GET form's query is replaced by its fields.
        (#"<form method="POST" action="https://checkout.example-pay.com/buy">"#, #"<form method="POST" action="https://checkout.example-pay.com/buy?\#(added)">"#),
        (#"<form action="https://checkout.example-pay.com/buy"><input name=q>"#,
         #"<form action="https://checkout.example-pay.com/buy"><input type="hidden" name="ttclid" value="E.C.P.abc"><input type="hidden" name="utm_source" value="tiktok"><input name=q>"#),
        (#"<meta http-equiv="Refresh" content="0; url=https://checkout.example-pay.com/p">"#, #"<meta http-equiv="Refresh" content="0; url=https://checkout.example-pay.com/p?\#(added)">"#),
        // After raw text ends (a space before `>` included), links are decorated again.
        (#"<script>x < y</script ><a href="https://checkout.example-pay.com/p">"#, #"<script>x < y</script ><a href="https://checkout.example-pay.com/p?\#(added)">"#),
    ]

    static let untouched: [String] = [
        #"<a href="https://evil.example/steal">third party</a>"#,
        #"<a href="/next">our own page reads the cookie</a>"#,
        #"<a href="javascript:go('https://checkout.example-pay.com/')">"#,
        #"<form action="https://evil.example/collect"><input name=email></form>"#,
        #"<form action="/search"></form>"#,
        #"<script>document.write('<a href="https://checkout.example-pay.com/p">')</script>"#,
        #"<SCRIPT type="module">if (a</b) {}</SCRIPT>"#,
        #"<style>a[href="https://checkout.example-pay.com/"]{}</style>"#,
        #"<textarea><a href="https://checkout.example-pay.com/p"></textarea>"#,
        #"<!-- <a href="https://checkout.example-pay.com/p"> --><!--><!--->"#,
        #"<!DOCTYPE html><?xml version="1.0"?></div><p>a < b, <3</p>"#,
        #"<meta http-equiv="refresh" content="5; url=https://evil.example/">"#,
        "<a href=\"https://checkout.example-pay.com/p\"",
    ]

    @Test(arguments: cases)
    func decoratesTargetsOnTheCheckout(html: String, expected: String) {
        #expect(decorated(html) == expected)
    }

    @Test(arguments: untouched)
    func leavesEverythingElseByteForByte(html: String) {
        #expect(decorated(html) == html)
    }

    /// Chunk boundaries anywhere, even one byte at a time, give the same document.
    @Test func chunkBoundariesDoNotMatter() {
        for html in Self.cases.map(\.0) + Self.untouched {
            let bytes = Array(html.utf8)
            let whole = decorated([bytes])
            #expect(decorated(bytes.map { [$0] }) == whole, "\(html) one byte at a time")
            for cut in 1..<bytes.count {
                #expect(decorated([Array(bytes[..<cut]), Array(bytes[cut...])]) == whole, "\(html) cut at \(cut)")
            }
        }
    }

    /// Random documents built from pieces with no target on an allowed host come out unchanged,
    /// in random chunks.
    @Test func documentsWithoutTargetsPassThrough() {
        let pieces = [
            "<p class=x>", "text & more", "<a href='/x'>", "</a>", "<!-- c -->", "<script>if(a<b)</script>", "<br/>", "<img src=x.png>",
            "<a href=\"https://other.example/?q=1&amp;r=2\">", "\n", "<", ">", "&amp;", "<form method=get action=/s>", "<DIV\tID=\"a'b\">",
        ]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            let html = (0..<Int.random(in: 1...30, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }.joined()
            var bytes = Array(html.utf8)[...]
            var chunks: [[UInt8]] = []
            while !bytes.isEmpty {
                let size = Int.random(in: 1...max(1, bytes.count), using: &generator)
                chunks.append(Array(bytes.prefix(size)))
                bytes = bytes.dropFirst(size)
            }
            #expect(decorated(chunks) == html)
        }
    }

    /// A tag longer than the bound is not held: it passes through untouched, and what follows is
    /// decorated again.
    @Test func anOversizedTagPassesThroughUntouched() {
        let long = #"<a title=""# + String(repeating: "x", count: HTMLLinkDecorator.maxTagBytes + 10) + #"" href="https://checkout.example-pay.com/p">"#
        let next = #"<a href="https://checkout.example-pay.com/q">"#
        #expect(decorated(long + next) == long + #"<a href="https://checkout.example-pay.com/q?\#(added)">"#)
    }

    /// The bound is on the bytes held before the `>`: a tag of `maxTagBytes + 1` bytes is still
    /// read, one byte more is not, however the stream is cut.
    @Test func theTagBoundIsExact() {
        let head = #"<a href="https://checkout.example-pay.com/p" title=""#
        func tag(_ length: Int) -> String { head + String(repeating: "x", count: length - head.utf8.count - 2) + #"">"# }
        for (length, decorates) in [(HTMLLinkDecorator.maxTagBytes + 1, true), (HTMLLinkDecorator.maxTagBytes + 2, false)] {
            let bytes = Array(tag(length).utf8)
            #expect(bytes.count == length)
            for cut in [1, length / 2, length - 1] {
                let out = decorated([Array(bytes[..<cut]), Array(bytes[cut...])])
                #expect(out.contains("p?\(added)") == decorates, "\(length) bytes cut at \(cut)")
            }
        }
    }
}
