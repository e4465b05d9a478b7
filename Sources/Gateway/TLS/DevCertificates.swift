import Config
import Crypto
import Foundation
import SwiftASN1
import X509

/// A local development CA and a `localhost` certificate it signs, made on first start.
///
/// The CA is kept across runs so a browser that trusts it once keeps trusting new leaves.
public enum DevCertificates {
    public struct Paths: Sendable {
        public let directory: String
        public var caCertificate: String { "\(directory)/clickgate-dev-ca.pem" }
        public var caKey: String { "\(directory)/clickgate-dev-ca.key" }
        public var certificate: String { "\(directory)/localhost.pem" }
        public var key: String { "\(directory)/localhost.key" }
        public var pair: GatewayConfig.CertificatePair { .init(certificatePath: certificate, keyPath: key) }

        public init(directory: String) { self.directory = directory }
    }

    /// Host names the leaf certificate covers.
    public static let dnsNames = ["localhost", "*.localhost"]

    /// Makes whatever is missing; returns true when something was written.
    @discardableResult
    public static func ensure(in directory: String, force: Bool = false) throws -> Bool {
        let paths = Paths(directory: directory)
        let files = FileManager.default
        if !force, [paths.caCertificate, paths.caKey, paths.certificate, paths.key].allSatisfy(files.fileExists(atPath:)) {
            return false
        }
        try files.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let (caCert, caKey) = try loadOrCreateAuthority(paths, force: force)
        let leaf = try issueCertificate(
            dnsNames: dnsNames, ipAddresses: [[127, 0, 0, 1], [UInt8](repeating: 0, count: 15) + [1]],
            authority: caCert, authorityKey: caKey)
        try write(leaf.certificatePEM, to: paths.certificate, mode: 0o644)
        try write(leaf.keyPEM, to: paths.key, mode: 0o600)
        return true
    }

    /// Reads the CA that ``ensure(in:force:)`` made.
    public static func loadAuthority(in directory: String) throws -> (Certificate, P256.Signing.PrivateKey) {
        try loadOrCreateAuthority(Paths(directory: directory), force: false)
    }

    /// A server certificate for the given names, signed by `authority`; the PEM chain holds the
    /// leaf then the authority.
    public static func issueCertificate(
        dnsNames: [String], ipAddresses: [[UInt8]] = [], authority: Certificate, authorityKey: P256.Signing.PrivateKey
    ) throws -> (certificatePEM: String, keyPEM: String) {
        let leafKey = P256.Signing.PrivateKey()
        let now = Date()
        let leaf = try Certificate(
            version: .v3,
            serialNumber: .init(),
            publicKey: .init(leafKey.publicKey),
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(365 * 86_400),
            issuer: authority.subject,
            subject: try DistinguishedName { CommonName(dnsNames.first ?? "localhost") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(
                    dnsNames.map { GeneralName.dnsName($0) }
                        + ipAddresses.map { GeneralName.ipAddress(ASN1OctetString(contentBytes: ArraySlice($0))) })
            },
            issuerPrivateKey: .init(authorityKey))
        return (try leaf.serializeAsPEM().pemString + "\n" + authority.serializeAsPEM().pemString + "\n", leafKey.pemRepresentation)
    }

    private static func loadOrCreateAuthority(_ paths: Paths, force: Bool) throws -> (Certificate, P256.Signing.PrivateKey) {
        let files = FileManager.default
        if !force, files.fileExists(atPath: paths.caCertificate), files.fileExists(atPath: paths.caKey) {
            let cert = try Certificate(pemEncoded: String(contentsOfFile: paths.caCertificate, encoding: .utf8))
            let key = try P256.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: paths.caKey, encoding: .utf8))
            return (cert, key)
        }
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName("ClickGate development")
            CommonName("ClickGate development CA")
        }
        let now = Date()
        let cert = try Certificate(
            version: .v3,
            serialNumber: .init(),
            publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(10 * 365 * 86_400),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(key))
        try write(cert.serializeAsPEM().pemString + "\n", to: paths.caCertificate, mode: 0o644)
        try write(key.pemRepresentation, to: paths.caKey, mode: 0o600)
        return (cert, key)
    }

    private static func write(_ text: String, to path: String, mode: Int) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
    }
}
