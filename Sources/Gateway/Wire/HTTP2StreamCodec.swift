import ClickID
import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// One HTTP/2 stream read as HTTP/1-shaped request parts, and its response parts written as
/// HTTP/2 frame payloads: what lets ``ProxyHandler`` serve both protocols.
///
/// In place of NIO's `HTTP2FramePayloadToHTTP1ServerCodec`, for the response side: that codec
/// copies a response's fields twice (into `HTTPHeaders` with `:status`, then into `HPACKHeaders`,
/// lower-casing every name) and lets every field be indexed. `Set-Cookie` carries a visitor's
/// own ids: indexed, each one lands in the connection's dynamic table (RFC 7541 §7.1.3: never
/// index what is worth recovering), pushes the stable fields out, and makes every later field's
/// table search longer. Sent as never-indexed literals, they leave the table to the fields that
/// repeat. Requests are read as NIO's codec reads them, pseudo-fields checked the same way.
final class HTTP2StreamCodec: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// A HEADERS frame after the request's head holds its trailers.
    private var headReceived = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let block):
            if headReceived {
                context.fireChannelRead(wrapInboundOut(.end(Self.regularFields(block.headers))))
                return
            }
            headReceived = true
            do {
                context.fireChannelRead(wrapInboundOut(.head(try Self.requestHead(block.headers, endStream: block.endStream))))
            } catch {
                return context.fireErrorCaught(error)
            }
            if block.endStream { context.fireChannelRead(wrapInboundOut(.end(nil))) }
        case .data(let data):
            guard case .byteBuffer(let bytes) = data.data else { preconditionFailure("a DATA frame read from the network holds bytes") }
            if bytes.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(.body(bytes))) }
            if data.endStream { context.fireChannelRead(wrapInboundOut(.end(nil))) }
        default:
            break
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            var block = HPACKHeaders()
            block.reserveCapacity(head.headers.count + 1)
            block.add(name: ":status", value: String(head.status.code))
            Self.addFields(head.headers, to: &block)
            context.write(wrapOutboundOut(.headers(.init(headers: block))), promise: promise)
        case .body(let body):
            context.write(wrapOutboundOut(.data(.init(data: body))), promise: promise)
        case .end(let trailers?):
            var block = HPACKHeaders()
            block.reserveCapacity(trailers.count)
            Self.addFields(trailers, to: &block)
            context.write(wrapOutboundOut(.headers(.init(headers: block, endStream: true))), promise: promise)
        case .end(nil):
            context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))), promise: promise)
        }
    }

    /// HTTP/2 field names are lower case and carry nothing connection-specific (RFC 9113 §8.2).
    static func addFields(_ fields: HTTPHeaders, to block: inout HPACKHeaders) {
        for (name, value) in fields {
            // One pass over the name's bytes: the string views' own iteration costs several times more.
            let lower: String? = name.withUTF8Buffer { bytes in
                if ConnectionSpecific.isField(bytes), !(bytes.count == 2 && value.withUTF8Buffer { $0.matches("trailers") }) { return nil }
                // Field names are tokens: ASCII.
                return bytes.hasASCIIUppercase ? String(asciiLowercasing: bytes) : name
            }
            guard let lower else { continue }
            let secret = lower.utf8.count == 10 && lower.withUTF8Buffer { $0.matches("set-cookie", ignoringCase: false) }
            block.add(name: lower, value: value, indexing: secret ? .neverIndexed : .indexable)
        }
    }

    enum RequestError: Error, Equatable {
        case missingPseudoField(String)
        case duplicatePseudoField(String)
        case malformedPseudoField(String)
    }

    /// The request head from its HEADERS block: `:method`, `:path`, `:scheme` and `:authority`
    /// once each (`Host` from `:authority` unless the block has one). A body-bearing method
    /// without `Content-Length` is framed as NIO's codec frames it: `content-length: 0` when the
    /// stream already ended, else chunked.
    static func requestHead(_ block: HPACKHeaders, endStream: Bool) throws(RequestError) -> HTTPRequestHead {
        var method: String?
        var path: String?
        var scheme: String?
        var authority: String?
        var hasHost = false
        var hasContentLength = false
        for (name, value, _) in block where name.utf8.first == UInt8(ascii: ":") {
            func take(_ slot: inout String?) throws(RequestError) {
                guard slot == nil else { throw .duplicatePseudoField(name) }
                // A CR, LF or NUL here would end up inside the HTTP/1.1 request line or Host field.
                guard !value.isEmpty, value.withUTF8Buffer(ByteClass.fieldValue.admits(all:)) else { throw .malformedPseudoField(name) }
                slot = value
            }
            switch name {
            case ":method": try take(&method)
            case ":path": try take(&path)
            case ":scheme": try take(&scheme)
            case ":authority": try take(&authority)
            default: continue
            }
        }
        guard let method else { throw .missingPseudoField(":method") }
        guard let path else { throw .missingPseudoField(":path") }
        guard scheme != nil else { throw .missingPseudoField(":scheme") }
        guard let authority else { throw .missingPseudoField(":authority") }
        var fields: [(String, String)] = []
        fields.reserveCapacity(block.count)
        for (name, value, _) in block where name.utf8.first != UInt8(ascii: ":") {
            switch name.utf8.count {
            case 4 where name == "host": hasHost = true
            case 14 where name == "content-length": hasContentLength = true
            default: break
            }
            fields.append((name, value))
        }
        if !hasHost { fields.insert(("host", authority), at: 0) }
        let httpMethod = HTTPMethod(rawValue: method)
        switch httpMethod {
        case .GET, .HEAD, .DELETE, .CONNECT, .TRACE: break
        default:
            if !hasContentLength { fields.append(endStream ? ("content-length", "0") : ("transfer-encoding", "chunked")) }
        }
        return HTTPRequestHead(version: HTTPVersion(major: 2, minor: 0), method: httpMethod, uri: path, headers: HTTPHeaders(fields))
    }

    private static func regularFields(_ block: HPACKHeaders) -> HTTPHeaders {
        var fields: [(String, String)] = []
        fields.reserveCapacity(block.count)
        for (name, value, _) in block where name.utf8.first != UInt8(ascii: ":") { fields.append((name, value)) }
        return HTTPHeaders(fields)
    }
}
