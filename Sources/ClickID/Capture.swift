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
        var capture = ClickCapture()
        // Names decoded once, not once per kind: this runs on every request.
        let items = Query.items(query).map { (name: Query.percentDecoded($0.name) ?? String($0.name), value: $0.value) }
        for kind in registry.kinds {
            var found = false
            for item in items where item.name == kind.parameter {
                found = true
                guard let decoded = Query.percentDecoded(item.value ?? "") else {
                    capture.rejected.append((kind.parameter, .badEncoding))
                    break
                }
                if let reason = ClickIDValue.check(decoded) {
                    capture.rejected.append((kind.parameter, reason))
                } else {
                    capture.fromURL.append(CapturedClickID(kind: kind, value: decoded))
                }
                break
            }
            if !found, let stored = cookies.first(kind.cookieName), let id = kind.id(fromCookieValue: stored) {
                capture.fromCookies.append(CapturedClickID(kind: kind, value: id))
            }
        }
        return capture
    }
}

/// The gateway's own first-party visitor id: 128 random bits as 32 lower-case hex digits.
public enum VisitorID {
    public static func make<G: RandomNumberGenerator>(using generator: inout G) -> String {
        let high = UInt64.random(in: .min ... .max, using: &generator)
        let low = UInt64.random(in: .min ... .max, using: &generator)
        return high.fixedWidthHex + low.fixedWidthHex
    }

    public static func isWellFormed(_ text: String) -> Bool {
        text.utf8.count == 32 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}

extension UInt64 {
    /// 16 lower-case hex digits, zero-padded: ids read the same length whatever their value.
    public var fixedWidthHex: String {
        let digits = String(self, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
