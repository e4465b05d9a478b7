import Config
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// Identifies interchangeable upstream connections.
struct UpstreamKey: Hashable, Sendable {
    let scheme: GatewayConfig.Upstream.Scheme
    let host: String
    let port: Int
    let verifyCertificate: Bool
    let caFile: String?

    init(_ upstream: GatewayConfig.Upstream) {
        scheme = upstream.scheme
        host = upstream.host
        port = upstream.port
        verifyCertificate = upstream.verifyCertificate
        caFile = upstream.caFile
    }
}

/// Why an upstream could not be reached; the engine maps it to 502 or 504.
enum UpstreamError: Error {
    case connectTimeout
    case connectFailed(any Error)
    case responseHeaderTimeout
    case stalled
}

/// Kept-alive upstream connections of one event loop. Proxy handlers and their upstream channels
/// share that loop, so the pool needs no lock and a request never hops threads.
final class UpstreamPool {
    private let eventLoop: any EventLoop
    private let tlsContexts: [UpstreamKey: NIOSSLContext]
    private let connectTimeout: TimeAmount
    private let keepalive: TimeAmount
    private let maxIdlePerKey: Int
    private var idle: [UpstreamKey: [UpstreamConnection]] = [:]

    init(eventLoop: any EventLoop, tlsContexts: [UpstreamKey: NIOSSLContext], timeouts: GatewayConfig.Timeouts, maxIdlePerKey: Int) {
        self.eventLoop = eventLoop
        self.tlsContexts = tlsContexts
        self.connectTimeout = TimeAmount(timeouts.upstreamConnect)
        self.keepalive = TimeAmount(timeouts.upstreamKeepalive)
        self.maxIdlePerKey = maxIdlePerKey
    }

    /// A parked connection when one is alive, else a new one.
    func acquire(_ key: UpstreamKey, address: (host: String, port: Int)) -> EventLoopFuture<UpstreamConnection> {
        while let connection = idle[key]?.popLast() {
            connection.idleExpiry?.cancel()
            connection.idleExpiry = nil
            if connection.isActive && connection.reusable { return eventLoop.makeSucceededFuture(connection) }
        }
        return connect(key, address: address)
    }

    /// Parks a connection whose last exchange completed cleanly; closes it otherwise.
    func release(_ connection: UpstreamConnection) {
        connection.sink = nil
        // A parked connection reads freely: it must notice the origin closing it, and the next
        // lease must not inherit the last client's back-pressure.
        connection.resumeReads()
        guard connection.reusable, connection.isActive, maxIdlePerKey > 0, (idle[connection.key]?.count ?? 0) < maxIdlePerKey else {
            connection.abandon()
            return
        }
        idle[connection.key, default: []].append(connection)
        connection.idleExpiry = eventLoop.assumeIsolated().scheduleTask(in: keepalive) { [self] in
            connection.idleExpiry = nil
            remove(connection)
            connection.abandon()
        }
    }

    /// Closes every parked connection (shutdown).
    func closeIdle() {
        let parked = idle.values.flatMap { $0 }
        idle.removeAll()
        for connection in parked {
            connection.idleExpiry?.cancel()
            connection.idleExpiry = nil
            connection.onClose = nil
            connection.abandon()
        }
    }

    private func remove(_ connection: UpstreamConnection) {
        idle[connection.key]?.removeAll { $0 === connection }
    }

    private func connect(_ key: UpstreamKey, address: (host: String, port: Int)) -> EventLoopFuture<UpstreamConnection> {
        let tls = tlsContexts[key]
        let serverName = (tls != nil && IPAddressBytes.parse(key.host) == nil) ? key.host : nil
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls { try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName)) }
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(UpstreamConnection(key: key))
                }
            }
        // An IP literal needs no resolver and no Happy Eyeballs race: under load those cost more
        // than the connection itself.
        let connecting: EventLoopFuture<any Channel>
        if let literal = try? SocketAddress(ipAddress: address.host, port: address.port) {
            connecting = bootstrap.connect(to: literal)
        } else {
            connecting = bootstrap.connect(host: address.host, port: address.port)
        }
        return connecting
            .flatMapErrorThrowing { error in
                if case ChannelError.connectTimeout = error { throw UpstreamError.connectTimeout }
                throw UpstreamError.connectFailed(error)
            }
            .flatMapThrowing { channel in
                let connection = try channel.pipeline.syncOperations.handler(type: UpstreamConnection.self)
                connection.onClose = { [weak self] closed in self?.remove(closed) }
                return connection
            }
    }
}

/// One pool per event loop, created at start; each is only touched on its own loop.
final class UpstreamPools: Sendable {
    private let pools: [ObjectIdentifier: NIOLoopBound<UpstreamPool>]

    init(group: any EventLoopGroup, config: GatewayConfig) async throws {
        var tls: [UpstreamKey: NIOSSLContext] = [:]
        for site in config.sites where site.upstream.scheme == .https {
            let key = UpstreamKey(site.upstream)
            guard tls[key] == nil else { continue }
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.minimumTLSVersion = .tlsv12
            configuration.applicationProtocols = ["http/1.1"]
            if !site.upstream.verifyCertificate { configuration.certificateVerification = .none }
            if let ca = site.upstream.caFile {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
            }
            tls[key] = try NIOSSLContext(configuration: configuration)
        }
        var pools: [ObjectIdentifier: NIOLoopBound<UpstreamPool>] = [:]
        let contexts = tls
        for loop in group.makeIterator() {
            // Each pool is made on its own loop, the only place it is ever touched.
            pools[ObjectIdentifier(loop)] = try await loop.submit {
                NIOLoopBound(
                    UpstreamPool(
                        eventLoop: loop, tlsContexts: contexts, timeouts: config.timeouts,
                        maxIdlePerKey: config.limits.upstreamIdleConnections),
                    eventLoop: loop)
            }.get()
        }
        self.pools = pools
    }

    /// Closes the parked connections of every loop, while the loops still run.
    func closeIdle() async {
        for bound in pools.values {
            try? await bound.eventLoop.submit { bound.value.closeIdle() }.get()
        }
    }

    func pool(for eventLoop: any EventLoop) -> UpstreamPool {
        guard let pool = pools[ObjectIdentifier(eventLoop)] else {
            preconditionFailure("no upstream pool for this event loop: channels must run on the gateway's group")
        }
        return pool.value
    }
}
