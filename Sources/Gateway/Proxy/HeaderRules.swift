import ClickID
import Config
import NIOHTTP1

/// Header rules every proxied message goes through, in both directions.
enum HeaderRules {
    /// The fields a proxy passes on: all but RFC 9110 §7.6.1's connection-specific ones, any field
    /// the `Connection` header names (`connection`, as read from the same block), and those
    /// `dropping` picks (fields the proxy is about to set itself). Copied into a new block with
    /// room for `room` more fields: removing fields in place copied the received block (the
    /// exchange keeps the request as received), moved fields through generic tuple witnesses, and
    /// copied it again when added fields outgrew it.
    static func forwardable(
        _ headers: HTTPHeaders, connection: ConnectionOptions, room: Int, dropping: (String) -> Bool = { _ in false }
    ) -> HTTPHeaders {
        // Nearly always no option names another field (`keep-alive`, `close`).
        let named = connection.otherFields
        var kept: [(String, String)] = []
        kept.reserveCapacity(headers.count + room)
        for (name, value) in headers where !isHopByHop(name) && !dropping(name) {
            if !named.isEmpty, named.contains(where: { sameName(name, $0) }) { continue }
            kept.append((name, value))
        }
        return HTTPHeaders(kept)
    }

    /// The request fields the engine itself reads, found in one pass over the head: each
    /// `HTTPHeaders` lookup walks every field again, and a request took eight of them.
    struct RequestFields {
        private(set) var hostCount = 0
        private(set) var host: String?
        private(set) var requestID: String?
        private(set) var userAgent: String?
        private(set) var referrer: String?
        private(set) var contentLengthCount = 0
        private(set) var contentLength: String?
        /// Empty, so allocating nothing, for nearly every request.
        private(set) var transferEncodings: [String] = []
        private(set) var expect: String?
        /// Read as the HTTP/1 parser reads it: keep-alive, and the fields it names.
        private(set) var connection = ConnectionOptions()

        init(_ headers: HTTPHeaders) {
            for (name, value) in headers {
                switch name.utf8.count {
                case 4 where sameName(name, "host"):
                    hostCount += 1
                    if host == nil { host = value }
                case 6 where sameName(name, "expect"): if expect == nil { expect = value }
                case 7 where sameName(name, "referer"): if referrer == nil { referrer = value }
                case 10 where sameName(name, "user-agent"): if userAgent == nil { userAgent = value }
                case 10 where sameName(name, "connection"): value.withUTF8Buffer { connection.read($0) }
                case 12 where sameName(name, "x-request-id"): if requestID == nil { requestID = value }
                case 14 where sameName(name, "content-length"):
                    contentLengthCount += 1
                    if contentLength == nil { contentLength = value }
                case 17 where sameName(name, "transfer-encoding"): transferEncodings.append(value)
                default: break
                }
            }
        }
    }

    private static let forwardingNames = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"]

    private static func isHopByHop(_ name: String) -> Bool {
        name.withUTF8Buffer(ConnectionSpecific.isField)
    }

    /// Removes every field `drop` picks, one `remove(name:)` pass per distinct name: cheaper than
    /// re-adding the fields that stay (each `add` re-checks its name). Allocates nothing when
    /// `drop` picks nothing.
    private static func removeFields(from headers: inout HTTPHeaders, where drop: (String) -> Bool) {
        var names: [String] = []
        for (name, _) in headers where drop(name) && !names.contains(where: { sameName(name, $0) }) {
            names.append(name.lowercased())
        }
        for name in names { headers.remove(name: name) }
    }

    /// Whether a field name equals a lower-case one, ignoring the field name's ASCII case. The
    /// length test first: it is O(1) and settles nearly every comparison on the hot path.
    static func sameName(_ name: String, _ lower: String) -> Bool {
        guard name.utf8.count == lower.utf8.count else { return false }
        // A byte loop over the buffers, not `elementsEqual`'s iterators.
        return name.withUTF8Buffer { a in
            lower.withUTF8Buffer { b in
                for i in 0..<a.count where a[i] != b[i] && a[i].asciiLowercased != b[i] { return false }
                return true
            }
        }
    }

    /// Whether a message leaves its connection open (``ConnectionOptions``). NIO's `isKeepAlive`,
    /// for heads its own decoder did not parse, splits every `Connection` value into Characters:
    /// 4,000 instructions a head.
    static func keepsAlive(_ headers: HTTPHeaders, version: HTTPVersion) -> Bool {
        connectionOptions(headers).keepAlive(in: version)
    }

    /// The block's `Connection` fields, read (``ConnectionOptions``).
    static func connectionOptions(_ headers: HTTPHeaders) -> ConnectionOptions {
        var options = ConnectionOptions()
        for (name, value) in headers where name.utf8.count == 10 && sameName(name, "connection") {
            value.withUTF8Buffer { options.read($0) }
        }
        return options
    }

    /// Appends fields as one block. Only for names known to be ASCII (the gateway's constants,
    /// names checked when the configuration loaded): `HTTPHeaders.add(name:value:)` scans each
    /// name again, about 450 instructions a field.
    static func append(_ fields: [(String, String)], to headers: inout HTTPHeaders) {
        guard !fields.isEmpty else { return }
        headers.add(contentsOf: HTTPHeaders(fields))
    }

    /// The client a request comes from: the peer itself, unless the peer is a trusted proxy
    /// (`peerTrusted`, decided once per connection); then the right-most X-Forwarded-For address
    /// that is not one of ours.
    static func clientAddress(_ headers: HTTPHeaders, peer: String, peerTrusted: Bool, trusted: [CIDR]) -> String {
        guard peerTrusted else { return peer }
        let chain = forwardedChain(headers)
        let client = chain.reversed().first(where: { hop in !trusted.contains { $0.contains(hop) } }) ?? chain.first ?? peer
        return IPAddressBytes.parse(client) != nil ? client : peer
    }

    /// Sets X-Forwarded-For/-Proto/-Host and `Forwarded`. Client-sent values survive only when the
    /// peer is a trusted proxy. Fields added rather than replaced go into `added`, for the caller
    /// to append with its own in one block (``append(_:to:)``).
    static func applyForwarding(
        _ headers: inout HTTPHeaders, adding added: inout [(String, String)], peer: String, peerTrusted: Bool, scheme: String, host: String
    ) {
        let element = forwardedElement(for: peer, scheme: scheme, host: host)
        guard peerTrusted else {
            removeFields(from: &headers) { name in forwardingNames.contains { sameName(name, $0) } }
            added.append(("x-forwarded-for", peer))
            added.append(("x-forwarded-proto", scheme))
            added.append(("x-forwarded-host", host))
            added.append(("forwarded", element))
            return
        }
        headers.replaceOrAdd(name: "x-forwarded-for", value: (forwardedChain(headers) + [peer]).joined(separator: ", "))
        if !headers.contains(name: "x-forwarded-proto") { added.append(("x-forwarded-proto", scheme)) }
        if !headers.contains(name: "x-forwarded-host") { added.append(("x-forwarded-host", host)) }
        let previous = headers["forwarded"].joined(separator: ", ")
        headers.replaceOrAdd(name: "forwarded", value: previous.isEmpty ? element : "\(previous), \(element)")
    }

    /// The X-Forwarded-For hops, oldest first.
    private static func forwardedChain(_ headers: HTTPHeaders) -> [String] {
        headers["x-forwarded-for"].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// RFC 7239: IPv6 nodes are quoted and bracketed.
    static func forwardedElement(for address: String, scheme: String, host: String) -> String {
        let ipv6 = address.withUTF8Buffer { $0.contains(UInt8(ascii: ":")) }
        return String(concatenating: ipv6 ? "for=\"[" : "for=", address, ipv6 ? "]\";proto=" : ";proto=", scheme, ";host=\"", host, "\"")
    }

    /// An answer that carries one visitor's click id (a rewritten redirect, a decorated page) must not
    /// be stored by a shared cache and served to others: `private` instead of `public`/`s-maxage`.
    static func keepOutOfSharedCaches(_ headers: inout HTTPHeaders) {
        // Most redirects carry no Cache-Control: no directives to split, nothing to replace.
        guard headers.contains(name: "cache-control") else {
            headers.add(name: "cache-control", value: "private")
            return
        }
        let directives = headers[canonicalForm: "cache-control"]
        guard !directives.contains(where: { ["private", "no-store"].contains($0.lowercased()) }) else { return }
        let kept = directives.filter { directive in
            let name = directive.lowercased()
            return name != "public" && !name.hasPrefix("s-maxage")
        }
        headers.replaceOrAdd(name: "cache-control", value: (["private"] + kept.map(String.init)).joined(separator: ", "))
    }

    /// RFC 9113 §8.2.3: cookie crumbs from HTTP/2 are joined into one field for HTTP/1.1.
    static func joinCookieCrumbs(_ headers: inout HTTPHeaders) {
        let cookies = headers["cookie"]
        guard cookies.count > 1 else { return }
        headers.replaceOrAdd(name: "cookie", value: cookies.joined(separator: "; "))
    }
}
