import Metrics
import NIOCore
import Synchronization

/// Requests by site and status, and upstream time to first byte by site.
///
/// Handles are made once per (site, status) and reused: creating a swift-metrics handle goes
/// through the backends' registries, too slow for every request.
final class RequestMetrics: Sendable {
    /// Counters made so far, in a table by site row (the last row: no site) and three-digit
    /// status: a dictionary hashed its key on every request (≈ 400 instructions).
    private struct Counters {
        static let statuses = 100...999
        let siteCount: Int
        var table: [Counter?]
        /// Statuses outside the table's range (no HTTP/1 status line has one), and sites not
        /// in it, by site name and status.
        var others: [String: Counter] = [:]

        init(siteCount: Int) {
            self.siteCount = siteCount
            table = Array(repeating: nil, count: (siteCount + 1) * Self.statuses.count)
        }

        mutating func counter(site: SiteRoute?, status: Int) -> Counter {
            func make() -> Counter {
                Counter(label: "clickgate_requests_total", dimensions: [("site", site?.name ?? "none"), ("code", String(status))])
            }
            let row = site?.index ?? siteCount
            guard Self.statuses.contains(status), site.map({ $0.index < siteCount }) ?? true else {
                let key = "\(site?.name ?? "none") \(status)"
                if let counter = others[key] { return counter }
                let counter = make()
                others[key] = counter
                return counter
            }
            let index = row * Self.statuses.count + status - Self.statuses.lowerBound
            if let counter = table[index] { return counter }
            let counter = make()
            table[index] = counter
            return counter
        }
    }

    private let counters: Mutex<Counters>
    /// One per site, in configuration order (``SiteRoute/index``).
    private let upstreamLatency: [Timer]

    init(siteNames: [String]) {
        counters = Mutex(Counters(siteCount: siteNames.count))
        upstreamLatency = siteNames.map { Timer(label: "clickgate_upstream_response_seconds", dimensions: [("site", $0)]) }
    }

    func countRequest(site: SiteRoute?, status: Int) {
        counters.withLock { $0.counter(site: site, status: status) }.increment()
    }

    func recordUpstream(site: SiteRoute, headerAfter duration: TimeAmount) {
        guard upstreamLatency.indices.contains(site.index) else { return }
        upstreamLatency[site.index].recordNanoseconds(duration.nanoseconds)
    }
}
