/// A click id the gateway accepted.
public struct CapturedClickID: Sendable, Equatable {
    public var kind: ClickIDKind
    public var value: String

    public init(kind: ClickIDKind, value: String) {
        self.kind = kind
        self.value = value
    }
}

/// What one request's URL and cookies carry.
public struct ClickCapture: Sendable, Equatable {
    /// Ids in the request URL, in registry order.
    public var fromURL: [CapturedClickID] = []
    /// Ids read back from the gateway's own cookies, for those not in the URL.
    public var fromCookies: [CapturedClickID] = []
    /// Parameters present but refused, with why (never written anywhere).
    public var rejected: [(parameter: String, reason: ClickIDValue.Rejection)] = []

    public init() {}

    public static func == (a: ClickCapture, b: ClickCapture) -> Bool {
        a.fromURL == b.fromURL && a.fromCookies == b.fromCookies && a.rejected.map(\.parameter) == b.rejected.map(\.parameter)
            && a.rejected.map(\.reason) == b.rejected.map(\.reason)
    }

    /// Every known id: the URL's, else the cookie's.
    public var all: [CapturedClickID] { fromURL + fromCookies }

    public func value(for parameter: String) -> String? {
        all.first { $0.kind.parameter == parameter }?.value
    }

    public static func scan(query: String?, cookies: RequestCookies, registry: ClickIDRegistry) -> ClickCapture {
        guard let query else { return scan(queryBytes: nil, cookies: cookies, registry: registry) }
        return query.withUTF8Buffer { scan(queryBytes: $0, cookies: cookies, registry: registry) }
    }

    /// What a request target's query (``URLReference/withQuery(of:_:)``) and the cookies carry,
    /// the query read where it lies in the target.
    public static func scan(target: String, cookies: RequestCookies, registry: ClickIDRegistry) -> ClickCapture {
        URLReference.withQuery(of: target) { scan(queryBytes: $0, cookies: cookies, registry: registry) }
    }

    private static func scan(queryBytes: UnsafeBufferPointer<UInt8>?, cookies: RequestCookies, registry: ClickIDRegistry) -> ClickCapture {
        var capture = ClickCapture()
        let kinds = registry.kinds
        // This runs on every request: names are compared as bytes (a string is made only for a
        // name with an escape), and a value is decoded only for a click id's first occurrence.
        var inURL: [(kind: Int, value: String?)] = []
        if let queryBytes {
            for (name, value) in Query.Pieces(queryBytes) {
                let name = Query.RawName(name)
                guard let kind = kinds.firstIndex(where: { name.reads(as: $0.parameter) }), !inURL.contains(where: { $0.kind == kind }) else { continue }
                inURL.append((kind, value.map(Query.percentDecoded) ?? ""))
            }
        }
        inURL.sort { $0.kind < $1.kind }
        for (kind, decoded) in inURL {
            guard let decoded else {
                capture.rejected.append((kinds[kind].parameter, .badEncoding))
                continue
            }
            if let reason = ClickIDValue.check(decoded) {
                capture.rejected.append((kinds[kind].parameter, reason))
            } else {
                capture.fromURL.append(CapturedClickID(kind: kinds[kind], value: decoded))
            }
        }
        guard !cookies.pairs.isEmpty else { return capture }
        for (index, kind) in kinds.enumerated() where !inURL.contains(where: { $0.kind == index }) {
            if let stored = cookies.first(kind.cookieName), let id = kind.id(fromCookieValue: stored) {
                capture.fromCookies.append(CapturedClickID(kind: kind, value: id))
            }
        }
        return capture
    }
}

/// The gateway's own first-party visitor id: 128 random bits as 32 lower-case hex digits.
public enum VisitorID {
    public static func make<G: RandomNumberGenerator>(using generator: inout G) -> String {
        let high = generator.next()
        let low = generator.next()
        return String(unsafeUninitializedCapacity: 32) { buffer in
            high.writeHex(into: UnsafeMutableBufferPointer(rebasing: buffer[0..<16]))
            low.writeHex(into: UnsafeMutableBufferPointer(rebasing: buffer[16..<32]))
            return 32
        }
    }

    public static func isWellFormed(_ text: String) -> Bool {
        text.utf8.count == 32 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}

extension UInt64 {
    /// 16 lower-case hex digits, zero-padded: ids read the same length whatever their value.
    public var fixedWidthHex: String {
        String(unsafeUninitializedCapacity: 16) { buffer in
            writeHex(into: buffer)
            return 16
        }
    }

    /// The 16 digits into the first 16 bytes of `buffer` (a new visitor id per request: no
    /// intermediate strings).
    public func writeHex(into buffer: UnsafeMutableBufferPointer<UInt8>) {
        let digits: StaticString = "0123456789abcdef"
        digits.withUTF8Buffer { digits in
            for i in 0..<16 {
                buffer[i] = digits[Int((self >> UInt64(60 - 4 * i)) & 0xf)]
            }
        }
    }
}
