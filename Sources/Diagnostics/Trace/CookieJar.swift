import ClickID
import Foundation

/// The cookies a browser would carry between hops: enough for chains that set a cookie and
/// redirect (consent walls, A/B splits). Paths, `Secure` and expiry dates are not modelled; a
/// `Max-Age` of zero or less deletes.
struct CookieJar: Sendable {
    private struct Cookie: Sendable {
        var name: String
        var value: String
        /// Lower-cased, without a leading dot.
        var domain: String
        var hostOnly: Bool
    }

    private var cookies: [Cookie] = []

    /// Stores each `Set-Cookie` of a response from `host`; returns the names set, in order.
    mutating func store(_ headers: [(name: String, value: String)], from host: String) -> [(name: String, value: String)] {
        var set: [(String, String)] = []
        for header in headers where header.name.lowercased() == "set-cookie" {
            let parts = header.value.split(separator: ";")
            guard let pair = parts.first, let eq = pair.firstIndex(of: "=") else { continue }
            let name = pair[..<eq].trimmingCharacters(in: .whitespaces)
            let value = pair[pair.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty else { continue }
            var domain = host
            var hostOnly = true
            var deleted = false
            for attribute in parts.dropFirst() {
                let kv = attribute.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                switch kv[0].lowercased() {
                case "domain" where kv.count == 2:
                    let candidate = kv[1].lowercased().drop { $0 == "." }
                    // A server may only widen to a domain it is in.
                    if host == candidate || host.hasSuffix("." + candidate) {
                        domain = String(candidate)
                        hostOnly = false
                    }
                case "max-age" where kv.count == 2:
                    if let seconds = Int(kv[1]), seconds <= 0 { deleted = true }
                default: break
                }
            }
            cookies.removeAll { $0.name == name && $0.domain == domain }
            if !deleted { cookies.append(Cookie(name: name, value: value, domain: domain, hostOnly: hostOnly)) }
            set.append((name, value))
        }
        return set
    }

    /// The `Cookie` header for a request to `host`, or nil.
    func header(for host: String) -> String? {
        let matching = cookies.filter { $0.domain == host || (!$0.hostOnly && host.hasSuffix("." + $0.domain)) }
        return matching.isEmpty ? nil : matching.map { "\($0.name)=\($0.value)" }.joined(separator: "; ")
    }
}
