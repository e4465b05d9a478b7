// libFuzzer entry point for the streaming HTML decorator (Sources/ClickID, compiled alone by
// scripts/fuzz): every HTML response of a click gets through it. Each invariant below is a crash
// when broken.
private let landing = URLReference("https://lp.example.com/landing?ttclid=E.C.P.fuzz&utm_source=tiktok")!

private func decorated(_ chunks: [ArraySlice<UInt8>], hosts: [String]) -> [UInt8] {
    var decorator = HTMLLinkDecorator(rewriter: RedirectRewriter(
        requestURL: landing, clickIDs: [("ttclid", "E.C.P.fuzz")], passThrough: [("utm_source", "utm_source=tiktok")],
        allowlist: HostAllowlist(siteHosts: [], decorateHosts: hosts)))
    var out: [UInt8] = []
    for chunk in chunks { out += decorator.feed(chunk) }
    return out + decorator.finish()
}

@_cdecl("LLVMFuzzerTestOneInput")
public func htmlDecoratorFuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // With no host to decorate, the document passes through byte for byte.
    precondition(decorated([bytes[...]], hosts: []) == bytes, "changed a document with nothing to decorate")
    // Where the stream is cut never changes the result.
    let whole = decorated([bytes[...]], hosts: ["checkout.example", "*.shop.example"])
    let cut = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    precondition(decorated([bytes[..<cut], bytes[cut...]], hosts: ["checkout.example", "*.shop.example"]) == whole, "cut at \(cut) changed the result")
    // Decorating only adds: every input byte is still there, in order.
    var remaining = bytes[...]
    for byte in whole where byte == remaining.first { remaining = remaining.dropFirst() }
    precondition(remaining.isEmpty, "decoration lost input bytes")
    return 0
}
