import Config
import NIOCore
import NIOHTTP1

/// A filter hooks the named phases of every request, in the order the engine runs them:
///
/// 1. ``request(_:context:)``: may answer directly (smartlinks, event ingest).
/// 2. ``upstreamRequest(_:context:)``: the head that goes to the origin.
/// 3. ``upstreamResponse(_:context:)``: the origin's head, as received (after hop-by-hop removal).
/// 4. ``responseBody(for:context:)``: a transform for the origin's body (the first filter to offer
///    one wins). The transform sees plain bytes: the engine inflates gzip bodies and deflates the
///    result again for clients that accept it, fixes the head to match, and never asks for bodies in
///    codings it cannot read.
/// 5. ``response(_:context:)``: the head that goes to the client (also for local answers).
/// 6. ``logging(_:context:)``: the request is over; fields for the access log line. Runs whether
///    or not the access log is on: filters also finish their own work here (the click ledger).
///
/// The engine knows nothing about click ids: those filters live beside the feature that needs them.
///
/// Filters are classes: the engine walks its filters several times a request, and each step of a
/// walk over a struct's existential copied the struct (a retain per field of it). Every phase
/// takes the context `inout`, also those that only read it: that hands over the exchange's own
/// context, where a borrowed one had to be copied out of the exchange first.
public protocol ProxyFilter: AnyObject, Sendable {
    func request(_ head: RequestHead, context: inout RequestContext) -> RequestDecision
    func upstreamRequest(_ head: inout RequestHead, context: inout RequestContext)
    func upstreamResponse(_ head: inout ResponseHead, context: inout RequestContext)
    func responseBody(for head: ResponseHead, context: inout RequestContext) -> (any ResponseBodyTransform)?
    func response(_ head: inout ResponseHead, context: inout RequestContext)
    func logging(_ fields: inout AccessLogFields, context: inout RequestContext)
}

extension ProxyFilter {
    public func request(_ head: RequestHead, context: inout RequestContext) -> RequestDecision { .proxy }
    public func upstreamRequest(_ head: inout RequestHead, context: inout RequestContext) {}
    public func upstreamResponse(_ head: inout ResponseHead, context: inout RequestContext) {}
    public func responseBody(for head: ResponseHead, context: inout RequestContext) -> (any ResponseBodyTransform)? { nil }
    public func response(_ head: inout ResponseHead, context: inout RequestContext) {}
    public func logging(_ fields: inout AccessLogFields, context: inout RequestContext) {}
}

/// A request's access log line as the logging phase builds it. With the access log off nothing
/// is kept and a value is never computed (values are autoclosures): the line's dozen strings
/// cost a tenth of a small request.
public struct AccessLogFields {
    public let isEnabled: Bool
    public private(set) var values: [String: String] = [:]

    public init(isEnabled: Bool) {
        self.isEnabled = isEnabled
    }

    public mutating func set(_ name: String, _ value: @autoclosure () -> String) {
        if isEnabled { values[name] = value() }
    }
}

/// Rewrites one response body as it streams, on the connection's event loop. A thrown error cuts
/// the client off (the head is already out): a damaged body must not pass for a whole one.
public protocol ResponseBodyTransform: AnyObject {
    /// The bytes to send for `chunk`; may be empty while the transform holds an unfinished piece.
    func transform(_ chunk: ByteBuffer) throws -> ByteBuffer
    /// What is still held when the body ends.
    func finish() throws -> ByteBuffer
}

/// Each phase run over every filter in order, with the context lent once for the whole walk:
/// lent per filter, each loan of the exchange's context (a property of a class) cost a dynamic
/// exclusivity check, about a hundred instructions each.
extension [any ProxyFilter] {
    /// The first decision that is not ``RequestDecision/proxy``; later filters do not run.
    func request(_ head: RequestHead, context: inout RequestContext) -> RequestDecision {
        for filter in self {
            let decision = filter.request(head, context: &context)
            if case .proxy = decision { continue }
            return decision
        }
        return .proxy
    }

    func upstreamRequest(_ head: inout RequestHead, context: inout RequestContext) {
        for filter in self { filter.upstreamRequest(&head, context: &context) }
    }

    func upstreamResponse(_ head: inout ResponseHead, context: inout RequestContext) {
        for filter in self { filter.upstreamResponse(&head, context: &context) }
    }

    /// The first filter's transform.
    func responseBody(for head: ResponseHead, context: inout RequestContext) -> (any ResponseBodyTransform)? {
        for filter in self {
            if let transform = filter.responseBody(for: head, context: &context) { return transform }
        }
        return nil
    }

    func response(_ head: inout ResponseHead, context: inout RequestContext) {
        for filter in self { filter.response(&head, context: &context) }
    }

    func logging(_ fields: inout AccessLogFields, context: inout RequestContext) {
        for filter in self { filter.logging(&fields, context: &context) }
    }
}

/// What the request phase decided.
public enum RequestDecision: Sendable {
    /// Continue to the site's upstream.
    case proxy
    /// Answer now without a body read (the rest of the request body is discarded).
    case respond(LocalResponse)
    /// Read the whole request body (bounded by the site's limit), then let `service` answer.
    case serve(any LocalService)
}

/// A response the gateway writes itself.
public struct LocalResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HeaderFields
    public var body: ByteBuffer

    public init(status: HTTPResponseStatus, headers: HeaderFields = [:], body: ByteBuffer = ByteBuffer()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public init(status: HTTPResponseStatus, contentType: String, body: String) {
        self.init(status: status, headers: ["content-type": contentType], body: ByteBuffer(string: body))
    }
}

/// Answers a request from its complete body; runs off the event loop.
public protocol LocalService: Sendable {
    func handle(head: RequestHead, body: ByteBuffer, context: RequestContext) async -> LocalResponse
}

/// What the gateway knows about one request; filters read it and add their own values.
public struct RequestContext: Sendable {
    public let requestID: RequestID
    /// The address the TCP connection came from.
    public let peerAddress: String
    /// The client, after `trusted_proxies` rules were applied to X-Forwarded-For.
    public internal(set) var clientAddress: String
    /// `https` or `http`, as the client reached the gateway.
    public let scheme: String
    /// `h1` or `h2`.
    public let httpVersion: String
    /// The request's host, lower-cased, without port.
    public internal(set) var host: String
    /// `Host` (`:authority`) as the client sent it, port included.
    public internal(set) var authority: String
    public internal(set) var userAgent: String?
    public internal(set) var referrer: String?
    public internal(set) var site: SiteRoute?
    /// Filter-owned values, keyed by type.
    public var values = ContextValues()

    init(requestID: RequestID, peerAddress: String, scheme: String, httpVersion: String, host: String, authority: String) {
        self.requestID = requestID
        self.peerAddress = peerAddress
        self.clientAddress = peerAddress
        self.scheme = scheme
        self.httpVersion = httpVersion
        self.host = host
        self.authority = authority
    }
}

/// A key for a filter's own value in ``ContextValues``. Values are objects: four phases of a
/// request read them, and copying a struct of some size out of the context on each read cost
/// ≈ 500 instructions (keep per-request state in an immutable final class).
public protocol ContextKey {
    associatedtype Value: AnyObject & Sendable
}

/// Typed storage so filters can share per-request state without the engine knowing its shape.
///
/// Each value is stored under its key's type, so reading it back needs no dynamic cast (`as?`
/// from an existential cost about 800 instructions per read) and no box of its own (one
/// allocation and release a value, ≈ 400 instructions a request). The entries are kept in a short
/// array searched in order: a request holds one or two, and a dictionary's hashing on every read
/// and its generic teardown cost ≈ 2,500 instructions a request.
public struct ContextValues: Sendable {
    private struct Entry: Sendable {
        let key: ObjectIdentifier
        var value: any AnyObject & Sendable
    }

    private var entries: [Entry] = []

    public init() {}

    public subscript<Key: ContextKey>(key: Key.Type) -> Key.Value? {
        get {
            let id = ObjectIdentifier(key)
            for entry in entries where entry.key == id { return unsafeDowncast(entry.value, to: Key.Value.self) }
            return nil
        }
        set {
            let id = ObjectIdentifier(key)
            let index = entries.firstIndex { $0.key == id }
            switch (newValue, index) {
            case (let value?, let index?): entries[index].value = value
            case (let value?, nil): entries.append(Entry(key: id, value: value))
            case (nil, let index?): entries.remove(at: index)
            case (nil, nil): break
            }
        }
    }
}
