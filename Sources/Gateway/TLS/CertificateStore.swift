import Config
import Foundation
import NIOCore
import NIOSSL
import X509

/// Certificates loaded once at start, and the server-side TLS context built from them.
///
/// One `NIOSSLContext` serves every connection (building one costs thousands of allocations and
/// disk reads). With more than one certificate, the SNI name picks the pair during the handshake
/// through `sslContextCallback`, matched against each certificate's SAN DNS names.
public final class CertificateStore: Sendable {
    public struct Entry: Sendable {
        /// Lower-cased SAN DNS names; `*.example.com` matches one label.
        public let names: [String]
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
    }

    public let entries: [Entry]

    public init(pairs: [GatewayConfig.CertificatePair]) throws {
        precondition(!pairs.isEmpty, "the config loader guarantees at least one certificate")
        entries = try pairs.map { pair in
            let chain = try NIOSSLCertificate.fromPEMFile(pair.certificatePath)
            guard !chain.isEmpty else { throw TLSSetupError("\(pair.certificatePath) holds no certificate") }
            let key = try NIOSSLPrivateKey(file: pair.keyPath, format: .pem)
            let leaf = try X509.Certificate(derEncoded: try chain[0].toDERBytes())
            var names: [String] = []
            if let sans = try leaf.extensions.subjectAlternativeNames {
                for case .dnsName(let name) in sans { names.append(name.lowercased()) }
            }
            return Entry(names: names, chain: chain, key: key)
        }
    }

    /// The certificate for `serverName`: an exact SAN match, then a wildcard match, then the default (first).
    public func entry(forServerName serverName: String?) -> Entry {
        guard let name = serverName?.lowercased(), entries.count > 1 else { return entries[0] }
        if let exact = entries.first(where: { $0.names.contains(name) }) { return exact }
        if let dot = name.firstIndex(of: ".") {
            let wildcard = "*" + name[dot...]
            if let match = entries.first(where: { $0.names.contains(wildcard) }) { return match }
        }
        return entries[0]
    }

    /// TLS 1.2 and 1.3 only, ECDHE with AEAD ciphers only (forward secrecy), ALPN h2 then http/1.1.
    public func makeServerContext(alpn: [String] = ["h2", "http/1.1"]) throws -> NIOSSLContext {
        let fallback = entries[0]
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: fallback.chain.map { .certificate($0) },
            privateKey: .privateKey(fallback.key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.maximumTLSVersion = .tlsv13
        configuration.cipherSuites = [
            "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
        ].joined(separator: ":")
        configuration.applicationProtocols = alpn
        // How long a close waits for the client's close_notify (swift-nio-ssl's default: 5 s). nginx
        // does not wait at all; a client flooding the connection that was just closed for it never
        // answers, and would hold the socket for the whole wait.
        configuration.shutdownTimeout = .seconds(1)
        if entries.count > 1 {
            configuration.sslContextCallback = { [self] values, promise in
                let chosen = self.entry(forServerName: values.serverHostname)
                var override = NIOSSLContextConfigurationOverride()
                override.certificateChain = chosen.chain.map { .certificate($0) }
                override.privateKey = .privateKey(chosen.key)
                promise.succeed(override)
            }
        }
        return try NIOSSLContext(configuration: configuration)
    }
}

public struct TLSSetupError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
