// libFuzzer entry point for the ClickID parsers (and the pure helpers diagnostics use). Built by scripts/fuzz together with
// Sources/ClickID/*.swift as one module (swiftc -sanitize=fuzzer,address), not by SwiftPM.
//
// Input lines: 1 a Location (or any URL reference), 2 the request's query, 3 a Cookie header,
// 4 a Refresh header. Each invariant below is a crash when broken.

@_cdecl("LLVMFuzzerTestOneInput")
public func clickIDFuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    // Header values and request targets never hold CR or LF: the HTTP parser refuses them first.
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.filter { $0 != "\r" } }
    let location = lines.first ?? ""
    let requestQuery = lines.count > 1 ? lines[1].filter { $0.isASCII && $0 > " " && $0 != "#" } : ""
    let cookieHeader = lines.count > 2 ? lines[2] : ""
    let refresh = lines.count > 3 ? lines[3] : ""

    // Splitting keeps every byte.
    if let reference = URLReference(location) {
        precondition(reference.text == location, "round trip changed \(location)")
        _ = reference.host
        _ = reference.resolved(against: URLReference("https://lp.example.com/a/b?c=d")!)
    }

    let cookies = RequestCookies(headers: [cookieHeader])
    let capture = ClickCapture.scan(query: requestQuery, cookies: cookies, registry: .standard)
    for id in capture.all {
        precondition(ClickIDValue.isAcceptable(id.value), "captured an unacceptable value")
        let header = SetCookie(name: id.kind.cookieName, value: id.kind.cookieValue(for: id.value, unixMilliseconds: 1), maxAge: 60).headerValue
        precondition(header != nil, "an accepted id made an unwritable cookie")
        precondition(!header!.contains("\r") && !header!.contains("\n"))
    }

    guard let requestURL = URLReference("https://lp.example.com/l?" + requestQuery) else { return 0 }
    let rewriter = RedirectRewriter(
        requestURL: requestURL,
        clickIDs: capture.all.map { ($0.kind.parameter, $0.value) } + [("ttclid", "E.C.P.fuzz")],
        passThrough: RedirectRewriter.passThroughPieces(from: requestQuery, patterns: ["utm_*"]),
        allowlist: HostAllowlist(siteHosts: ["lp.example.com"], cookieDomain: "example.com", decorateHosts: ["pay.test"]))
    if let rewritten = rewriter.rewriteLocation(location) {
        precondition(!rewritten.contains("\r") && !rewritten.contains("\n"), "CR/LF in a Location")
        precondition(rewriter.rewriteLocation(rewritten) == nil, "rewriting is not idempotent for \(location)")
        let host = URLReference(rewritten)?.resolved(against: requestURL).host ?? ""
        precondition(rewriter.allowlist.allows(host), "decorated a host outside the allowlist")
    }
    if let rewritten = rewriter.rewriteRefresh(refresh) {
        precondition(!rewritten.contains("\r") && !rewritten.contains("\n"), "CR/LF in a Refresh")
    }
    _ = Smartlinks.redirectURL(target: "https://t.example/x?a=1", incomingQuery: requestQuery)

    // The diagnostics' parsers: any text, no crash; a directive's URL is a slice of its text.
    if let directive = RefreshDirective(refresh) {
        precondition(directive.replacingURL(with: String(directive.url)) == refresh, "refresh round trip changed \(refresh)")
    }
    if let reference = URLReference(location) {
        let found = TrackingParameters.inspect(reference)
        precondition(found.clickIDs.allSatisfy { $0.nestedIn.count <= 3 }, "nesting not bounded")
    }
    if let built = try? CampaignURL.build(base: location, fields: [("utm_source", requestQuery.isEmpty ? "x" : requestQuery)]) {
        precondition(URLReference(built.url) != nil, "built an unparseable URL from \(location)")
    }
    return 0
}
