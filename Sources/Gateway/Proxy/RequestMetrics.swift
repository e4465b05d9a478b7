import Metrics
import NIOConcurrencyHelpers
import NIOCore

/// Requests by site and status, and upstream time to first byte by site.
///
/// Handles are made once per (site, status) and reused: creating a swift-metrics handle goes
/// through the backends' registries, too slow for every request.
final class RequestMetrics: Sendable {
    /// Keyed by site index (-1: no site) and status: building a string key per request cost more
    /// than the count itself.
    private struct Key: Hashable {
        let site: Int
        let status: Int
    }

    private let counters = NIOLockedValueBox<[Key: Counter]>([:])
    /// One per site, in configuration order (``SiteRoute/index``).
    private let upstreamLatency: [Timer]

    init(siteNames: [String]) {
        upstreamLatency = siteNames.map { Timer(label: "clickgate_upstream_response_seconds", dimensions: [("site", $0)]) }
    }

    func countRequest(site: SiteRoute?, status: Int) {
        let key = Key(site: site?.index ?? -1, status: status)
        let counter = counters.withLockedValue { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(label: "clickgate_requests_total", dimensions: [("site", site?.name ?? "none"), ("code", String(status))])
            counters[key] = counter
            return counter
        }
        counter.increment()
    }

    func recordUpstream(site: SiteRoute, headerAfter duration: TimeAmount) {
        guard upstreamLatency.indices.contains(site.index) else { return }
        upstreamLatency[site.index].recordNanoseconds(duration.nanoseconds)
    }
}
