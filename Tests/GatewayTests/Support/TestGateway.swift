import AsyncHTTPClient
import Config
import Events
import EventsTestSupport
import Foundation
import Gateway
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// Files every test shares: a development CA and a `localhost` certificate made once per run.
enum TestFiles {
    static let directory: String = {
        let dir = NSTemporaryDirectory() + "clickgate-tests-\(getpid())"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try! DevCertificates.ensure(in: dir + "/certs")
        return dir
    }()

    static var certs: String { directory + "/certs" }
    static var caFile: String { certs + "/clickgate-dev-ca.pem" }

    /// A fresh folder for one test's files.
    static func makeScratch(_ name: String) -> String {
        let dir = directory + "/\(name)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A certificate for `names` signed by the test CA, written into `directory`.
    static func certificate(for names: [String], in directory: String) throws -> (cert: String, key: String) {
        let (ca, caKey) = try DevCertificates.loadAuthority(in: certs)
        let issued = try DevCertificates.issueCertificate(dnsNames: names, authority: ca, authorityKey: caKey)
        let paths = (cert: directory + "/\(names[0]).pem", key: directory + "/\(names[0]).key")
        try issued.keyPEM.write(toFile: paths.key, atomically: true, encoding: .utf8)
        try issued.certificatePEM.write(toFile: paths.cert, atomically: true, encoding: .utf8)
        return paths
    }

    /// One site whose events go to `api` as pixel `main` (token from the environment variable
    /// `tokenEnv`), stored in `scratch`.
    static func deliveringYAML(upstream: String, scratch: String, api: FakeEventsAPI, pixelCode: String, tokenEnv: String, linger: String = "100ms") -> String {
        yaml(upstream: upstream, site: "pixel: main", top: """
            events:
              store: sqlite:\(scratch)/events.sqlite
              endpoint: \(api.url)
              linger: \(linger)
              pixels: { main: { pixel_code: \(pixelCode), access_token_env: \(tokenEnv) } }
            """)
    }

    /// A configuration with one site in front of `upstream`, on ephemeral loopback ports, served
    /// with `certificate` (default: the test CA's localhost pair).
    static func yaml(
        upstream: String, hosts: String = "[localhost, 127.0.0.1]", site: String = "", top: String = "", timeouts: String = "", limits: String = "",
        certificate: (cert: String, key: String)? = nil
    ) -> String {
        let pair = certificate ?? (certs + "/localhost.pem", certs + "/localhost.key")
        return """
        listen: { https: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0" }
        tls:
          certificates:
            - { cert: \(pair.cert), key: \(pair.key) }
        sites:
          - hosts: \(hosts)
            upstream: \(upstream)
        \(site.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        \(top)
        timeouts: { shutdown_grace: 5s\(timeouts.isEmpty ? "" : ", " + timeouts) }
        \(limits.isEmpty ? "" : "limits: { \(limits) }")
        """
    }
}

/// A gateway running inside the test process, its access log captured in a file (unless off).
final class TestGateway: Sendable {
    let server: GatewayServer
    let addresses: GatewayServer.Addresses
    let accessLogPath: String
    /// Clicks the proxy handed to the ledger.
    let clicks: BoundedClickQueue
    /// The event store behind the first-party events path.
    let store: SQLiteEventStore

    var httpsPort: Int { addresses.https!.port! }
    var httpPort: Int { addresses.http!.port! }
    var adminPort: Int { addresses.admin!.port! }

    private init(
        server: GatewayServer, addresses: GatewayServer.Addresses, accessLogPath: String, clicks: BoundedClickQueue, store: SQLiteEventStore
    ) {
        self.server = server
        self.addresses = addresses
        self.accessLogPath = accessLogPath
        self.clicks = clicks
        self.store = store
    }

    /// - Parameter wrapStore: lets a test put a fault injector in front of the real store.
    static func start(_ yaml: String, wrapStore: (SQLiteEventStore) -> any EventStore = { $0 }) async throws -> TestGateway {
        let config = try ConfigLoader.load(yaml: yaml)
        let scratch = TestFiles.makeScratch("gateway")
        let store = try SQLiteEventStore(path: scratch + "/events.sqlite")
        let ingestor = EventIngestor(
            store: wrapStore(store), normalizer: EventNormalizer(customEvents: Set(config.events.customEvents), defaultCountryCode: config.events.phoneCountry))
        let accessLogPath = scratch + "/access.log"
        let sink = try LogSink(appendingTo: accessLogPath)
        let clicks = BoundedClickQueue()
        let server = GatewayServer(
            config: config,
            logger: Logger(label: "clickgate") { JSONLogHandler(label: $0, sink: .stderr, level: .warning) },
            // `log.access: off` as `clickgate serve` reads it; any other destination goes to the file.
            accessLog: Logger(label: "clickgate.access") { label in
                config.log.access == .off ? SwiftLogNoOpLogHandler() as any LogHandler : JSONLogHandler(label: label, sink: sink)
            },
            clickSink: clicks, ingestor: ingestor, apiKeys: ["test-key-1"],
            threads: 2)
        let addresses = try await server.start()
        return TestGateway(server: server, addresses: addresses, accessLogPath: accessLogPath, clicks: clicks, store: store)
    }

    func stop() async {
        await server.shutdown()
    }

    /// Access-log lines written so far, decoded.
    func accessLog() -> [[String: String]] {
        let text = (try? String(contentsOfFile: accessLogPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String]
        }
    }

    /// Waits briefly for an access-log line matching `predicate` (lines are written after the response).
    func awaitAccessLine(_ predicate: ([String: String]) -> Bool) async -> [String: String]? {
        for _ in 0..<50 {
            if let line = accessLog().first(where: predicate) { return line }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }
}

/// Runs `body` with an origin and a gateway in front of it, and stops both afterwards.
func withGateway<T>(
    hosts: String = "[localhost, 127.0.0.1]", site: String = "", top: String = "", timeouts: String = "", limits: String = "",
    _ body: (TestGateway, TestOrigin) async throws -> T
) async throws -> T {
    let origin = try await TestOrigin.start()
    let gateway = try await TestGateway.start(
        TestFiles.yaml(upstream: origin.url, hosts: hosts, site: site, top: top, timeouts: timeouts, limits: limits))
    do {
        let result = try await body(gateway, origin)
        await gateway.stop()
        await origin.stop()
        return result
    } catch {
        await gateway.stop()
        await origin.stop()
        throw error
    }
}

enum TestClients {
    /// An AsyncHTTPClient that trusts the test CA and never follows redirects or decompresses.
    /// `connect` covers TCP and the TLS handshake; load tests that share two cores with other gateway
    /// processes give it more room, so a starved handshake is not counted as a gateway failure.
    static func make(http2: Bool, connect: TimeAmount = .seconds(5)) -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(TestFiles.caFile)
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow)
        configuration.httpVersion = http2 ? .automatic : .http1Only
        configuration.timeout = .init(connect: connect, read: .seconds(30))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }
}

extension HTTPClientResponse {
    func bodyText(limit: Int = 1 << 24) async throws -> String {
        String(buffer: try await body.collect(upTo: limit))
    }
}
