import ClickID
import Config
import NIOHTTP1

/// Header rules every proxied message goes through, in both directions.
enum HeaderRules {
    /// The fields a proxy passes on: all but RFC 9110 §7.6.1's connection-specific ones, any field
    /// the `Connection` header names (`connection`, as read from the same block), and those
    /// `dropping` picks by name (fields the proxy is about to set itself). The kept fields share
    /// the received block's bytes until one is added.
    static func forwardable(
        _ headers: HeaderFields, connection: ConnectionOptions, dropping: (UnsafeBufferPointer<UInt8>) -> Bool = { _ in false }
    ) -> HeaderFields {
        // Nearly always no option names another field (`keep-alive`, `close`).
        let named = connection.otherFields
        var kept = headers
        // Room for what the proxy adds (forwarding fields, request id, host, the tracking
        // filters'), so the copy made by the first change is the only one.
        kept.reserveCapacity(fields: headers.count + 8)
        kept.removeAll { name, _ in
            ConnectionSpecific.isField(name) || dropping(name)
                || (!named.isEmpty && named.contains { HeaderFields.sameName(name, $0) })
        }
        return kept
    }

    /// The request fields the engine itself reads, found in one pass over the head: each lookup
    /// by name walks every field again, and a request took eight of them.
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

        init(_ headers: HeaderFields) {
            // Strings only for the fields read.
            func text(_ value: UnsafeBufferPointer<UInt8>) -> String { String(decoding: value, as: UTF8.self) }
            headers.forEach { name, value in
                switch name.count {
                case 4 where name.matches("host"):
                    hostCount += 1
                    if host == nil { host = text(value) }
                case 6 where name.matches("expect"): if expect == nil { expect = text(value) }
                case 7 where name.matches("referer"): if referrer == nil { referrer = text(value) }
                case 10 where name.matches("user-agent"): if userAgent == nil { userAgent = text(value) }
                case 10 where name.matches("connection"): connection.read(value)
                case 12 where name.matches("x-request-id"): if requestID == nil { requestID = text(value) }
                case 14 where name.matches("content-length"):
                    contentLengthCount += 1
                    if contentLength == nil { contentLength = text(value) }
                case 17 where name.matches("transfer-encoding"): transferEncodings.append(text(value))
                default: break
                }
            }
        }
    }

    private static let forwardingNames = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"]

    /// Whether a message leaves its connection open (``ConnectionOptions``). NIO's `isKeepAlive`,
    /// for heads its own decoder did not parse, splits every `Connection` value into Characters:
    /// 4,000 instructions a head.
    static func keepsAlive(_ headers: HeaderFields, version: HTTPVersion) -> Bool {
        connectionOptions(headers).keepAlive(in: version)
    }

    /// The block's `Connection` fields, read (``ConnectionOptions``).
    static func connectionOptions(_ headers: HeaderFields) -> ConnectionOptions {
        var options = ConnectionOptions()
        headers.forEach { name, value in
            if name.count == 10, name.matches("connection") { options.read(value) }
        }
        return options
    }

    /// The client a request comes from: the peer itself, unless the peer is a trusted proxy
    /// (`peerTrusted`, decided once per connection); then the right-most X-Forwarded-For address
    /// that is not one of ours.
    static func clientAddress(_ headers: HeaderFields, peer: String, peerTrusted: Bool, trusted: [CIDR]) -> String {
        guard peerTrusted else { return peer }
        let chain = forwardedChain(headers)
        let client = chain.reversed().first(where: { hop in !trusted.contains { $0.contains(hop) } }) ?? chain.first ?? peer
        return IPAddressBytes.parse(client) != nil ? client : peer
    }

    /// Sets X-Forwarded-For/-Proto/-Host and `Forwarded`. Client-sent values survive only when the
    /// peer is a trusted proxy.
    static func applyForwarding(_ headers: inout HeaderFields, peer: String, peerTrusted: Bool, scheme: String, host: String) {
        let element = ForwardedElement(address: peer, scheme: scheme, host: host)
        guard peerTrusted else {
            headers.removeAll { name, _ in forwardingNames.contains { HeaderFields.sameName(name, $0) } }
            // The peer's address as the gateway formatted it, its own scheme, and the Host the
            // parser (or the HTTP/2 codec) checked, written as they are in one append.
            headers.appendCheckedLines(length: element.linesLength) { element.writeLines(to: $0) }
            return
        }
        headers.replaceOrAdd(name: "x-forwarded-for", value: (forwardedChain(headers) + [peer]).joined(separator: ", "))
        if !headers.contains(name: "x-forwarded-proto") { headers.add(name: "x-forwarded-proto", value: scheme) }
        if !headers.contains(name: "x-forwarded-host") { headers.add(name: "x-forwarded-host", value: host) }
        let previous = headers["forwarded"].joined(separator: ", ")
        headers.replaceOrAdd(name: "forwarded", value: previous.isEmpty ? element.text : "\(previous), \(element.text)")
    }

    /// The X-Forwarded-For hops, oldest first.
    private static func forwardedChain(_ headers: HeaderFields) -> [String] {
        headers["x-forwarded-for"].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// One hop's `Forwarded` element (RFC 7239), IPv6 nodes quoted and bracketed. Written
    /// straight into the head on the common path (a string made for it first cost ≈ 1,500
    /// instructions a request).
    struct ForwardedElement: ~Copyable {
        let address: String
        let scheme: String
        let host: String
        private let beforeAddress: StaticString
        private let afterAddress: StaticString
        private static let beforeHost: StaticString = ";host=\""
        private static let afterHost: StaticString = "\""

        init(address: String, scheme: String, host: String) {
            (self.address, self.scheme, self.host) = (address, scheme, host)
            let ipv6 = address.withUTF8Buffer { $0.contains(UInt8(ascii: ":")) }
            beforeAddress = ipv6 ? "for=\"[" : "for="
            afterAddress = ipv6 ? "]\";proto=" : ";proto="
        }

        var length: Int {
            beforeAddress.utf8CodeUnitCount + address.utf8.count + afterAddress.utf8CodeUnitCount + scheme.utf8.count
                + Self.beforeHost.utf8CodeUnitCount + host.utf8.count + Self.afterHost.utf8CodeUnitCount
        }

        /// What goes around the address, scheme, host and element in ``writeLines(to:)``.
        private static let lineParts: [StaticString] = [
            "x-forwarded-for: ", "\r\nx-forwarded-proto: ", "\r\nx-forwarded-host: ", "\r\nforwarded: ", "\r\n",
        ]
        private static let linePartsLength = lineParts.reduce(0) { $0 + $1.utf8CodeUnitCount }

        var linesLength: Int { Self.linePartsLength + address.utf8.count + scheme.utf8.count + host.utf8.count + length }

        /// Writes `X-Forwarded-For/-Proto/-Host` and `Forwarded` as whole lines, CRLF after each
        /// (``linesLength`` bytes): what an untrusted peer's request takes to its origin.
        func writeLines(to out: UnsafeMutablePointer<UInt8>) {
            let parts = Self.lineParts
            var cursor = out
            Self.put(parts[0], &cursor)
            Self.put(address, &cursor)
            Self.put(parts[1], &cursor)
            Self.put(scheme, &cursor)
            Self.put(parts[2], &cursor)
            Self.put(host, &cursor)
            Self.put(parts[3], &cursor)
            writeElement(&cursor)
            Self.put(parts[4], &cursor)
        }

        /// Writes the element (``length`` bytes) at `cursor` and moves it past them.
        private func writeElement(_ cursor: inout UnsafeMutablePointer<UInt8>) {
            Self.put(beforeAddress, &cursor)
            Self.put(address, &cursor)
            Self.put(afterAddress, &cursor)
            Self.put(scheme, &cursor)
            Self.put(Self.beforeHost, &cursor)
            Self.put(host, &cursor)
            Self.put(Self.afterHost, &cursor)
        }

        private static func put(_ text: StaticString, _ cursor: inout UnsafeMutablePointer<UInt8>) {
            text.withUTF8Buffer { copy($0, &cursor) }
        }

        private static func put(_ text: String, _ cursor: inout UnsafeMutablePointer<UInt8>) {
            text.withUTF8Buffer { copy($0, &cursor) }
        }

        private static func copy(_ bytes: UnsafeBufferPointer<UInt8>, _ cursor: inout UnsafeMutablePointer<UInt8>) {
            guard let source = bytes.baseAddress else { return }
            cursor.update(from: source, count: bytes.count)
            cursor += bytes.count
        }

        var text: String {
            String(unsafeUninitializedCapacity: length) { buffer in
                var cursor = buffer.baseAddress!
                writeElement(&cursor)
                return buffer.count
            }
        }
    }

    /// An answer that carries one visitor's click id (a rewritten redirect, a decorated page) must not
    /// be stored by a shared cache and served to others: `private` instead of `public`/`s-maxage`.
    static func keepOutOfSharedCaches(_ headers: inout HeaderFields) {
        // Most redirects carry no Cache-Control: no directives to split, nothing to replace.
        guard headers.contains(name: "cache-control") else {
            headers.appendChecked("cache-control", "private")
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
    static func joinCookieCrumbs(_ headers: inout HeaderFields) {
        let cookies = headers["cookie"]
        guard cookies.count > 1 else { return }
        headers.replaceOrAdd(name: "cookie", value: cookies.joined(separator: "; "))
    }
}
