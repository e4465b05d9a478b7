import Foundation

/// Styling for human-readable output: colours only on a terminal, never when `NO_COLOR` is set
/// (no-color.org) or the terminal is dumb.
public struct Terminal: Sendable {
    public var colors: Bool

    public init(colors: Bool) { self.colors = colors }

    public static var standardOutput: Terminal {
        let environment = ProcessInfo.processInfo.environment
        return Terminal(colors: isatty(STDOUT_FILENO) != 0 && environment["NO_COLOR"] == nil && environment["TERM"] != "dumb")
    }

    func paint(_ text: String, _ code: String) -> String { colors ? "\u{1b}[\(code)m\(text)\u{1b}[0m" : text }
    public func red(_ text: String) -> String { paint(text, "31") }
    public func green(_ text: String) -> String { paint(text, "32") }
    public func yellow(_ text: String) -> String { paint(text, "33") }
    public func dim(_ text: String) -> String { paint(text, "2") }
    public func bold(_ text: String) -> String { paint(text, "1") }
}

/// Reports as JSON for scripts: keys sorted, slashes left alone.
public func jsonText(_ value: some Encodable) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: (try? encoder.encode(value)) ?? Data("null".utf8), as: UTF8.self)
}

extension Double {
    /// `0.4 ms`, `12 ms`, `1.35 s`.
    var millisecondsText: String {
        if self < 1 { return String(format: "%.1f ms", self) }
        if self < 1000 { return String(format: "%.0f ms", self) }
        return String(format: "%.2f s", self / 1000)
    }
}

extension String {
    /// Left-aligned in a column of `width` (at least one space after).
    public func padded(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
