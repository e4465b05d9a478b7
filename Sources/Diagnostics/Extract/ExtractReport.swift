import ClickID
import Foundation

/// `clickgate extract`: what each given URL carries.
public struct ExtractReport: Sendable, Codable {
    public struct Entry: Sendable, Codable {
        public struct ClickID: Sendable, Codable {
            public var parameter: String
            public var platform: String
            public var value: String
            /// Why the gateway would refuse it; absent when usable.
            public var problem: String?
            /// The wrapping parameters, outermost first, when the id sits in a URL inside a parameter.
            public var nestedIn: [String]?

            enum CodingKeys: String, CodingKey { case parameter, platform, value, problem, nestedIn = "nested_in" }
        }

        public struct Parameter: Sendable, Codable {
            public var name: String
            public var value: String
            public var nestedIn: [String]?

            enum CodingKeys: String, CodingKey { case name, value, nestedIn = "nested_in" }
        }

        public var url: String
        public var error: String?
        public var clickIDs: [ClickID] = []
        public var campaign: [Parameter] = []
        public var warnings: [String] = []

        enum CodingKeys: String, CodingKey { case url, error, clickIDs = "click_ids", campaign, warnings }
    }

    public var entries: [Entry]

    public init(urls: [String], registry: ClickIDRegistry = .standard) {
        entries = urls.map { text in
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard let url = URLReference(trimmed) else {
                return Entry(url: trimmed, error: "not a URL: it contains spaces or control characters (encode them as %20)")
            }
            let found = TrackingParameters.inspect(url, registry: registry)
            var entry = Entry(url: trimmed)
            if url.scheme == nil, url.query == nil {
                entry.error = "not a URL: give it whole, with https:// and its ?query"
                return entry
            }
            entry.clickIDs = found.clickIDs.map {
                .init(parameter: $0.parameter, platform: $0.platform, value: $0.value, problem: $0.problem?.rawValue, nestedIn: $0.nestedIn.isEmpty ? nil : $0.nestedIn)
            }
            entry.campaign = found.campaign.map { .init(name: $0.name, value: $0.value, nestedIn: $0.nestedIn.isEmpty ? nil : $0.nestedIn) }
            entry.warnings = found.warnings
            return entry
        }
    }

    /// 0 every URL carries a usable click id, 1 some carry none, 2 some input is not a URL.
    public var exitCode: Int32 {
        if entries.contains(where: { $0.error != nil }) { return 2 }
        return entries.allSatisfy { $0.clickIDs.contains { $0.problem == nil } } ? 0 : 1
    }

    public func rendered(on terminal: Terminal) -> String {
        var lines: [String] = []
        for entry in entries {
            if !lines.isEmpty { lines.append("") }
            lines.append(terminal.bold(entry.url))
            if let error = entry.error {
                lines.append("  " + terminal.red("error: " + error))
                continue
            }
            if entry.clickIDs.isEmpty && entry.campaign.isEmpty {
                lines.append("  " + terminal.yellow("no click ids and no campaign parameters"))
                continue
            }
            lines.append("  " + terminal.dim("PLATFORM".padded(11) + "PARAMETER".padded(14) + "VALUE"))
            for id in entry.clickIDs {
                let nested = id.nestedIn.map { terminal.dim("  (inside \($0.joined(separator: " → ")))") } ?? ""
                let row = "  " + id.platform.padded(11) + id.parameter.padded(14) + id.value + nested
                lines.append(id.problem == nil ? row : terminal.red(row + "  [\(id.problem!)]"))
            }
            for parameter in entry.campaign {
                let nested = parameter.nestedIn.map { terminal.dim("  (inside \($0.joined(separator: " → ")))") } ?? ""
                lines.append("  " + terminal.dim("campaign".padded(11)) + parameter.name.padded(14) + parameter.value + nested)
            }
            if entry.clickIDs.isEmpty { lines.append("  " + terminal.yellow("no click id")) }
            for warning in entry.warnings { lines.append("  " + terminal.yellow("! " + warning)) }
        }
        return lines.joined(separator: "\n")
    }
}
