import Config
import Events
import Foundation
import NIOCore
import NIOHTTP1

/// `POST /v1/events` on the admin listener: events a backend sends (orders, leads), in
/// ClickGate's schema or TikTok's own v1.3 batch shape. They may carry `visitor_id` (the
/// `X-ClickGate-Visitor` the origin received), `ttclid`, `external_id` or an email, by which the
/// click ledger enriches them.
struct ServerEventsEndpoint: Sendable {
    let ingestor: EventIngestor
    let apiKeys: Set<String>
    let pixels: [String: GatewayConfig.Events.Pixel]

    func handle(head: RequestHead, body: ByteBuffer) async -> LocalResponse {
        guard let key = Self.bearerKey(head.headers.first(name: "authorization")), apiKeys.contains(key) else {
            return json(.unauthorized, #"{"error":"a valid Authorization: Bearer <key> is required"}"#, extra: ["www-authenticate": "Bearer"])
        }
        let bytes = Array(body.readableBytesView)
        guard let pixel = pixelName(query: head.uri, body: bytes) else {
            return json(.badRequest, #"{"error":"name the pixel: ?pixel=NAME, or event_source_id with its pixel code"}"#)
        }
        let result = await ingestor.ingest(body: bytes, pixel: pixel, enrichment: EventEnrichment())
        return json(HTTPResponseStatus(statusCode: result.status), result.body)
    }

    /// `?pixel=NAME`, else the pixel whose code is the body's `event_source_id`, else the only pixel.
    func pixelName(query uri: String, body: [UInt8]) -> String? {
        if let query = uri.split(separator: "?", maxSplits: 1).dropFirst().first {
            for pair in query.split(separator: "&") where pair.hasPrefix("pixel=") {
                let name = String(pair.dropFirst("pixel=".count))
                return pixels[name] != nil ? name : nil
            }
        }
        if let parsed = try? JSONValue.parse(body), let code = parsed["event_source_id"]?.stringValue {
            return pixels.first { $0.value.pixelCode == code }?.key
        }
        return pixels.count == 1 ? pixels.keys.first : (pixels.isEmpty ? "" : nil)
    }

    static func bearerKey(_ header: String?) -> String? {
        guard let header, header.lowercased().hasPrefix("bearer ") else { return nil }
        let key = header.dropFirst("bearer ".count).trimmingCharacters(in: .whitespaces)
        return key.isEmpty ? nil : key
    }

    private func json(_ status: HTTPResponseStatus, _ body: String, extra: HeaderFields = [:]) -> LocalResponse {
        var headers: HeaderFields = ["content-type": "application/json", "cache-control": "no-store"]
        headers.add(contentsOf: extra)
        return LocalResponse(status: status, headers: headers, body: ByteBuffer(string: body.hasSuffix("\n") ? body : body + "\n"))
    }
}
