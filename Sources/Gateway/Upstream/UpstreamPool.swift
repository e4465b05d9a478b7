import Config
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// Identifies interchangeable upstream connections. Made once per site and configuration
/// (``SiteRoute/upstreamKey``), its digest computed then: the pool compares keys at every lease
/// and release, and hashing the host's string each time cost 2,000 instructions per request.
struct UpstreamKey: Hashable, Sendable {
    let scheme: GatewayConfig.Upstream.Scheme
    let host: String
    let port: Int
    let verifyCertificate: Bool
    let caFile: String?
    private let digest: Int

    init(_ upstream: GatewayConfig.Upstream) {
        scheme = upstream.scheme
        host = upstream.host
        port = upstream.port
        verifyCertificate = upstream.verifyCertificate
        caFile = upstream.caFile
        var hasher = Hasher()
        hasher.combine(scheme)
        hasher.combine(host)
        hasher.combine(port)
        hasher.combine(verifyCertificate)
        hasher.combine(caFile)
        digest = hasher.finalize()
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(digest)
    }

    /// The digests first: keys of different upstreams nearly always differ there.
    static func == (a: UpstreamKey, b: UpstreamKey) -> Bool {
        a.digest == b.digest && a.port == b.port && a.scheme == b.scheme && a.verifyCertificate == b.verifyCertificate
            && a.host == b.host && a.caFile == b.caFile
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
    /// Parked connections by key, oldest first (the newest is leased next: it is the least likely
    /// to have been closed by the origin). A short list searched in order: a gateway fronts a few
    /// origins, and a dictionary's hashing cost ≈ 800 instructions at every lease and release.
    private var idle: [Parked] = []

    private struct Parked {
        let key: UpstreamKey
        var connections: [UpstreamConnection]
    }
    /// One pending check closes expired connections for the whole pool: a task per parked
    /// connection was a schedule and a cancel per request.
    private var sweep: Scheduled<Void>?

    init(eventLoop: any EventLoop, tlsContexts: [UpstreamKey: NIOSSLContext], timeouts: GatewayConfig.Timeouts, maxIdlePerKey: Int) {
        self.eventLoop = eventLoop
        self.tlsContexts = tlsContexts
        self.connectTimeout = TimeAmount(timeouts.upstreamConnect)
        self.keepalive = TimeAmount(timeouts.upstreamKeepalive)
        self.maxIdlePerKey = maxIdlePerKey
    }

    /// A parked connection that is alive and not expired, if there is one. Handed over directly:
    /// a succeeded future and its callback cost about 2,000 instructions on every request.
    func takeParked(_ key: UpstreamKey) -> UpstreamConnection? {
        guard let slot = slot(of: key) else { return nil }
        while let connection = idle[slot].connections.popLast() {
            if connection.isActive, connection.reusable, connection.parkedAt + keepalive > .now() { return connection }
            connection.abandon()
        }
        return nil
    }

    /// Parks a connection whose last exchange completed cleanly; closes it otherwise.
    func release(_ connection: UpstreamConnection) {
        connection.sink = nil
        // A parked connection reads freely: it must notice the origin closing it, and the next
        // lease must not inherit the last client's back-pressure.
        connection.resumeReads()
        let slot = slot(of: connection.key)
        guard connection.reusable, connection.isActive, maxIdlePerKey > 0, slot.map({ idle[$0].connections.count < maxIdlePerKey }) ?? true else {
            connection.abandon()
            return
        }
        connection.parkedAt = .now()
        if let slot {
            idle[slot].connections.append(connection)
        } else {
            idle.append(Parked(key: connection.key, connections: [connection]))
        }
        if sweep == nil { scheduleSweep(at: connection.parkedAt + keepalive) }
    }

    /// Closes every parked connection (shutdown).
    func closeIdle() {
        let parked = idle.flatMap(\.connections)
        idle.removeAll()
        sweep?.cancel()
        sweep = nil
        for connection in parked {
            connection.onClose = nil
            connection.abandon()
        }
    }

    private func scheduleSweep(at deadline: NIODeadline) {
        sweep = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            sweep = nil
            closeExpired()
        }
    }

    /// Closes the connections parked longer than `upstream_keepalive`, and plans the next check
    /// for the oldest that stays.
    private func closeExpired() {
        let now = NIODeadline.now()
        var expired: [UpstreamConnection] = []
        for slot in idle.indices {
            let parked = idle[slot].connections
            let firstLive = parked.firstIndex { $0.parkedAt + keepalive > now } ?? parked.endIndex
            guard firstLive > 0 else { continue }
            expired += parked[..<firstLive]
            idle[slot].connections = Array(parked[firstLive...])
        }
        // Closed after `idle` is settled: a close reports back through `onClose`, which edits it.
        for connection in expired { connection.abandon() }
        if let oldest = idle.compactMap({ $0.connections.first?.parkedAt }).min() { scheduleSweep(at: oldest + keepalive) }
    }

    /// Where `key`'s parked connections are listed, if anywhere.
    private func slot(of key: UpstreamKey) -> Int? {
        idle.firstIndex { $0.key == key }
    }

    private func remove(_ connection: UpstreamConnection) {
        guard let slot = slot(of: connection.key) else { return }
        idle[slot].connections.removeAll { $0 === connection }
    }

    /// A new connection (when no parked one is left: see ``takeParked(_:)``).
    func connect(_ key: UpstreamKey, address: (host: String, port: Int)) -> EventLoopFuture<UpstreamConnection> {
        let tls = tlsContexts[key]
        let serverName = (tls != nil && IPAddressBytes.parse(key.host) == nil) ? key.host : nil
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls { try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName)) }
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
            // The pool's own loop: the channel was made on it.
            .assumeIsolated()
            .flatMapThrowing { channel in
                let connection = try channel.pipeline.syncOperations.handler(type: UpstreamConnection.self)
                connection.onClose = { [weak self] closed in self?.remove(closed) }
                return connection
            }
            .nonisolated()
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
