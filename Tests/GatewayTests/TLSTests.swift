import AsyncHTTPClient
import Foundation
import Gateway
import NIOCore
import NIOHTTP1
import Testing

@Suite struct TLSTests {
    @Test func alpnSelectsHTTP2AndHTTP1() async throws {
        try await withGateway { gateway, _ in
            for http2 in [true, false] {
                let client = TestClients.make(http2: http2)
                let response = try await client.execute(
                    HTTPClientRequest(url: "https://localhost:\(gateway.httpsPort)/echo"), timeout: .seconds(10))
                #expect(response.status == .ok)
                #expect(response.version == (http2 ? .http2 : .http1_1))
                try await client.shutdown()
            }
            let h2 = try await curl(["--http2", "-o", "/dev/null", "-w", "%{http_version}", "https://localhost:\(gateway.httpsPort)/echo"])
            #expect(h2.stdout == "2")
            let h1 = try await curl(["--http1.1", "-o", "/dev/null", "-w", "%{http_version}", "https://localhost:\(gateway.httpsPort)/echo"])
            #expect(h1.stdout == "1.1")
        }
    }

    @Test func onlyTLS12AndNewerAreAccepted() async throws {
        try await withGateway { gateway, _ in
            let old = try await curl(["--tlsv1.0", "--tls-max", "1.1", "-o", "/dev/null", "https://localhost:\(gateway.httpsPort)/"])
            #expect(old.status != 0)
            for version in ["1.2", "1.3"] {
                let ok = try await curl([
                    "--tlsv\(version)", "--tls-max", version, "-o", "/dev/null", "-w", "%{http_code}", "https://localhost:\(gateway.httpsPort)/echo",
                ])
                #expect(ok.stdout == "200", "TLS \(version): \(ok.stderr)")
            }
            // No cipher without forward secrecy is offered for TLS 1.2.
            let rsaKex = try await curl(["--tlsv1.2", "--tls-max", "1.2", "--ciphers", "AES128-GCM-SHA256", "-o", "/dev/null", "https://localhost:\(gateway.httpsPort)/"])
            #expect(rsaKex.status != 0)
        }
    }

    @Test(arguments: ["--http1.1", "--http2"])
    func connectionsOutliveTheHandshakeTimeout(proto: String) async throws {
        try await withGateway(timeouts: "handshake: 1s") { gateway, _ in
            let url = "https://localhost:\(gateway.httpsPort)/slow/1500"
            let result = try await curl([proto, "-w", " %{http_code}", url, url])
            #expect(result.stdout == "slow 1500 200slow 1500 200", "\(result.stderr)")
        }
    }

    @Test func aClientThatNeverFinishesTheHandshakeIsDropped() async throws {
        try await withGateway(timeouts: "handshake: 1s") { gateway, _ in
            // A TLS record header and nothing more.
            let (_, closed) = try await RawHTTP.exchange(port: gateway.httpsPort, ["\u{16}\u{03}\u{01}"], timeout: .seconds(4))
            #expect(closed)
        }
    }

    @Test func sniPicksTheCertificateForTheRequestedName() async throws {
        let scratch = TestFiles.makeScratch("sni")
        let other = try TestFiles.certificate(for: ["shop.test", "*.shop.test"], in: scratch)
        let origin = try await TestOrigin.start()
        let yaml = TestFiles.yaml(upstream: origin.url)
            .replacingOccurrences(
                of: "    - { cert: \(TestFiles.certs)/localhost.pem, key: \(TestFiles.certs)/localhost.key }",
                with: "    - { cert: \(TestFiles.certs)/localhost.pem, key: \(TestFiles.certs)/localhost.key }\n    - { cert: \(other.cert), key: \(other.key) }")
            .replacingOccurrences(of: "hosts: [localhost, 127.0.0.1]", with: "hosts: [localhost, 127.0.0.1, shop.test, www.shop.test]")
        let gateway = try await TestGateway.start(yaml)
        defer { Task { await gateway.stop(); await origin.stop() } }
        let port = gateway.httpsPort
        for host in ["shop.test", "www.shop.test", "localhost"] {
            // curl verifies the name: it succeeds only when the gateway chose the matching certificate.
            let result = try await curl(["--resolve", "\(host):\(port):127.0.0.1", "-o", "/dev/null", "-w", "%{http_code}", "https://\(host):\(port)/echo"])
            #expect(result.stdout == "200", "\(host): \(result.stderr)")
        }
        // A name no certificate covers gets the default (localhost) certificate, which curl rejects.
        let unknown = try await curl(["--resolve", "nope.test:\(port):127.0.0.1", "-o", "/dev/null", "https://nope.test:\(port)/echo"])
        #expect(unknown.status == 60, "\(unknown.stderr)")
    }
}
