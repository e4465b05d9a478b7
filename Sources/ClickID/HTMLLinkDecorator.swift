/// Carries click ids through an HTML document as it streams: `<a href>`, `<area href>`,
/// `<form action>` and `<meta http-equiv="refresh" content>` that point at hosts the rewriter
/// allows get the missing ids and pass-through parameters, with the redirect rules (never
/// replace, keep encoding, order and fragment). A GET form's browser drops its action's query,
/// so such a form gets hidden inputs instead. `<base href>` changes what relative targets mean.
///
/// Everything else passes through byte for byte. No DOM: a tag is held only until its `>` (at most
/// ``maxTagBytes``; a longer one passes through untouched), comments and the raw text of `script`,
/// `style`, `textarea`, `title` and the like are never looked into, so memory stays bounded
/// whatever the document's size and however it is cut into chunks.
public struct HTMLLinkDecorator: Sendable {
    public static let maxTagBytes = 16 * 1024

    private var rewriter: RedirectRewriter
    private let documentURL: URLReference
    private var sawBase = false
    private var state = State.text
    /// Bytes of a tag, or of a possible raw-text end tag, not yet written.
    private var pending: [UInt8] = []
    /// Where the current start tag is (``State/startTag``, ``State/oversizedTag``).
    private var scanner = TagScanner()
    /// Hyphens just seen in a comment.
    private var dashes = 0
    /// The raw-text element being skipped, and how much of `</name` has been seen.
    private var rawTextName: [UInt8] = []
    private var matched = 0

    /// Without payloads: the byte loop reassigns it often, and its fields live beside it.
    private enum State: Sendable {
        case text, tagOpen, markupDeclaration, startTag, oversizedTag
        /// Until the next `>`: end tags, doctypes, processing instructions, bogus comments.
        case passToClose
        case comment
        case rawText
    }

    /// - Parameter rewriter: the request's click ids and pass-through parameters, and the hosts
    ///   to decorate (for HTML: the site's decorate hosts and other sites under its cookie domain,
    ///   not its own hosts, whose pages read the cookie).
    public init(rewriter: RedirectRewriter) {
        self.rewriter = rewriter
        self.documentURL = rewriter.requestURL
    }

    /// The decorated bytes of `chunk` that can be written now.
    public mutating func feed(_ chunk: some Collection<UInt8>) -> [UInt8] {
        let bytes = Array(chunk)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 64)
        var i = 0
        while i < bytes.count {
            // Text and raw text are most of a document: copied in runs up to the next `<`.
            let inRun: Bool
            switch state {
            case .text: inRun = true
            case .rawText: inRun = matched == 0
            default: inRun = false
            }
            if inRun, bytes[i] != UInt8.lessThan {
                let end = bytes[i...].firstIndex(of: UInt8.lessThan) ?? bytes.count
                out += bytes[i..<end]
                i = end
                continue
            }
            consume(bytes[i], into: &out)
            i += 1
        }
        return out
    }

    /// What is still held at the end of the document, unchanged.
    public mutating func finish() -> [UInt8] {
        defer {
            pending = []
            state = .text
        }
        return pending
    }

    private mutating func consume(_ byte: UInt8, into out: inout [UInt8]) {
        switch state {
        case .text:
            if byte == UInt8.lessThan {
                pending = [byte]
                state = .tagOpen
            } else {
                out.append(byte)
            }
        case .tagOpen:
            switch byte {
            case UInt8.exclamation:
                pending.append(byte)
                state = .markupDeclaration
            case UInt8.slash, UInt8.question:
                flush(byte, into: &out)
                state = .passToClose
            case _ where byte.isASCIILetter:
                pending.append(byte)
                scanner = TagScanner()
                state = .startTag
            default:
                flush(into: &out)
                state = .text
                consume(byte, into: &out)
            }
        case .markupDeclaration:
            pending.append(byte)
            // `<!--` opens a comment; any other `<!` is a doctype or a bogus comment.
            if byte == UInt8.hyphen, pending.count <= 4 {
                if pending.count == 4 {
                    flush(into: &out)
                    dashes = 2
                    state = .comment
                }
                return
            }
            flush(into: &out)
            state = byte == UInt8.greaterThan ? .text : .passToClose
        case .startTag:
            pending.append(byte)
            if scanner.advance(byte) {
                // Most tags are neither targets nor raw text: only their name is read.
                let name = TagParser.name(of: pending)
                if Self.decoratedElements.contains(name) { out += decoratedTag(name) } else { out += pending }
                if Self.rawTextElements.contains(name) {
                    rawTextName = name
                    matched = 0
                    state = .rawText
                } else {
                    state = .text
                }
                pending = []
            } else if pending.count > Self.maxTagBytes {
                flush(into: &out)
                state = .oversizedTag
            }
        case .oversizedTag:
            out.append(byte)
            if scanner.advance(byte) { state = .text }
        case .passToClose:
            out.append(byte)
            if byte == UInt8.greaterThan { state = .text }
        case .comment:
            out.append(byte)
            if byte == UInt8.greaterThan, dashes >= 2 {
                state = .text
            } else {
                dashes = byte == UInt8.hyphen ? dashes + 1 : 0
            }
        case .rawText:
            // Looking for `</name` followed by a space, `/` or `>`; what may be its start is held.
            let expected: UInt8? = matched == 0 ? UInt8.lessThan : matched == 1 ? UInt8.slash : matched - 2 < rawTextName.count ? rawTextName[matched - 2] : nil
            if let expected {
                if byte.asciiLowercased == expected {
                    pending.append(byte)
                    matched += 1
                } else {
                    let wasMatching = matched > 0
                    flush(into: &out)
                    matched = 0
                    if wasMatching { consume(byte, into: &out) } else { out.append(byte) }
                }
            } else if byte.isHTMLSpace || byte == UInt8.slash || byte == UInt8.greaterThan {
                flush(byte, into: &out)
                state = byte == UInt8.greaterThan ? .text : .passToClose
            } else {
                flush(into: &out)
                matched = 0
                consume(byte, into: &out)
            }
        }
    }

    private mutating func flush(_ byte: UInt8? = nil, into out: inout [UInt8]) {
        out += pending
        if let byte { out.append(byte) }
        pending = []
    }

    // MARK: The tag

    private static let rawTextElements: Set<[UInt8]> = Set(["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"].map { Array($0.utf8) })
    private static let (anchor, area, base, form, meta) = (Array("a".utf8), Array("area".utf8), Array("base".utf8), Array("form".utf8), Array("meta".utf8))
    private static let decoratedElements: Set<[UInt8]> = [anchor, area, base, form, meta]

    /// The held tag, decorated when it is a target this document's links should carry ids to.
    private mutating func decoratedTag(_ name: [UInt8]) -> [UInt8] {
        let tag = TagParser(pending)
        switch name {
        case Self.base:
            // The first `<base href>` sets the base for everything after it.
            if !sawBase, let href = tag.attribute("href") {
                sawBase = true
                if let base = URLReference(href.value) { rewriter.requestURL = base.resolved(against: documentURL) }
            }
            return pending
        case Self.anchor, Self.area:
            guard let href = tag.attribute("href"), let rewritten = rewriter.rewriteLocation(href.value) else { return pending }
            return tag.replacing(href, with: rewritten)
        case Self.meta:
            guard tag.attribute("http-equiv")?.value.lowercased() == "refresh", let content = tag.attribute("content"),
                let rewritten = rewriter.rewriteRefresh(content.value)
            else { return pending }
            return tag.replacing(content, with: rewritten)
        case Self.form:
            let action = tag.attribute("action")
            let target = action?.value ?? ""
            if tag.attribute("method")?.value.lowercased() == "post" {
                guard let action, let rewritten = rewriter.rewriteLocation(target) else { return pending }
                return tag.replacing(action, with: rewritten)
            }
            // GET: the browser builds the query from the fields, so the ids go in as fields.
            guard rewriter.allowsTarget(target) else { return pending }
            var out = pending
            for (name, value) in rewriter.carriedParameters() {
                out += Array(#"<input type="hidden" name=""#.utf8) + HTMLAttribute.escaped(name, quote: UInt8.doubleQuote)
                out += Array(#"" value=""#.utf8) + HTMLAttribute.escaped(value, quote: UInt8.doubleQuote) + Array(#"">"#.utf8)
            }
            return out
        default:
            return pending
        }
    }
}

/// Finds the `>` that ends a start tag, skipping those inside quoted attribute values.
struct TagScanner: Sendable {
    private enum Position: Sendable { case name, beforeAttribute, attributeName, afterAttributeName, beforeValue, doubleQuoted, singleQuoted, unquoted }
    private var position = Position.name

    /// True when `byte` ends the tag.
    mutating func advance(_ byte: UInt8) -> Bool {
        let space = byte.isHTMLSpace
        switch position {
        case .name, .unquoted:
            if byte == UInt8.greaterThan { return true }
            if space || (position == .name && byte == UInt8.slash) { position = .beforeAttribute }
        case .beforeAttribute:
            if byte == UInt8.greaterThan { return true }
            if !space && byte != UInt8.slash { position = .attributeName }
        case .attributeName:
            if byte == UInt8.greaterThan { return true }
            if byte == UInt8.equals { position = .beforeValue } else if space { position = .afterAttributeName } else if byte == UInt8.slash { position = .beforeAttribute }
        case .afterAttributeName:
            if byte == UInt8.greaterThan { return true }
            if byte == UInt8.equals { position = .beforeValue } else if byte == UInt8.slash { position = .beforeAttribute } else if !space { position = .attributeName }
        case .beforeValue:
            if byte == UInt8.greaterThan { return true }
            if byte == UInt8.doubleQuote { position = .doubleQuoted } else if byte == UInt8.singleQuote { position = .singleQuoted } else if !space { position = .unquoted }
        case .doubleQuoted:
            if byte == UInt8.doubleQuote { position = .beforeAttribute }
        case .singleQuoted:
            if byte == UInt8.singleQuote { position = .beforeAttribute }
        }
        return false
    }
}

/// One complete start tag (`<` to `>`): its attributes where they sit.
struct TagParser {
    struct Attribute {
        var name: [UInt8]
        /// The value's bytes in the tag, inside its quotes.
        var range: Range<Int>
        var quote: UInt8?
        /// With character references decoded.
        var value: String
        /// For each byte of `value` (and its end), where it starts in the raw value.
        var rawOffsets: [Int]
    }

    let bytes: [UInt8]
    private(set) var attributes: [Attribute] = []

    /// The tag's name, lower-cased: the bytes after `<` up to a space, `/` or `>`.
    static func name(of bytes: [UInt8]) -> [UInt8] {
        var name: [UInt8] = []
        for byte in bytes.dropFirst() {
            if byte.isHTMLSpace || byte == UInt8.slash || byte == UInt8.greaterThan { break }
            name.append(byte.asciiLowercased)
        }
        return name
    }

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        var i = 1 + Self.name(of: bytes).count
        while i < bytes.count {
            while i < bytes.count, bytes[i].isHTMLSpace || bytes[i] == UInt8.slash { i += 1 }
            guard i < bytes.count, bytes[i] != UInt8.greaterThan else { break }
            var attributeName: [UInt8] = []
            // The first character may be `=` (a parse error HTML reads as part of the name).
            repeat {
                attributeName.append(bytes[i].asciiLowercased)
                i += 1
            } while i < bytes.count && !bytes[i].isHTMLSpace && ![UInt8.slash, UInt8.greaterThan, UInt8.equals].contains(bytes[i])
            var j = i
            while j < bytes.count, bytes[j].isHTMLSpace { j += 1 }
            guard j < bytes.count, bytes[j] == UInt8.equals else {
                attributes.append(Attribute(name: attributeName, range: i..<i, quote: nil, value: "", rawOffsets: [0]))
                continue
            }
            j += 1
            while j < bytes.count, bytes[j].isHTMLSpace { j += 1 }
            let range: Range<Int>
            var quote: UInt8?
            if j < bytes.count, bytes[j] == UInt8.doubleQuote || bytes[j] == UInt8.singleQuote {
                quote = bytes[j]
                let end = bytes[(j + 1)...].firstIndex(of: bytes[j]) ?? bytes.count
                range = (j + 1)..<end
                i = min(end + 1, bytes.count)
            } else {
                var end = j
                while end < bytes.count, !bytes[end].isHTMLSpace, bytes[end] != UInt8.greaterThan { end += 1 }
                range = j..<end
                i = end
            }
            let (value, offsets) = HTMLAttribute.decoded(bytes[range])
            attributes.append(Attribute(name: attributeName, range: range, quote: quote, value: value, rawOffsets: offsets))
        }
    }

    /// The first attribute of that name (later duplicates are ignored, as browsers do).
    func attribute(_ name: String) -> Attribute? {
        attributes.first { $0.name.elementsEqual(name.utf8) }
    }

    /// The tag with `attribute`'s value replaced by `value`, which is the old value with one run of
    /// text inserted (what the rewriters produce): only that run is written, escaped, so every
    /// original byte of the tag stays as it was.
    func replacing(_ attribute: Attribute, with value: String) -> [UInt8] {
        let quote = attribute.quote ?? UInt8.doubleQuote
        let old = Array(attribute.value.utf8)
        let new = Array(value.utf8)
        // A value that is not UTF-8 was repaired when read: its bytes no longer line up, so it stays.
        guard attribute.rawOffsets.count == old.count + 1 else { return bytes }
        let prefix = zip(old, new).prefix { $0 == $1 }.count
        let suffix = zip(old[prefix...].reversed(), new[prefix...].reversed()).prefix { $0 == $1 }.count
        let insertion = HTMLAttribute.escaped(String(decoding: new[prefix..<(new.count - suffix)], as: UTF8.self), quote: quote)
        let at = attribute.range.lowerBound + attribute.rawOffsets[prefix]
        // An unquoted value gains quotes: what was added may hold characters it cannot.
        let wrap: [UInt8] = attribute.quote == nil ? [quote] : []
        return Array(bytes[..<attribute.range.lowerBound]) + wrap + Array(bytes[attribute.range.lowerBound..<at]) + insertion
            + Array(bytes[at..<attribute.range.upperBound]) + wrap + Array(bytes[attribute.range.upperBound...])
    }
}

/// Character references in attribute values: the ones URLs use are decoded; anything else stays.
enum HTMLAttribute {
    private static let named: [String: String] = ["amp": "&", "quot": "\"", "apos": "'", "lt": "<", "gt": ">"]

    /// The value, and for each of its bytes (and its end) the offset in `raw` where it starts.
    static func decoded(_ raw: ArraySlice<UInt8>) -> (String, [Int]) {
        var out: [UInt8] = []
        var offsets: [Int] = []
        var i = raw.startIndex
        while i < raw.endIndex {
            if raw[i] == UInt8.ampersand, let semicolon = raw[i...].prefix(12).firstIndex(of: UInt8.semicolon) {
                let name = String(decoding: raw[(i + 1)..<semicolon], as: UTF8.self)
                var replacement: String?
                if let text = named[name] {
                    replacement = text
                } else if name.hasPrefix("#x") || name.hasPrefix("#X"), let code = UInt32(name.dropFirst(2), radix: 16) {
                    replacement = Unicode.Scalar(code).map { String(Character($0)) }
                } else if name.hasPrefix("#"), let code = UInt32(name.dropFirst(), radix: 10) {
                    replacement = Unicode.Scalar(code).map { String(Character($0)) }
                }
                if let replacement {
                    out += replacement.utf8
                    offsets += Array(repeating: i - raw.startIndex, count: replacement.utf8.count)
                    i = semicolon + 1
                    continue
                }
            }
            out.append(raw[i])
            offsets.append(i - raw.startIndex)
            i += 1
        }
        offsets.append(raw.count)
        return (String(decoding: out, as: UTF8.self), offsets)
    }

    static func escaped(_ text: String, quote: UInt8) -> [UInt8] {
        var out: [UInt8] = []
        for byte in text.utf8 {
            switch byte {
            case UInt8.ampersand: out += Array("&amp;".utf8)
            case quote where quote == UInt8.doubleQuote: out += Array("&quot;".utf8)
            case quote where quote == UInt8.singleQuote: out += Array("&#39;".utf8)
            default: out.append(byte)
            }
        }
        return out
    }
}
