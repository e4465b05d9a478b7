import Config
import Logging
import NIOCore
import NIOHTTP1

/// Everything a proxy handler needs that is shared by all connections: the configuration as
/// routed, the filters, the upstream pools and the loggers. Immutable once built.
final class ProxyEngine: Sendable {
    let config: GatewayConfig
    let sites: SiteTable
    let filters: [any ProxyFilter]
    let pools: UpstreamPools
    let accessLog: Logger
    let logger: Logger
    /// Where `builtin:demo` upstreams point once the demo origin is listening.
    let builtinDemoAddress: HostPort?

    init(
        config: GatewayConfig, filters: [any ProxyFilter], pools: UpstreamPools, accessLog: Logger, logger: Logger,
        builtinDemoAddress: HostPort?
    ) {
        self.config = config
        self.sites = SiteTable(config)
        self.filters = filters
        self.pools = pools
        self.accessLog = accessLog
        self.logger = logger
        self.builtinDemoAddress = builtinDemoAddress
    }

    func address(of upstream: GatewayConfig.Upstream) -> (host: String, port: Int) {
        if upstream.scheme == .builtinDemo, let demo = builtinDemoAddress { return (demo.host, demo.port) }
        return (upstream.host, upstream.port)
    }
}

/// Per-connection facts a proxy handler is created with.
struct DownstreamInfo {
    let scheme: String
    let httpVersion: String
    let peerAddress: String
}

enum RequestID {
    static func make() -> String {
        let value = UInt64.random(in: .min ... .max)
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
