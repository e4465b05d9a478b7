/// Request cookies as a server reads them: `name=value` pairs split on `;`, malformed pieces skipped.
public struct RequestCookies: Sendable {
    public private(set) var pairs: [(name: String, value: String)] = []

    /// - Parameter headers: every `Cookie` header value of the request (HTTP/2 may send several).
    public init(headers: [String]) {
        for header in headers {
            for piece in header.split(byte: .semicolon) {
                guard let eq = piece.firstIndex(ofByte: .equals) else { continue }
                let name = piece[..<eq].trimmingSpaces
                var value = piece[piece.utf8.index(after: eq)...].trimmingSpaces
                if value.utf8.count >= 2, value.utf8.first == 0x22, value.utf8.last == 0x22 {
                    value = value[value.utf8.index(after: value.startIndex)..<value.utf8.index(before: value.endIndex)]
                }
                guard !name.isEmpty else { continue }
                pairs.append((String(name), String(value)))
            }
        }
    }

    public func first(_ name: String) -> String? {
        pairs.first { $0.name == name }?.value
    }
}

/// A `Set-Cookie` the gateway writes. Callers pass only validated values; the builder refuses
/// anything that could split the header or add an attribute.
public struct SetCookie: Sendable, Equatable {
    public enum SameSite: String, Sendable { case lax = "Lax", strict = "Strict", none = "None" }

    public var name: String
    public var value: String
    public var maxAge: Int
    public var domain: String?
    public var path = "/"
    public var secure = true
    public var httpOnly = false
    public var sameSite = SameSite.lax

    public init(name: String, value: String, maxAge: Int, domain: String? = nil, httpOnly: Bool = false, secure: Bool = true) {
        self.name = name
        self.value = value
        self.maxAge = maxAge
        self.domain = domain
        self.httpOnly = httpOnly
        self.secure = secure
    }

    /// Browsers cap cookie lifetime at 400 days.
    public static let maxLifetime = 400 * 86_400

    /// The header value; nil when a name or value has a byte a cookie may not carry.
    public var headerValue: String? {
        Template(self)?.headerValue(value)
    }

    /// A cookie's name and attributes, checked and written out once: the gateway sets the same
    /// few cookies on most landing requests, and only their values change (rendering all of it
    /// per request cost ≈ 3,400 instructions a cookie). Kept as bytes, so a header value is one
    /// string made in one pass that also checks the value (≈ 1,400 instructions when the parts
    /// were strings joined after a separate check).
    public struct Template: Sendable {
        private let prefix: [UInt8]
        private let suffix: [UInt8]

        /// The template of `cookie` (its value is not used); nil when its name, domain or path
        /// has a byte a cookie may not carry (a path: no control byte and no `;`, RFC 6265 §4.1.1).
        public init?(_ cookie: SetCookie) {
            guard !cookie.name.isEmpty, cookie.name.withUTF8Buffer(ByteClass.token.admits(all:)),
                cookie.domain.map({ $0.utf8.allSatisfy(ByteClass.unreserved.admits) }) ?? true,
                cookie.path.utf8.allSatisfy({ ByteClass.visible.admits($0) && $0 < 0x80 && $0 != UInt8(ascii: ";") })
            else {
                return nil
            }
            prefix = Array((cookie.name + "=").utf8)
            suffix = Array(String(
                concatenating: "; Max-Age=", String(min(cookie.maxAge, SetCookie.maxLifetime)), "; Path=", cookie.path,
                cookie.domain == nil ? "" : "; Domain=", cookie.domain ?? "", cookie.secure ? "; Secure" : "",
                cookie.httpOnly ? "; HttpOnly" : "", "; SameSite=", cookie.sameSite.rawValue).utf8)
        }

        /// The header value carrying `value`; nil when it has a byte a cookie may not carry.
        public func headerValue(_ value: String) -> String? {
            var text: String?
            withHeaderValueWriter(value) { length, write in
                text = String(unsafeUninitializedCapacity: length) { out in
                    write(out.baseAddress!)
                    return length
                }
            }
            return text
        }

        /// Hands `body` the header value carrying `value` as its length and a function that writes
        /// it at a pointer, so a caller can put it straight where it goes (a proxied response sets
        /// two or three cookies, and a string made for each cost ≈ 800 instructions). Not generic:
        /// called from another module, a generic function runs unspecialised. False, and `body` not
        /// called, when `value` has a byte a cookie may not carry. What it writes is a field value
        /// as it may be sent (visible ASCII and inner spaces only), checked here once.
        @discardableResult
        public func withHeaderValueWriter(_ value: String, _ body: (_ length: Int, _ write: (UnsafeMutablePointer<UInt8>) -> Void) -> Void) -> Bool {
            value.withUTF8Buffer { value in
                guard ByteClass.cookieOctet.admits(all: value) else { return false }
                body(prefix.count + value.count + suffix.count) { out in
                    var written = prefix.withUnsafeBufferPointer { UnsafeMutableBufferPointer(start: out, count: $0.count).initialize(fromContentsOf: $0) }
                    written += UnsafeMutableBufferPointer(start: out + written, count: value.count).initialize(fromContentsOf: value)
                    _ = suffix.withUnsafeBufferPointer { UnsafeMutableBufferPointer(start: out + written, count: $0.count).initialize(fromContentsOf: $0) }
                }
                return true
            }
        }
    }
}

/// Whether the visitor lets us set tracking cookies and persist the click.
public struct ConsentPolicy: Sendable, Equatable {
    /// Treat `Sec-GPC: 1` as an objection (the default).
    public var respectGPC: Bool
    /// A consent-manager cookie to read, and the values of it that mean "denied".
    public var cookieName: String?
    public var deniedValues: Set<String>

    public init(respectGPC: Bool = true, cookieName: String? = nil, deniedValues: Set<String> = ["denied", "0", "false", "no"]) {
        self.respectGPC = respectGPC
        self.cookieName = cookieName
        self.deniedValues = deniedValues
    }

    public func allowsTracking(globalPrivacyControl: String?, cookies: RequestCookies) -> Bool {
        if respectGPC, globalPrivacyControl?.trimmingSpaces == "1" { return false }
        if let cookieName, let value = cookies.first(cookieName), deniedValues.contains(value.lowercased()) { return false }
        return true
    }
}
