import Config

/// One configured site as the engine routes to it.
public struct SiteRoute: Sendable {
    public let index: Int
    public let config: GatewayConfig.Site
    public let maxBodySize: Int

    public var name: String { config.name }
}

/// Host → site lookup, built once per configuration.
struct SiteTable: Sendable {
    private let byHost: [String: SiteRoute]
    private let wildcard: [(suffix: String, route: SiteRoute)]
    let fallback: SiteRoute?

    init(_ config: GatewayConfig) {
        var byHost: [String: SiteRoute] = [:]
        var wildcard: [(String, SiteRoute)] = []
        var routes: [SiteRoute] = []
        for (i, site) in config.sites.enumerated() {
            let route = SiteRoute(index: i, config: site, maxBodySize: site.maxBodySize(in: config.limits))
            routes.append(route)
            for host in site.hosts {
                if host.hasPrefix("*.") { wildcard.append((String(host.dropFirst(1)), route)) } else { byHost[host] = route }
            }
        }
        self.byHost = byHost
        self.wildcard = wildcard
        switch config.unknownHost {
        case .misdirected: fallback = nil
        case .defaultSite: fallback = routes.first(where: { $0.config.isDefault }) ?? routes.first
        }
    }

    func route(host: String) -> SiteRoute? {
        if let exact = byHost[host] { return exact }
        for (suffix, route) in wildcard where host.hasSuffix(suffix) && host.count > suffix.count { return route }
        return fallback
    }

    /// `Host` / `:authority` value → lower-cased host without port or trailing dot; nil when malformed.
    static func normalizedHost(_ raw: String) -> String? {
        var host = Substring(raw.lowercased())
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let rest = host[host.index(after: close)...]
            guard rest.isEmpty || (rest.hasPrefix(":") && rest.dropFirst().allSatisfy(\.isNumber)) else { return nil }
            host = host[...close]
        } else if let colon = host.lastIndex(of: ":") {
            guard host[host.index(after: colon)...].allSatisfy(\.isNumber) else { return nil }
            host = host[..<colon]
        }
        if host.hasSuffix(".") { host = host.dropLast() }
        let allowed: (Character) -> Bool = { $0.isASCII && ($0.isLetter || $0.isNumber || "-._:[]".contains($0)) }
        guard !host.isEmpty, host.allSatisfy(allowed) else { return nil }
        return String(host)
    }
}
