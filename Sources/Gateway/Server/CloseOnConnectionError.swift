import Logging
import NIOCore

/// The tail of an HTTP/2 connection pipeline. Stream errors stay with their streams
/// (``HTTP2Connection``); what arrives here is a connection error (a flood the HTTP/2 handler answered with GOAWAY, a
/// protocol violation, a TLS failure), and the connection is closed at once rather than left to
/// idle out.
final class CloseOnConnectionError: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.info("closing an HTTP/2 connection", metadata: [
            "peer": "\(context.channel.remoteAddress?.ipAddress ?? "unknown")", "error": "\(error)",
        ])
        context.close(promise: nil)
    }
}
