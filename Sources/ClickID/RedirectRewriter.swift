/// Which hosts may receive click ids: the site itself, hosts under its cookie domain, and the
/// hosts it decorates. Everyone else gets nothing.
public struct HostAllowlist: Sendable, Equatable {
    /// Exact names, or `*.example.com` as a site may be routed by: a request routed by a pattern
    /// is the site's as much as an exact name's (a redirect to a path on it keeps its click ids).
    public var siteHosts: Set<String>
    public var cookieDomain: String?
    /// Exact names, or `*.example.com` for any one-or-more-label subdomain.
    public var decorateHosts: [String]

    public init(siteHosts: Set<String>, cookieDomain: String? = nil, decorateHosts: [String] = []) {
        self.siteHosts = siteHosts
        self.cookieDomain = cookieDomain
        self.decorateHosts = decorateHosts
    }

    public func allows(_ host: String) -> Bool {
        if siteHosts.contains(host) { return true }
        if let domain = cookieDomain, host == domain || host.utf8.reversed().starts(with: ("." + domain).utf8.reversed()) { return true }
        return Self.matches(host, anyOf: decorateHosts) || Self.matches(host, anyOf: siteHosts)
    }

    /// Exact names compare equal; `*.` patterns match any one-or-more-label subdomain.
    private static func matches(_ host: String, anyOf patterns: some Sequence<String>) -> Bool {
        for pattern in patterns {
            if pattern.hasPrefix(bytes: "*.") {
                if host.utf8.count > pattern.utf8.count - 1, host.utf8.reversed().starts(with: pattern.utf8.dropFirst().reversed()) { return true }
            } else if pattern == host {
                return true
            }
        }
        return false
    }
}

/// Puts click ids back on redirects that dropped them.
///
/// Rules: the target is resolved against the request URL only to learn its host; the header keeps
/// its own form (relative stays relative). Only missing parameters are appended, before the
/// fragment; existing parameters, their order and their encoding are never touched. Hosts outside
/// the allowlist are returned unchanged.
public struct RedirectRewriter: Sendable {
    /// What targets are resolved against; only its scheme and authority are read (a target's host
    /// is all a rewrite needs), so a redirect's rewriter is given those alone.
    public var requestURL: URLReference {
        didSet { pathReferencesAllowed = Self.allows(scheme: requestURL.scheme, authority: requestURL.authority, in: allowlist) }
    }
    /// Click ids to carry, `parameter` → value (validated, URL-safe).
    public let clickIDs: [(parameter: String, value: String)]
    /// Raw `name=value` pieces of the request URL that pass through (e.g. `utm_*`).
    public let passThrough: [(name: String, piece: String)]
    public let allowlist: HostAllowlist
    /// What a target may gain, from the two above, sorted out once: a decorated page asks for
    /// every link.
    private let additions: [Addition]
    /// Whether a reference with neither scheme nor authority (resolved on the request URL's own
    /// host) may get ids: most of a page's links are such, and are answered without being parsed.
    private var pathReferencesAllowed: Bool

    public init(
        requestURL: URLReference, clickIDs: [(parameter: String, value: String)], passThrough: [(name: String, piece: String)],
        allowlist: HostAllowlist
    ) {
        self.requestURL = requestURL
        self.clickIDs = clickIDs
        self.passThrough = passThrough
        self.allowlist = allowlist
        additions = Self.additions(clickIDs: clickIDs, passThrough: passThrough)
        pathReferencesAllowed = Self.allows(scheme: requestURL.scheme, authority: requestURL.authority, in: allowlist)
    }

    /// Pieces of `query` whose decoded name matches a pattern (`utm_*` is a prefix, others exact),
    /// each name once. Asked on every redirect: names are matched as bytes, decoded only when they
    /// hold an escape or `+`, and a string is made only for a piece that passes.
    public static func passThroughPieces(from query: String?, patterns: [String]) -> [(name: String, piece: String)] {
        guard let query else { return [] }
        return query.withUTF8Buffer { passThroughPieces(fromQuery: $0, patterns: patterns) }
    }

    /// ``passThroughPieces(from:patterns:)`` for a request target's query, read where it lies
    /// rather than split out as a string.
    public static func passThroughPieces(fromQueryOf target: String, patterns: [String]) -> [(name: String, piece: String)] {
        URLReference.withQuery(of: target) { passThroughPieces(fromQuery: $0, patterns: patterns) }
    }

    private static func passThroughPieces(fromQuery bytes: UnsafeBufferPointer<UInt8>?, patterns: [String]) -> [(name: String, piece: String)] {
        guard let bytes, !patterns.isEmpty else { return [] }
        var out: [(name: String, piece: String)] = []
        var pieces = Query.Pieces(bytes)
        while let (raw, piece) = pieces.nextWhole() {
            let name: String
            if raw.contains(where: { $0 == 0x25 || $0 == 0x2b }) {
                guard let decoded = Query.percentDecoded(raw), decoded.withUTF8Buffer({ decoded in patterns.contains { Self.name(decoded, matches: $0) } })
                else { continue }
                name = decoded
            } else {
                guard patterns.contains(where: { Self.name(raw, matches: $0) }) else { continue }
                name = String(decoding: raw, as: UTF8.self)
            }
            guard !out.contains(where: { $0.name == name }) else { continue }
            out.append((name, Query.sanitizedPiece(piece)))
        }
        return out
    }

    /// Compared as bytes: every redirect asks of each of its request's parameters (a walk over
    /// the pattern's UTF-8 view cost ≈ 20 instructions a byte).
    private static func name(_ name: UnsafeBufferPointer<UInt8>, matches pattern: String) -> Bool {
        pattern.withUTF8Buffer { pattern in
            guard pattern.last == UInt8(ascii: "*") else { return name.elementsEqual(pattern) }
            let prefix = UnsafeBufferPointer(rebasing: pattern.dropLast())
            return name.count >= prefix.count && UnsafeBufferPointer(rebasing: name.prefix(prefix.count)).elementsEqual(prefix)
        }
    }

    /// Whether `location`, resolved against the request URL, is an http(s) URL on an allowed host.
    public func allowsTarget(_ location: String) -> Bool {
        location.withUTF8Buffer { allowedQuery(of: $0) != nil }
    }

    /// The click ids and pass-through parameters this rewriter carries, decoded, for form fields.
    public func carriedParameters() -> [(name: String, value: String)] {
        var out: [(name: String, value: String)] = []
        forEachAddition(missingFrom: nil) { addition in
            switch addition {
            case .clickID(let parameter, let value):
                out.append((parameter, value))  // unreserved bytes only: nothing to decode
            case .passThrough(let name, let piece):
                let value = piece.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).dropFirst().first ?? ""
                out.append((name, Query.percentDecoded(value) ?? String(value)))
            }
        }
        return out
    }

    /// A new `Location` value, or nil when nothing is to change. What the target lacks is
    /// enumerated twice, to size the new value and to write it, rather than collected: a redirect
    /// made an array and a string a click id (≈ 2,000 instructions).
    public func rewriteLocation(_ location: String) -> String? {
        location.withUTF8Buffer { bytes -> String? in
            guard let query = allowedQuery(of: bytes) else { return nil }
            var count = 0
            var length = 0
            forEachAddition(missingFrom: query) { addition in
                count += 1
                length += addition.length
            }
            guard count > 0 else { return nil }
            return Query.appending(count: count, length: length, toQueryOf: location) { writer in
                forEachAddition(missingFrom: query) { $0.write(into: &writer) }
            }
        }
    }

    /// The query of the reference in `bytes` (`.some(nil)` when it has none), when it resolves to
    /// an http(s) URL on an allowed host; nil otherwise. Only the resolved scheme and authority
    /// matter (RFC 3986 §5.2.2: the reference's own when it has them, else the base's), so no path
    /// is merged: every link of a decorated page is asked. Read where the bytes lie: a string for
    /// every part cost ≈ 900 instructions a redirect.
    private func allowedQuery(of bytes: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8>?? {
        if !pathReferencesAllowed, URLReference.isPathReference(bytes) { return nil }
        guard let target = URLReference.Parts(bytes) else { return nil }
        if target.scheme == nil, target.authority == nil {
            // A path reference resolves to the request's own scheme and authority: asked at `init`.
            return pathReferencesAllowed ? .some(target.query) : nil
        }
        let scheme = target.scheme.map { String(decoding: $0, as: UTF8.self) } ?? requestURL.scheme
        guard Self.allows(scheme: scheme, authority: target.authority.map { String(decoding: $0, as: UTF8.self) }, in: allowlist)
        else { return nil }
        return .some(target.query)
    }

    private static func allows(scheme: String?, authority: String?, in allowlist: HostAllowlist) -> Bool {
        guard URLReference.isWeb(scheme: scheme), let authority, let host = URLReference.host(of: authority) else { return false }
        return allowlist.allows(host)
    }

    /// A parameter a rewritten URL gains.
    private enum Addition: Sendable {
        /// Written `parameter=value`; the value is URL-safe (``ClickIDValue``).
        case clickID(parameter: String, value: String)
        /// The request's piece as it came (sanitized), under its decoded name.
        case passThrough(name: String, piece: String)

        var name: String {
            switch self {
            case .clickID(let parameter, _): parameter
            case .passThrough(let name, _): name
            }
        }

        /// Its bytes in a query.
        var length: Int {
            switch self {
            case .clickID(let parameter, let value): parameter.utf8.count + 1 + value.utf8.count
            case .passThrough(_, let piece): piece.utf8.count
            }
        }

        func write(into writer: inout Query.PieceWriter) {
            switch self {
            case .clickID(let parameter, let value):
                writer.piece(parameter)
                writer.append("=")
                writer.append(value)
            case .passThrough(_, let piece):
                writer.piece(piece)
            }
        }
    }

    /// Acceptable click ids first (the first acceptable value of a parameter), then pass-through
    /// parameters, each name once.
    private static func additions(
        clickIDs: [(parameter: String, value: String)], passThrough: [(name: String, piece: String)]
    ) -> [Addition] {
        var out: [Addition] = []
        out.reserveCapacity(clickIDs.count + passThrough.count)
        for (parameter, value) in clickIDs where ClickIDValue.isAcceptable(value) && !out.contains(where: { $0.name == parameter }) {
            out.append(.clickID(parameter: parameter, value: value))
        }
        for (name, piece) in passThrough where !out.contains(where: { $0.name == name }) {
            out.append(.passThrough(name: name, piece: piece))
        }
        return out
    }

    /// Calls `body` with each addition whose name a target with `query` lacks (decoded), in order.
    private func forEachAddition(missingFrom query: UnsafeBufferPointer<UInt8>?, _ body: (Addition) -> Void) {
        for addition in additions where !Self.query(query, names: addition.name) { body(addition) }
    }

    /// Whether `query` has a parameter whose decoded name is `name`.
    private static func query(_ query: UnsafeBufferPointer<UInt8>?, names name: String) -> Bool {
        guard let query else { return false }
        var pieces = Query.Pieces(query)
        while let (raw, _) = pieces.next() {
            if Query.RawName(raw).reads(as: name) { return true }
        }
        return false
    }

    /// The `Refresh` header (`5; url=/next`): the URL part rewritten as a `Location` would be.
    public func rewriteRefresh(_ refresh: String) -> String? {
        guard let directive = RefreshDirective(refresh), let rewritten = rewriteLocation(String(directive.url)) else { return nil }
        return directive.replacingURL(with: rewritten)
    }
}
