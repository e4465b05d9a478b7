import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers

/// Delivers the outbox to the Events API until stopped: lease due events, send them in batches
/// per pixel, and act on TikTok's answer.
///
/// - Delivered: removed from the outbox.
/// - Retry (rate limit, 5xx, timeouts, garbage): back in the outbox after an exponential backoff
///   with jitter, capped at five minutes.
/// - Unauthorized: the pixel pauses (its events stay queued) and is retried after `pauseFor`.
/// - Rejected (40002): the batch is split in halves until the offending events stand alone; those
///   are dead-lettered with TikTok's message, the rest delivered.
/// A crash mid-batch leaves the lease to expire: the same event_ids go again, and TikTok's
/// deduplication absorbs the repeat.
public final class DeliveryWorker: Sendable {
    public struct Settings: Sendable {
        public var batchSize = 50
        public var linger: Duration = .seconds(1)
        public var lease: Duration = .seconds(60)
        public var pauseFor: Duration = .seconds(60)
        public var maxBackoff: Duration = .seconds(300)
        public init() {}
    }

    private let store: any EventStore
    private let api: EventsAPIClient
    private let pixels: NIOLockedValueBox<[String: PixelTarget]>
    private let settings: Settings
    private let logger: Logger
    private let pausedUntil = NIOLockedValueBox<[String: Date]>([:])
    /// Pixels whose last answer was a failure: their next success expedites the backed-off events.
    private let failing = NIOLockedValueBox<Set<String>>([])

    private let delivered = Counter(label: "clickgate_events_delivered_total")
    private let retried = Counter(label: "clickgate_events_retried_total")
    private let deadLettered = Counter(label: "clickgate_events_dead_lettered_total")
    private let latency = Timer(label: "clickgate_events_delivery_seconds")
    private let queueDepth = Gauge(label: "clickgate_events_queue_depth")
    private let oldestAge = Gauge(label: "clickgate_events_oldest_undelivered_seconds")
    private let deadLetterCount = Gauge(label: "clickgate_events_dead_letters")
    /// Delivered events carrying each identifier; divided by delivered, the coverage.
    private let coverage = Coverage()
    private let lastStats = NIOLockedValueBox<Date>(.distantPast)

    public init(store: any EventStore, api: EventsAPIClient, pixels: [PixelTarget], settings: Settings = Settings(), logger: Logger) {
        self.store = store
        self.api = api
        self.pixels = NIOLockedValueBox(Self.byName(pixels))
        self.settings = settings
        self.logger = logger
    }

    private static func byName(_ pixels: [PixelTarget]) -> [String: PixelTarget] {
        Dictionary(pixels.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Takes the pixels of a reloaded configuration for the next batches. Paused pixels are tried
    /// again now, with the events their pause held back: a reload is what an operator does after
    /// fixing a token or a permission (TikTok pauses them again if not).
    public func updatePixels(_ targets: [PixelTarget]) async {
        let new = Self.byName(targets)
        pixels.withLockedValue { $0 = new }
        let unpaused = pausedUntil.withLockedValue { paused in
            defer { paused.removeAll() }
            return paused.keys.filter { new[$0] != nil }
        }
        for name in unpaused {
            try? await store.expediteRetries(pixel: name, now: Date())
            logger.info("reloaded: the paused pixel's events are due now", metadata: ["pixel": "\(name)"])
        }
    }

    /// Pixels currently paused for an authorization error.
    public var pausedPixels: [String] {
        pausedUntil.withLockedValue { paused in paused.filter { $0.value > Date() }.map(\.key).sorted() }
    }

    /// Delivers until cancelled or until `shouldStop` says so.
    public func run(shouldStop: @Sendable () -> Bool = { false }) async {
        while !Task.isCancelled && !shouldStop() {
            let sent = await deliverOnce()
            if sent == 0 { try? await Task.sleep(for: settings.linger) }
        }
    }

    /// One round: leases what is due and sends it. Returns how many events were attempted.
    @discardableResult
    public func deliverOnce(now: Date = Date()) async -> Int {
        await refreshGauges(now: now)
        let leased: [LeasedEvent]
        do {
            leased = try await store.lease(limit: settings.batchSize * 4, for: settings.lease, now: now)
        } catch {
            logger.error("cannot lease events", metadata: ["error": "\(error)"])
            return 0
        }
        guard !leased.isEmpty else { return 0 }
        let byPixel = Dictionary(grouping: leased, by: \.pixel)
        for (name, events) in byPixel {
            if let until = pausedUntil.withLockedValue({ $0[name] }), until > now {
                try? await store.retryLater(events.map(\.id), at: until, error: "pixel paused")
                continue
            }
            guard let pixel = pixels.withLockedValue({ $0[name] }), pixel.accessToken != nil else {
                await dryRun(events, pixelName: name)
                continue
            }
            // Test events go one by one so each appears on its own in TikTok's test tool.
            let size = pixel.testEventCode == nil ? settings.batchSize : 1
            for start in stride(from: 0, to: events.count, by: size) {
                await send(Array(events[start..<min(start + size, events.count)]), pixel: pixel)
            }
        }
        return leased.count
    }

    private func send(_ batch: [LeasedEvent], pixel: PixelTarget) async {
        let started = ContinuousClock.now
        let exchange = await api.send(batch.map(\.event), pixel: pixel)
        latency.record(duration: ContinuousClock.now - started)
        let ids = batch.map(\.id)
        switch exchange.outcome {
        case .delivered:
            try? await store.markDelivered(ids)
            if failing.withLockedValue({ $0.remove(pixel.name) }) != nil {
                // The API is back: what waited out a backoff is due now, not minutes from now.
                try? await store.expediteRetries(pixel: pixel.name, now: Date())
                logger.info("events api: answering again; backed-off events are due now", metadata: ["pixel": "\(pixel.name)"])
            }
            delivered.increment(by: Int64(batch.count))
            coverage.record(batch.map(\.event))
        case .retry(let reason):
            let attempts = batch.map(\.attempts).max() ?? 1
            let backoff = min(Double(settings.maxBackoff.components.seconds), pow(2, Double(min(attempts, 16))))
            let delay = backoff * Double.random(in: 0.5...1.0)
            try? await store.retryLater(ids, at: Date().addingTimeInterval(delay), error: reason)
            _ = failing.withLockedValue { $0.insert(pixel.name) }
            retried.increment(by: Int64(batch.count))
            logger.warning("events api: retrying", metadata: ["pixel": "\(pixel.name)", "events": "\(batch.count)", "reason": "\(reason)"])
        case .unauthorized(let reason):
            let until = Date().addingTimeInterval(TimeInterval(settings.pauseFor.components.seconds))
            pausedUntil.withLockedValue { $0[pixel.name] = until }
            try? await store.retryLater(ids, at: until, error: reason)
            Counter(label: "clickgate_pixel_paused_total", dimensions: [("pixel", pixel.name)]).increment()
            logger.error("events api: pixel paused; its events stay queued", metadata: ["pixel": "\(pixel.name)", "reason": "\(reason)"])
        case .rejected(let reason):
            if batch.count == 1 {
                try? await store.deadLetter(ids, reason: reason)
                deadLettered.increment()
                logger.warning("events api: dead-lettered", metadata: ["pixel": "\(pixel.name)", "event_id": "\(batch[0].event.eventID)", "reason": "\(reason)"])
            } else {
                let half = batch.count / 2
                await send(Array(batch[..<half]), pixel: pixel)
                await send(Array(batch[half...]), pixel: pixel)
            }
        }
    }

    /// Queue gauges, at most every five seconds (counting a large backlog is not free).
    private func refreshGauges(now: Date) async {
        let due = lastStats.withLockedValue { last -> Bool in
            guard now.timeIntervalSince(last) >= 5 else { return false }
            last = now
            return true
        }
        guard due, let stats = try? await store.stats(now: now) else { return }
        queueDepth.record(stats.queueDepth)
        oldestAge.record(stats.oldestUndeliveredAge ?? 0)
        deadLetterCount.record(stats.deadLetters)
    }

    /// No token for the pixel: the exact request is logged and the events count as delivered.
    private func dryRun(_ events: [LeasedEvent], pixelName: String) async {
        let target = pixels.withLockedValue { $0[pixelName] } ?? PixelTarget(name: pixelName, pixelCode: pixelName.isEmpty ? "(no pixel)" : pixelName, accessToken: nil, testEventCode: nil)
        logger.info("events api dry run (no access token configured)", metadata: [
            "pixel": "\(pixelName)", "endpoint": "\(api.endpoint)", "request": "\(EventsAPIClient.requestBody(events.map(\.event), pixel: target))",
        ])
        try? await store.markDelivered(events.map(\.id))
    }
}

/// Shares of delivered events that carried each identifier TikTok matches on.
final class Coverage: Sendable {
    private let totals = NIOLockedValueBox<(events: Int, ttclid: Int, ttp: Int, emailOrPhone: Int)>((0, 0, 0, 0))
    private let withTTCLID = Counter(label: "clickgate_events_delivered_with_total", dimensions: [("identifier", "ttclid")])
    private let withTTP = Counter(label: "clickgate_events_delivered_with_total", dimensions: [("identifier", "ttp")])
    private let withEmailOrPhone = Counter(label: "clickgate_events_delivered_with_total", dimensions: [("identifier", "email_or_phone")])
    private let ratioTTCLID = Gauge(label: "clickgate_events_coverage_ratio", dimensions: [("identifier", "ttclid")])
    private let ratioTTP = Gauge(label: "clickgate_events_coverage_ratio", dimensions: [("identifier", "ttp")])
    private let ratioEmailOrPhone = Gauge(label: "clickgate_events_coverage_ratio", dimensions: [("identifier", "email_or_phone")])

    func record(_ events: [NormalizedEvent]) {
        let ttclid = events.filter { $0.user.ttclid != nil }.count
        let ttp = events.filter { $0.user.ttp != nil }.count
        let contact = events.filter { $0.user.email != nil || $0.user.phone != nil }.count
        withTTCLID.increment(by: Int64(ttclid))
        withTTP.increment(by: Int64(ttp))
        withEmailOrPhone.increment(by: Int64(contact))
        let t = totals.withLockedValue { t in
            t = (t.events + events.count, t.ttclid + ttclid, t.ttp + ttp, t.emailOrPhone + contact)
            return t
        }
        guard t.events > 0 else { return }
        ratioTTCLID.record(Double(t.ttclid) / Double(t.events))
        ratioTTP.record(Double(t.ttp) / Double(t.events))
        ratioEmailOrPhone.record(Double(t.emailOrPhone) / Double(t.events))
    }
}
