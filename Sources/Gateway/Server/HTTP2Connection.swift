import NIOCore
import NIOHPACK
import NIOHTTP2

/// The streams of one HTTP/2 connection, after nio-http2's frame handler (run without a stream
/// multiplexer): a table of ``HTTP2Stream``s, each the ``Downstream`` of its own proxy.
///
/// In place of nio-http2's stream channels, which made and tore down a channel, a pipeline and two
/// handlers for every request. What those channels did for us is done here:
/// - request parts wait in their stream while its proxy holds reads back, and the stream's window
///   is given back as the proxy takes them: a paused stream holds at most its window;
/// - the connection's window is given back as frames arrive (the streams' windows bound what waits);
/// - a stream is writable while the connection is and little of its DATA waits in nio-http2's
///   flow-control buffer (``wroteFrame(_:)`` says when frames leave it);
/// - a stream's proxy hears when the connection's read completes, once, and then flushes upstream.
final class HTTP2Connection: ChannelInboundHandler, NIOHTTP2FrameDelegate {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// The window each stream and the connection are kept at: the stream's should be the
    /// connection's SETTINGS_INITIAL_WINDOW_SIZE.
    let targetWindowSize: Int
    /// A stream stops being writable when this much of its DATA waits to be sent, and is writable
    /// again at `outboundLowWatermark` (nio-http2's stream channel defaults).
    let outboundHighWatermark = 8192
    let outboundLowWatermark = 4096

    private var context: ChannelHandlerContext?
    private var streams: [HTTP2StreamID: HTTP2Stream] = [:]
    /// Every stream the peer opened has a higher id than the last (RFC 9113 §5.1.1): a frame for a
    /// lower one that is not in the table is for a stream already gone.
    private var lastStreamID = HTTP2StreamID.rootStream
    /// Streams that received frames in the current read, told when it completes.
    private var streamsRead: [HTTP2Stream] = []
    private let makeReceiver: (HTTP2Stream) -> any RequestReceiver
    private let onRefused: (HTTP2Fields.RequestError) -> Void

    /// - Parameters:
    ///   - makeReceiver: the proxy of a new stream.
    ///   - onRefused: told of each request refused, for the access log.
    init(
        targetWindowSize: Int, makeReceiver: @escaping (HTTP2Stream) -> any RequestReceiver,
        onRefused: @escaping (HTTP2Fields.RequestError) -> Void = { _ in }
    ) {
        self.targetWindowSize = targetWindowSize
        self.makeReceiver = makeReceiver
        self.onRefused = onRefused
    }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        closeAll()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        closeAll()
        context.fireChannelInactive()
    }

    private func closeAll() {
        let open = streams.values
        streams.removeAll()
        for stream in open { stream.closed() }
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let id = frame.streamID
        // The connection's own frames: nio-http2 and the management handler answered them.
        guard id != .rootStream else { return }
        let stream: HTTP2Stream
        if let known = streams[id] {
            stream = known
        } else {
            guard id > lastStreamID, case .headers = frame.payload else { return }
            lastStreamID = id
            stream = HTTP2Stream(id: id, connection: self)
            streams[id] = stream
            stream.receiver = makeReceiver(stream)
        }
        if !stream.inRead {
            stream.inRead = true
            streamsRead.append(stream)
        }
        stream.received(frame.payload)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        for stream in streamsRead {
            stream.inRead = false
            stream.readCompleted()
        }
        streamsRead.removeAll(keepingCapacity: true)
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Types compared before a cast: a failed `as` costs the runtime a few hundred
        // instructions, and every stream brings several of these events.
        let type = ObjectIdentifier(Swift.type(of: event))
        if type == ObjectIdentifier(NIOHTTP2WindowUpdatedEvent.self) {
            windowUpdated(event as! NIOHTTP2WindowUpdatedEvent)
        } else if type == ObjectIdentifier(StreamClosedEvent.self) {
            streams.removeValue(forKey: (event as! StreamClosedEvent).streamID)?.closed()
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func windowUpdated(_ window: NIOHTTP2WindowUpdatedEvent) {
        guard let size = window.inboundWindowSize else { return }
        guard window.streamID == .rootStream else {
            streams[window.streamID]?.inboundWindowChanged(size)
            return
        }
        if let increment = windowIncrement(window: size) {
            write(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment)), promise: nil)
            flush()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        for stream in streams.values { stream.connectionWritabilityChanged(writable) }
        context.fireChannelWritabilityChanged()
    }

    /// A stream's failure (a frame it wrote that nio-http2 refused) stays with the stream; the
    /// rest is the connection's.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let streamError = error as? NIOHTTP2Errors.StreamError {
            streams[streamError.streamID]?.failed(streamError)
            return
        }
        context.fireErrorCaught(error)
    }

    /// How much to give back to a receive window now at `window`, when it is down to half the
    /// target or less (one WINDOW_UPDATE per half window, not one per frame).
    func windowIncrement(window: Int) -> Int? {
        guard window <= targetWindowSize / 2 else { return nil }
        return min(targetWindowSize - window, Int(Int32.max))
    }

    // MARK: Outbound

    /// Told by nio-http2 as each frame leaves its buffers.
    func wroteFrame(_ frame: HTTP2Frame) {
        guard case .data(let data) = frame.payload else { return }
        streams[frame.streamID]?.sent(data.data.readableBytes)
    }

    func write(_ frame: HTTP2Frame, promise: EventLoopPromise<Void>?) {
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        context.write(wrapOutboundOut(frame), promise: promise)
    }

    /// Inside a read, the connection management handler before this one holds the flush back to
    /// the read's end, so what one read produced goes out together.
    func flush() {
        context?.flush()
    }

    /// RST_STREAM for a stream that is still open here, which is then gone.
    func reset(_ stream: HTTP2Stream, _ code: HTTP2ErrorCode) {
        guard streams.removeValue(forKey: stream.id) != nil else { return }
        write(HTTP2Frame(streamID: stream.id, payload: .rstStream(code)), promise: nil)
        flush()
        stream.closed()
    }

    func refused(_ stream: HTTP2Stream, _ error: HTTP2Fields.RequestError) {
        onRefused(error)
        reset(stream, .protocolError)
    }
}

/// One HTTP/2 stream as its proxy sees it: request parts from HEADERS and DATA frames, and the
/// response's parts written back as frames under HTTP/2's field rules (``HTTP2Fields``).
final class HTTP2Stream: Downstream {
    let id: HTTP2StreamID
    private unowned let connection: HTTP2Connection
    /// The stream's proxy; dropped when the stream closes (the proxy holds the stream too).
    var receiver: (any RequestReceiver)?
    fileprivate var inRead = false
    private var isClosed = false

    private enum Reading {
        case head
        /// A HEADERS frame after the head holds the request's trailers.
        case bodyAndTrailers
        /// After a reset, frames already read for the stream reach nothing.
        case nothing
    }
    private var reading = Reading.head
    /// Frames that came while the proxy held reads back.
    private var waiting: CircularBuffer<HTTP2Frame.FramePayload>?
    /// The flow-controlled bytes of the DATA in `waiting`: not given back to the peer yet.
    private var waitingBytes = 0
    /// The receive window as nio-http2 last reported it.
    private var inboundWindow: Int?
    /// The peer sent END_STREAM: no window goes back any more (nio-http2 refuses a WINDOW_UPDATE
    /// for a stream the peer closed).
    private var peerEnded = false

    private var refusal = Refusal()
    /// The last HEADERS or DATA payload of the response, held until the next part or a flush: the
    /// response's end then goes out as END_STREAM on it instead of an empty DATA frame of its own,
    /// as nginx ends its streams.
    private var held: (payload: HTTP2Frame.FramePayload, promise: EventLoopPromise<Void>?)?
    /// Bytes of DATA written and not yet sent by nio-http2 (waiting for the peer's window).
    private var unsentBytes = 0
    private var belowWatermark = true

    init(id: HTTP2StreamID, connection: HTTP2Connection) {
        self.id = id
        self.connection = connection
    }

    // MARK: Request side

    fileprivate func received(_ payload: HTTP2Frame.FramePayload) {
        guard reading != .nothing else { return }
        switch payload {
        case .headers(let headers) where headers.endStream: peerEnded = true
        case .data(let data) where data.endStream: peerEnded = true
        default: break
        }
        if waiting == nil, receiver?.admitsRead() == true {
            return deliver(payload)
        }
        if waiting == nil { waiting = CircularBuffer(initialCapacity: 4) }
        waiting!.append(payload)
        waitingBytes += Self.flowControlledBytes(payload)
    }

    fileprivate func readCompleted() {
        receiver?.receiveComplete()
    }

    /// The proxy takes parts again: what waited goes to it, and the window it held goes back.
    func read() {
        guard waiting != nil else { return }
        var delivered = false
        while let next = waiting?.first, reading != .nothing, receiver?.admitsRead() == true {
            waiting!.removeFirst()
            waitingBytes -= Self.flowControlledBytes(next)
            deliver(next)
            delivered = true
        }
        if waiting?.isEmpty == true { waiting = nil }
        if let inboundWindow { giveBackWindow(inboundWindow) }
        if delivered { receiver?.receiveComplete() }
    }

    fileprivate func inboundWindowChanged(_ window: Int) {
        inboundWindow = window
        giveBackWindow(window)
    }

    /// Bytes still waiting here count as window the peer still has: they go back once delivered.
    private func giveBackWindow(_ window: Int) {
        guard !peerEnded, reading != .nothing, let increment = connection.windowIncrement(window: window + waitingBytes) else { return }
        inboundWindow = window + increment
        connection.write(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: increment)), promise: nil)
        connection.flush()
    }

    private func deliver(_ payload: HTTP2Frame.FramePayload) {
        switch payload {
        case .headers(let block):
            do throws(HTTP2Fields.RequestError) {
                if reading == .bodyAndTrailers {
                    receiver?.receive(.end(try HTTP2Fields.trailers(block.headers)))
                    return
                }
                reading = .bodyAndTrailers
                let head = try HTTP2Fields.requestHead(block.headers, endStream: block.endStream)
                receiver?.receive(.head(head))
            } catch {
                reading = .nothing
                return connection.refused(self, error)
            }
            if block.endStream { receiver?.receive(.end(nil)) }
        case .data(let data):
            guard case .byteBuffer(let bytes) = data.data else { preconditionFailure("a DATA frame read from the network holds bytes") }
            if bytes.readableBytes > 0 { receiver?.receive(.body(bytes)) }
            if data.endStream { receiver?.receive(.end(nil)) }
        default:
            break
        }
    }

    private static func flowControlledBytes(_ payload: HTTP2Frame.FramePayload) -> Int {
        guard case .data(let data) = payload else { return 0 }
        return data.data.readableBytes + (data.paddingBytes.map { $0 + 1 } ?? 0)
    }

    // MARK: Response side

    var isWritable: Bool { belowWatermark && connection.isWritable }

    func write(_ part: ResponsePart, promise: EventLoopPromise<Void>?) {
        guard !isClosed else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        guard !refusal.rejects(promise) else { return }
        switch part {
        case .head(let head):
            var block = HPACKHeaders()
            block.reserveCapacity(head.headers.count + 1)
            block.add(name: ":status", value: String(head.status.code))
            guard HTTP2Fields.addFields(head.headers, to: &block) else { return refuse(promise) }
            hold(.headers(.init(headers: block)), promise: promise)
        case .body(let body):
            hold(.data(.init(data: body)), promise: promise)
        case .end(let trailers?):
            release()
            var block = HPACKHeaders()
            block.reserveCapacity(trailers.count)
            guard HTTP2Fields.addFields(HeaderFields(trailers), to: &block) else { return refuse(promise) }
            send(.headers(.init(headers: block, endStream: true)), promise: promise)
        case .end(nil):
            guard let (payload, heldPromise) = held.take() else {
                return send(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)), promise: promise)
            }
            send(Self.ending(payload), promise: EventLoopPromise.joined(heldPromise, promise))
        }
    }

    /// What is held goes first.
    func flush() {
        release()
        connection.flush()
    }

    func close() {
        connection.reset(self, .cancel)
    }

    private func refuse(_ promise: EventLoopPromise<Void>?) {
        release()
        refusal.refuse(promise)
        receiver?.downstreamFailed(InvalidHeadError())
    }

    private func hold(_ payload: HTTP2Frame.FramePayload, promise: EventLoopPromise<Void>?) {
        release()
        held = (payload, promise)
    }

    private func release() {
        guard let (payload, promise) = held.take() else { return }
        send(payload, promise: promise)
    }

    private func send(_ payload: HTTP2Frame.FramePayload, promise: EventLoopPromise<Void>?) {
        if case .data(let data) = payload {
            unsentBytes += data.data.readableBytes
            if belowWatermark, unsentBytes >= connection.outboundHighWatermark {
                belowWatermark = false
                if connection.isWritable { receiver?.writabilityChanged(isWritable: false) }
            }
        }
        connection.write(HTTP2Frame(streamID: id, payload: payload), promise: promise)
    }

    fileprivate func sent(_ bytes: Int) {
        unsentBytes -= bytes
        if !belowWatermark, unsentBytes <= connection.outboundLowWatermark {
            belowWatermark = true
            if connection.isWritable { receiver?.writabilityChanged(isWritable: true) }
        }
    }

    fileprivate func connectionWritabilityChanged(_ writable: Bool) {
        if belowWatermark { receiver?.writabilityChanged(isWritable: writable) }
    }

    /// `payload` (HEADERS or DATA) with END_STREAM set.
    private static func ending(_ payload: HTTP2Frame.FramePayload) -> HTTP2Frame.FramePayload {
        switch payload {
        case .headers(var headers):
            headers.endStream = true
            return .headers(headers)
        case .data(var data):
            data.endStream = true
            return .data(data)
        default:
            preconditionFailure("only HEADERS and DATA are held")
        }
    }

    // MARK: End

    fileprivate func failed(_ error: any Error) {
        receiver?.downstreamFailed(error)
    }

    /// The stream is gone (both ends closed, reset, or the connection closed).
    fileprivate func closed() {
        guard !isClosed else { return }
        isClosed = true
        reading = .nothing
        waiting = nil
        held.take()?.promise?.fail(ChannelError.ioOnClosedChannel)
        let receiver = self.receiver
        self.receiver = nil
        receiver?.downstreamClosed()
    }
}
