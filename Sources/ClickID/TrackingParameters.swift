/// What a URL carries for attribution: click ids, campaign parameters, and the mistakes that make
/// them useless (macros the ad platform never filled in, ids in the fragment, broken encoding).
///
/// Pure: used by `clickgate extract` and by every hop of `clickgate trace`.
public struct TrackingParameters: Sendable, Equatable {
    public struct ClickID: Sendable, Equatable {
        public var parameter: String
        public var platform: String
        /// Percent-decoded; the raw text when its encoding is broken.
        public var value: String
        /// Why the gateway would refuse this value; nil when it is usable.
        public var problem: ClickIDValue.Rejection?
        /// The parameters whose values held the URL this was found in (`["u"]` for `?u=https%3A…ttclid…`).
        public var nestedIn: [String]
    }

    public struct Parameter: Sendable, Equatable {
        public var name: String
        public var value: String
        public var nestedIn: [String]
    }

    public var clickIDs: [ClickID] = []
    /// `utm_*` and the ad-structure ids landing pages commonly receive.
    public var campaign: [Parameter] = []
    public var warnings: [String] = []

    public init() {}

    /// Campaign parameters besides `utm_*`.
    public static let campaignNames: Set<String> = [
        "campaign_id", "campaign_name", "adgroup_id", "adgroup_name", "ad_id", "ad_name", "creative_id", "placement",
    ]

    /// How deep `?u=<url>` wrappers are followed.
    static let maxNesting = 3

    public static func inspect(_ url: URLReference, registry: ClickIDRegistry = .standard) -> TrackingParameters {
        var found = TrackingParameters()
        found.collect(url, registry: registry, nestedIn: [])
        return found
    }

    private mutating func collect(_ url: URLReference, registry: ClickIDRegistry, nestedIn: [String]) {
        let place = nestedIn.isEmpty ? "" : " (in the URL inside \(nestedIn.joined(separator: " → ")))"
        var seenValues: [String: String] = [:]
        for item in Query.items(url.query) {
            let name = Query.percentDecoded(item.name) ?? String(item.name)
            let raw = String(item.value ?? "")
            let decoded = Query.percentDecoded(Substring(raw))
            if let kind = registry.kind(forParameter: name) {
                let problem = decoded == nil ? .badEncoding : ClickIDValue.check(decoded!)
                let value = decoded ?? raw
                clickIDs.append(ClickID(parameter: name, platform: kind.platform, value: value, problem: problem, nestedIn: nestedIn))
                if let problem { warnings.append("\(name)\(place) is unusable: \(Self.describe(problem, value: value))") }
                if let earlier = seenValues[name], earlier != value {
                    warnings.append("\(name)\(place) appears twice with different values; servers usually read the first")
                }
                seenValues[name] = seenValues[name] ?? value
                if Self.isUnfilledMacro(value) { warnings.append("\(name)\(place) is the macro \(value): the ad platform did not fill it in") }
                continue
            }
            if name.hasPrefix(bytes: "utm_") || Self.campaignNames.contains(name) {
                let value = decoded ?? raw
                campaign.append(Parameter(name: name, value: value, nestedIn: nestedIn))
                if Self.isUnfilledMacro(value) { warnings.append("\(name)\(place) is the macro \(value): the ad platform did not fill it in") }
                continue
            }
            if nestedIn.count < Self.maxNesting, let decoded, let inner = URLReference(decoded), inner.isWeb, inner.host != nil
            {
                collect(inner, registry: registry, nestedIn: nestedIn + [name])
            }
        }
        if let fragment = url.fragment, fragment.containsByte(.equals) {
            let fragmentQuery = fragment.firstIndex(ofByte: .question).map { String(fragment[fragment.utf8.index(after: $0)...]) } ?? fragment
            for item in Query.items(fragmentQuery) {
                let name = Query.percentDecoded(item.name) ?? String(item.name)
                if registry.kind(forParameter: name) != nil {
                    warnings.append("\(name)\(place) is in the fragment (after #): servers, redirects and the gateway never see it")
                }
            }
        }
    }

    /// `__CAMPAIGN_NAME__` (TikTok), `{{campaign.name}}` (Meta), `{campaignid}` (Google, Microsoft).
    public static func isUnfilledMacro(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard bytes.count >= 3 else { return false }
        if bytes.first == UInt8(ascii: "{"), bytes.last == UInt8(ascii: "}") { return true }
        if bytes.count >= 5, bytes.starts(with: [0x5f, 0x5f]), bytes.reversed().starts(with: [0x5f, 0x5f]) {
            return bytes.allSatisfy { ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5f }
        }
        return false
    }

    static func describe(_ problem: ClickIDValue.Rejection, value: String) -> String {
        switch problem {
        case .empty: return "the value is empty"
        case .tooLong: return "the value is longer than \(ClickIDValue.maxLength) bytes (truncated or corrupted?)"
        case .badCharacter:
            return value.contains("%") ? "it contains '%' (encoded twice somewhere on the way?)" : "it contains characters click ids never have"
        case .badEncoding: return "its percent-encoding is broken"
        }
    }
}
