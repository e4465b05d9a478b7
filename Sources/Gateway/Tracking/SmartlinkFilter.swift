import ClickID
import Config
import Metrics
import NIOCore
import NIOHTTP1

/// Request phase: `/go/…` style paths answer with a redirect to a configured target, carrying
/// every incoming parameter. Targets come only from config, so no request can steer a redirect.
final class SmartlinkFilter: ProxyFilter {
    private struct Link {
        let host: String?
        let status: HTTPResponseStatus
        let targets: [SmartlinkTarget]
        /// Made once: a metrics handler made per request cost ≈ 9,000 instructions.
        let hits: [String: Counter]
        /// Whether any target routes on the device: the User-Agent is read only then.
        let routesOnDevice: Bool
    }

    private let links: [String: [Link]]
    /// Folders that hold smartlinks (`/go/`): an unknown path inside one is a 404, never proxied.
    private let folders: Set<Substring>

    init(config: GatewayConfig) {
        var links: [String: [Link]] = [:]
        var folders = Set<Substring>()
        for link in config.smartlinks {
            let targets = link.targets.map { target in
                SmartlinkTarget(
                    url: target.url, weight: target.weight, device: target.device.flatMap(DeviceClass.init(rawValue:)),
                    header: target.headerName.map { ($0, target.headerValue ?? "") })
            }
            let hits = Dictionary(targets.map { ($0.url, Counter(label: "clickgate_smartlink_hits_total", dimensions: [("path", link.path), ("target", $0.url)])) }) { first, _ in first }
            links[link.path, default: []].append(Link(
                host: link.host, status: HTTPResponseStatus(statusCode: link.status), targets: targets, hits: hits,
                routesOnDevice: targets.contains { $0.device != nil }))
            if let slash = link.path.lastIndex(of: "/"), slash != link.path.startIndex { folders.insert(link.path[...slash]) }
        }
        self.links = links
        self.folders = folders
    }

    var isEmpty: Bool { links.isEmpty }

    func request(_ head: RequestHead, context: inout RequestContext) -> RequestDecision {
        let target = URLReference(head.uri) ?? URLReference(path: head.uri)
        guard let candidates = links[target.path] else {
            if folders.contains(where: { target.path.hasPrefix($0) }) { return .respond(Self.notFound) }
            return .proxy
        }
        guard let link = candidates.first(where: { $0.host == context.host }) ?? candidates.first(where: { $0.host == nil }) else {
            return .respond(Self.notFound)
        }
        let state = context.values[ClickStateKey.self]
        let stickyKey = (state?.visitorID ?? context.clientAddress) + target.path
        let chosen = Smartlinks.choose(
            link.targets, stickyKey: stickyKey, device: link.routesOnDevice ? DeviceClass.classify(userAgent: context.userAgent) : .desktop,
            header: { head.headers.first(name: $0) })
        guard let chosen else { return .respond(Self.notFound) }
        let location = Smartlinks.redirectURL(target: chosen.url, incomingQuery: target.query)
        if let state { context.values[ClickStateKey.self] = state.with(smartlinkTarget: chosen.url) }
        link.hits[chosen.url]?.increment()
        return .respond(LocalResponse(status: link.status, headers: ["location": location, "cache-control": "no-store"]))
    }

    private static let notFound = LocalResponse(status: .notFound, contentType: "text/plain; charset=utf-8", body: "No such link.\n")
}
