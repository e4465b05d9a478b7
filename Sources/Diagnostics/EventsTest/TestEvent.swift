import Events
import Foundation

/// `clickgate events test`: one event through the delivery client, shown both ways.
public struct TestEvent: Sendable {
    public var event = "Purchase"
    public var ttclid: String?
    public var email: String?
    public var pageURL = "https://clickgate.test/events-test"

    public init() {}

    /// The event as the gateway would store it: built as JSON and put through the same normaliser
    /// (validation, hashing) as every real event.
    public func normalized(using normalizer: EventNormalizer, now: Date = Date()) -> Result<NormalizedEvent, EventRejection> {
        var user: [String: JSONValue] = ["user_agent": .string("clickgate events test"), "ip": .string("127.0.0.1")]
        if let ttclid { user["ttclid"] = .string(ttclid) }
        if let email { user["email"] = .string(email) }
        var properties: [String: JSONValue] = [:]
        if ["Purchase", "CompletePayment", "PlaceAnOrder", "AddToCart", "InitiateCheckout", "AddPaymentInfo"].contains(event) {
            properties = ["value": .number(1), "currency": .string("USD"), "content_type": .string("product")]
        }
        let raw = JSONValue.object([
            "event": .string(event), "event_id": .string("clickgate-test-" + UUID().uuidString.lowercased()),
            "event_time": .number(now.timeIntervalSince1970.rounded(.down)), "user": .object(user),
            "properties": .object(properties), "page": .object(["url": .string(pageURL)]),
        ])
        return normalizer.normalize(raw, index: 0, enrichment: EventEnrichment(), now: now)
    }
}

/// The exchange for a person: the request with the token redacted, TikTok's raw answer, the code
/// in words.
public struct TestEventReport: Sendable {
    public var endpoint: String
    public var pixel: PixelTarget
    public var exchange: EventsAPIExchange

    public init(endpoint: String, pixel: PixelTarget, exchange: EventsAPIExchange) {
        self.endpoint = endpoint
        self.pixel = pixel
        self.exchange = exchange
    }

    /// TikTok's `code`, when the answer was Events API JSON.
    public var code: Int? {
        guard let parsed = try? JSONValue.parse(Array(exchange.responseBody.utf8)), case .number(let number)? = parsed["code"] else { return nil }
        return Int(number)
    }

    /// 0 accepted, 1 TikTok refused it (or answered with an HTTP error), 2 nothing came back.
    public var exitCode: Int32 {
        if exchange.httpStatus == nil { return 2 }
        return exchange.outcome == .delivered ? 0 : 1
    }

    /// `[redacted: 40 characters]`: enough to tell an empty or truncated token from a real one.
    static func redacted(_ token: String?) -> String {
        guard let token, !token.isEmpty else { return "(none)" }
        return "[redacted: \(token.count) characters]"
    }

    public func rendered(on terminal: Terminal) -> String {
        var lines = [
            terminal.bold("request") + terminal.dim("  (pixel \(pixel.name), \(pixel.pixelCode))"),
            "POST \(endpoint)", "Content-Type: application/json", "Access-Token: \(Self.redacted(pixel.accessToken))", "",
            Self.pretty(exchange.requestBody), "",
        ]
        guard let status = exchange.httpStatus else {
            if case .retry(let reason) = exchange.outcome { lines.append(terminal.red("no answer: \(reason)")) }
            return lines.joined(separator: "\n")
        }
        lines += [terminal.bold("answer"), "HTTP \(status)", exchange.responseBody.isEmpty ? terminal.dim("(empty body)") : exchange.responseBody, ""]
        if let code {
            let text = "code \(code): \(EventsAPIClient.explain(code: code))"
            lines.append(code == 0 ? terminal.green("✓ " + text) : terminal.red("✗ " + text))
        } else {
            lines.append(terminal.red("✗ HTTP \(status) without Events API JSON: \(Self.describe(exchange.outcome))"))
        }
        return lines.joined(separator: "\n")
    }

    static func describe(_ outcome: DeliveryOutcome) -> String {
        switch outcome {
        case .delivered: return "delivered"
        case .retry(let reason): return "delivery would retry (\(reason))"
        case .unauthorized(let reason): return "the token is refused (\(reason))"
        case .rejected(let reason): return "the batch is refused (\(reason))"
        }
    }

    static func pretty(_ json: String) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)),
            let data = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        else { return json }
        return String(decoding: data, as: UTF8.self)
    }
}
