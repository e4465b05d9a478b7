import Config
import Events
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
/// Requests enter in ``configureHTTP1(_:engine:scheme:)`` and ``configureHTTP2(_:engine:scheme:)``;
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
        var pools: UpstreamPools?
        /// Lives only while serving: its deinit touches the event loops, so it must go before they stop.
        var quiescing: ServerQuiescingHelper?
    }

    public let config: GatewayConfig
    private let serverEvents: ServerEventsEndpoint?
    private let logger: Logger
    private let accessLog: Logger
    private let filters: [any ProxyFilter]
    private let group: MultiThreadedEventLoopGroup
    private let running = NIOLockedValueBox<Running?>(nil)

    /// - Parameters:
    ///   - clickSink: where captured clicks go (the sidecar's click ledger).
    ///   - ingestor: answers the first-party events path, and server events on the admin listener
    ///     for holders of `apiKeys`; without one the events path is proxied.
    public init(
        config: GatewayConfig, logger: Logger, accessLog: Logger, clickSink: (any ClickSink)? = nil,
        ingestor: EventIngestor? = nil, apiKeys: Set<String> = [], threads: Int = System.coreCount
    ) {
        self.serverEvents = ingestor.map { ServerEventsEndpoint(ingestor: $0, apiKeys: apiKeys, pixels: config.events.pixels) }
        self.config = config
        self.logger = logger
        self.accessLog = accessLog
        self.filters = TrackingFilters.make(config: config, clickSink: clickSink, ingestor: ingestor)
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    }

    /// Binds every listener; port 0 picks a free port (see the returned addresses).
    @discardableResult
    public func start() async throws -> Addresses {
        if let addresses = running.withLockedValue({ $0?.addresses }) { return addresses }
        var state = Running()
        let quiescing = ServerQuiescingHelper(group: group)
        state.quiescing = quiescing
        do {
            var demoAddress: HostPort?
            if config.sites.contains(where: { $0.upstream.scheme == .builtinDemo }) {
                let demo = try await bindLocal(HostPort(host: "127.0.0.1", port: 0), router: DemoSite.router)
                state.ownedChannels.append(demo)
                state.addresses.demo = demo.localAddress
                demoAddress = HostPort(host: "127.0.0.1", port: demo.localAddress?.port ?? 0)
            }
            let pools = try await UpstreamPools(group: group, config: config)
            state.pools = pools
            let engine = ProxyEngine(
                config: config, filters: filters, pools: pools, accessLog: accessLog, logger: logger, builtinDemoAddress: demoAddress)
            if let https = config.listen.https {
                let tls = try CertificateStore(pairs: config.tls.certificates).makeServerContext()
                let channel = try await bindProxy(https, engine: engine, tls: tls, quiescing: quiescing)
                state.channels.append(channel)
                state.addresses.https = channel.localAddress
            }
            if let http = config.listen.http {
                let channel = try await bindProxy(http, engine: engine, tls: nil, quiescing: quiescing)
                state.channels.append(channel)
                state.addresses.http = channel.localAddress
            }
            if let admin = config.listen.admin {
                let channel = try await bindLocal(admin, router: AdminRoutes(serverEvents: serverEvents).router)
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
        logger.info("draining", metadata: ["grace": "\(config.timeouts.shutdownGrace)"])
        let drained = group.next().makePromise(of: Void.self)
        if let quiescing = state.quiescing, !state.channels.isEmpty {
            quiescing.initiateShutdown(promise: drained)
        } else {
            drained.succeed()
        }
        let grace = config.timeouts.shutdownGrace
        let finishedInTime = await withTaskGroup(of: Bool.self) { tasks in
            tasks.addTask { (try? await drained.futureResult.get()) != nil }
            tasks.addTask {
                try? await Task.sleep(for: grace)
                return false
            }
            let first = await tasks.next() ?? false
            tasks.cancelAll()
            return first
        }
        if !finishedInTime { logger.warning("shutdown grace expired; closing the remaining connections") }
        await state.pools?.closeIdle()
        for channel in state.ownedChannels { try? await channel.close() }
        state.quiescing = nil
        try? await group.shutdownGracefully()
        logger.info("stopped")
    }

    // MARK: Listeners

    private func bindProxy(
        _ address: HostPort, engine: ProxyEngine, tls: NIOSSLContext?, quiescing: ServerQuiescingHelper
    ) async throws -> any Channel {
        let handshakeTimeout = TimeAmount(config.timeouts.handshake)
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let tls else { return try Self.configureHTTP1(channel, engine: engine, scheme: "http") }
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOSSLServerHandler(context: tls))
                    // After the TLS handler: it must see the handshake-completed event that handler fires.
                    try sync.addHandler(HandshakeTimeout(timeout: handshakeTimeout))
                    try sync.addHandler(ApplicationProtocolNegotiationHandler { result, channel in
                        channel.eventLoop.makeCompletedFuture {
                            if case .negotiated("h2") = result {
                                try Self.configureHTTP2(channel, engine: engine, scheme: "https")
                            } else {
                                try Self.configureHTTP1(channel, engine: engine, scheme: "https")
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
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(LocalHTTPHandler(router: router))
                }
            }
            .bind(host: address.host, port: address.port)
            .get()
    }

    static func configureHTTP1(_ channel: any Channel, engine: ProxyEngine, scheme: String) throws {
        let config = engine.config
        let sync = channel.pipeline.syncOperations
        let timeouts = HTTP1ConnectionTimeouts(
            headerTimeout: TimeAmount(config.timeouts.header), idleTimeout: TimeAmount(config.timeouts.idle))
        try sync.addHandler(FirstByteObserver(timeouts: timeouts))
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = config.limits.maxHeaderBytes
        limits.maxHeaderFieldSize = config.limits.maxHeaderBytes
        limits.maxHeaderFieldCount = config.limits.maxHeaderCount
        try sync.configureHTTPServerPipeline(
            withPipeliningAssistance: true, withServerUpgrade: nil, withErrorHandling: false,
            withOutboundHeaderValidation: true, withEncoderConfiguration: .init(), withDecoderLimitConfiguration: limits)
        try sync.addHandler(timeouts, position: .before(try sync.handler(type: HTTPServerPipelineHandler.self)))
        let peer = channel.remoteAddress?.ipAddress ?? "unknown"
        let accessLog = engine.accessLog
        try sync.addHandler(ProtocolErrorResponder { status, reason in
            accessLog.info("access", metadata: [
                "client": "\(peer)", "proto": "h1", "status": "\(status.code)", "error": "refused by the HTTP/1 parser: \(reason)",
            ])
        })
        try sync.addHandler(ProxyHandler(engine: engine, downstream: DownstreamInfo(scheme: scheme, httpVersion: "h1", peerAddress: peer)))
    }

    static func configureHTTP2(_ channel: any Channel, engine: ProxyEngine, scheme: String) throws {
        let config = engine.config
        let sync = channel.pipeline.syncOperations
        let management = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: channel.eventLoop,
            configuration: .init(
                maxIdleTime: TimeAmount(config.timeouts.idle), maxAge: nil,
                maxGraceTime: TimeAmount(config.timeouts.shutdownGrace), keepalive: nil))
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: config.limits.h2MaxConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: config.limits.maxHeaderBytes),
            HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20),
        ]
        connection.targetWindowSize = 1 << 20
        // Rapid-reset, CONTINUATION and control-frame floods end the connection (CVE-2023-44487, CVE-2024-27316).
        connection.maximumRecentlyResetStreams = 32
        connection.maximumSequentialContinuationFrames = 5
        connection.maximumBufferedControlFrames = 1000
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.targetWindowSize = 1 << 20
        stream.streamResetFrameRateLimit.maximumCount = 200
        stream.streamResetFrameRateLimit.windowLength = .seconds(30)
        let peer = channel.remoteAddress?.ipAddress ?? "unknown"
        _ = try sync.configureHTTP2Pipeline(
            mode: .server, connectionConfiguration: connection, streamConfiguration: stream,
            streamDelegate: management.http2StreamDelegate
        ) { streamChannel in
            streamChannel.eventLoop.makeCompletedFuture {
                let streamSync = streamChannel.pipeline.syncOperations
                try streamSync.addHandler(HTTP2FramePayloadToHTTP1ServerCodec())
                try streamSync.addHandler(
                    ProxyHandler(engine: engine, downstream: DownstreamInfo(scheme: scheme, httpVersion: "h2", peerAddress: peer)))
            }
        }
        try sync.addHandler(management)
        try sync.addHandler(CloseOnConnectionError(logger: engine.logger))
    }
}

/// The admin listener's routes (loopback by default): health, and server-side events.
struct AdminRoutes: Sendable {
    let serverEvents: ServerEventsEndpoint?

    var router: LocalHTTPHandler.Router {
        { head, body in
            let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
            switch (head.method, path) {
            case (_, "/healthz"):
                return LocalResponse(status: .ok, contentType: "text/plain; charset=utf-8", body: "ok\n")
            case (.POST, "/v1/events"):
                guard let serverEvents else { return LocalResponse(status: .notFound, contentType: "text/plain", body: "events are not enabled\n") }
                return await serverEvents.handle(head: head, body: body)
            default:
                return LocalResponse(status: .notFound, contentType: "text/plain; charset=utf-8", body: "not found\n")
            }
        }
    }
}
