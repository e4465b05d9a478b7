import Config
import Foundation
import NIOConcurrencyHelpers
import NIOSSL

/// What new connections and new requests use. A reload replaces the generation whole; a request
/// in flight keeps the engine it started with.
final class LiveConfiguration: Sendable {
    struct Generation: Sendable {
        let number: Int
        let loadedAt: Date
        let config: GatewayConfig
        let engine: ProxyEngine
        /// The HTTPS listener's context (certificates are read when a generation is built).
        let tls: NIOSSLContext?
        /// The certificate and key files as they were when this generation read them.
        let certificateFiles: [String]
        let serverEvents: ServerEventsEndpoint?
    }

    private let box: NIOLockedValueBox<Generation>

    init(_ generation: Generation) {
        box = NIOLockedValueBox(generation)
    }

    var current: Generation { box.withLockedValue { $0 } }
    var engine: ProxyEngine { box.withLockedValue { $0.engine } }

    /// Installs `generation`; returns the one it replaced.
    func replace(with generation: Generation) -> Generation {
        box.withLockedValue { current in
            defer { current = generation }
            return current
        }
    }
}
