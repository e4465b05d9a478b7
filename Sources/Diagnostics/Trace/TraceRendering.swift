extension TraceReport {
    /// The trace for a person: one block per hop, problems in red, the verdict last.
    public func rendered(on terminal: Terminal) -> String {
        var lines: [String] = [terminal.bold("trace ") + start, terminal.dim("user agent: \(userAgent)"), ""]
        var warned = Set<String>()
        for hop in hops {
            let status = hop.status.map { code -> String in
                let text = String(code)
                return code >= 400 ? terminal.red(text) : code >= 300 ? terminal.yellow(text) : terminal.green(text)
            } ?? terminal.red("---")
            let time = hop.timing.map { $0.total.millisecondsText } ?? ""
            lines.append("\(String(hop.number).leftPadded(3))  \(status)  \(time.leftPadded(8))  \(hop.url)")
            let indent = String(repeating: " ", count: 20)
            if let timing = hop.timing {
                var parts = ["connect \(timing.connect.millisecondsText)"]
                if let tls = timing.tls { parts.append("tls \(tls.millisecondsText)") }
                parts.append("first byte \(timing.firstByte.millisecondsText)")
                if let address = hop.connectedTo { parts.append(address) }
                lines.append(indent + terminal.dim(parts.joined(separator: " · ")))
            }
            if !hop.clickIDs.isEmpty {
                lines.append(indent + "click ids: " + hop.clickIDs.map { "\($0.name)=\($0.value) (\($0.platform ?? "?"))" }.joined(separator: ", "))
            }
            if !hop.campaign.isEmpty {
                lines.append(indent + terminal.dim("campaign: " + hop.campaign.map { "\($0.name)=\($0.value)" }.joined(separator: ", ")))
            }
            if !hop.clickIDCookies.isEmpty {
                lines.append(indent + "sets cookie: " + hop.clickIDCookies.map { "\($0.name) (\($0.platform ?? "?") id \($0.value))" }.joined(separator: ", "))
            }
            for name in hop.missing { lines.append(indent + terminal.red("✗ \(name) missing")) }
            for name in hop.changed { lines.append(indent + terminal.red("✗ \(name) has another value than it started with")) }
            for warning in hop.warnings where warned.insert(warning).inserted { lines.append(indent + terminal.yellow("! " + warning)) }
            if let next = hop.next {
                let delay = next.delay.map { " after \($0) s" } ?? ""
                lines.append(indent + "→ \(next.via.rawValue)\(delay): \(next.target)")
            }
            if let error = hop.error { lines.append(indent + terminal.red("error: " + error)) }
        }
        lines.append("")
        for loss in losses {
            let via = loss.via.map { " (\($0.rawValue))" } ?? ""
            let what = loss.kind == "lost" ? "lost" : "altered"
            lines.append(terminal.red("✗ \(loss.parameter) (\(loss.platform)) \(what): hop \(loss.droppedByHop)\(via) sent the browser to hop \(loss.firstMissingHop) without it"))
            if let hop = loss.keptInCookieByHop {
                lines.append(terminal.dim("  (hop \(hop) stored it in a first-party cookie: pages on that cookie's site can still read it)"))
            }
        }
        switch outcome {
        case .kept:
            let kept = Set(hops.flatMap { $0.clickIDs.map(\.name) })
            lines.append(kept.isEmpty
                ? terminal.yellow("no click ids anywhere in the chain")
                : terminal.green("✓ \(kept.sorted().joined(separator: ", ")) reached the end in \(hops.count) hop\(hops.count == 1 ? "" : "s")"))
        case .lost:
            break
        case .error:
            lines.append(terminal.red("error: " + (error ?? "the trace did not finish")))
        }
        return lines.joined(separator: "\n")
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
