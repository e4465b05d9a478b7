import Foundation
import Metrics

/// The answer to an ingest request.
public struct IngestResult: Sendable, Equatable {
    /// 202 all stored (or duplicates), 400 some refused (the good ones are stored), 503 nothing
    /// could be stored (nothing is acknowledged).
    public var status: Int
    public var accepted: Int
    public var duplicates: Int
    public var errors: [EventProblem]
    public var message: String?

    /// The JSON body the client gets.
    public var body: String {
        struct Wire: Encodable {
            var accepted: Int
            var duplicates: Int
            var errors: [EventProblem]?
            var error: String?
        }
        let wire = Wire(accepted: accepted, duplicates: duplicates, errors: errors.isEmpty ? nil : errors, error: message)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: (try? encoder.encode(wire)) ?? Data("{}".utf8), as: UTF8.self) + "\n"
    }
}

/// Turns a request body into stored events: parse, validate, hash, enrich (from the request,
/// then from the click ledger), deduplicate, store. Nothing is acknowledged before it is stored.
public struct EventIngestor: Sendable {
    public let store: any EventStore
    public var normalizer: EventNormalizer
    /// How far back a click may enrich an event (attribution window).
    public var attributionWindow: TimeInterval = 28 * 86_400
    public var maxEventsPerRequest = 1000

    public init(store: any EventStore, normalizer: EventNormalizer) {
        self.store = store
        self.normalizer = normalizer
    }

    public func ingest(body: [UInt8], pixel: String, enrichment: EventEnrichment, now: Date = Date()) async -> IngestResult {
        let result = await ingestCounted(body: body, pixel: pixel, enrichment: enrichment, now: now)
        Counter(label: "clickgate_events_accepted_total").increment(by: Int64(result.accepted))
        Counter(label: "clickgate_events_duplicates_total").increment(by: Int64(result.duplicates))
        for problem in result.errors {
            Counter(label: "clickgate_events_rejected_total", dimensions: [("field", problem.field)]).increment()
        }
        if result.status == 503 { Counter(label: "clickgate_events_store_unavailable_total").increment() }
        return result
    }

    private func ingestCounted(body: [UInt8], pixel: String, enrichment: EventEnrichment, now: Date) async -> IngestResult {
        let parsed: JSONValue
        do {
            parsed = try JSONValue.parse(body)
        } catch {
            return IngestResult(status: 400, accepted: 0, duplicates: 0, errors: [], message: "the body is not valid JSON")
        }
        guard let items = EventNormalizer.events(in: parsed) else {
            return IngestResult(
                status: 400, accepted: 0, duplicates: 0, errors: [],
                message: "expected an event object, an array of events, or {\"data\": [...]}")
        }
        guard items.count <= maxEventsPerRequest else {
            return IngestResult(status: 400, accepted: 0, duplicates: 0, errors: [], message: "at most \(maxEventsPerRequest) events per request")
        }
        Counter(label: "clickgate_events_received_total").increment(by: Int64(items.count))
        var accepted: [OutboxEvent] = []
        var problems: [EventProblem] = []
        do {
            var normalized: [NormalizedEvent] = []
            for (index, item) in items.enumerated() {
                switch normalizer.normalize(item, index: index, enrichment: enrichment, now: now) {
                case .failure(let rejection): problems += rejection.problems
                case .success(let event): normalized.append(event)
                }
            }
            accepted = try await joinLedger(normalized, now: now).map { OutboxEvent(pixel: pixel, event: $0) }
            let outcomes = accepted.isEmpty ? [] : try await store.enqueue(accepted)
            let duplicates = outcomes.filter { $0 == .duplicate }.count
            return IngestResult(
                status: problems.isEmpty ? 202 : 400, accepted: outcomes.count - duplicates, duplicates: duplicates, errors: problems)
        } catch {
            return IngestResult(status: 503, accepted: 0, duplicates: 0, errors: problems, message: "the event store cannot commit; retry later")
        }
    }

    /// Fills what each event lacks from its visitor's latest click; a hashed email or external id
    /// seen with a visitor before leads to that visitor. Two queries for the whole request.
    func joinLedger(_ events: [NormalizedEvent], now: Date) async throws -> [NormalizedEvent] {
        var events = events
        func identities(_ event: NormalizedEvent) -> [String] { (event.user.email ?? []) + (event.user.externalID ?? []) }
        let unknown = Set(events.filter { $0.visitorID == nil }.flatMap(identities))
        let known = try await store.visitors(forIdentities: unknown)
        for i in events.indices where events[i].visitorID == nil {
            events[i].visitorID = identities(events[i]).lazy.compactMap { known[$0] }.first
        }
        for event in events {
            if let visitor = event.visitorID, !identities(event).isEmpty {
                try await store.linkIdentity(identities(event), visitorID: visitor, at: now)
            }
        }
        let needy = Set(events.filter { $0.user.ttclid == nil || $0.user.ttp == nil || $0.user.ip == nil }.compactMap(\.visitorID))
        let clicks = try await store.latestClicks(visitorIDs: needy, since: now.addingTimeInterval(-attributionWindow))
        for i in events.indices {
            guard let visitor = events[i].visitorID, let click = clicks[visitor] else { continue }
            events[i].user.ttclid = events[i].user.ttclid ?? click.ttclid
            events[i].user.ttp = events[i].user.ttp ?? click.ttp
            events[i].user.ip = events[i].user.ip ?? click.ip
            events[i].user.userAgent = events[i].user.userAgent ?? click.userAgent
            if events[i].page?.url == nil, let landing = click.landingURL {
                events[i].page = NormalizedEvent.Page(url: landing, referrer: events[i].page?.referrer ?? click.referrer)
            }
        }
        return events
    }
}
