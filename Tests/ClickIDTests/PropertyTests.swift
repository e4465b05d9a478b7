import ClickID
import PropertyBased
import Testing

/// Picks one of `options`.
private func one(of options: [String]) -> Generator<String, AnySequence<Any>> {
    Gen.int(in: 0...(options.count - 1)).map { options[$0] }.eraseToAny()
}

/// Strings over `alphabet`, hostile bytes included.
private func text(_ alphabet: String, length: ClosedRange<Int>) -> Generator<String, AnySequence<Any>> {
    let characters = Array(alphabet)
    return Gen.int(in: 0...(characters.count - 1)).array(of: length).map { String($0.map { characters[$0] }) }.eraseToAny()
}

/// Query pieces drawn from names that matter (click ids, utm_*, an encoded name) and values with hostile bytes.
private let piece = zip(
    one(of: ["ttclid", "fbclid", "utm_source", "utm_medium", "a", "q", "tt%63lid", "x+y", ""]),
    text("aZ09._-~%2F;,\"' \r\n&=#?+é", length: 0...8), Gen.bool.eraseToAny()
).map { name, value, hasEquals in hasEquals ? "\(name)=\(value)" : name }.eraseToAny()

private let pieces = piece.array(of: 0...5).eraseToAny()

private let location = zip(
    one(of: ["https://", "http://", "//", ""]),
    one(of: ["lp.example.com", "www.example.com", "checkout.example-pay.com", "evil.example", "example.com.evil.example", "[::1]", "127.0.0.1:8443"]),
    one(of: ["/", "/a/b", "", "rel", "../up", "/%2F%20"]), pieces, Gen.bool.eraseToAny(), one(of: ["", "#f", "#a?b"])
).map { prefix, host, path, pieces, hasQuery, fragment -> String in
    let base = prefix.isEmpty ? (path.isEmpty ? "/" : path) : prefix + host + (path.hasPrefix("/") || path.isEmpty ? path : "/" + path)
    let query = hasQuery || !pieces.isEmpty ? "?" + pieces.joined(separator: "&") : ""
    return (base + query + fragment).filter { $0 != "\r" && $0 != "\n" && $0 != " " }
}.eraseToAny()

private let clickValue = text("aZ09._-~;\r\n\" ", length: 0...12)

private let allowlist = HostAllowlist(siteHosts: ["lp.example.com"], cookieDomain: "example.com", decorateHosts: ["checkout.example-pay.com", "[::1]"])

/// The request side comes from a URI the HTTP parser accepted: no whitespace or controls.
private func rewriter(_ ttclid: String, _ rawQuery: String) -> RedirectRewriter {
    let requestQuery = rawQuery.filter { !" \r\n".contains($0) }
    return RedirectRewriter(
        requestURL: URLReference("https://lp.example.com/l?" + requestQuery)!,
        clickIDs: [("ttclid", ttclid), ("fbclid", "FB.1")],
        passThrough: RedirectRewriter.passThroughPieces(from: requestQuery, patterns: ["utm_*"]), allowlist: allowlist)
}

@Suite struct RedirectProperties {
    @Test func rewritingIsIdempotent() async {
        await propertyCheck(count: 400, input: location, clickValue, pieces) { location, ttclid, request in
            let r = rewriter(ttclid, request.joined(separator: "&"))
            if let once = r.rewriteLocation(location) {
                #expect(r.rewriteLocation(once) == nil, "second pass changed \(once)")
            }
        }
    }

    @Test func existingParametersAreNeverDroppedReorderedOrDuplicated() async {
        await propertyCheck(count: 400, input: location, clickValue, pieces) { location, ttclid, request in
            guard let rewritten = rewriter(ttclid, request.joined(separator: "&")).rewriteLocation(location),
                let before = URLReference(location), let after = URLReference(rewritten)
            else { return }
            #expect(after.scheme == before.scheme && after.authority == before.authority && after.path == before.path)
            #expect(after.fragment == before.fragment)
            let old = Query.items(before.query).map { "\($0.name)=\($0.value ?? "")" }
            let new = Query.items(after.query).map { "\($0.name)=\($0.value ?? "")" }
            #expect(Array(new.prefix(old.count)) == old)
            let oldNames = Query.decodedNames(before.query)
            let added = Query.items(after.query).dropFirst(old.count).map { Query.percentDecoded($0.name) ?? String($0.name) }
            #expect(Set(added).count == added.count && Set(added).isDisjoint(with: oldNames))
        }
    }

    @Test func hostsOutsideTheAllowlistAreNeverTouched() async {
        await propertyCheck(count: 400, input: location, clickValue) { location, ttclid in
            let r = rewriter(ttclid, "utm_source=x")
            guard let parsed = URLReference(location) else { return }
            let host = parsed.resolved(against: r.requestURL).host ?? ""
            if !allowlist.allows(host) {
                #expect(r.rewriteLocation(location) == nil)
            }
        }
    }

    @Test func noEmittedHeaderCarriesCRLFOrABareSemicolon() async {
        await propertyCheck(count: 400, input: location, clickValue, pieces) { location, ttclid, request in
            let r = rewriter(ttclid, request.joined(separator: "&"))
            if let rewritten = r.rewriteLocation(location) {
                #expect(!rewritten.contains("\r") && !rewritten.contains("\n"))
                let additions = Query.items(URLReference(rewritten)?.query).dropFirst(Array(Query.items(URLReference(location)?.query)).count)
                #expect(additions.allSatisfy { !"\($0.name)=\($0.value ?? "")".contains(";") })
            }
            let cookie = SetCookie(name: "ttclid", value: ttclid, maxAge: 60).headerValue
            if let cookie {
                #expect(!cookie.contains("\r") && !cookie.contains("\n"))
                #expect(cookie.split(separator: ";").count == 5, "an attribute was injected: \(cookie)")
            }
        }
    }
}
