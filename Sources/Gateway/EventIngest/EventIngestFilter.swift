import ClickID
import Config
import Events
import NIOCore
import NIOHTTP1

/// Request phase: the first-party events path (`events.path`) on every site is answered by the
/// gateway itself. Same origin, so the visitor's cookies, address and user agent come with it.
final class EventIngestFilter: ProxyFilter {
    let path: String
    let ingestor: EventIngestor

    init(path: String, ingestor: EventIngestor) {
        self.path = path
        self.ingestor = ingestor
    }

    func request(_ head: RequestHead, context: inout RequestContext) -> RequestDecision {
        guard Self.target(head.uri, hasPath: path) else { return .proxy }
        guard head.method == .POST else {
            return .respond(LocalResponse(status: .methodNotAllowed, headers: ["allow": "POST", "content-type": "text/plain"], body: ByteBuffer(string: "POST events here.\n")))
        }
        return .serve(BrowserEventService(ingestor: ingestor))
    }

    /// Whether a request target's path (what precedes `?`) is `path`. Every proxied request asks,
    /// so it compares bytes in place rather than splitting the target into new strings.
    static func target(_ uri: String, hasPath path: String) -> Bool {
        guard uri.utf8.starts(with: path.utf8) else { return false }
        let rest = uri.utf8.dropFirst(path.utf8.count)
        return rest.isEmpty || rest.first == UInt8(ascii: "?")
    }
}

struct BrowserEventService: LocalService {
    let ingestor: EventIngestor

    func handle(head: RequestHead, body: ByteBuffer, context: RequestContext) async -> LocalResponse {
        let state = context.values[ClickStateKey.self]
        let enrichment = EventEnrichment(
            ttclid: state?.capture.value(for: "ttclid"), ttp: state?.ttp, ip: context.clientAddress, userAgent: context.userAgent,
            // Only a visitor id the browser already had: a new one would hide the identity join.
            pageURL: context.referrer, referrer: nil, visitorID: state.flatMap { $0.trackingAllowed && !$0.isNewVisitor ? $0.visitorID : nil },
            limitedDataUse: !(state?.trackingAllowed ?? true))
        let result = await ingestor.ingest(
            body: Array(body.readableBytesView), pixel: context.site?.config.pixel ?? "", enrichment: enrichment)
        return LocalResponse(
            status: HTTPResponseStatus(statusCode: result.status),
            headers: ["content-type": "application/json", "cache-control": "no-store"], body: ByteBuffer(string: result.body))
    }
}
