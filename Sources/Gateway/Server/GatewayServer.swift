import Config
import Events
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS
import ServiceLifecycle

/// The gateway process's network side: the HTTPS, HTTP and admin listeners (and the demo origin
/// of the embedded default), run as a swift-service-lifecycle service.
///
/// Requests enter in ``configureHTTP1(_:live:scheme:)`` and ``configureHTTP2(_:live:scheme:)``;
/// both end in a ``ProxyHandler``.
public final class GatewayServer: Service, Sendable {
    public struct Addresses: Sendable {
        public var https: SocketAddress?
        public var http: SocketAddress?
        public var admin: SocketAddress?
        public var demo: SocketAddress?
    }

    private struct Running {
        var channels: [any Channel] = []
        var ownedChannels: [any Channel] = []
        var addresses = Addresses()
        var live: LiveConfiguration?
        var demoAddress: HostPort?
        /// Pools of replaced generations: their parked connections close at shutdown.
        var retiredPools: [UpstreamPools] = []
        /// Lives only while serving: its deinit touches the event loops, so it must go before they stop.
        var quiescing: ServerQuiescingHelper?
        let connections = OpenConnections()
    }

    private let initialConfig: GatewayConfig
    /// The file reloads read; nil for the embedded default (a reload then re-reads certificates only).
    private let configPath: String?
    private let logger: Logger
    private let accessLog: Logger
    private let clickSink: (any ClickSink)?
    private let ingestor: EventIngestor?
    private let apiKeysOverride: Set<String>?
    let admin: AdminContext
    private let group: MultiThreadedEventLoopGroup
    private let running = NIOLockedValueBox<Running?>(nil)
    private let reloads = NIOLockedValueBox<Task<ReloadOutcome, Never>?>(nil)

    /// - Parameters:
    ///   - clickSink: where captured clicks go (the sidecar's click ledger).
    ///   - ingestor: answers the first-party events path, and server events on the admin listener;
    ///     without one the events path is proxied. Its validation follows each configuration.
    ///   - apiKeys: keys for server events; nil reads `events.api_keys_env`/`_file` at each (re)load.
    ///   - configPath: the file ``reload()`` reads.
    public init(
        config: GatewayConfig, logger: Logger, accessLog: Logger, clickSink: (any ClickSink)? = nil,
        ingestor: EventIngestor? = nil, apiKeys: Set<String>? = nil, configPath: String? = nil, admin: AdminContext = AdminContext(),
        threads: Int = GatewayServer.usableCores
    ) {
        self.initialConfig = config
        self.configPath = configPath
        self.logger = logger
        self.accessLog = accessLog
        self.clickSink = clickSink
        self.ingestor = ingestor
        self.apiKeysOverride = apiKeys
        self.admin = admin
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    }

    /// One event loop per core this process may run on. NIO counts the machine's cores (or the
    /// cgroup's quota); under `taskset` or a cpuset, loops beyond the allowed cores only take turns.
    public static var usableCores: Int {
        // The kernel's affinity mask in hex (`Cpus_allowed: 3` or `ff,ffffffff`); Swift's Glibc lacks sched_getaffinity.
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") })
        else { return System.coreCount }
        let allowed = line.dropFirst("Cpus_allowed:".count).reduce(0) { $0 + (Int(String($1), radix: 16)?.nonzeroBitCount ?? 0) }
        return max(1, min(allowed, System.coreCount))
    }

    /// The configuration new requests use.
    public var config: GatewayConfig {
        running.withLockedValue { $0?.live?.current.config } ?? initialConfig
    }

    var generation: LiveConfiguration.Generation? {
        running.withLockedValue { $0?.live?.current }
    }

    var isServing: Bool { running.withLockedValue { $0 != nil } }

    var configFile: String? { configPath }

    var eventStore: (any EventStore)? { ingestor?.store }

    /// Binds every listener; port 0 picks a free port (see the returned addresses).
    @discardableResult
    public func start() async throws -> Addresses {
        if let addresses = running.withLockedValue({ $0?.addresses }) { return addresses }
        var state = Running()
        let quiescing = ServerQuiescingHelper(group: group)
        state.quiescing = quiescing
        let config = initialConfig
        do {
            if config.sites.contains(where: { $0.upstream.scheme == .builtinDemo }) {
                let demo = try await bindLocal(HostPort(host: "127.0.0.1", port: 0), router: DemoSite.router)
                state.ownedChannels.append(demo)
                state.addresses.demo = demo.localAddress
                state.demoAddress = HostPort(host: "127.0.0.1", port: demo.localAddress?.port ?? 0)
            }
            let live = LiveConfiguration(try await makeGeneration(config, number: 1, demoAddress: state.demoAddress))
            state.live = live
            if let https = config.listen.https {
                let channel = try await bindProxy(https, live: live, tls: true, quiescing: quiescing, connections: state.connections)
                state.channels.append(channel)
                state.addresses.https = channel.localAddress
            }
            if let http = config.listen.http {
                let channel = try await bindProxy(http, live: live, tls: false, quiescing: quiescing, connections: state.connections)
                state.channels.append(channel)
                state.addresses.http = channel.localAddress
            }
            if let adminAddress = config.listen.admin {
                let channel = try await bindLocal(adminAddress, router: AdminRoutes(server: self).router)
                state.ownedChannels.append(channel)
                state.addresses.admin = channel.localAddress
            }
        } catch {
            for channel in state.channels + state.ownedChannels { try? await channel.close() }
            throw error
        }
        let addresses = state.addresses
        running.withLockedValue { $0 = state }
        func describe(_ address: SocketAddress?) -> Logger.MetadataValue {
            guard let address, let ip = address.ipAddress, let port = address.port else { return "off" }
            return .string(HostPort(host: ip, port: port).description)
        }
        logger.info("listening", metadata: [
            "https": describe(addresses.https), "http": describe(addresses.http), "admin": describe(addresses.admin),
        ])
        return addresses
    }

    /// Everything a configuration decides that requests use: upstream pools, filters, the engine,
    /// the TLS context (certificates are read here), the server-events endpoint.
    private func makeGeneration(_ config: GatewayConfig, number: Int, demoAddress: HostPort?) async throws -> LiveConfiguration.Generation {
        let pools = try await UpstreamPools(group: group, config: config)
        let configuredIngestor = ingestor?.configured(for: config.events)
        let engine = ProxyEngine(
            config: config, filters: TrackingFilters.make(config: config, clickSink: clickSink, ingestor: configuredIngestor), pools: pools,
            accessLog: accessLog, logger: logger, builtinDemoAddress: demoAddress)
        let certificateFiles = Self.certificateFilesState(config)
        let tls = try config.listen.https.map { _ in try CertificateStore(pairs: config.tls.certificates).makeServerContext() }
        let serverEvents = configuredIngestor.map {
            ServerEventsEndpoint(ingestor: $0, apiKeys: apiKeysOverride ?? Credentials.apiKeys(config.events), pixels: config.events.pixels)
        }
        return .init(
            number: number, loadedAt: Date(), config: config, engine: engine, tls: tls, certificateFiles: certificateFiles,
            serverEvents: serverEvents)
    }

    // MARK: Reload

    /// Reads the configuration file again and, when it is valid, serves new requests with it; an
    /// invalid file is refused and the running configuration keeps serving. Reloads run one at a time.
    public func reload() async -> ReloadOutcome {
        await serialized { await self.apply(fromFile: true, reason: "reload") }
    }

    /// Builds a new generation from the running configuration: certificates and keys are read again.
    public func reloadCertificates() async -> ReloadOutcome {
        await serialized { await self.apply(fromFile: false, reason: "certificate files changed") }
    }

    private func serialized(_ body: @escaping @Sendable () async -> ReloadOutcome) async -> ReloadOutcome {
        let task = reloads.withLockedValue { last -> Task<ReloadOutcome, Never> in
            let previous = last
            let next = Task {
                _ = await previous?.value
                return await body()
            }
            last = next
            return next
        }
        return await task.value
    }

    private func apply(fromFile: Bool, reason: String) async -> ReloadOutcome {
        guard let (live, demoAddress) = running.withLockedValue({ state in state?.live.map { ($0, state?.demoAddress) } }) else {
            return ReloadOutcome(applied: false, generation: 0, message: "the gateway is not serving")
        }
        let current = live.current
        var config = current.config
        if fromFile, let configPath {
            do { config = try ConfigLoader.load(file: configPath) } catch {
                logger.error("reload refused: the configuration has problems; the running one keeps serving", metadata: ["error": "\(error)"])
                return ReloadOutcome(applied: false, generation: current.number, message: "\(error)")
            }
        }
        let notes = Self.restartOnlyChanges(from: current.config, to: config)
        if demoAddress == nil, config.sites.contains(where: { $0.upstream.scheme == .builtinDemo }) {
            return ReloadOutcome(applied: false, generation: current.number, message: "a builtin:demo upstream can only be added with a restart")
        }
        let next: LiveConfiguration.Generation
        do {
            next = try await makeGeneration(config, number: current.number + 1, demoAddress: demoAddress)
        } catch {
            logger.error("reload refused: the new configuration could not be set up; the running one keeps serving", metadata: ["error": "\(error)"])
            return ReloadOutcome(applied: false, generation: current.number, message: "\(error)")
        }
        let replaced = live.replace(with: next)
        running.withLockedValue { $0?.retiredPools.append(replaced.engine.pools) }
        await admin.onReload(config)
        logger.info("reloaded", metadata: [
            "reason": "\(reason)", "generation": "\(next.number)", "sites": "\(config.sites.count)",
            "needs_restart": .string(notes.joined(separator: "; ")),
        ])
        return ReloadOutcome(applied: true, generation: next.number, message: "generation \(next.number) serves new requests", notes: notes)
    }

    /// Settings a running process cannot change: they keep their old values until a restart.
    static func restartOnlyChanges(from old: GatewayConfig, to new: GatewayConfig) -> [String] {
        var notes: [String] = []
        if old.listen != new.listen { notes.append("listen changes need a restart") }
        if old.events.store != new.events.store { notes.append("events.store changes need a restart") }
        if old.log != new.log { notes.append("log changes need a restart") }
        if old.admin != new.admin { notes.append("admin changes need a restart") }
        if old.events.batchSize != new.events.batchSize || old.events.linger != new.events.linger || old.events.lease != new.events.lease {
            notes.append("events.batch_size, events.linger and events.lease changes need a restart")
        }
        return notes
    }

    /// The certificate and key files' state now, when it differs from what the serving generation
    /// read; nil while they are unchanged. ``reloadCertificates()`` picks changed files up.
    public func changedCertificateFiles() -> [String]? {
        guard let current = generation else { return nil }
        let now = Self.certificateFilesState(current.config)
        return now == current.certificateFiles ? nil : now
    }

    /// Each certificate and key file with its size, change time and inode (a renewal that renames
    /// new files into place changes the inode even when size and time do not).
    static func certificateFilesState(_ config: GatewayConfig) -> [String] {
        config.tls.certificates.flatMap { [$0.certificatePath, $0.keyPath] }.map { path in
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            return "\(path) \(attributes?[.size] as? Int ?? -1) \(modified) \(attributes?[.systemFileNumber] as? Int ?? 0)"
        }
    }

    /// Service entry point: serves until a graceful shutdown is requested, then drains.
    public func run() async throws {
        try await start()
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Stops accepting, lets in-flight requests finish for up to `timeouts.shutdown_grace`,
    /// then closes whatever is left.
    public func shutdown() async {
        guard var state = running.withLockedValue({ state -> Running? in
            defer { state = nil }
            return state
        }) else {
            try? await group.shutdownGracefully()
            return
        }
        let config = state.live?.current.config ?? initialConfig
        logger.info("draining", metadata: ["grace": "\(config.timeouts.shutdownGrace)"])
        let drained = group.next().makePromise(of: Void.self)
        if let quiescing = state.quiescing, !state.channels.isEmpty {
            quiescing.initiateShutdown(promise: drained)
        } else {
            drained.succeed()
        }
        // withDeadline returns at the grace even though waiting on the future ignores cancellation.
        let finishedInTime = (try? await withDeadline(config.timeouts.shutdownGrace, what: "draining") { try await drained.futureResult.get() }) != nil
        if !finishedInTime {
            logger.warning("shutdown grace expired; closing the remaining connections", metadata: ["connections": "\(state.connections.count)"])
            await state.connections.closeAll()
        }
        for pools in state.retiredPools + (state.live.map { [$0.engine.pools] } ?? []) { await pools.closeIdle() }
        for channel in state.ownedChannels { try? await channel.close() }
        state.quiescing = nil
        try? await group.shutdownGracefully()
        logger.info("stopped")
    }

    // MARK: Listeners

    /// New connections take the current generation: its TLS context, limits and timeouts.
    private func bindProxy(
        _ address: HostPort, live: LiveConfiguration, tls: Bool, quiescing: ServerQuiescingHelper, connections: OpenConnections
    ) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            // Each connection keeps its receive buffer while it idles: start it at 1 KiB (nginx's
            // `client_header_buffer_size`), not NIO's 2 KiB; it doubles after any read that fills it.
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 1024, maximum: 65536))
            .childChannelInitializer { channel in
                connections.add(channel)
                return channel.eventLoop.makeCompletedFuture {
                    let generation = live.current
                    guard tls, let context = generation.tls else { return try Self.configureHTTP1(channel, live: live, scheme: "http") }
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOSSLServerHandler(context: context))
                    // After the TLS handler: it must see the handshake-completed event that handler fires.
                    try sync.addHandler(HandshakeTimeout(timeout: TimeAmount(generation.config.timeouts.handshake)))
                    try sync.addHandler(ApplicationProtocolNegotiationHandler { result, channel in
                        channel.eventLoop.makeCompletedFuture {
                            if case .negotiated("h2") = result {
                                try Self.configureHTTP2(channel, live: live, scheme: "https")
                            } else {
                                try Self.configureHTTP1(channel, live: live, scheme: "https")
                            }
                        }
                    })
                }
            }
            .bind(host: address.host, port: address.port)
            .get()
    }

    private func bindLocal(_ address: HostPort, router: @escaping LocalHTTPHandler.Router) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // The proxy's own HTTP/1 handling, with fixed limits: these endpoints take small requests.
                    let connection = HTTP1Connection(
                        parser: HTTP1RequestParser(maxHeadBytes: 16 * 1024, maxFieldCount: 100),
                        headerTimeout: .seconds(10), idleTimeout: .seconds(60)) { _, _ in }
                    try channel.pipeline.syncOperations.addHandler(connection)
                    try channel.pipeline.syncOperations.addHandler(LocalHTTPHandler(router: router))
                }
            }
            .bind(host: address.host, port: address.port)
            .get()
    }

    static func configureHTTP1(_ channel: any Channel, live: LiveConfiguration, scheme: String) throws {
        let engine = live.engine
        let config = engine.config
        let sync = channel.pipeline.syncOperations
        let peer = channel.remoteAddress?.ipAddress ?? "unknown"
        let accessLog = engine.accessLog
        let connection = HTTP1Connection(
            parser: HTTP1RequestParser(maxHeadBytes: config.limits.maxHeaderBytes, maxFieldCount: config.limits.maxHeaderCount),
            headerTimeout: TimeAmount(config.timeouts.header), idleTimeout: TimeAmount(config.timeouts.idle),
            gatheringWrites: scheme == "https"
        ) { status, reason in
            accessLog.info("access", metadata: [
                "client": "\(peer)", "proto": "h1", "status": "\(status.code)", "error": "refused by the HTTP/1 parser: \(reason)",
            ])
        }
        connection.receiver = ProxyHandler(
            live: live, downstream: DownstreamInfo(scheme: scheme, httpVersion: "h1", peerAddress: peer), responses: connection,
            eventLoop: channel.eventLoop)
        try sync.addHandler(connection)
    }

    static func configureHTTP2(_ channel: any Channel, live: LiveConfiguration, scheme: String) throws {
        let engine = live.engine
        let config = engine.config
        let sync = channel.pipeline.syncOperations
        let management = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: channel.eventLoop,
            configuration: .init(
                maxIdleTime: TimeAmount(config.timeouts.idle), maxAge: nil,
                maxGraceTime: TimeAmount(config.timeouts.shutdownGrace), keepalive: nil))
        // Each stream's window and the connection's, kept there by HTTP2Connection.
        let windowSize = 1 << 20
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: config.limits.h2MaxConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: config.limits.maxHeaderBytes),
            HTTP2Setting(parameter: .initialWindowSize, value: windowSize),
        ]
        // HTTP2Stream keeps HTTP/2's field rules in the pass that converts each block (HTTP2Fields).
        connection.headerBlockValidation = .disabled
        // Rapid-reset, CONTINUATION and control-frame floods end the connection (CVE-2023-44487, CVE-2024-27316).
        connection.maximumRecentlyResetStreams = 32
        connection.maximumSequentialContinuationFrames = 5
        connection.maximumBufferedControlFrames = 1000
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.streamResetFrameRateLimit.maximumCount = 200
        stream.streamResetFrameRateLimit.windowLength = .seconds(30)
        let peer = channel.remoteAddress?.ipAddress ?? "unknown"
        let accessLog = engine.accessLog
        let downstream = DownstreamInfo(scheme: scheme, httpVersion: "h2", peerAddress: peer)
        let eventLoop = channel.eventLoop
        let clockPool = StreamClockPool<ProxyHandler>()
        channel.closeFuture.assumeIsolated().whenComplete { _ in clockPool.stopAll() }
        let streams = HTTP2Connection(targetWindowSize: windowSize) { stream in
            ProxyHandler(live: live, downstream: downstream, responses: stream, eventLoop: eventLoop, clockPool: clockPool)
        } onRefused: { error in
            accessLog.info("access", metadata: [
                "client": "\(peer)", "proto": "h2", "error": "stream reset (PROTOCOL_ERROR): \(error)",
            ])
        }
        try sync.addHandler(TickFlushCoalescer())
        try sync.addHandler(
            NIOHTTP2Handler(mode: .server, frameDelegate: streams, connectionConfiguration: connection, streamConfiguration: stream))
        try sync.addHandler(management)
        try sync.addHandler(streams)
        try sync.addHandler(CloseOnConnectionError(logger: engine.logger))
    }
}
