extension GatewayConfig {
    /// What `clickgate serve` runs with no configuration: HTTPS on 8443, HTTP on 8080, the admin
    /// listener on loopback 9090, and every host routed to the built-in demo origin.
    public static func embeddedDefault(certificate: CertificatePair) -> GatewayConfig {
        GatewayConfig(
            listen: Listen(
                https: HostPort(host: "0.0.0.0", port: 8443),
                http: HostPort(host: "0.0.0.0", port: 8080),
                admin: HostPort(host: "127.0.0.1", port: 9090)),
            tls: TLS(certificates: [certificate]),
            unknownHost: .defaultSite,
            sites: [
                Site(hosts: ["localhost", "127.0.0.1", "[::1]"], upstream: .builtinDemo, isDefault: true)
            ])
    }
}
