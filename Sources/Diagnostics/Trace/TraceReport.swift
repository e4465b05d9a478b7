import ClickID

/// A whole trace: every hop, and which click ids did not make it to the end.
public struct TraceReport: Sendable, Codable {
    public struct Hop: Sendable, Codable {
        public struct Found: Sendable, Codable, Equatable {
            public var name: String
            public var value: String
            public var platform: String?
        }

        public struct Next: Sendable, Codable {
            public var via: RedirectKind
            /// As the response wrote it.
            public var target: String
            public var delay: String?
        }

        public var number: Int
        public var url: String
        public var status: Int?
        public var timing: HopTiming?
        public var connectedTo: String?
        public var clickIDs: [Found] = []
        public var campaign: [Found] = []
        /// Click-id cookies this hop set (a first-party copy survives even when the URL drops the id).
        public var clickIDCookies: [Found] = []
        public var warnings: [String] = []
        /// Click-id parameters an earlier hop had and this one does not.
        public var missing: [String] = []
        /// Click-id parameters whose value differs from the one first seen.
        public var changed: [String] = []
        public var next: Next?
        public var error: String?

        enum CodingKeys: String, CodingKey {
            case number, url, status, timing, connectedTo = "connected_to", clickIDs = "click_ids", campaign
            case clickIDCookies = "click_id_cookies", warnings, missing, changed, next, error
        }
    }

    /// A click id that did not reach the end intact.
    public struct Loss: Sendable, Codable, Equatable {
        public var parameter: String
        public var platform: String
        /// `lost`: absent from the final URL. `changed`: present with another value.
        public var kind: String
        /// The hop whose answer sent the browser on without the id (or with another value).
        public var droppedByHop: Int
        public var via: RedirectKind?
        /// The first hop of the final stretch without it.
        public var firstMissingHop: Int
        /// The hop that set a first-party cookie holding the same id, if any: the id is not in the
        /// URL any more, but pages on that cookie's site can still read it.
        public var keptInCookieByHop: Int?

        enum CodingKeys: String, CodingKey {
            case parameter, platform, kind, droppedByHop = "dropped_by_hop", via, firstMissingHop = "first_missing_hop"
            case keptInCookieByHop = "kept_in_cookie_by_hop"
        }
    }

    public enum Outcome: String, Sendable, Codable {
        /// Every click id seen reached the final URL unchanged.
        case kept
        case lost
        /// The trace could not finish; what it saw is still reported.
        case error
    }

    public var start: String
    public var userAgent: String
    public var hops: [Hop] = []
    public var losses: [Loss] = []
    public var outcome: Outcome = .kept
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case start, userAgent = "user_agent", hops, losses, outcome, error
    }

    /// 0 every click id survives, 1 one is lost or altered, 2 the trace itself failed.
    public var exitCode: Int32 {
        switch outcome {
        case .kept: return 0
        case .lost: return 1
        case .error: return 2
        }
    }

    /// Marks each hop's missing and changed ids and works out the losses; `outcome` becomes `.lost`
    /// unless the trace already failed.
    mutating func analyseClickIDs(registry: ClickIDRegistry) {
        var firstValue: [String: String] = [:]
        var order: [String] = []
        for index in hops.indices {
            let here = Dictionary(hops[index].clickIDs.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
            for (name, value) in here.sorted(by: { $0.key < $1.key }) where firstValue[name] == nil {
                firstValue[name] = value
                order.append(name)
            }
            for name in order {
                if let value = here[name] {
                    if value != firstValue[name] { hops[index].changed.append(name) }
                } else {
                    hops[index].missing.append(name)
                }
            }
        }
        guard let last = hops.last else { return }
        for name in order {
            let intactAtEnd = !last.missing.contains(name) && !last.changed.contains(name)
            guard !intactAtEnd else { continue }
            // The final stretch of hops without the intact id starts after the last hop that had it.
            let lastIntact = hops.lastIndex { !$0.missing.contains(name) && !$0.changed.contains(name) && $0.clickIDs.contains { $0.name == name } }
            guard let lastIntact, lastIntact + 1 < hops.count else { continue }
            losses.append(Loss(
                parameter: name, platform: registry.kind(forParameter: name)?.platform ?? "unknown",
                kind: last.missing.contains(name) ? "lost" : "changed", droppedByHop: hops[lastIntact].number,
                via: hops[lastIntact].next?.via, firstMissingHop: hops[lastIntact + 1].number,
                keptInCookieByHop: hops.first { hop in
                    hop.clickIDCookies.contains { $0.name == registry.kind(forParameter: name)?.cookieName && $0.value == firstValue[name] }
                }?.number))
        }
        if !losses.isEmpty, outcome != .error { outcome = .lost }
    }
}
