import NIOCore
import NIOHTTP1

/// Receives what one upstream connection produces while it is leased for a request.
protocol UpstreamSink: AnyObject {
    /// The head is the sink's alone: its fields change in place, with no copy.
    func upstreamResponseHead(_ head: consuming ResponseHead)
    func upstreamResponseBody(_ body: ByteBuffer)
    func upstreamResponseEnd()
    func upstreamReadComplete()
    func upstreamFailed(_ error: any Error)
    func upstreamWritabilityChanged(isWritable: Bool)
}

/// The last handler of an upstream channel: reads responses (``HTTP1ResponseParser``) and forwards
/// their parts to the leased sink, writes request parts, and holds reads while the client cannot
/// take more.
final class UpstreamConnection: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    /// Requests are written with ``write(_:)``, through the encoder: the pipeline carries bytes.
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    let key: UpstreamKey
    weak var sink: (any UpstreamSink)?
    /// Origins are the operator's own: their heads may be larger than a client's.
    private var parser = HTTP1ResponseParser(maxHeadBytes: 64 * 1024, maxFieldCount: 512, leavingOutConnectionFields: true)
    private let encoder = UpstreamRequestEncoder()
    /// A read that arrives while parts are being delivered leaves its bytes to the loop running.
    private var parsing = false
    private var context: ChannelHandlerContext?
    private var gate = ReadGate()
    /// False once the origin said `Connection: close` or the exchange ended abnormally.
    private(set) var reusable = true
    private(set) var isActive = false
    /// How many requests this connection has carried.
    var requestCount = 0
    /// When the pool last parked it: it expires `upstream_keepalive` later.
    var parkedAt = NIODeadline.uptimeNanoseconds(0)
    var onClose: ((UpstreamConnection) -> Void)?

    init(key: UpstreamKey) {
        self.key = key
    }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        isActive = context.channel.isActive
    }

    func channelActive(context: ChannelHandlerContext) {
        isActive = true
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        parser.receive(unwrapInboundIn(data))
        guard !parsing else { return }
        parsing = true
        defer { parsing = false }
        do {
            while let part = try parser.next() { deliver(part, context: context) }
        } catch {
            errorCaught(context: context, error: error)
        }
    }

    private func deliver(_ part: consuming UpstreamResponsePart, context: ChannelHandlerContext) {
        guard let sink else {
            // A response while nobody asked for one: this connection is out of step for good.
            reusable = false
            context.close(promise: nil)
            return
        }
        switch consume part {
        case .head(let head):
            // A body that runs to the close ends the connection's use too.
            if parser.messageClosesConnection || parser.bodyEndsWithConnection { reusable = false }
            sink.upstreamResponseHead(head)
        case .body(let body):
            sink.upstreamResponseBody(body)
        case .end:
            sink.upstreamResponseEnd()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        sink?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        sink?.upstreamWritabilityChanged(isWritable: context.channel.isWritable)
    }

    func channelInactive(context: ChannelHandlerContext) {
        isActive = false
        reusable = false
        do {
            if let last = try parser.finish() { deliver(last, context: context) }
        } catch {
            sink?.upstreamFailed(error)
            sink = nil
        }
        sink?.upstreamFailed(ChannelError.eof)
        sink = nil
        onClose?(self)
        onClose = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        reusable = false
        sink?.upstreamFailed(error)
        sink = nil
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if gate.admitRead() { context.read() }
    }

    // MARK: Driven by the leasing proxy handler

    func write(_ part: UpstreamRequestPart) {
        guard let context else { return }
        if case .head(let head) = part { parser.answeringHead = head.method == .HEAD }
        encoder.write(part, context: context, promise: nil)
    }

    func flush() {
        guard let context else { return }
        encoder.flush(context: context)
        context.flush()
    }

    func pauseReads() { gate.pause(.partnerBusy) }
    func resumeReads() {
        if gate.resume(.partnerBusy) { context?.read() }
    }

    /// Ends the lease without returning the connection to a pool.
    func abandon() {
        reusable = false
        sink = nil
        context?.close(promise: nil)
    }
}
