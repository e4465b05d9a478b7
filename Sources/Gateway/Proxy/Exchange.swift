import NIOCore
import NIOHTTP1

/// One request/response pair in flight on a downstream channel.
final class Exchange {
    enum Mode {
        /// Request body goes upstream.
        case proxying
        /// Request body is collected for a local service.
        case collecting(any LocalService)
        /// A local answer was given; the rest of the request body is read and dropped.
        case discarding
    }

    var context: RequestContext
    let requestHead: RequestHead
    let startedAt = NIODeadline.now()
    var mode: Mode = .proxying

    var upstreamHead: RequestHead?
    var upstream: UpstreamConnection?
    /// Request parts that arrived before the upstream connection was ready.
    var pending: [UpstreamRequestPart] = []
    var collected = ByteBuffer()
    var upstreamNeedsFlush = false
    var reusedConnection = false
    var retried = false
    var connectedAt: NIODeadline?
    var responseHeadAt: NIODeadline?

    var requestEnded = false
    var requestBodyBytes = 0
    var responseHeadSent = false
    var responseEnded = false
    var responseBodyBytes = 0
    var bodyTransform: (any ResponseBodyTransform)?
    var status: HTTPResponseStatus?
    var keepAlive: Bool
    var downstreamNeedsFlush = false
    var error: String?

    /// - Parameter connection: the request's `Connection` fields, read.
    init(context: RequestContext, head: RequestHead, connection: ConnectionOptions) {
        self.context = context
        self.requestHead = head
        // NIO calls no HTTP/2 request keep-alive (its rule reads HTTP/1 headers); an HTTP/2 stream
        // ends by itself, and closing it early resets it.
        self.keepAlive = head.version.major == 2 || connection.keepAlive(in: head.version)
    }
}
