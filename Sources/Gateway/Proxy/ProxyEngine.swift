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
    let metrics: RequestMetrics
    /// The exchange clocks' timeouts as the event loop takes them: converting a `Duration` costs
    /// about 190 instructions, and the clocks are armed on every request.
    let clockTimeouts: ClockTimeouts

    struct ClockTimeouts {
        let body: TimeAmount
        let upstreamResponseHeader: TimeAmount
        let upstreamIdle: TimeAmount
    }

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
        self.metrics = RequestMetrics(siteNames: config.sites.map(\.name))
        self.clockTimeouts = ClockTimeouts(
            body: TimeAmount(config.timeouts.body), upstreamResponseHeader: TimeAmount(config.timeouts.upstreamResponseHeader),
            upstreamIdle: TimeAmount(config.timeouts.upstreamIdle))
    }

    func address(of upstream: GatewayConfig.Upstream) -> (host: String, port: Int) {
        if upstream.scheme == .builtinDemo, let demo = builtinDemoAddress { return (demo.host, demo.port) }
        return (upstream.host, upstream.port)
    }
}

/// Per-connection facts a proxy handler is created with. Made once per connection: an HTTP/2
/// connection's streams share it, and parsing the peer's address for each stream's trust
/// decision cost ≈ 1,700 instructions a request.
struct DownstreamInfo {
    let scheme: String
    let httpVersion: String
    let peerAddress: String
    /// The peer's address as bytes, for `trusted_proxies`; nil when it is not an IP address.
    let peerIP: IPAddressBytes?

    init(scheme: String, httpVersion: String, peerAddress: String) {
        self.scheme = scheme
        self.httpVersion = httpVersion
        self.peerAddress = peerAddress
        peerIP = IPAddressBytes.parse(peerAddress)
    }
}

/// The id that ties a request's access-log line, its upstream request and its error page
/// together: a trusted proxy's sane token, or 64 random bits shown as 16 hex digits.
///
/// Every request has one and few read it as text: the digits are written straight into the
/// upstream head, and a string is made only for a log line or an error page (a string a request,
/// made and freed, cost ≈ 700 instructions).
public struct RequestID: Sendable, CustomStringConvertible {
    private let trusted: String?
    private let random: UInt64

    /// A trusted proxy's id when it is a sane token (1 to 128 of `A-Z a-z 0-9 . _ - :`), else a new one.
    init(trustedValue: String?) {
        if let value = trustedValue, (1...128).contains(value.utf8.count),
            value.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x3a) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x2d || $0 == 0x2e || $0 == 0x5f })
        {
            trusted = value
            random = 0
        } else {
            var generator = BufferedRandom()
            trusted = nil
            random = generator.next()
        }
    }

    public var description: String { trusted ?? random.fixedWidthHex }

    /// Appends the `X-Request-ID` field carrying it.
    func append(to headers: inout HeaderFields) {
        if let trusted {
            headers.appendChecked("x-request-id", trusted)
        } else {
            headers.appendChecked("x-request-id", valueLength: 16) { random.writeHex(into: UnsafeMutableBufferPointer(start: $0, count: 16)) }
        }
    }
}
