import AsyncHTTPClient
import Foundation
import Metrics
import NIOCore
import NIOHTTP1

/// A pixel as delivery sees it: where its events go and how they are signed.
public struct PixelTarget: Sendable, Equatable {
    public var name: String
    public var pixelCode: String
    /// Nil: no token configured, events go to the dry-run sink.
    public var accessToken: String?
    public var testEventCode: String?

    public init(name: String, pixelCode: String, accessToken: String?, testEventCode: String?) {
        self.name = name
        self.pixelCode = pixelCode
        self.accessToken = accessToken
        self.testEventCode = testEventCode
    }
}

/// What TikTok's answer means for the batch.
public enum DeliveryOutcome: Sendable, Equatable {
    case delivered
    /// 40100, HTTP 5xx, timeouts, resets, answers that are not JSON.
    case retry(String)
    /// 40001 / 40105 and HTTP 401/403: the pixel's permission or token is wrong.
    case unauthorized(String)
    /// 40002 and other payload errors: something in the batch is invalid.
    case rejected(String)
}

/// The raw exchange, for diagnostics (`clickgate events test`).
public struct EventsAPIExchange: Sendable {
    public var requestBody: String
    public var httpStatus: Int?
    public var responseBody: String
    public var outcome: DeliveryOutcome
}

/// Sends batches to the TikTok Events API v1.3 (`POST …/event/track/`, header `Access-Token`).
public struct EventsAPIClient: Sendable {
    public let endpoint: String
    public let client: HTTPClient
    public let timeout: TimeAmount

    public init(endpoint: String, client: HTTPClient, timeout: TimeAmount = .seconds(15)) {
        self.endpoint = endpoint
        self.client = client
        self.timeout = timeout
    }

    public static func requestBody(_ events: [NormalizedEvent], pixel: PixelTarget) -> String {
        var envelope: [String: JSONValue] = [
            "event_source": .string("web"), "event_source_id": .string(pixel.pixelCode), "partner_name": .string("ClickGate"),
            "data": .array(events.map(\.apiPayload)),
        ]
        if let code = pixel.testEventCode { envelope["test_event_code"] = .string(code) }
        return JSONValue.object(envelope).serialized
    }

    public func send(_ events: [NormalizedEvent], pixel: PixelTarget) async -> EventsAPIExchange {
        let body = Self.requestBody(events, pixel: pixel)
        var request = HTTPClientRequest(url: endpoint)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "access-token", value: pixel.accessToken ?? "")
        request.body = .bytes(ByteBuffer(string: body))
        do {
            let response = try await client.execute(request, timeout: timeout)
            let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
            Counter(label: "clickgate_events_api_responses_total", dimensions: [("code", Self.answerCode(status: Int(response.status.code), body: text))]).increment()
            return EventsAPIExchange(
                requestBody: body, httpStatus: Int(response.status.code), responseBody: text,
                outcome: Self.classify(status: Int(response.status.code), body: text))
        } catch {
            Counter(label: "clickgate_events_api_responses_total", dimensions: [("code", "transport")]).increment()
            return EventsAPIExchange(requestBody: body, httpStatus: nil, responseBody: "", outcome: .retry("transport: \(error)"))
        }
    }

    /// TikTok's `code` for a 2xx answer in Events API JSON (`"0"`, `"40002"`), else `http_<status>`: a
    /// metrics label.
    static func answerCode(status: Int, body: String) -> String {
        if (200..<300).contains(status), let parsed = try? JSONValue.parse(Array(body.utf8)), case .number(let code)? = parsed["code"] {
            return String(Int(code))
        }
        return "http_\(status)"
    }

    /// TikTok answers HTTP 200 even for errors: the body's `code` decides.
    public static func classify(status: Int, body: String) -> DeliveryOutcome {
        if status == 401 || status == 403 { return .unauthorized("HTTP \(status)") }
        if status == 413 { return .rejected("HTTP 413: batch too large") }
        guard (200..<300).contains(status) else { return .retry("HTTP \(status)") }
        guard let parsed = try? JSONValue.parse(Array(body.utf8)), case .number(let number)? = parsed["code"] else {
            return .retry("an answer that is not Events API JSON")
        }
        let code = Int(number)
        let message = parsed["message"]?.stringValue ?? ""
        switch code {
        case 0: return .delivered
        case 40100: return .retry("40100 too many requests")
        case 40001, 40105: return .unauthorized("\(code): \(message)")
        case 50000...59999: return .retry("\(code): \(message)")
        default: return .rejected("\(code): \(message)")
        }
    }

    /// Plain words for a code, for people reading diagnostics.
    public static func explain(code: Int) -> String {
        switch code {
        case 0: return "OK: the events were accepted"
        case 40001: return "no permission: the access token cannot send events for this pixel"
        case 40002: return "invalid value: the whole batch was rejected; the message names the field"
        case 40100: return "too many requests: slow down and retry"
        case 40105: return "the access token is missing, invalid or revoked: make a new one in Events Manager"
        case 40007: return "not found: the pixel code (event_source_id) does not exist"
        case 50000...59999: return "TikTok's servers failed: delivery retries with backoff"
        default: return "an error code ClickGate does not know: read the message"
        }
    }
}
