/// One platform's click id: the query parameter ads append and the first-party cookie that keeps it.
public struct ClickIDKind: Sendable, Equatable {
    /// How the cookie value is built from the id (the form each platform's own script reads).
    public enum CookieFormat: String, Sendable, Equatable, CaseIterable {
        /// The id as received (TikTok's Pixel reads `ttclid` like this).
        case raw
        /// Meta's `_fbc`: `fb.1.<unix ms>.<fbclid>`.
        case fbc
        /// Google's `_gcl_aw` family: `GCL.<unix s>.<id>`.
        case gcl
        /// Microsoft UET's `_uetmsclkid`: `_uet<msclkid>`.
        case uet
    }

    public var parameter: String
    public var platform: String
    public var cookieName: String
    public var format: CookieFormat
    /// Cookie lifetime in seconds.
    public var maxAge: Int

    public init(parameter: String, platform: String, cookieName: String, format: CookieFormat, maxAge: Int) {
        self.parameter = parameter
        self.platform = platform
        self.cookieName = cookieName
        self.format = format
        self.maxAge = maxAge
    }

    public func cookieValue(for id: String, unixMilliseconds now: Int64) -> String {
        switch format {
        case .raw: return id
        case .fbc: return "fb.1.\(now).\(id)"
        case .gcl: return "GCL.\(now / 1000).\(id)"
        case .uet: return "_uet\(id)"
        }
    }

    /// The id back out of a cookie value this kind wrote; nil when the value has another shape.
    public func id(fromCookieValue value: String) -> String? {
        let id: Substring
        switch format {
        case .raw: id = Substring(value)
        case .fbc:
            let parts = value.split(separator: ".", maxSplits: 3, omittingEmptySubsequences: false)
            guard parts.count == 4, parts[0] == "fb" else { return nil }
            id = parts[3]
        case .gcl:
            let parts = value.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, parts[0] == "GCL" else { return nil }
            id = parts[2]
        case .uet:
            guard value.hasPrefix("_uet") else { return nil }
            id = value.dropFirst(4)
        }
        return ClickIDValue.isAcceptable(id) ? String(id) : nil
    }
}

/// The click ids the gateway knows; extended or overridden from config (`tracking.click_ids`).
public struct ClickIDRegistry: Sendable, Equatable {
    public private(set) var kinds: [ClickIDKind]

    public init(kinds: [ClickIDKind]) {
        self.kinds = kinds
    }

    static let day = 86_400

    /// TikTok first; then the other platforms whose ids arrive the same way.
    public static let standard = ClickIDRegistry(kinds: [
        ClickIDKind(parameter: "ttclid", platform: "tiktok", cookieName: "ttclid", format: .raw, maxAge: 30 * day),
        ClickIDKind(parameter: "fbclid", platform: "meta", cookieName: "_fbc", format: .fbc, maxAge: 90 * day),
        ClickIDKind(parameter: "gclid", platform: "google", cookieName: "_gcl_aw", format: .gcl, maxAge: 90 * day),
        ClickIDKind(parameter: "gbraid", platform: "google", cookieName: "_gcl_gb", format: .gcl, maxAge: 90 * day),
        ClickIDKind(parameter: "wbraid", platform: "google", cookieName: "_gcl_wb", format: .gcl, maxAge: 90 * day),
        ClickIDKind(parameter: "msclkid", platform: "microsoft", cookieName: "_uetmsclkid", format: .uet, maxAge: 90 * day),
        ClickIDKind(parameter: "twclid", platform: "x", cookieName: "_twclid", format: .raw, maxAge: 30 * day),
        ClickIDKind(parameter: "li_fat_id", platform: "linkedin", cookieName: "li_fat_id", format: .raw, maxAge: 30 * day),
        ClickIDKind(parameter: "ScCid", platform: "snapchat", cookieName: "_scclid", format: .raw, maxAge: 30 * day),
        ClickIDKind(parameter: "epik", platform: "pinterest", cookieName: "_epik", format: .raw, maxAge: 365 * day),
    ])

    /// Replaces the entry with the same parameter, or adds a new one at the end.
    public mutating func set(_ kind: ClickIDKind) {
        if let i = kinds.firstIndex(where: { $0.parameter == kind.parameter }) { kinds[i] = kind } else { kinds.append(kind) }
    }

    public func kind(forParameter parameter: String) -> ClickIDKind? {
        kinds.first { $0.parameter == parameter }
    }

    public func kind(forCookie name: String) -> ClickIDKind? {
        kinds.first { $0.cookieName == name }
    }
}

/// What a click id may look like before the gateway writes it into a cookie or a URL.
public enum ClickIDValue {
    public static let maxLength = 1024

    public enum Rejection: String, Sendable, Equatable {
        case empty, tooLong = "too_long", badCharacter = "bad_character", badEncoding = "bad_encoding"
    }

    /// `A-Z a-z 0-9 . _ - ~`, 1 to 1,024 characters: safe in a URL, a cookie and a header alike.
    public static func isAcceptable<S: StringProtocol>(_ value: S) -> Bool {
        check(value) == nil
    }

    public static func check<S: StringProtocol>(_ value: S) -> Rejection? {
        if value.isEmpty { return .empty }
        if value.utf8.count > maxLength { return .tooLong }
        // Asked of every captured and carried id: the bytes in place where the string has them
        // (a byte loop over a generic `UTF8View` cost ≈ 30 instructions a byte).
        let unreserved = value.utf8.withContiguousStorageIfAvailable { ByteClass.unreserved.admits(all: $0) }
            ?? value.utf8.allSatisfy(ByteClass.unreserved.admits)
        return unreserved ? nil : .badCharacter
    }
}
