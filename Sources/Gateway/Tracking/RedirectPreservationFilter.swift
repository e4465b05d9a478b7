import ClickID
import Config
import Metrics
import NIOHTTP1

/// Upstream response phase: a 3xx `Location` (and a `Refresh` header) that lost the click ids gets
/// them back, toward the site itself, hosts under its cookie domain and its decorate hosts only.
final class RedirectPreservationFilter: ProxyFilter {
    private let allowlists: [HostAllowlist]
    private let passThrough: [String]
    private let rewriteRefresh: Bool
    private let rewritten = Counter(label: "clickgate_redirects_rewritten_total", dimensions: [("header", "location")])
    private let rewrittenRefresh = Counter(label: "clickgate_redirects_rewritten_total", dimensions: [("header", "refresh")])

    static let redirectStatuses: Set<UInt> = [301, 302, 303, 307, 308]

    init(config: GatewayConfig) {
        allowlists = config.sites.map {
            HostAllowlist(siteHosts: Set($0.hosts), cookieDomain: $0.cookieDomain, decorateHosts: $0.decorateHosts)
        }
        passThrough = config.tracking.passThrough
        rewriteRefresh = config.tracking.rewriteRefresh
    }

    func upstreamResponse(_ head: inout ResponseHead, context: inout RequestContext) {
        let isRedirect = Self.redirectStatuses.contains(head.status.code)
        guard isRedirect || (rewriteRefresh && head.headers.contains(name: "refresh")),
            let state = context.values[ClickStateKey.self], let site = context.site
        else { return }
        let ids = state.carriedClickIDs
        let pieces = state.passThroughPieces(patterns: passThrough)
        guard !ids.isEmpty || !pieces.isEmpty else { return }
        let rewriter = RedirectRewriter(
            requestURL: state.requestOrigin, clickIDs: ids, passThrough: pieces, allowlist: allowlists[site.index])
        if isRedirect, let location = head.headers.first(name: "location"), let updated = rewriter.rewriteLocation(location) {
            head.headers.replaceOrAdd(name: "location", value: updated)
            HeaderRules.keepOutOfSharedCaches(&head.headers)
            rewritten.increment()
        }
        if rewriteRefresh, let refresh = head.headers.first(name: "refresh"), let updated = rewriter.rewriteRefresh(refresh) {
            head.headers.replaceOrAdd(name: "refresh", value: updated)
            HeaderRules.keepOutOfSharedCaches(&head.headers)
            rewrittenRefresh.increment()
        }
    }
}
