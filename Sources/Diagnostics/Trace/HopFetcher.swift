import ClickID
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS

/// How long each phase of one hop took, in milliseconds from the start of the hop.
public struct HopTiming: Sendable, Codable, Equatable {
    /// Name resolution and TCP connect.
    public var connect: Double
    /// TLS handshake done (https only).
    public var tls: Double?
    /// Response head received.
    public var firstByte: Double
    public var total: Double

    enum CodingKeys: String, CodingKey {
        case connect = "connect_ms", tls = "tls_ms", firstByte = "first_byte_ms", total = "total_ms"
    }
}

/// One response, with as much of its body as redirect detection needs.
public struct HopResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    /// Nil when the body was not read (redirects, non-HTML).
    public var body: String?
    public var timing: HopTiming
    public var connectedTo: String?
}

/// Why a hop could not be fetched, in words for the terminal.
public struct HopFailure: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Connection settings shared by every hop of a trace.
public struct FetchSettings: Sendable {
    /// `host:port` → address to connect to instead of resolving (`--resolve`, as curl has it).
    public var resolve: [String: String] = [:]
    public var insecure = false
    /// A PEM file of CA certificates to trust instead of the system's.
    public var caFile: String?
    public var timeout: Duration = .seconds(10)
    /// HTML beyond this is not read: redirect stubs are small.
    public var bodyLimit = 512 * 1024

    public init() {}
}

/// Fetches one URL over HTTP/1.1, one connection per hop, never following redirects and never
/// decompressing, so each hop is seen exactly as a browser would receive it.
struct HopFetcher: Sendable {
    let settings: FetchSettings
    let tlsContext: NIOSSLContext
    let group: any EventLoopGroup

    init(settings: FetchSettings, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        self.settings = settings
        self.group = group
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.applicationProtocols = ["http/1.1"]
        if settings.insecure { tls.certificateVerification = .none }
        if let caFile = settings.caFile {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw HopFailure(description: "--cacert \(caFile): cannot read PEM certificates (\(error))")
            }
        }
        tlsContext = try NIOSSLContext(configuration: tls)
    }

    func fetch(_ url: URLReference, headers extra: [(String, String)]) async throws -> HopResponse {
        guard let scheme = url.normalizedScheme, scheme == "http" || scheme == "https" else {
            throw HopFailure(description: "only http:// and https:// URLs can be fetched")
        }
        guard let host = url.host, !host.isEmpty, let authority = url.authority else { throw HopFailure(description: "the URL has no host") }
        let isTLS = scheme == "https"
        guard let port = Self.port(of: authority, default: isTLS ? 443 : 80) else {
            throw HopFailure(description: "the port in \(authority) is not a number from 1 to 65535")
        }
        let bareHost = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        let address = settings.resolve["\(bareHost):\(port)"] ?? bareHost
        let isIPLiteral = bareHost.contains(":") || bareHost.allSatisfy { $0.isNumber || $0 == "." }

        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: (url.path.isEmpty ? "/" : url.path) + (url.query.map { "?" + $0 } ?? ""))
        head.headers.add(name: "Host", value: authority.split(separator: "@").last.map(String.init) ?? authority)
        for (name, value) in extra { head.headers.add(name: name, value: value) }
        head.headers.add(name: "Accept-Encoding", value: "identity")
        head.headers.add(name: "Connection", value: "close")

        let timeout = TimeAmount.milliseconds(settings.timeout.components.seconds * 1000 + settings.timeout.components.attoseconds / 1_000_000_000_000_000)
        let start = NIODeadline.now()
        func elapsed(_ deadline: NIODeadline) -> Double { Double((deadline - start).nanoseconds) / 1e6 }
        let handshakeDone = NIOLockedValueBox<NIODeadline?>(nil)
        let context = tlsContext
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .connect(host: address, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if isTLS {
                            let handler = try NIOSSLClientHandler(context: context, serverHostname: isIPLiteral ? nil : bareHost)
                            try channel.pipeline.syncOperations.addHandler(handler)
                            try channel.pipeline.syncOperations.addHandler(HandshakeClock(done: handshakeDone))
                        }
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw HopFailure(description: "could not connect to \(bareHost):\(port)\(address == bareHost ? "" : " (at \(address))"): \(Self.words(for: error))")
        }
        let connected = NIODeadline.now()
        let timedOut = NIOLockedValueBox(false)
        let timer = channel.channel.eventLoop.scheduleTask(in: timeout) { [underlying = channel.channel] in
            timedOut.withLockedValue { $0 = true }
            underlying.close(promise: nil)
        }
        defer { timer.cancel() }
        let remote = channel.channel.remoteAddress?.ipAddress
        do {
            return try await channel.executeThenClose { inbound, outbound in
                // One write: with `Connection: close` a quick server answers the head and closes
                // before a separate `.end` write could reach the closed channel.
                try await outbound.write(contentsOf: [.head(head), .end(nil)])
                var status = 0
                var headers: [(name: String, value: String)] = []
                var firstByte = NIODeadline.now()
                var body: [UInt8]?
                reading: for try await part in inbound {
                    switch part {
                    case .head(let responseHead):
                        firstByte = NIODeadline.now()
                        status = Int(responseHead.status.code)
                        headers = responseHead.headers.map { ($0.name, $0.value) }
                        guard Self.worthReading(status: status, headers: responseHead.headers) else { break reading }
                        body = []
                    case .body(let chunk):
                        guard var collected = body else { break reading }
                        collected.append(contentsOf: chunk.readableBytesView.prefix(settings.bodyLimit - collected.count))
                        body = collected
                        if collected.count >= settings.bodyLimit { break reading }
                    case .end:
                        break reading
                    }
                }
                guard status != 0 else { throw HopFailure(description: "the server closed the connection without answering") }
                let end = NIODeadline.now()
                let tls = handshakeDone.withLockedValue { $0 }.map(elapsed)
                return HopResponse(
                    status: status, headers: headers, body: body.map { String(decoding: $0, as: UTF8.self) },
                    timing: HopTiming(connect: elapsed(connected), tls: tls, firstByte: elapsed(firstByte), total: elapsed(end)),
                    connectedTo: remote)
            }
        } catch let failure as HopFailure {
            throw failure
        } catch {
            if timedOut.withLockedValue({ $0 }) {
                throw HopFailure(description: "no complete answer from \(bareHost):\(port) within \(settings.timeout.components.seconds) s")
            }
            if isTLS, handshakeDone.withLockedValue({ $0 }) == nil {
                throw HopFailure(description: "TLS handshake with \(bareHost):\(port) failed: \(Self.words(for: error)) (for a private CA use --cacert FILE; --insecure skips verification)")
            }
            throw HopFailure(description: "reading the answer from \(bareHost):\(port) failed: \(Self.words(for: error))")
        }
    }

    /// Bodies are read only where a redirect can hide: HTML that is not already a 3xx with `Location`.
    static func worthReading(status: Int, headers: HTTPHeaders) -> Bool {
        if (300...399).contains(status), headers.contains(name: "location") { return false }
        if let encoding = headers.first(name: "content-encoding"), encoding.lowercased() != "identity" { return false }
        guard let type = headers.first(name: "content-type")?.lowercased() else { return true }
        return type.contains("html")
    }

    static func port(of authority: String, default defaultPort: Int) -> Int? {
        let hostPort = authority.split(separator: "@").last.map(String.init) ?? authority
        let afterBracket = hostPort.lastIndex(of: "]").map { hostPort[hostPort.index(after: $0)...] } ?? Substring(hostPort)
        guard let colon = afterBracket.lastIndex(of: ":") else { return defaultPort }
        let digits = afterBracket[afterBracket.index(after: colon)...]
        if digits.isEmpty { return defaultPort }
        guard let port = Int(digits), (1...65535).contains(port) else { return nil }
        return port
    }

    /// NIO's errors rephrased for people.
    static func words(for error: any Error) -> String {
        switch error {
        case let error as IOError where error.errnoCode == ECONNREFUSED: return "connection refused"
        case let error as IOError where error.errnoCode == ECONNRESET: return "connection reset"
        case is ChannelError where "\(error)".contains("connectTimeout"): return "connect timed out"
        case let error as NIOConnectionError:
            if error.dnsAAAAError != nil || error.dnsAError != nil, error.connectionErrors.isEmpty { return "the name does not resolve" }
            if let first = error.connectionErrors.first { return words(for: first.error) }
            return "\(error)"
        case let error as NIOSSLError:
            let text = "\(error)"
            if text.contains("CERTIFICATE_VERIFY_FAILED") { return "the certificate is not trusted or does not name this host" }
            return text
        default: return "\(error)"
        }
    }
}

/// Notes when the TLS handshake finished, for the hop's timing.
private final class HandshakeClock: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let done: NIOLockedValueBox<NIODeadline?>

    init(done: NIOLockedValueBox<NIODeadline?>) { self.done = done }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event { done.withLockedValue { $0 = NIODeadline.now() } }
        context.fireUserInboundEventTriggered(event)
    }
}
