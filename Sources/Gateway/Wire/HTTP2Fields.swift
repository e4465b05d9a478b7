import ClickID
import NIOHPACK
import NIOHTTP1

/// HTTP/2's field rules, kept in the pass that converts a block to our request head or our
/// response head to a block (``HTTP2Stream``).
///
/// nio-http2's header-block validation is switched off for the connection: it checked every block
/// again (≈ 25,000 instructions a response, for fields our own parser and filters made) and could
/// not be kept for requests alone. A request that breaks these rules resets its stream with
/// PROTOCOL_ERROR (RFC 9113 §8.1.1) and reaches no filter; a response field that may not be sent
/// fails the write, as the HTTP/1 encoder's refusal does.
///
/// `Set-Cookie` goes out never indexed: it carries a visitor's own ids, and indexed, each one
/// lands in the connection's dynamic table (RFC 7541 §7.1.3: never index what is worth
/// recovering), pushes the stable fields out, and makes every later field's table search longer.
enum HTTP2Fields {
    /// HTTP/2 field names are lower case and carry nothing connection-specific (RFC 9113 §8.2).
    /// False when a field may not be sent at all: a name that is not a token, a control byte in
    /// a value.
    static func addFields(_ fields: HeaderFields, to block: inout HPACKHeaders) -> Bool {
        // The block's names are tokens and its values hold no control byte unless it is unwritable.
        guard fields.isWritable else { return false }
        fields.forEach { name, value in
            if ConnectionSpecific.isField(name), !(name.count == 2 && value.matches("trailers")) { return }
            let secret = name.count == 10 && name.matches("set-cookie")
            block.add(name: lowercased(name), value: String(decoding: value, as: UTF8.self), indexing: secret ? .neverIndexed : .indexable)
        }
        return true
    }

    /// A field name in lower case, the ones nearly every response carries as literals: making
    /// a string of each name cost ≈ 200 instructions, nine names a response.
    static func lowercased(_ name: UnsafeBufferPointer<UInt8>) -> String {
        switch name.count {
        case 4:
            if name.matches("date") { return "date" }
            if name.matches("etag") { return "etag" }
            if name.matches("vary") { return "vary" }
        case 6: if name.matches("server") { return "server" }
        case 8: if name.matches("location") { return "location" }
        case 10: if name.matches("set-cookie") { return "set-cookie" }
        case 12: if name.matches("content-type") { return "content-type" }
        case 13:
            if name.matches("last-modified") { return "last-modified" }
            if name.matches("cache-control") { return "cache-control" }
            if name.matches("accept-ranges") { return "accept-ranges" }
        case 14: if name.matches("content-length") { return "content-length" }
        case 16: if name.matches("content-encoding") { return "content-encoding" }
        default: break
        }
        return name.hasASCIIUppercase ? String(asciiLowercasing: name)! : String(decoding: name, as: UTF8.self)
    }

    /// Why a request's block is malformed (RFC 9113 §8.1.1, §8.2, §8.3).
    enum RequestError: Error, Equatable, CustomStringConvertible {
        case missingPseudoField(String)
        case duplicatePseudoField(String)
        case malformedPseudoField(String)
        case unknownPseudoField(String)
        /// After a regular field, or among trailers.
        case misplacedPseudoField(String)
        case malformedFieldName(String)
        case malformedFieldValue(String)
        case connectionSpecificField(String)

        var description: String {
            switch self {
            case .missingPseudoField(let name): "no \(name)"
            case .duplicatePseudoField(let name): "\(name) twice"
            case .malformedPseudoField(let name): "\(name) empty or with a control byte or space"
            case .unknownPseudoField(let name): "\(name) is not a request pseudo-field"
            case .misplacedPseudoField(let name): "\(name) after a regular field"
            case .malformedFieldName(let name): "field name \(name.debugDescription) is not a lower-case token"
            case .malformedFieldValue(let name): "a control byte in \(name)"
            case .connectionSpecificField(let name): "connection-specific field \(name)"
            }
        }
    }

    /// The request head from its HEADERS block: `:method`, `:path`, `:scheme` and `:authority`
    /// once each, before any regular field (`Host` from `:authority` unless the block has one).
    /// A body-bearing method without `Content-Length` is framed as NIO's codec frames it:
    /// `content-length: 0` when the stream already ended, else chunked.
    static func requestHead(_ block: HPACKHeaders, endStream: Bool) throws(RequestError) -> RequestHead {
        var method: String?
        var path: String?
        var scheme: String?
        var authority: String?
        var hasHost = false
        var hasContentLength = false
        var fields = HeaderFields(reservingBytes: 512, fields: block.count + 1)
        for (name, value, _) in block {
            guard name.utf8.first == UInt8(ascii: ":") else {
                try checkRegularField(name, value)
                switch name.utf8.count {
                case 4 where name == "host": hasHost = true
                case 14 where name == "content-length": hasContentLength = true
                default: break
                }
                fields.appendChecked(name, value)
                continue
            }
            guard fields.isEmpty else { throw .misplacedPseudoField(name) }
            func take(_ slot: inout String?) throws(RequestError) {
                guard slot == nil else { throw .duplicatePseudoField(name) }
                // A space or control byte here would end up inside the HTTP/1.1 request line or Host field.
                guard !value.isEmpty, value.withUTF8Buffer(ByteClass.visible.admits(all:)) else { throw .malformedPseudoField(name) }
                slot = value
            }
            switch name {
            case ":method": try take(&method)
            case ":path": try take(&path)
            case ":scheme": try take(&scheme)
            case ":authority": try take(&authority)
            default: throw .unknownPseudoField(name)
            }
        }
        guard let method else { throw .missingPseudoField(":method") }
        guard let path else { throw .missingPseudoField(":path") }
        guard scheme != nil else { throw .missingPseudoField(":scheme") }
        guard let authority else { throw .missingPseudoField(":authority") }
        // Host first, as a client would have sent it.
        if !hasHost { fields.prependChecked("host", authority) }
        let httpMethod = HTTPMethod(rawValue: method)
        switch httpMethod {
        case .GET, .HEAD, .DELETE, .CONNECT, .TRACE: break
        default:
            if !hasContentLength {
                if endStream { fields.appendChecked("content-length", "0") } else { fields.appendChecked("transfer-encoding", "chunked") }
            }
        }
        return RequestHead(version: HTTPVersion(major: 2, minor: 0), method: httpMethod, uri: path, headers: fields)
    }

    static func trailers(_ block: HPACKHeaders) throws(RequestError) -> HTTPHeaders {
        var fields: [(String, String)] = []
        fields.reserveCapacity(block.count)
        for (name, value, _) in block {
            guard name.utf8.first != UInt8(ascii: ":") else { throw .misplacedPseudoField(name) }
            try checkRegularField(name, value)
            fields.append((name, value))
        }
        return HTTPHeaders(fields)
    }

    /// A lower-case token for a name; no control byte in the value (RFC 9113 §8.2.1 names CR, LF
    /// and NUL; the others are refused as the HTTP/1 parser refuses them); nothing
    /// connection-specific but `te: trailers` (§8.2.2). That list is RFC 9113's, narrower than
    /// the hop-by-hop fields a proxy leaves out (``ConnectionSpecific/isField(_:)``): a request
    /// with `Proxy-Authorization` or `Trailer` is not malformed.
    private static func checkRegularField(_ name: String, _ value: String) throws(RequestError) {
        let forbidden: Bool? = name.withUTF8Buffer { bytes in
            guard !bytes.isEmpty, ByteClass.lowercaseToken.admits(all: bytes) else { return nil }
            switch bytes.count {
            case 2: return bytes.matches("te") && !value.withUTF8Buffer { $0.matches("trailers", ignoringCase: false) }
            case 7: return bytes.matches("upgrade")
            case 10: return bytes.matches("connection") || bytes.matches("keep-alive")
            case 16: return bytes.matches("proxy-connection")
            case 17: return bytes.matches("transfer-encoding")
            default: return false
            }
        }
        guard let forbidden else { throw .malformedFieldName(name) }
        guard !forbidden else { throw .connectionSpecificField(name) }
        guard value.withUTF8Buffer(ByteClass.fieldValue.admits(all:)) else { throw .malformedFieldValue(name) }
    }
}
