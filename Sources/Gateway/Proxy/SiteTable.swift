import ClickID
import Config

/// One configured site as the engine routes to it.
///
/// A class: every request's context holds its site, and copying the site's configuration
/// (dozens of strings and arrays) with each context copy cost about 4,000 instructions a request.
public final class SiteRoute: Sendable {
    public let index: Int
    public let config: GatewayConfig.Site
    public let maxBodySize: Int
    let upstreamKey: UpstreamKey

    public var name: String { config.name }

    init(index: Int, config: GatewayConfig.Site, maxBodySize: Int, upstreamKey: UpstreamKey) {
        self.index = index
        self.config = config
        self.maxBodySize = maxBodySize
        self.upstreamKey = upstreamKey
    }
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
            let route = SiteRoute(index: i, config: site, maxBodySize: site.maxBodySize(in: config.limits), upstreamKey: UpstreamKey(site.upstream))
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
        // Over UTF-8 bytes: every request pays for this, and Character-level work costs ten times more.
        // A host already in normal form (most are) is returned as it is, without a copy.
        raw.withUTF8Buffer { bytes -> String? in
            var end = bytes.count
            let isDigit = { (byte: UInt8) in byte >= 0x30 && byte <= 0x39 }
            if bytes.first == UInt8(ascii: "[") {
                guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return nil }
                guard close + 1 == end || (bytes[close + 1] == UInt8(ascii: ":") && bytes[(close + 2)...].allSatisfy(isDigit)) else { return nil }
                end = close + 1
            } else if let colon = bytes.lastIndex(of: UInt8(ascii: ":")) {
                guard bytes[(colon + 1)...].allSatisfy(isDigit) else { return nil }
                end = colon
            }
            if end > 0, bytes[end - 1] == UInt8(ascii: ".") { end -= 1 }
            guard end > 0 else { return nil }
            var hasUpper = false
            for byte in bytes[..<end] {
                guard ByteClass.hostName.admits(byte) else { return nil }
                hasUpper = hasUpper || (byte >= 0x41 && byte <= 0x5a)
            }
            if !hasUpper, end == bytes.count { return raw }
            return String(asciiLowercasing: UnsafeBufferPointer(rebasing: bytes[..<end]))
        }
    }
}
