import Metrics
import NIOConcurrencyHelpers
import NIOCore

/// Requests by site and status, and upstream time to first byte by site.
///
/// Handles are made once per (site, status) and reused: creating a swift-metrics handle goes
/// through the backends' registries, too slow for every request.
final class RequestMetrics: Sendable {
    private let counters = NIOLockedValueBox<[String: Counter]>([:])
    private let upstreamLatency: [String: Timer]

    init(siteNames: [String]) {
        upstreamLatency = Dictionary(
            siteNames.map { ($0, Timer(label: "clickgate_upstream_response_seconds", dimensions: [("site", $0)])) },
            uniquingKeysWith: { first, _ in first })
    }

    func countRequest(site: String?, status: Int) {
        let site = site ?? "none"
        let key = site + "|" + String(status)
        let counter = counters.withLockedValue { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(label: "clickgate_requests_total", dimensions: [("site", site), ("code", String(status))])
            counters[key] = counter
            return counter
        }
        counter.increment()
    }

    func recordUpstream(site: String, headerAfter duration: TimeAmount) {
        upstreamLatency[site]?.recordNanoseconds(duration.nanoseconds)
    }
}
