/// Device classes smartlink rules can route on, from the User-Agent.
public enum DeviceClass: String, Sendable, Equatable, CaseIterable {
    case mobile, tablet, desktop

    public static func classify(userAgent: String?) -> DeviceClass {
        guard let userAgent else { return .desktop }
        // Over the bytes, ignoring ASCII case: `lowercased()` and `String.contains` (Foundation's
        // search) cost ≈ 140,000 instructions for these nine searches.
        return userAgent.withUTF8Buffer { ua in
            let has = { (word: StaticString) in ua.containsIgnoringASCIICase(word) }
            if has("ipad") || has("tablet") || (has("android") && !has("mobile")) { return .tablet }
            if has("mobi") || has("iphone") || has("ipod") || has("android") { return .mobile }
            return .desktop
        }
    }
}

/// One configured destination of a smartlink.
public struct SmartlinkTarget: Sendable, Equatable {
    public var url: String
    public var weight: Int
    /// Only for this device class, when set.
    public var device: DeviceClass?
    /// Only when this request header (lower-cased name) has this value, when set.
    public var header: (name: String, value: String)?

    public init(url: String, weight: Int, device: DeviceClass? = nil, header: (name: String, value: String)? = nil) {
        self.url = url
        self.weight = weight
        self.device = device
        self.header = header
    }

    public static func == (a: SmartlinkTarget, b: SmartlinkTarget) -> Bool {
        a.url == b.url && a.weight == b.weight && a.device == b.device && a.header?.name == b.header?.name
            && a.header?.value == b.header?.value
    }

    var hasRules: Bool { device != nil || header != nil }
}

/// Choosing a smartlink target and building the redirect to it. Targets come only from config:
/// no request parameter can name a destination.
public enum Smartlinks {
    /// Targets whose rules all match; when none does, those without rules. Then a weighted pick
    /// that is stable for one visitor (the same visitor always lands on the same target).
    public static func choose(
        _ targets: [SmartlinkTarget], stickyKey: String, device: DeviceClass, header: (String) -> String?
    ) -> SmartlinkTarget? {
        let matching = targets.filter { target in
            target.hasRules && (target.device.map { $0 == device } ?? true)
                && (target.header.map { header($0.name) == $0.value } ?? true)
        }
        let pool = (matching.isEmpty ? targets.filter { !$0.hasRules } : matching).filter { $0.weight > 0 }
        let total = pool.reduce(0) { $0 + $1.weight }
        guard total > 0 else { return nil }
        var point = Int(fnv1a(stickyKey) % UInt64(total))
        for target in pool {
            if point < target.weight { return target }
            point -= target.weight
        }
        return pool.last
    }

    /// The target with every incoming query parameter it lacks appended (the target's own values
    /// win), in the incoming order, made header-safe.
    public static func redirectURL(target: String, incomingQuery: String?) -> String {
        guard let reference = URLReference(target) else { return target }
        let present = Query.decodedNames(reference.query)
        var seen = present
        var additions: [String] = []
        for item in Query.items(incomingQuery) {
            let name = Query.percentDecoded(item.name) ?? String(item.name)
            guard !seen.contains(name) else { continue }
            seen.insert(name)
            additions.append(Query.sanitizedPiece(item))
        }
        return Query.appending(additions, toQueryOf: target)
    }

    static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }
}
