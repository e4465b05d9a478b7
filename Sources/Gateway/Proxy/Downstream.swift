import NIOCore

/// Where one ``ProxyHandler`` reads its requests and writes its responses: an HTTP/1.1 connection
/// (``HTTP1Connection``) or one HTTP/2 stream (``HTTP2Stream``).
///
/// The two talk by calls, not through a channel pipeline: a part through a pipeline is wrapped in
/// `NIOAny` and cast back on the other side (≈ 1,300 instructions a request head), and an HTTP/2
/// stream as a channel of its own cost a channel, a pipeline and two handlers a request.
protocol Downstream: AnyObject {
    /// Whether response bytes written now go out rather than pile up.
    var isWritable: Bool { get }
    /// Writes a response part; fails `promise` once the downstream is closed.
    func write(_ part: ResponsePart, promise: EventLoopPromise<Void>?)
    /// Sends what was written.
    func flush()
    /// Request parts are wanted again, after ``RequestReceiver/admitsRead()`` said no.
    func read()
    /// Ends the connection (HTTP/1.1) or resets the stream (HTTP/2).
    func close()
}

/// What a ``Downstream`` tells its proxy. Every call comes on the downstream's event loop.
protocol RequestReceiver: AnyObject {
    func receive(_ part: RequestPart)
    /// The parts of one network read have all been received.
    func receiveComplete()
    /// Whether more request parts may come now. A no is remembered: the receiver calls
    /// ``Downstream/read()`` once it takes them again.
    func admitsRead() -> Bool
    func writabilityChanged(isWritable: Bool)
    /// The downstream failed; the receiver decides whether to close it.
    func downstreamFailed(_ error: any Error)
    /// The downstream is gone: nothing more arrives, nothing written is sent. Called once.
    func downstreamClosed()
}
