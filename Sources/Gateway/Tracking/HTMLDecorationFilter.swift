import ClickID
import Config
import Metrics
import NIOCore
import NIOHTTP1

/// Cross-domain checkouts in HTML, for sites with `rewrite_html`: when a request carries a click id
/// (its URL, or the gateway's cookie where tracking is allowed), the origin is asked for gzip or
/// identity only (gzip just when the client takes it), and an HTML answer's links, forms and refreshes
/// toward the site's decorate hosts (and the other sites under its cookie domain) get the ids as it
/// streams (``HTMLLinkDecorator``; the engine handles the gzip). Requests without a click id are not
/// touched at all.
final class HTMLDecorationFilter: ProxyFilter {
    /// Per site; nil where `rewrite_html` is off. The site's own hosts are not in it: its pages read the cookie.
    private let allowlists: [HostAllowlist?]
    private let passThrough: [String]
    private let decorated = Counter(label: "clickgate_html_documents_decorated_total")

    init(config: GatewayConfig) {
        allowlists = config.sites.map { site in
            guard site.rewriteHTML else { return nil }
            let siblings = site.cookieDomain.map { domain in
                config.sites.flatMap(\.hosts).filter { host in !site.hosts.contains(host) && (host == domain || host.hasSuffix("." + domain)) }
            } ?? []
            return HostAllowlist(siteHosts: [], decorateHosts: site.decorateHosts + siblings)
        }
        passThrough = config.tracking.passThrough
    }

    var isEmpty: Bool { allowlists.allSatisfy { $0 == nil } }

    func upstreamRequest(_ head: inout RequestHead, context: inout RequestContext) {
        guard let site = context.site, let allowlist = allowlists[site.index], let state = context.values[ClickStateKey.self] else { return }
        let ids = state.carriedClickIDs
        guard !ids.isEmpty else { return }
        let pieces = state.passThroughPieces(patterns: passThrough)
        context.values[DecorationKey.self] = Decoration(
            rewriter: RedirectRewriter(requestURL: state.requestURL, clickIDs: ids, passThrough: pieces, allowlist: allowlist))
        // The engine can read gzip and nothing else; a client that cannot take gzip gets the page
        // plain, so the origin need not compress it at all.
        head.headers.replaceOrAdd(name: "accept-encoding", value: acceptsGzip(head.headers) ? "gzip" : "identity")
    }

    func upstreamResponse(_ head: inout ResponseHead, context: inout RequestContext) {
        if rewriter(for: head, context: context) != nil { HeaderRules.keepOutOfSharedCaches(&head.headers) }
    }

    func responseBody(for head: ResponseHead, context: inout RequestContext) -> (any ResponseBodyTransform)? {
        guard let rewriter = rewriter(for: head, context: context) else { return nil }
        decorated.increment()
        return DecoratingTransform(decorator: HTMLLinkDecorator(rewriter: rewriter))
    }

    /// The rewriter for an HTML page this request's click ids go into; nil for anything else.
    private func rewriter(for head: ResponseHead, context: RequestContext) -> RedirectRewriter? {
        guard let decoration = context.values[DecorationKey.self], head.status == .ok,
            head.headers.first(name: "content-type")?.lowercased().hasPrefix("text/html") == true
        else { return nil }
        return decoration.rewriter
    }

    /// What a request's page would be decorated with, set in its upstream request phase.
    private final class Decoration: Sendable {
        let rewriter: RedirectRewriter
        init(rewriter: RedirectRewriter) { self.rewriter = rewriter }
    }

    private enum DecorationKey: ContextKey {
        typealias Value = Decoration
    }

    private final class DecoratingTransform: ResponseBodyTransform {
        private var decorator: HTMLLinkDecorator

        init(decorator: HTMLLinkDecorator) { self.decorator = decorator }

        func transform(_ chunk: ByteBuffer) -> ByteBuffer { ByteBuffer(bytes: decorator.feed(chunk.readableBytesView)) }
        func finish() -> ByteBuffer { ByteBuffer(bytes: decorator.finish()) }
    }
}
