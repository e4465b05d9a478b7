import ClickID
import Config
import Foundation
import Metrics
import NIOHTTP1

/// What the capture filter learned about a request; the other tracking filters read it. An
/// immutable class: four phases of every request read it, and copying a struct of this size out
/// of the context cost ≈ 500 instructions a read.
final class ClickState: Sendable {
    let capture: ClickCapture
    let visitorID: String
    let isNewVisitor: Bool
    let trackingAllowed: Bool
    let ttp: String?
    /// The request target and how the browser addressed the host: ``requestURL``'s parts, kept
    /// as they came (most requests never need the URL split into strings).
    private let target: String
    private let scheme: String
    private let authority: String
    /// The target a smartlink sent the visitor to.
    let smartlinkTarget: String?
    /// The client sent a field under a name only the gateway speaks (``GatewayConfig/Tracking``'s headers).
    let carriesGatewayFields: Bool

    init(
        capture: ClickCapture, visitorID: String, isNewVisitor: Bool, trackingAllowed: Bool, ttp: String?,
        target: String, scheme: String, authority: String, smartlinkTarget: String? = nil, carriesGatewayFields: Bool
    ) {
        self.capture = capture
        self.visitorID = visitorID
        self.isNewVisitor = isNewVisitor
        self.trackingAllowed = trackingAllowed
        self.ttp = ttp
        self.target = target
        self.scheme = scheme
        self.authority = authority
        self.smartlinkTarget = smartlinkTarget
        self.carriesGatewayFields = carriesGatewayFields
    }

    func with(smartlinkTarget: String) -> ClickState {
        ClickState(
            capture: capture, visitorID: visitorID, isNewVisitor: isNewVisitor, trackingAllowed: trackingAllowed, ttp: ttp,
            target: target, scheme: scheme, authority: authority, smartlinkTarget: smartlinkTarget, carriesGatewayFields: carriesGatewayFields)
    }

    /// The request as the browser addressed it, for resolving a page's relative links and for
    /// the click ledger; split on each read.
    var requestURL: URLReference { URLReference(scheme: scheme, authority: authority, target: target) }

    /// The request's scheme and authority alone: all a redirect target is resolved against to
    /// learn its host (``RedirectRewriter``), without the target split into strings.
    var requestOrigin: URLReference { URLReference(scheme: scheme, authority: authority) }

    /// The request query's pieces that pass through to rewritten URLs, read where they lie.
    func passThroughPieces(patterns: [String]) -> [(name: String, piece: String)] {
        RedirectRewriter.passThroughPieces(fromQueryOf: target, patterns: patterns)
    }
}

extension ClickState {
    /// The ids a rewritten URL carries on: those the URL had are the page's own; those only in
    /// the gateway's cookies travel when tracking is allowed.
    var carriedClickIDs: [(parameter: String, value: String)] {
        // One array, not `all` (URL's + cookies') mapped into a second one.
        var ids: [(parameter: String, value: String)] = []
        ids.reserveCapacity(capture.fromURL.count + (trackingAllowed ? capture.fromCookies.count : 0))
        for id in capture.fromURL { ids.append((id.kind.parameter, id.value)) }
        if trackingAllowed { for id in capture.fromCookies { ids.append((id.kind.parameter, id.value)) } }
        return ids
    }
}

enum ClickStateKey: ContextKey {
    typealias Value = ClickState
}

/// Request phase: reads click ids from the URL (else the gateway's cookies), the visitor id and
/// `_ttp`, and consent. Upstream request: tells the origin the click id and visitor. Response:
/// sets the first-party cookies, whatever the status. Logging: hands the click to the ledger.
final class ClickCaptureFilter: ProxyFilter {
    let registry: ClickIDRegistry
    let consent: ConsentPolicy
    let tracking: GatewayConfig.Tracking
    let sink: (any ClickSink)?
    /// By site index, then in the registry's order (searched: a string key hashed on every
    /// captured click cost ≈ 300 instructions, and the first kind is TikTok's).
    private let capturedCounters: [[(parameter: String, counter: Counter)]]
    /// Each site's cookie domain with its leading dot, for matching a request's host.
    private let cookieDomains: [(domain: String, dotted: String)?]
    /// By ``cookieSlot(site:secure:withDomain:)``.
    private let cookieTemplates: [CookieTemplates]
    /// The tracking headers' names in lower case.
    private let gatewayFieldNames: [String]

    /// The cookies this filter sets, for one site, scheme and domain choice.
    private struct CookieTemplates: Sendable {
        /// In the registry's order, searched by parameter (as ``capturedCounters``).
        var clickIDs: [(parameter: String, template: SetCookie.Template?)] = []
        var visitor: SetCookie.Template?
        var ttp: SetCookie.Template?
    }

    init(tracking: GatewayConfig.Tracking, sites: [GatewayConfig.Site], sink: (any ClickSink)?) {
        var registry = ClickIDRegistry.standard
        for entry in tracking.clickIDs {
            let base = registry.kind(forParameter: entry.parameter)
            registry.set(
                ClickIDKind(
                    parameter: entry.parameter,
                    platform: entry.platform ?? base?.platform ?? "custom",
                    cookieName: entry.cookie ?? base?.cookieName ?? entry.parameter,
                    format: entry.format.flatMap(ClickIDKind.CookieFormat.init(rawValue:)) ?? base?.format ?? .raw,
                    maxAge: entry.maxAge.map { Int($0.components.seconds) } ?? base?.maxAge ?? 30 * 86_400))
        }
        self.registry = registry
        self.consent = ConsentPolicy(
            respectGPC: tracking.respectGPC, cookieName: tracking.consentCookie, deniedValues: Set(tracking.consentDeniedValues))
        self.tracking = tracking
        self.gatewayFieldNames = [tracking.clickIDHeader.lowercased(), tracking.visitorHeader.lowercased()]
        self.sink = sink
        self.capturedCounters = sites.map { site in
            registry.kinds.map { kind in
                (kind.parameter, Counter(
                    label: "clickgate_click_ids_captured_total",
                    dimensions: [("site", site.name), ("platform", kind.platform), ("parameter", kind.parameter)]))
            }
        }
        self.cookieDomains = sites.map { site in site.cookieDomain.map { ($0, "." + $0) } }
        // One slot past the sites: answers for no site (a host the gateway does not serve).
        var templates: [CookieTemplates] = []
        for siteIndex in 0...sites.count {
            for secure in [false, true] {
                for withDomain in [false, true] {
                    let domain = withDomain && siteIndex < sites.count ? sites[siteIndex].cookieDomain : nil
                    func template(_ name: String, maxAge: Int, httpOnly: Bool = false) -> SetCookie.Template? {
                        SetCookie.Template(SetCookie(name: name, value: "", maxAge: maxAge, domain: domain, httpOnly: httpOnly, secure: secure))
                    }
                    var slot = CookieTemplates()
                    slot.clickIDs = registry.kinds.map { ($0.parameter, template($0.cookieName, maxAge: $0.maxAge)) }
                    slot.visitor = template(tracking.visitorCookie, maxAge: Int(tracking.visitorMaxAge.components.seconds), httpOnly: true)
                    slot.ttp = template("_ttp", maxAge: Int(tracking.ttpMaxAge.components.seconds))
                    templates.append(slot)
                }
            }
        }
        self.cookieTemplates = templates
    }

    private func cookieSlot(site: Int?, secure: Bool, withDomain: Bool) -> Int {
        ((site ?? cookieDomains.count) * 2 + (secure ? 1 : 0)) * 2 + (withDomain ? 1 : 0)
    }

    func request(_ head: RequestHead, context: inout RequestContext) -> RequestDecision {
        // One pass for the fields this filter reads: each lookup by name walks every field.
        var cookieFields: [String] = []
        var globalPrivacyControl: String?
        var carriesGatewayFields = false
        head.headers.forEach { name, value in
            switch name.count {
            case 6 where name.matches("cookie"): cookieFields.append(String(decoding: value, as: UTF8.self))
            case 7 where name.matches("sec-gpc"): if globalPrivacyControl == nil { globalPrivacyControl = String(decoding: value, as: UTF8.self) }
            default: if gatewayFieldNames.contains(where: { HeaderFields.sameName(name, $0) }) { carriesGatewayFields = true }
            }
        }
        let cookies = RequestCookies(headers: cookieFields)
        let capture = ClickCapture.scan(target: head.uri, cookies: cookies, registry: registry)
        for (parameter, reason) in capture.rejected {
            Counter(label: "clickgate_click_ids_rejected_total", dimensions: [("parameter", parameter), ("reason", reason.rawValue)]).increment()
        }
        let allowed = consent.allowsTracking(globalPrivacyControl: globalPrivacyControl, cookies: cookies)
        let known = cookies.first(tracking.visitorCookie).flatMap { VisitorID.isWellFormed($0) ? $0 : nil }
        var generator = BufferedRandom()
        context.values[ClickStateKey.self] = ClickState(
            capture: capture,
            visitorID: known ?? VisitorID.make(using: &generator),
            isNewVisitor: known == nil,
            trackingAllowed: allowed,
            ttp: cookies.first("_ttp").flatMap { ClickIDValue.isAcceptable($0) ? $0 : nil },
            target: head.uri, scheme: context.scheme, authority: context.authority,
            carriesGatewayFields: carriesGatewayFields)
        return .proxy
    }

    func upstreamRequest(_ head: inout RequestHead, context: inout RequestContext) {
        // Only the gateway speaks these headers: whatever a client sent under those names goes.
        // Looked for first (in the request phase's pass): `remove(name:)` rebuilds the block even
        // when nothing matches.
        let state = context.values[ClickStateKey.self]
        if state?.carriesGatewayFields ?? true {
            if head.headers.contains(name: tracking.clickIDHeader) { head.headers.remove(name: tracking.clickIDHeader) }
            if head.headers.contains(name: tracking.visitorHeader) { head.headers.remove(name: tracking.visitorHeader) }
        }
        guard let state else { return }
        // Names checked as tokens when the configuration loaded; a captured id is URL-safe
        // (`ClickIDValue`), a visitor id hex.
        if let ttclid = state.capture.fromURL.first(where: { $0.kind.parameter == "ttclid" })?.value
            ?? (state.trackingAllowed ? state.capture.value(for: "ttclid") : nil)
        {
            head.headers.appendChecked(tracking.clickIDHeader, ttclid)
        }
        if state.trackingAllowed { head.headers.appendChecked(tracking.visitorHeader, state.visitorID) }
    }

    func response(_ head: inout ResponseHead, context: inout RequestContext) {
        guard let state = context.values[ClickStateKey.self], state.trackingAllowed else { return }
        let site = context.site?.index
        // The site's cookie domain when the request's host is in it (else host-only cookies).
        let withDomain = site.flatMap { cookieDomains[$0] }.map { context.host == $0.domain || context.host.hasSuffix($0.dotted) } ?? false
        let templates = cookieTemplates[cookieSlot(site: site, secure: context.scheme == "https", withDomain: withDomain)]
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        // Each value written straight into the head, with no string made for it, and not checked
        // again: the template checked it.
        func setCookie(_ template: SetCookie.Template?, _ value: String) {
            template?.withHeaderValueWriter(value) { length, write in head.headers.appendChecked("set-cookie", valueLength: length, writingValue: write) }
        }
        for id in state.capture.fromURL {
            setCookie(templates.clickIDs.first { $0.parameter == id.kind.parameter }?.template, id.kind.cookieValue(for: id.value, unixMilliseconds: now))
        }
        if state.isNewVisitor { setCookie(templates.visitor, state.visitorID) }
        if let ttp = state.ttp { setCookie(templates.ttp, ttp) }
    }

    func logging(_ fields: inout AccessLogFields, context: inout RequestContext) {
        guard let state = context.values[ClickStateKey.self] else { return }
        fields.set("click_id", state.capture.fromURL.isEmpty ? (state.capture.fromCookies.isEmpty ? "none" : "cookie") : "url")
        if !state.capture.rejected.isEmpty { fields.set("click_id_rejected", state.capture.rejected.map(\.parameter).joined(separator: ",")) }
        guard state.trackingAllowed, !state.capture.fromURL.isEmpty else { return }
        if let site = context.site {
            for id in state.capture.fromURL {
                capturedCounters[site.index].first { $0.parameter == id.kind.parameter }?.counter.increment()
            }
        }
        sink?.offer(ClickRecord(
            unixMilliseconds: Int64(Date().timeIntervalSince1970 * 1000), visitorID: state.visitorID,
            clickIDs: state.capture.fromURL.map { .init(parameter: $0.kind.parameter, platform: $0.kind.platform, value: $0.value) },
            ttp: state.ttp, clientAddress: context.clientAddress, userAgent: context.userAgent,
            landingURL: state.requestURL.text, referrer: context.referrer, smartlinkTarget: state.smartlinkTarget))
    }
}
