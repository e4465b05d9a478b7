import ClickID
import NIOCore

/// Follows a redirect chain the way a browser would and records every hop (`clickgate trace`).
public struct RedirectTracer: Sendable {
    /// User agents for `--user-agent mobile|desktop`.
    public enum Agent {
        /// TikTok's in-app browser on iOS: where ad clicks open.
        public static let mobile =
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 musical_ly_35.1.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en Region/US"
        public static let desktop =
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

        /// `mobile`, `desktop`, or the text itself.
        public static func named(_ name: String) -> String {
            switch name.lowercased() {
            case "mobile": return mobile
            case "desktop": return desktop
            default: return name
            }
        }
    }

    public var maxHops = 20
    public var userAgent = Agent.mobile
    public var registry = ClickIDRegistry.standard
    let fetcher: HopFetcher

    public init(settings: FetchSettings) throws {
        fetcher = try HopFetcher(settings: settings)
    }

    public func trace(_ start: String) async -> TraceReport {
        var report = TraceReport(start: start, userAgent: userAgent)
        guard var url = URLReference(start), url.isWeb, url.host != nil else {
            report.outcome = .error
            report.error = "not an absolute http(s) URL: \(start) (give the whole URL, starting with https://)"
            return report
        }
        var jar = CookieJar()
        var visits: [String: Int] = [:]
        while true {
            var hop = TraceReport.Hop(number: report.hops.count + 1, url: url.text)
            let found = TrackingParameters.inspect(url, registry: registry)
            // Unusable values are kept: a corrupted id shows up as changed rather than missing.
            hop.clickIDs = found.clickIDs.filter(\.nestedIn.isEmpty).map { .init(name: $0.parameter, value: $0.value, platform: $0.platform) }
            hop.campaign = found.campaign.filter(\.nestedIn.isEmpty).map { .init(name: $0.name, value: $0.value) }
            hop.warnings = found.warnings
            let host = url.host ?? ""
            visits[url.textWithoutFragment, default: 0] += 1

            var headers = [("User-Agent", userAgent), ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"), ("Accept-Language", "en-US,en;q=0.9")]
            if let cookie = jar.header(for: host) { headers.append(("Cookie", cookie)) }
            let response: HopResponse
            do {
                response = try await fetcher.fetch(url, headers: headers)
            } catch {
                hop.error = "\(error)"
                report.hops.append(hop)
                report.outcome = .error
                report.error = "hop \(hop.number): \(error)"
                break
            }
            hop.status = response.status
            hop.timing = response.timing
            hop.connectedTo = response.connectedTo
            hop.clickIDCookies = jar.store(response.headers, from: host).compactMap { cookie in
                guard let kind = registry.kind(forCookie: cookie.name), let id = kind.id(fromCookieValue: cookie.value) else { return nil }
                return .init(name: cookie.name, value: id, platform: kind.platform)
            }
            guard let signal = RedirectSignals.find(status: response.status, headers: response.headers, body: response.body.map { Substring($0) }, currentQuery: url.query) else {
                if (300...399).contains(response.status), response.status != 304 {
                    hop.warnings.append("a \(response.status) without a Location header: browsers stop here")
                } else if response.status >= 400 {
                    hop.warnings.append("the chain ends with HTTP \(response.status)")
                }
                report.hops.append(hop)
                break
            }
            hop.next = .init(via: signal.kind, target: signal.target, delay: signal.delay)
            report.hops.append(hop)

            guard let reference = URLReference(signal.target.replacingSpaces()) else {
                report.outcome = .error
                report.error = "hop \(hop.number): its \(signal.kind.rawValue) is not a URL: \(signal.target)"
                break
            }
            let nextURL = reference.resolved(against: url)
            guard nextURL.isWeb else {
                report.outcome = .error
                report.error = "hop \(hop.number): its \(signal.kind.rawValue) leads to \(nextURL.text), which is not http(s)"
                break
            }
            if visits[nextURL.textWithoutFragment, default: 0] >= 2 {
                report.outcome = .error
                report.error = "redirect loop: hop \(hop.number) leads back to \(nextURL.text)"
                break
            }
            if report.hops.count >= maxHops {
                report.outcome = .error
                report.error = "stopped after \(maxHops) hops (--max-hops); the chain goes on to \(nextURL.text)"
                break
            }
            url = nextURL
        }
        report.analyseClickIDs(registry: registry)
        return report
    }
}

extension URLReference {
    /// What identifies the resource: fragments never reach the server.
    var textWithoutFragment: String {
        var copy = self
        copy.fragment = nil
        return copy.text
    }
}

extension String {
    /// Browsers encode spaces in redirect targets rather than refuse them.
    func replacingSpaces() -> String {
        var out = ""
        for scalar in unicodeScalars { if scalar == " " { out += "%20" } else { out.unicodeScalars.append(scalar) } }
        return out
    }
}
