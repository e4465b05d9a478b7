import Testing

@testable import ClickID

private let request = URLReference("https://lp.example.com/spring/landing?ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale&q=1")!

private func rewriter(
    clickIDs: [(String, String)] = [("ttclid", "E.C.P.abc123")],
    allow: HostAllowlist = HostAllowlist(siteHosts: ["lp.example.com"], cookieDomain: "example.com", decorateHosts: ["checkout.example-pay.com", "*.shop.test", "[::1]", "xn--bcher-kva.example"])
) -> RedirectRewriter {
    RedirectRewriter(
        requestURL: request, clickIDs: clickIDs.map { ($0.0, $0.1) },
        passThrough: RedirectRewriter.passThroughPieces(from: request.query, patterns: ["utm_*"]), allowlist: allow)
}

@Suite struct RedirectRewriterTests {
    @Test(arguments: [
        // relative forms keep their form; the ids and utm_* are appended
        ("/offer", "/offer?ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale"),
        ("offer", "offer?ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale"),
        ("../up?x=1", "../up?x=1&ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale"),
        ("?page=2", "?page=2&ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale"),
        // absolute, same site, with a fragment: appended before it
        ("https://lp.example.com/a?b=%2Fc#top", "https://lp.example.com/a?b=%2Fc&ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale#top"),
        // a '?' inside the fragment is the fragment's; '&' or a bare '?' before one takes no separator
        ("/f#a?b=1", "/f?ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale#a?b=1"),
        ("/f?x=1&#t", "/f?x=1&ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale#t"),
        ("/f?#t", "/f?ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale#t"),
        ("/f#", "/f?ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale#"),
        // scheme-relative to a host under the cookie domain, with a port
        ("//www.example.com:8443/x", "//www.example.com:8443/x?ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale"),
        // a decorate host, with a trailing '&' and a bare '?'
        ("https://checkout.example-pay.com/pay?&", "https://checkout.example-pay.com/pay?&ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale"),
        ("https://checkout.example-pay.com/pay?", "https://checkout.example-pay.com/pay?ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale"),
        // wildcard decorate host, upper-case host and a trailing dot
        ("https://EU.Shop.Test./cart", "https://EU.Shop.Test./cart?ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale"),
        // IPv6 and IDN (punycode) hosts from the allowlist
        ("http://[::1]:8080/p", "http://[::1]:8080/p?ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale"),
        ("https://xn--bcher-kva.example/", "https://xn--bcher-kva.example/?ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale"),
        // existing (different) ttclid and an existing utm value are never replaced
        ("/next?ttclid=OTHER&utm_source=mail", "/next?ttclid=OTHER&utm_source=mail&utm_campaign=spring%20sale"),
        // an encoded parameter name counts as present
        ("/next?tt%63lid=X&utm_source=a&utm_campaign=b", nil),
        // repeated parameters stay exactly as they are
        ("/r?a=1&a=2&a=1", "/r?a=1&a=2&a=1&ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale"),
        // an empty value is still "present"
        ("/e?ttclid=&utm_source=&utm_campaign=", nil),
    ] as [(String, String?)])
    func rewritesTowardAllowedHosts(location: String, expected: String?) {
        #expect(rewriter().rewriteLocation(location) == expected)
    }

    @Test(arguments: [
        "https://evil.example/steal", "//evil.example/x", "https://example.com.evil.example/", "https://notexample.com/",
        "https://checkout.example-pay.com.evil/", "http://[::2]/", "https://shop.test/", "mailto:a@example.com",
        "javascript:alert(1)", "https://lp.example.com@evil.example/", "ftp://lp.example.com/",
    ])
    func neverTouchesOtherHosts(location: String) {
        #expect(rewriter().rewriteLocation(location) == nil)
    }

    @Test func aSiteRoutedByAWildcardKeepsItsClickIDsOnPaths() {
        let allow = HostAllowlist(siteHosts: ["*.brand.test"])
        let routed = RedirectRewriter(
            requestURL: URLReference("https://eu.brand.test/lp?ttclid=E.C.P.x")!, clickIDs: [("ttclid", "E.C.P.x")], passThrough: [], allowlist: allow)
        #expect(routed.rewriteLocation("/next") == "/next?ttclid=E.C.P.x")
        #expect(routed.rewriteLocation("https://us.brand.test/a") == "https://us.brand.test/a?ttclid=E.C.P.x")
        #expect(routed.rewriteLocation("https://brand.test/a") == nil)
        #expect(routed.rewriteLocation("https://evilbrand.test/a") == nil)
        var moved = allow
        moved.siteHosts = ["lp.brand.test"]
        #expect(!moved.allows("eu.brand.test"))
    }

    @Test func malformedTargetsAreLeftAlone() {
        for location in ["/a b", "/a\tb", "1http://x", ""] {
            #expect(rewriter().rewriteLocation(location) == nil || location.isEmpty)
        }
    }

    @Test func invalidClickIDsAreNeverWritten() {
        let r = rewriter(clickIDs: [("ttclid", "bad\r\nSet-Cookie: x=1"), ("fbclid", "ok-value")])
        #expect(r.rewriteLocation("/n") == "/n?fbclid=ok-value&utm_source=tiktok&utm_campaign=spring%20sale")
    }

    @Test func passThroughPiecesAreMadeHeaderSafe() {
        let pieces = RedirectRewriter.passThroughPieces(from: "utm_source=a;b&utm_term=\"x\"&other=1&utm_source=dup", patterns: ["utm_*"])
        #expect(pieces.map(\.piece) == ["utm_source=a%3Bb", "utm_term=%22x%22"])
    }

    /// Names match after decoding (an escaped name passes as it was written, once per decoded
    /// name); a name whose escape is broken, or that only starts like an exact pattern, stays out.
    @Test func passThroughMatchesDecodedNames() {
        let query = "utm%5Fsource=a&utm_source=b&utm_%zz=c&gclid=d&gclidx=e&utm+x=f&UTM_medium=g&utm_=h"
        let pieces = RedirectRewriter.passThroughPieces(from: query, patterns: ["utm_*", "gclid"])
        #expect(pieces.map(\.name) == ["utm_source", "gclid", "utm_"])
        #expect(pieces.map(\.piece) == ["utm%5Fsource=a", "gclid=d", "utm_=h"])
        #expect(RedirectRewriter.passThroughPieces(from: query, patterns: []).isEmpty)
        #expect(RedirectRewriter.passThroughPieces(from: nil, patterns: ["utm_*"]).isEmpty)
        #expect(RedirectRewriter.passThroughPieces(from: "utm+x=1", patterns: ["utm x"]).map(\.piece) == ["utm+x=1"])
    }

    @Test(arguments: [
        ("0; url=/offer", "0; url=/offer?ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale"),
        ("5;URL='https://checkout.example-pay.com/p'", "5;URL='https://checkout.example-pay.com/p?ttclid=E.C.P.abc123&utm_source=tiktok&utm_campaign=spring%20sale'"),
        ("3; url=https://evil.example/", nil),
        ("10", nil),
    ] as [(String, String?)])
    func refreshHeaders(value: String, expected: String?) {
        #expect(rewriter().rewriteRefresh(value) == expected)
    }
}

@Suite struct URLReferenceTests {
    @Test(arguments: [
        ("g", "http://a/b/c/g"), ("./g", "http://a/b/c/g"), ("g/", "http://a/b/c/g/"), ("/g", "http://a/g"), ("//g", "http://g"),
        ("?y", "http://a/b/c/d;p?y"), ("g?y", "http://a/b/c/g?y"), ("#s", "http://a/b/c/d;p?q#s"), ("..", "http://a/b/"),
        ("../g", "http://a/b/g"), ("../..", "http://a/"), ("../../g", "http://a/g"), ("../../../g", "http://a/g"),
        ("/./g", "http://a/g"), ("g;x=1/../y", "http://a/b/c/y"), ("", "http://a/b/c/d;p?q"),
    ])
    func rfc3986ResolutionExamples(reference: String, expected: String) throws {
        let base = try #require(URLReference("http://a/b/c/d;p?q"))
        #expect(try #require(URLReference(reference)).resolved(against: base).text == expected)
    }

    /// The readings that skip making strings (a request target's query read in place, a request
    /// URL built from its target) split a reference exactly as ``URLReference/init(_:)`` does.
    @Test(arguments: [
        "/lp?ttclid=E.C.P.x&a=1", "/lp", "/lp?", "/?#", "/a?b?c#d?e", "/a#b?c", "?q", "http://h:1/p?q=1#f", "//h/p?q",
        "1x:/p?q", "/a b?q", "/a\u{7F}?q", "/a?q\tb", "/caf\u{E9}?q=\u{E9}", "", "*", "h:p?q", "/p#f?g#h",
    ])
    func inPlaceReadingsSplitAsTheParserDoes(target: String) {
        let parsed = URLReference(target)
        let query = URLReference.withQuery(of: target) { $0.map { String(decoding: $0, as: UTF8.self) } }
        #expect(query == parsed?.query)
        let addressed = URLReference(scheme: "https", authority: "lp.example.com", target: target)
        #expect(addressed == URLReference(scheme: "https", authority: "lp.example.com", path: parsed?.path ?? "/", query: parsed?.query))
    }

    @Test func webSchemesInAnyCase() {
        let web = ["http://a/", "HTTPS://a/", "hTtP://a/", "https:x"]
        let other = ["ftp://a/", "httpx://a/", "htt://a/", "httpss://a/", "/path", "//a/", "mailto:x", "hxxp://a/", "http2://a/"]
        #expect(web.allSatisfy { URLReference($0)?.isWeb == true })
        #expect(other.allSatisfy { URLReference($0)?.isWeb == false })
    }

    /// A path the dot-segment check lets through unchanged is one the algorithm leaves unchanged:
    /// every path of up to four segments from a set of dotted and plain ones, with and without a
    /// leading slash.
    @Test func pathsWithoutDotSegmentsComeBackAsTheyAre() {
        let segments = ["", "a", ".", "..", "...", ".a", "a.", "b.c", "é"]
        var paths: Set = [""]
        for _ in 0..<4 {
            paths.formUnion(paths.flatMap { path in segments.map { path.isEmpty ? $0 : path + "/" + $0 } })
        }
        var unchanged = 0
        for path in paths.union(paths.map { "/" + $0 }) where !URLReference.hasDotSegment(path) {
            #expect(URLReference.applyingDotSegments(path) == path, "\(path)")
            unchanged += 1
        }
        #expect(unchanged > 1_000)
    }

    /// Found by the fuzzer: U+0602 is a prepend mark, so "\u{0602}?" is one Character and a
    /// Character-level search misses the `?`. Delimiters are found on bytes.
    @Test func delimitersAreFoundInsideGraphemeClusters() throws {
        let reference = try #require(URLReference("/p\u{0602}?q=1\u{0602}&ttclid=x#f"))
        #expect(reference.path == "/p\u{0602}")
        #expect(reference.query == "q=1\u{0602}&ttclid=x")
        #expect(Query.decodedNames(reference.query) == ["q", "ttclid"])
        #expect(URLReference("hTtPs://Host/")?.text == "hTtPs://Host/", "the scheme is kept as written")
        #expect(RequestCookies(headers: ["a=1\u{0602};ttclid=T"]).first("ttclid") == "T")
    }

    @Test func partsRoundTripExactly() throws {
        for text in ["https://u:p@H.example:81/a%2Fb/?q=%41&r#f%20", "//h/p", "/p?", "?#", "rel/ative", "mailto:x@y"] {
            #expect(try #require(URLReference(text)).text == text)
        }
        #expect(URLReference("https://u@[2001:DB8::1]:443/")?.host == "[2001:db8::1]")
        #expect(URLReference("https://Host.Example.:8/")?.host == "host.example")
    }

    @Test(arguments: [
        ("https://shop.example/", "shop.example"), ("https://SHOP.example:8443/", "shop.example"), ("//a@b@Shop.example./", "shop.example"),
        ("https://[::1]/", "[::1]"), ("https://[::1", nil), ("https://user:pw@127.0.0.1:80/", "127.0.0.1"), ("https:///path", ""),
        ("https://BÜCHER.example/", "bücher.example"), ("https://bücher.example/", "bücher.example"), ("/relative", nil),
    ] as [(String, String?)])
    func hostsAreLowerCasedWithoutUserinfoPortOrTrailingDot(text: String, expected: String?) throws {
        #expect(try #require(URLReference(text)).host == expected)
    }
}
