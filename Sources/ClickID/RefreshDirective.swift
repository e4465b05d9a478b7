/// A `Refresh` header or `<meta http-equiv="refresh">` content, parsed as browsers do (HTML's
/// "shared declarative refresh steps"): a delay, `;` or `,`, an optional `url=`, the URL, quotes
/// optional.
///
/// The URL is kept as a range of the original text so a rewrite can replace it and leave the rest
/// (delay, spacing, quote style) exactly as written.
public struct RefreshDirective: Sendable, Equatable {
    public var text: String
    /// The delay as written (`0`, `5.5`); browsers wait this long before going.
    public var delay: Substring
    /// The target, without its quotes.
    public var url: Substring

    /// Nil when there is no URL (a plain `Refresh: 5` reloads the same page) or no delay.
    public init?(_ text: String) {
        self.text = text
        let bytes = text.utf8
        var index = bytes.startIndex
        func skipSpaces() { while index < bytes.endIndex, bytes[index] == 0x20 || bytes[index] == 0x09 { index = bytes.index(after: index) } }
        skipSpaces()
        let delayStart = index
        while index < bytes.endIndex, (bytes[index] >= 0x30 && bytes[index] <= 0x39) || bytes[index] == .dot { index = bytes.index(after: index) }
        guard index > delayStart else { return nil }
        delay = text[delayStart..<index]
        skipSpaces()
        guard index < bytes.endIndex, bytes[index] == .semicolon || bytes[index] == 0x2c else { return nil }
        index = bytes.index(after: index)
        skipSpaces()
        var value = text[index...]
        if let eq = value.firstIndex(ofByte: .equals), value[..<eq].trimmingSpaces.lowercased() == "url" {
            value = value[value.utf8.index(after: eq)...].trimmingSpaces
        }
        value = value.trimmingSpaces
        if let first = value.utf8.first, first == 0x27 || first == 0x22 {
            value = value[value.utf8.index(after: value.startIndex)...]
            if let close = value.firstIndex(ofByte: first) { value = value[..<close] }
        }
        guard !value.isEmpty else { return nil }
        url = value
    }

    /// The same directive pointing at `newURL`, everything else as written.
    public func replacingURL(with newURL: String) -> String {
        String(text[..<url.startIndex]) + newURL + String(text[url.endIndex...])
    }
}
