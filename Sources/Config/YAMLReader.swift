import Yams

/// One thing wrong with a configuration, named by its key path (`sites[0].upstream`).
public struct ConfigProblem: Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var line: Int?

    public var description: String {
        let at = line.map { " (line \($0))" } ?? ""
        return path.isEmpty ? "\(message)\(at)" : "\(path): \(message)\(at)"
    }
}

/// Collects problems while the loader walks the document, so one run reports them all.
final class Diagnostics {
    private(set) var problems: [ConfigProblem] = []

    func report(_ path: String, _ message: String, _ node: Node? = nil) {
        problems.append(ConfigProblem(path: path, message: message, line: node?.mark?.line))
    }
}

/// A YAML node with the key path that led to it. Accessors report type mismatches and return nil.
struct YAMLValue {
    let node: Node
    let path: String
    let diagnostics: Diagnostics

    var isNull: Bool { node.null != nil && node.scalar?.style == .plain }

    func report(_ message: String) {
        diagnostics.report(path, message, node)
    }

    func object(allowedKeys: Set<String>) -> YAMLObject? {
        guard case .mapping(let mapping) = node else {
            report("expected a mapping (key: value), found \(node.kindName)")
            return nil
        }
        var fields: [String: YAMLValue] = [:]
        for (keyNode, valueNode) in mapping {
            guard let key = keyNode.string else {
                diagnostics.report(path, "keys must be strings", keyNode)
                continue
            }
            let child = YAMLValue(node: valueNode, path: path.isEmpty ? key : "\(path).\(key)", diagnostics: diagnostics)
            guard allowedKeys.contains(key) else {
                let known = allowedKeys.sorted().joined(separator: ", ")
                child.report("unknown key (known keys here: \(known))")
                continue
            }
            fields[key] = child
        }
        return YAMLObject(fields: fields, path: path, node: node, diagnostics: diagnostics)
    }

    /// A mapping whose keys are names chosen by the user (e.g. `events.pixels`).
    func namedEntries() -> [(String, YAMLValue)]? {
        guard case .mapping(let mapping) = node else {
            report("expected a mapping of names to entries, found \(node.kindName)")
            return nil
        }
        return mapping.compactMap { keyNode, valueNode in
            guard let key = keyNode.string else { return nil }
            return (key, YAMLValue(node: valueNode, path: "\(path).\(key)", diagnostics: diagnostics))
        }
    }

    func array() -> [YAMLValue]? {
        guard case .sequence(let sequence) = node else {
            report("expected a list, found \(node.kindName)")
            return nil
        }
        return sequence.enumerated().map { i, element in
            YAMLValue(node: element, path: "\(path)[\(i)]", diagnostics: diagnostics)
        }
    }

    func string() -> String? {
        guard case .scalar(let scalar) = node else {
            report("expected a string, found \(node.kindName)")
            return nil
        }
        return scalar.string
    }

    func nonEmptyString() -> String? {
        guard let s = string() else { return nil }
        if s.isEmpty { report("must not be empty") ; return nil }
        return s
    }

    func int(in range: ClosedRange<Int>) -> Int? {
        guard let value = node.int else {
            report("expected a whole number, found \(node.describedValue)")
            return nil
        }
        guard range.contains(value) else {
            report("\(value) is out of range \(range.lowerBound)...\(range.upperBound)")
            return nil
        }
        return value
    }

    func bool() -> Bool? {
        guard let value = node.bool, node.scalar?.style == .plain else {
            report("expected true or false, found \(node.describedValue)")
            return nil
        }
        return value
    }

    func stringList() -> [String]? {
        array()?.compactMap { $0.nonEmptyString() }
    }

    func parsed<T>(_ parse: (String) -> Result<T, ValueError>) -> T? {
        let text: String
        if let i = node.int, node.scalar?.style == .plain { text = String(i) } else {
            guard let s = string() else { return nil }
            text = s
        }
        switch parse(text) {
        case .success(let value): return value
        case .failure(let error): report(error.reason); return nil
        }
    }
}

struct YAMLObject {
    let fields: [String: YAMLValue]
    let path: String
    let node: Node
    let diagnostics: Diagnostics

    /// The field, or nil when absent or explicitly null.
    subscript(key: String) -> YAMLValue? {
        guard let value = fields[key], !value.isNull else { return nil }
        return value
    }

    func required(_ key: String) -> YAMLValue? {
        guard let value = self[key] else {
            diagnostics.report(path.isEmpty ? key : "\(path).\(key)", "is required", node)
            return nil
        }
        return value
    }
}

extension Node {
    var kindName: String {
        switch self {
        case .scalar(let s): return s.string.isEmpty ? "an empty value" : "a scalar '\(s.string)'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    var describedValue: String {
        if case .scalar(let s) = self { return s.string.isEmpty ? "an empty value" : "'\(s.string)'" }
        return kindName
    }
}
