import Foundation

/// An event ready for the outbox: validated, PII hashed, enriched, with a string `event_id`.
public struct NormalizedEvent: Sendable, Equatable {
    public struct User: Sendable, Equatable {
        public var ttclid: String?
        public var ttp: String?
        /// SHA-256 hex digests only.
        public var email: [String]?
        public var phone: [String]?
        public var externalID: [String]?
        public var ip: String?
        public var userAgent: String?
        public var locale: String?

        public init() {}
    }

    public struct Page: Sendable, Equatable {
        public var url: String?
        public var referrer: String?

        public init(url: String? = nil, referrer: String? = nil) {
            self.url = url
            self.referrer = referrer
        }
    }

    public var event: String
    public var eventID: String
    /// Unix seconds.
    public var eventTime: Int64
    public var user: User
    public var properties: [String: JSONValue]
    public var page: Page?
    public var limitedDataUse: Bool
    /// The gateway's visitor id, when known: joins the click ledger.
    public var visitorID: String?

    public init(
        event: String, eventID: String, eventTime: Int64, user: User = User(), properties: [String: JSONValue] = [:], page: Page? = nil,
        limitedDataUse: Bool = false, visitorID: String? = nil
    ) {
        self.event = event
        self.eventID = eventID
        self.eventTime = eventTime
        self.user = user
        self.properties = properties
        self.page = page
        self.limitedDataUse = limitedDataUse
        self.visitorID = visitorID
    }

    /// How the outbox keeps the event: the API payload plus the visitor id.
    public var storageJSON: JSONValue {
        guard case .object(var object) = apiPayload else { return apiPayload }
        if let visitorID { object["visitor_id"] = .string(visitorID) }
        return .object(object)
    }

    /// Back from ``storageJSON``; nil when the stored bytes are not an event.
    public init?(storage: JSONValue) {
        guard case .string(let event)? = storage["event"], case .string(let eventID)? = storage["event_id"],
            case .number(let stored)? = storage["event_time"], let time = Int64(exactly: stored.rounded(.towardZero))
        else { return nil }
        func strings(_ value: JSONValue?) -> [String]? {
            guard case .array(let items)? = value else { return nil }
            return items.compactMap(\.stringValue)
        }
        let u = storage["user"]
        var user = User()
        user.ttclid = u?["ttclid"]?.stringValue
        user.ttp = u?["ttp"]?.stringValue
        user.email = strings(u?["email"])
        user.phone = strings(u?["phone"])
        user.externalID = strings(u?["external_id"])
        user.ip = u?["ip"]?.stringValue
        user.userAgent = u?["user_agent"]?.stringValue
        user.locale = u?["locale"]?.stringValue
        var properties: [String: JSONValue] = [:]
        if case .object(let p)? = storage["properties"] { properties = p }
        var page: Page?
        if let p = storage["page"] { page = Page(url: p["url"]?.stringValue, referrer: p["referrer"]?.stringValue) }
        self.init(
            event: event, eventID: eventID, eventTime: time, user: user, properties: properties, page: page,
            limitedDataUse: storage["limited_data_use"] == .bool(true), visitorID: storage["visitor_id"]?.stringValue)
    }

    /// The `data[]` element of an Events API v1.3 request.
    public var apiPayload: JSONValue {
        var user: [String: JSONValue] = [:]
        if let v = self.user.ttclid { user["ttclid"] = .string(v) }
        if let v = self.user.ttp { user["ttp"] = .string(v) }
        if let v = self.user.email { user["email"] = .array(v.map(JSONValue.string)) }
        if let v = self.user.phone { user["phone"] = .array(v.map(JSONValue.string)) }
        if let v = self.user.externalID { user["external_id"] = .array(v.map(JSONValue.string)) }
        if let v = self.user.ip { user["ip"] = .string(v) }
        if let v = self.user.userAgent { user["user_agent"] = .string(v) }
        if let v = self.user.locale { user["locale"] = .string(v) }
        var object: [String: JSONValue] = [
            "event": .string(event), "event_id": .string(eventID), "event_time": .number(Double(eventTime)),
            "user": .object(user), "properties": .object(properties), "limited_data_use": .bool(limitedDataUse),
        ]
        if let page {
            var p: [String: JSONValue] = [:]
            if let url = page.url { p["url"] = .string(url) }
            if let referrer = page.referrer { p["referrer"] = .string(referrer) }
            object["page"] = .object(p)
        }
        return .object(object)
    }
}

/// What the gateway knows about the request that carried an event; fills only what the event lacks.
public struct EventEnrichment: Sendable, Equatable {
    public var ttclid: String?
    public var ttp: String?
    public var ip: String?
    public var userAgent: String?
    public var pageURL: String?
    public var referrer: String?
    public var visitorID: String?
    public var limitedDataUse = false

    public init(
        ttclid: String? = nil, ttp: String? = nil, ip: String? = nil, userAgent: String? = nil, pageURL: String? = nil,
        referrer: String? = nil, visitorID: String? = nil, limitedDataUse: Bool = false
    ) {
        self.ttclid = ttclid
        self.ttp = ttp
        self.ip = ip
        self.userAgent = userAgent
        self.pageURL = pageURL
        self.referrer = referrer
        self.visitorID = visitorID
        self.limitedDataUse = limitedDataUse
    }
}

/// Why one event of a batch was refused.
public struct EventProblem: Codable, Sendable, Equatable {
    public var index: Int
    public var field: String
    public var reason: String

    public init(index: Int, field: String, reason: String) {
        self.index = index
        self.field = field
        self.reason = reason
    }
}

/// Every problem of one refused event.
public struct EventRejection: Error, Sendable, Equatable {
    public var problems: [EventProblem]
}

/// Validation and normalisation rules for incoming events.
public struct EventNormalizer: Sendable {
    /// Custom event names the operator allows besides the standard ones.
    public var customEvents: Set<String>
    /// For national phone numbers, e.g. "1" or "49".
    public var defaultCountryCode: String?
    public var maxFuture: TimeInterval = 300
    public var maxAge: TimeInterval = 7 * 86_400

    public init(customEvents: Set<String> = [], defaultCountryCode: String? = nil) {
        self.customEvents = customEvents
        self.defaultCountryCode = defaultCountryCode
    }

    /// Splits a request body into its events: one event, `{"data": [...]}` (TikTok's batch
    /// shape, `event_source_id` may name the pixel), `{"events": [...]}` or a bare array.
    public static func events(in body: JSONValue) -> [JSONValue]? {
        switch body {
        case .array(let items): return items
        case .object(let o):
            if case .array(let items)? = o["data"] { return items }
            if case .array(let items)? = o["events"] { return items }
            return o["event"] != nil ? [body] : nil
        default: return nil
        }
    }

    public func normalize(_ raw: JSONValue, index: Int, enrichment: EventEnrichment, now: Date = Date()) -> Result<NormalizedEvent, EventRejection> {
        var problems: [EventProblem] = []
        func problem(_ field: String, _ reason: String) { problems.append(EventProblem(index: index, field: field, reason: reason)) }
        guard case .object(let object) = raw else {
            return .failure(EventRejection(problems: [EventProblem(index: index, field: "", reason: "an event is a JSON object")]))
        }

        var name = ""
        switch object["event"] {
        case .string(let s)? where !s.isEmpty:
            name = EventVocabulary.legacyEvents[s] ?? s
            if !EventVocabulary.standardEvents.contains(name) && !customEvents.contains(name) {
                problem("event", "'\(s)' is not a standard event name (names are case-sensitive) nor an allowed custom one")
            }
        case nil: problem("event", "is required")
        default: problem("event", "must be a non-empty string")
        }

        var eventTime = Int64(now.timeIntervalSince1970)
        if let value = object["event_time"], value != .null {
            if case .number(let n) = value, n.isFinite, n > 0 {
                let seconds = n > 1e11 ? n / 1000 : n
                let delta = seconds - now.timeIntervalSince1970
                // Checked before the conversion: a time past Int64's range would trap, not be refused.
                if delta > maxFuture { problem("event_time", "is more than 5 minutes in the future") }
                else if -delta > maxAge { problem("event_time", "is older than 7 days") }
                else { eventTime = Int64(seconds) }
            } else {
                problem("event_time", "must be Unix seconds (or milliseconds) as a number")
            }
        }

        var properties: [String: JSONValue] = [:]
        if let value = object["properties"], value != .null {
            if case .object(let p) = value { properties = p } else { problem("properties", "must be an object") }
        }
        if let value = properties["value"], value != .null {
            if case .number(let n) = value, n.isFinite { } else { problem("properties.value", "must be a number") }
        }
        if let value = properties["currency"], value != .null {
            if case .string(let code) = value, EventVocabulary.currencies.contains(code.uppercased()) {
                properties["currency"] = .string(code.uppercased())
            } else {
                problem("properties.currency", "must be an ISO 4217 code such as EUR or USD")
            }
        }

        var eventID: String
        switch object["event_id"] {
        case .string(let s)? where !s.isEmpty && s.utf8.count <= 256: eventID = s
        case .number(let n)? where n.isFinite: eventID = JSONValue.number(n).stringValue ?? String(n)
        case nil, .null?:
            if let order = properties["order_id"]?.stringValue, !order.isEmpty {
                eventID = "oid-" + String(PII.sha256Hex(order + "\u{1f}" + name).prefix(32))
            } else {
                eventID = UUID().uuidString.lowercased()
            }
        default:
            problem("event_id", "must be a string of at most 256 bytes")
            eventID = ""
        }

        var user = NormalizedEvent.User()
        let userObject: [String: JSONValue]
        switch object["user"] {
        case .object(let u)?: userObject = u
        case nil, .null?: userObject = [:]
        default:
            problem("user", "must be an object")
            userObject = [:]
        }
        func values(_ key: String) -> [String]? {
            switch userObject[key] ?? object[key] {
            case .string(let s)?: return [s]
            case .array(let a)?: return a.compactMap(\.stringValue)
            case .number?: return (userObject[key] ?? object[key])?.stringValue.map { [$0] }
            default: return nil
            }
        }
        if let emails = values("email") {
            let hashed = emails.compactMap(PII.hashEmail)
            if hashed.count < emails.count { problem("user.email", "is not an email address") }
            if !hashed.isEmpty { user.email = hashed }
        }
        if let phones = values("phone") {
            let hashed = phones.compactMap { PII.hashPhone($0, defaultCountryCode: defaultCountryCode) }
            if hashed.count < phones.count { problem("user.phone", "is not a phone number (E.164 has 8 to 15 digits)") }
            if !hashed.isEmpty { user.phone = hashed }
        }
        if let ids = values("external_id") {
            let hashed = ids.compactMap(PII.hashExternalID)
            if !hashed.isEmpty { user.externalID = hashed }
        }
        user.ttclid = values("ttclid")?.first ?? enrichment.ttclid
        user.ttp = values("ttp")?.first ?? enrichment.ttp
        user.ip = values("ip")?.first ?? enrichment.ip
        user.userAgent = values("user_agent")?.first ?? enrichment.userAgent
        user.locale = values("locale")?.first

        var page: NormalizedEvent.Page?
        if case .object(let p)? = object["page"] {
            page = NormalizedEvent.Page(url: p["url"]?.stringValue, referrer: p["referrer"]?.stringValue)
        }
        if page?.url == nil, let url = enrichment.pageURL {
            page = NormalizedEvent.Page(url: url, referrer: page?.referrer ?? enrichment.referrer)
        }
        if page != nil, page?.referrer == nil { page?.referrer = enrichment.referrer }

        var limitedDataUse = enrichment.limitedDataUse
        if case .bool(true)? = object["limited_data_use"] { limitedDataUse = true }
        let visitorID = object["visitor_id"]?.stringValue ?? enrichment.visitorID

        guard problems.isEmpty else { return .failure(EventRejection(problems: problems)) }
        return .success(NormalizedEvent(
            event: name, eventID: eventID, eventTime: eventTime, user: user, properties: properties, page: page,
            limitedDataUse: limitedDataUse, visitorID: visitorID))
    }
}
