import NIOCore
import NIOHTTP1

/// A request's head as the gateway reads, filters and writes it: NIO's method and version, our
/// ``HeaderFields``. Plain stored properties: NIO's `HTTPRequestHead` keeps them in a
/// copy-on-write box, one more allocation a head.
public struct RequestHead: Sendable, Equatable {
    public var method: HTTPMethod
    public var uri: String
    public var version: HTTPVersion
    public var headers: HeaderFields

    public init(version: HTTPVersion, method: HTTPMethod, uri: String, headers: HeaderFields = HeaderFields()) {
        self.version = version
        self.method = method
        self.uri = uri
        self.headers = headers
    }
}

/// A response's head as the gateway reads, filters and writes it.
public struct ResponseHead: Sendable, Equatable {
    public var version: HTTPVersion
    public var status: HTTPResponseStatus
    public var headers: HeaderFields

    public init(version: HTTPVersion, status: HTTPResponseStatus, headers: HeaderFields = HeaderFields()) {
        self.version = version
        self.status = status
        self.headers = headers
    }
}

extension HeaderFields {
    /// NIO's trailers as a block, each field checked as it is added.
    init(_ trailers: HTTPHeaders) {
        self.init(reservingBytes: 0, fields: trailers.count)
        for (name, value) in trailers { add(name: name, value: value) }
    }
}

/// The parts of a request as a client sends it (trailers stay NIO's `HTTPHeaders`: rare, and
/// `HTTPPart` fixes their type).
typealias RequestPart = HTTPPart<RequestHead, ByteBuffer>
/// The parts of a response to a client.
typealias ResponsePart = HTTPPart<ResponseHead, IOData>
/// The parts of a request to an origin.
typealias UpstreamRequestPart = HTTPPart<RequestHead, IOData>
/// The parts of an origin's response.
typealias UpstreamResponsePart = HTTPPart<ResponseHead, ByteBuffer>
