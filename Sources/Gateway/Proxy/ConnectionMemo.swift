/// What a connection's requests nearly always share, built for its first request and reused
/// while later ones carry the same `Host`: normalising the host and building the `Forwarded`
/// element cost ≈ 2,400 instructions a request (callgrind). One per downstream connection (an
/// HTTP/2 connection's streams share it), used on the connection's event loop only.
final class ConnectionMemo {
    private var host: (raw: String, normalized: String?)?
    private var forwarded: (host: String, element: String)?

    /// ``SiteTable/normalizedHost(_:)``.
    func normalizedHost(_ raw: String) -> String? {
        if let host, host.raw == raw { return host.normalized }
        let normalized = SiteTable.normalizedHost(raw)
        host = (raw, normalized)
        return normalized
    }

    /// ``HeaderRules/forwardedElement(for:scheme:host:)`` for the connection's own peer and scheme.
    func forwardedElement(peer: String, scheme: String, host: String) -> String {
        if let forwarded, forwarded.host == host { return forwarded.element }
        let element = HeaderRules.forwardedElement(for: peer, scheme: scheme, host: host)
        forwarded = (host, element)
        return element
    }
}
