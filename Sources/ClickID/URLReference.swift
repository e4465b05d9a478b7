/// A URL or relative reference split into its RFC 3986 parts, each kept exactly as written.
///
/// Nothing is decoded or re-encoded: a rewrite that only appends to the query leaves every other
/// byte of the original untouched.
public struct URLReference: Sendable, Equatable {
    public var scheme: String?
    /// Everything between `//` and the path, when present (`user@host:port`).
    public var authority: String?
    public var path: String
    /// Without the `?`; nil when there is no `?` at all, empty for a bare `?`.
    public var query: String?
    /// Without the `#`.
    public var fragment: String?

    public init(scheme: String? = nil, authority: String? = nil, path: String = "", query: String? = nil, fragment: String? = nil) {
        self.scheme = scheme
        self.authority = authority
        self.path = path
        self.query = query
        self.fragment = fragment
    }

    /// Splits `text`; nil for text that cannot be a URL reference (control characters, spaces, a
    /// scheme with characters schemes may not have).
    public init?(_ text: String) {
        var rest = Substring(text)
        guard !rest.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7f }) else { return nil }
        if let hash = rest.firstIndex(of: "#") {
            fragment = String(rest[rest.index(after: hash)...])
            rest = rest[..<hash]
        }
        if let mark = rest.firstIndex(of: "?") {
            query = String(rest[rest.index(after: mark)...])
            rest = rest[..<mark]
        }
        if let colon = rest.firstIndex(of: ":"), !rest[..<colon].contains("/") {
            let candidate = rest[..<colon]
            guard let first = candidate.first, first.isASCII, first.isLetter,
                candidate.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) })
            else { return nil }
            scheme = candidate.lowercased()
            rest = rest[rest.index(after: colon)...]
        }
        if rest.hasPrefix("//") {
            let afterSlashes = rest.dropFirst(2)
            let end = afterSlashes.firstIndex(of: "/") ?? afterSlashes.endIndex
            authority = String(afterSlashes[..<end])
            rest = afterSlashes[end...]
        }
        path = String(rest)
    }

    public var text: String {
        var out = ""
        if let scheme { out += scheme + ":" }
        if let authority { out += "//" + authority }
        out += path
        if let query { out += "?" + query }
        if let fragment { out += "#" + fragment }
        return out
    }

    /// The host as a Host header names it: lower-cased, without user info or port, IPv6 in
    /// brackets; nil without an authority.
    public var host: String? {
        guard let whole = self.authority else { return nil }
        var authority = Substring(whole)
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            return authority[...close].lowercased()
        }
        if let colon = authority.lastIndex(of: ":") { authority = authority[..<colon] }
        var host = authority.lowercased()
        if host.hasSuffix(".") { host.removeLast() }
        return host
    }

    /// RFC 3986 §5.2: the absolute target of this reference seen from `base`.
    public func resolved(against base: URLReference) -> URLReference {
        if let scheme {
            return URLReference(scheme: scheme, authority: authority, path: Self.removeDotSegments(path), query: query, fragment: fragment)
        }
        if authority != nil {
            return URLReference(scheme: base.scheme, authority: authority, path: Self.removeDotSegments(path), query: query, fragment: fragment)
        }
        var target = URLReference(scheme: base.scheme, authority: base.authority, fragment: fragment)
        if path.isEmpty {
            target.path = base.path
            target.query = query ?? base.query
        } else {
            if path.hasPrefix("/") {
                target.path = Self.removeDotSegments(path)
            } else {
                let merged: String
                if base.authority != nil, base.path.isEmpty {
                    merged = "/" + path
                } else if let slash = base.path.lastIndex(of: "/") {
                    merged = String(base.path[...slash]) + path
                } else {
                    merged = path
                }
                target.path = Self.removeDotSegments(merged)
            }
            target.query = query
        }
        return target
    }

    static func removeDotSegments(_ path: String) -> String {
        var input = Substring(path)
        var output: [Substring] = []
        while !input.isEmpty {
            if input.hasPrefix("../") { input = input.dropFirst(3) }
            else if input.hasPrefix("./") { input = input.dropFirst(2) }
            else if input.hasPrefix("/./") { input = input.dropFirst(2) }
            else if input == "/." { input = "/" }
            else if input.hasPrefix("/../") {
                input = input.dropFirst(3)
                if !output.isEmpty { output.removeLast() }
            } else if input == "/.." {
                input = "/"
                if !output.isEmpty { output.removeLast() }
            } else if input == "." || input == ".." { input = "" }
            else {
                let start = input.hasPrefix("/") ? input.index(after: input.startIndex) : input.startIndex
                let end = input[start...].firstIndex(of: "/") ?? input.endIndex
                output.append(input[..<end])
                input = input[end...]
            }
        }
        return output.joined()
    }
}
