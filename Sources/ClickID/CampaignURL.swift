/// Builds a landing URL with UTM parameters for an ad (`clickgate url build`).
///
/// The base URL's own parameters keep their bytes and order, except that click-id parameters move to
/// the front: URLs get truncated by redirect layers and log pipelines, and the click id is the part
/// that must survive. UTM values that are ad-platform macros (`__CAMPAIGN_NAME__`,
/// `{{campaign.name}}`) are written literally so the platform can fill them in.
public struct CampaignURL: Sendable, Equatable {
    public var url: String
    /// What the builder changed that the user may not expect.
    public var notes: [String]

    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// `fields` in the order to write them: (`utm_source`, value)… ; empty values are problems.
    public static func build(base: String, fields: [(name: String, value: String)], registry: ClickIDRegistry = .standard) throws(Problem) -> CampaignURL {
        guard let reference = URLReference(base) else {
            throw Problem(description: "--base is not a URL (spaces and control characters must be percent-encoded): \(base)")
        }
        guard reference.isWeb, let host = reference.host, !host.isEmpty else {
            throw Problem(description: "--base must be an absolute http:// or https:// URL with a host, such as https://shop.example/landing")
        }
        var notes: [String] = []
        let setting = Set(fields.map(\.name))
        for field in fields {
            let trimmed = field.value.trimmingSpaces
            if trimmed.isEmpty { throw Problem(description: "--\(field.name.dropFirst(4)) is empty") }
            if field.value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
                throw Problem(description: "--\(field.name.dropFirst(4)) contains a control character")
            }
            if trimmed.count != field.value.count { notes.append("\(field.name): leading/trailing spaces removed") }
        }

        var clickIDs: [String] = []
        var others: [String] = []
        for item in Query.items(reference.query) {
            let name = Query.percentDecoded(item.name) ?? String(item.name)
            let piece = item.value.map { "\(item.name)=\($0)" } ?? String(item.name)
            if registry.kind(forParameter: name) != nil {
                clickIDs.append(piece)
            } else if setting.contains(name) {
                notes.append("replaced the base URL's \(piece)")
            } else {
                others.append(piece)
            }
        }
        if !clickIDs.isEmpty, !others.isEmpty, Query.items(reference.query).first.map({ registry.kind(forParameter: String($0.name)) == nil }) == true {
            notes.append("moved \(clickIDs.map { String($0.prefix { $0 != "=" }) }.joined(separator: ", ")) to the front of the query")
        }
        let added = fields.map { field -> String in
            let value = String(field.value.trimmingSpaces)
            let literal = TrackingParameters.isUnfilledMacro(value) && value.utf8.allSatisfy { ByteClass.unreserved.admits($0) || $0 == 0x7b || $0 == 0x7d }
            return "\(field.name)=" + (literal ? value : Query.encodedValue(value))
        }
        var result = reference
        result.query = (clickIDs + others + added).joined(separator: "&")
        return CampaignURL(url: result.text, notes: notes)
    }
}
