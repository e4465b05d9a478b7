import ClickID
import Foundation

/// How one hop sent the browser on.
public enum RedirectKind: String, Sendable, Codable {
    case location = "Location"
    case refreshHeader = "Refresh header"
    case metaRefresh = "meta refresh"
    case javascript = "JS redirect (heuristic)"
}

/// The next URL a browser would go to, as written in the response (not yet resolved).
public struct RedirectSignal: Sendable, Equatable {
    public var kind: RedirectKind
    public var target: String
    /// For refreshes: the delay as written.
    public var delay: String?
}

/// Finds where a response sends the browser: pure functions over status, headers and the start of
/// the body, in the order a browser acts on them.
public enum RedirectSignals {
    /// Inline scripts longer than this are application code, not redirect stubs.
    static let smallScriptLimit = 4096

    /// - Parameter currentQuery: the hop's own query, for scripts that append `location.search`.
    public static func find(status: Int, headers: [(name: String, value: String)], body: Substring?, currentQuery: String?) -> RedirectSignal? {
        func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name }?.value }
        if (300...399).contains(status), status != 304, let location = header("location") {
            return RedirectSignal(kind: .location, target: location.trimmingCharacters(in: .whitespaces))
        }
        if let refresh = header("refresh"), let directive = RefreshDirective(refresh) {
            return RedirectSignal(kind: .refreshHeader, target: String(directive.url), delay: String(directive.delay))
        }
        guard let body else { return nil }
        let html = HTMLScan(body)
        if let directive = html.metaRefresh() {
            return RedirectSignal(kind: .metaRefresh, target: String(directive.url), delay: String(directive.delay))
        }
        for script in html.inlineScripts() where script.utf8.count <= smallScriptLimit {
            if let target = scriptRedirect(in: script, currentQuery: currentQuery) {
                return RedirectSignal(kind: .javascript, target: target)
            }
        }
        return nil
    }

    nonisolated(unsafe) private static let assignment =
        #/(?:(?:window|document|top|self|parent)\.)?location(?:\.href)?\s*=(?!=)\s*(["'`])((?:\\.|(?!\1).)*)\1(\s*\+\s*(?:window\.|document\.)?location\.search)?/#
    nonisolated(unsafe) private static let call =
        #/location\.(?:replace|assign)\(\s*(["'`])((?:\\.|(?!\1).)*)\1(\s*\+\s*(?:window\.|document\.)?location\.search)?/#

    /// `location = "…"`, `location.href = '…'`, `location.replace("…")`, optionally `+ location.search`.
    public static func scriptRedirect(in script: Substring, currentQuery: String?) -> String? {
        let text = String(script)
        let match = text.firstMatch(of: assignment).map { ($0.output.2, $0.output.3 != nil) }
            ?? text.firstMatch(of: call).map { ($0.output.2, $0.output.3 != nil) }
        guard let (literal, appendsSearch) = match else { return nil }
        let target = unescapeJavaScript(literal)
        guard !target.isEmpty else { return nil }
        if appendsSearch, let currentQuery, !currentQuery.isEmpty { return target + "?" + currentQuery }
        return target
    }

    /// The escapes URL strings in scripts use: `\/`, `\xNN`, `\uNNNN`, `\'`, `\"`.
    static func unescapeJavaScript(_ literal: Substring) -> String {
        var out = ""
        var iterator = literal.unicodeScalars.makeIterator()
        while let scalar = iterator.next() {
            guard scalar == "\\", let escaped = iterator.next() else {
                out.unicodeScalars.append(scalar)
                continue
            }
            let digits: Int
            switch escaped {
            case "x": digits = 2
            case "u": digits = 4
            default:
                out.unicodeScalars.append(escaped)
                continue
            }
            var hex = ""
            for _ in 0..<digits { if let next = iterator.next() { hex.unicodeScalars.append(next) } }
            if let value = UInt32(hex, radix: 16), let decoded = Unicode.Scalar(value) { out.unicodeScalars.append(decoded) } else { out += "\\" + String(escaped) + hex }
        }
        return out
    }
}

/// Just enough HTML reading for redirects: tags with attributes, skipping comments, `<noscript>`
/// (ignored by browsers that run scripts) and the insides of scripts and styles.
struct HTMLScan {
    let html: Substring

    init(_ html: Substring) { self.html = html }

    struct Tag {
        var name: String
        var attributes: [String: Substring]
        /// Just after the tag's `>`.
        var end: String.Index
    }

    /// `<meta http-equiv="refresh" content="…">` outside `<noscript>`.
    func metaRefresh() -> RefreshDirective? {
        var found: RefreshDirective?
        walk { tag in
            guard tag.name == "meta", tag.attributes["http-equiv"]?.lowercased() == "refresh", let content = tag.attributes["content"] else { return true }
            found = RefreshDirective(String(content))
            return found == nil
        }
        return found
    }

    /// The text of each `<script>` without `src`.
    func inlineScripts() -> [Substring] {
        var scripts: [Substring] = []
        walk { tag in
            if tag.name == "script", tag.attributes["src"] == nil { scripts.append(html[tag.end..<closing("script", from: tag.end)]) }
            return true
        }
        return scripts
    }

    /// Calls `visit` for each tag in document order until it returns false.
    private func walk(_ visit: (Tag) -> Bool) {
        var index = html.startIndex
        while let open = html[index...].firstIndex(of: "<") {
            let rest = html[open...]
            if rest.hasPrefix("<!--") {
                guard let close = rest.range(of: "-->") else { return }
                index = close.upperBound
                continue
            }
            guard let tag = parseTag(at: open) else {
                index = html.index(after: open)
                continue
            }
            guard visit(tag) else { return }
            switch tag.name {
            case "script", "style", "noscript", "textarea", "title":
                let close = closing(tag.name, from: tag.end)
                index = html[close...].firstIndex(of: ">").map { html.index(after: $0) } ?? html.endIndex
            default:
                index = tag.end
            }
        }
    }

    /// Where `</name` starts (case-insensitive), or the end of the text.
    private func closing(_ name: String, from start: String.Index) -> String.Index {
        var index = start
        while let lt = html[index...].firstIndex(of: "<") {
            let after = html.index(after: lt)
            if html[after...].hasPrefix("/"), html[html.index(after: after)...].prefix(name.count).lowercased() == name { return lt }
            index = after
        }
        return html.endIndex
    }

    private func parseTag(at open: String.Index) -> Tag? {
        let bytes = html.utf8
        var i = bytes.index(after: open)
        func isNameByte(_ b: UInt8) -> Bool { (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b == 0x2d || b == 0x3a }
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0a || b == 0x0c || b == 0x0d || b == 0x2f }
        let nameStart = i
        guard i < bytes.endIndex, (bytes[i] >= 0x41 && bytes[i] <= 0x5a) || (bytes[i] >= 0x61 && bytes[i] <= 0x7a) else { return nil }
        while i < bytes.endIndex, isNameByte(bytes[i]) { i = bytes.index(after: i) }
        let name = html[nameStart..<i].lowercased()
        var attributes: [String: Substring] = [:]
        while i < bytes.endIndex {
            while i < bytes.endIndex, isSpace(bytes[i]) { i = bytes.index(after: i) }
            guard i < bytes.endIndex else { break }
            if bytes[i] == UInt8(ascii: ">") { return Tag(name: name, attributes: attributes, end: bytes.index(after: i)) }
            let attrStart = i
            while i < bytes.endIndex, !isSpace(bytes[i]), bytes[i] != UInt8(ascii: "="), bytes[i] != UInt8(ascii: ">") { i = bytes.index(after: i) }
            let attrName = html[attrStart..<i].lowercased()
            while i < bytes.endIndex, isSpace(bytes[i]), bytes[i] != 0x2f { i = bytes.index(after: i) }
            var value: Substring = ""
            if i < bytes.endIndex, bytes[i] == UInt8(ascii: "=") {
                i = bytes.index(after: i)
                while i < bytes.endIndex, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0a { i = bytes.index(after: i) }
                if i < bytes.endIndex, bytes[i] == 0x22 || bytes[i] == 0x27 {
                    let quote = bytes[i]
                    let valueStart = bytes.index(after: i)
                    guard let close = bytes[valueStart...].firstIndex(of: quote) else { return nil }
                    value = html[valueStart..<close]
                    i = bytes.index(after: close)
                } else {
                    let valueStart = i
                    while i < bytes.endIndex, bytes[i] != 0x20, bytes[i] != 0x09, bytes[i] != 0x0a, bytes[i] != UInt8(ascii: ">") { i = bytes.index(after: i) }
                    value = html[valueStart..<i]
                }
            }
            if attributes[attrName] == nil, !attrName.isEmpty { attributes[attrName] = Self.decodeEntities(value) }
        }
        return nil
    }

    /// The few entities that appear in URLs inside attributes.
    static func decodeEntities(_ value: Substring) -> Substring {
        guard value.contains("&") else { return value }
        var text = String(value)
        for (entity, character) in [("&quot;", "\""), ("&#39;", "'"), ("&#x27;", "'"), ("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")] {
            text = text.replacingOccurrences(of: entity, with: character)
        }
        return Substring(text)
    }
}
