#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

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
///
/// Every page of a click goes through here, so the loop works in runs: text up to the next `<`
/// and the insides of comments and end tags up to the next `>` are found with `memchr` and copied
/// whole, a start tag is scanned in one tight loop, its name is read into a word (no allocation,
/// no hash), and only the attributes a target needs are decoded.
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
    private var rawTextName = TagName.unlisted
    private var matched = 0

    /// Without payloads: the loop reassigns it often, and its fields live beside it.
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
        var out: [UInt8] = []
        out.reserveCapacity(chunk.count + 64)
        if chunk.withContiguousStorageIfAvailable({ decorate($0, into: &out) }) == nil {
            Array(chunk).withUnsafeBufferPointer { decorate($0, into: &out) }
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

    private mutating func decorate(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        var i = 0
        while i < bytes.count {
            switch state {
            case .rawText where matched == 0, .text:
                // Up to the next `<`: a tag, or in raw text what may start its `</name`.
                let end = bytes.firstIndex(of: .lessThan, from: i) ?? bytes.count
                out.append(contentsOf: bytes[i..<end])
                i = end
                if i < bytes.count {
                    pending.removeAll(keepingCapacity: true)
                    pending.append(.lessThan)
                    if state == .text { state = .tagOpen } else { matched = 1 }
                    i += 1
                }
            case .passToClose, .comment:
                i = passToClose(bytes, from: i, into: &out)
            case .startTag:
                i = startTag(bytes, from: i, into: &out)
            case .oversizedTag:
                let start = i
                while i < bytes.count {
                    i += 1
                    if scanner.advance(bytes[i - 1]) {
                        state = .text
                        break
                    }
                }
                out.append(contentsOf: bytes[start..<i])
            case .tagOpen, .markupDeclaration, .rawText:
                if step(bytes[i], into: &out) { i += 1 }
            }
        }
    }

    /// Up to and with the next `>`; a comment ends only at a `>` after two hyphens (`-->`, or
    /// `<!-->` whose opening hyphens count).
    private mutating func passToClose(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, into out: inout [UInt8]) -> Int {
        var from = start
        while let close = bytes.firstIndex(of: .greaterThan, from: from) {
            if state == .passToClose || Self.hyphens(before: close, from: from, in: bytes, carried: dashes) >= 2 {
                out.append(contentsOf: bytes[start...close])
                state = .text
                return close + 1
            }
            dashes = 0
            from = close + 1
        }
        if state == .comment { dashes = Self.hyphens(before: bytes.count, from: from, in: bytes, carried: dashes) }
        out.append(contentsOf: bytes[start...])
        return bytes.count
    }

    /// The hyphens that end `bytes[from..<end]`, with `carried` ones before it when all of it is hyphens.
    private static func hyphens(before end: Int, from: Int, in bytes: UnsafeBufferPointer<UInt8>, carried: Int) -> Int {
        var count = 0
        while end - count > from, bytes[end - count - 1] == .hyphen { count += 1 }
        return end - count == from ? carried + count : count
    }

    /// A start tag's bytes up to its `>` (or the chunk's end) join the held ones; one that grows
    /// past ``maxTagBytes`` before its `>` is let through untouched.
    private mutating func startTag(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, into out: inout [UInt8]) -> Int {
        let room = Self.maxTagBytes - pending.count
        var i = start
        var closed = false
        while i < bytes.count {
            i += 1
            if scanner.advance(bytes[i - 1]) {
                closed = true
                break
            }
            if i - start > room { break }
        }
        pending.append(contentsOf: bytes[start..<i])
        if closed {
            endStartTag(into: &out)
        } else if pending.count > Self.maxTagBytes {
            out += pending
            pending.removeAll(keepingCapacity: true)
            state = .oversizedTag
        }
        return i
    }

    private mutating func endStartTag(into out: inout [UInt8]) {
        // Most tags are neither targets nor raw text: only their name is read.
        let name = TagName(of: pending)
        if Self.decoratedElements.contains(name) { writeDecorated(name, into: &out) } else { out += pending }
        pending.removeAll(keepingCapacity: true)
        if Self.rawTextElements.contains(name) {
            rawTextName = name
            matched = 0
            state = .rawText
        } else {
            state = .text
        }
    }

    /// One byte of the short states: after `<`, after `<!`, and matching a raw-text end tag.
    /// False when the byte is to be read again in the state this one moved to.
    private mutating func step(_ byte: UInt8, into out: inout [UInt8]) -> Bool {
        switch state {
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
                return false
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
                return true
            }
            flush(into: &out)
            state = byte == UInt8.greaterThan ? .text : .passToClose
        default:
            // Raw text, `matched` bytes of `</name` held: the rest of the name, then a space, `/` or `>`.
            if matched - 2 < rawTextName.count {
                let expected = matched == 1 ? UInt8.slash : rawTextName[matched - 2]
                guard byte.asciiLowercased == expected else {
                    flush(into: &out)
                    matched = 0
                    return false
                }
                pending.append(byte)
                matched += 1
            } else if byte.endsTagName {
                flush(byte, into: &out)
                state = byte == UInt8.greaterThan ? .text : .passToClose
            } else {
                flush(into: &out)
                matched = 0
                return false
            }
        }
        return true
    }

    private mutating func flush(_ byte: UInt8? = nil, into out: inout [UInt8]) {
        out += pending
        if let byte { out.append(byte) }
        pending.removeAll(keepingCapacity: true)
    }

    // MARK: The tag

    private static let rawTextElements: [TagName] = ["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"]
    private static let (anchor, area, base, form, meta): (TagName, TagName, TagName, TagName, TagName) = ("a", "area", "base", "form", "meta")
    private static let decoratedElements = [anchor, area, base, form, meta]

    /// The held tag, decorated when it is a target this document's links should carry ids to.
    private mutating func writeDecorated(_ name: TagName, into out: inout [UInt8]) {
        let tag = TagParser(pending)
        switch name {
        case Self.base:
            // The first `<base href>` sets the base for everything after it.
            if !sawBase, let href = tag.attribute("href") {
                sawBase = true
                if let base = URLReference(tag.value(of: href).text) { rewriter.requestURL = base.resolved(against: documentURL) }
            }
        case Self.anchor, Self.area:
            if let href = tag.attribute("href") {
                let value = tag.value(of: href)
                if let rewritten = rewriter.rewriteLocation(value.text) { return tag.write(replacing: href, value: value, with: rewritten, into: &out) }
            }
        case Self.meta:
            if let equiv = tag.attribute("http-equiv"), tag.value(of: equiv).text.lowercased() == "refresh", let content = tag.attribute("content") {
                let value = tag.value(of: content)
                if let rewritten = rewriter.rewriteRefresh(value.text) { return tag.write(replacing: content, value: value, with: rewritten, into: &out) }
            }
        case Self.form:
            let action = tag.attribute("action")
            let value = action.map(tag.value(of:))
            if let method = tag.attribute("method"), tag.value(of: method).text.lowercased() == "post" {
                if let action, let value, let rewritten = rewriter.rewriteLocation(value.text) {
                    return tag.write(replacing: action, value: value, with: rewritten, into: &out)
                }
                break
            }
            // GET: the browser builds the query from the fields, so the ids go in as fields.
            guard rewriter.allowsTarget(value?.text ?? "") else { break }
            out += pending
            for (name, value) in rewriter.carriedParameters() {
                out += #"<input type="hidden" name=""#.utf8
                HTMLAttribute.escape(name.utf8, quote: UInt8.doubleQuote, into: &out)
                out += #"" value=""#.utf8
                HTMLAttribute.escape(value.utf8, quote: UInt8.doubleQuote, into: &out)
                out += #"">"#.utf8
            }
            return
        default:
            break
        }
        out += pending
    }
}

extension UnsafeBufferPointer<UInt8> {
    /// The first `byte` at or after `start`, by `memchr`.
    fileprivate func firstIndex(of byte: UInt8, from start: Int) -> Int? {
        guard start < count, let base = baseAddress, let found = memchr(base + start, Int32(byte), count - start) else { return nil }
        return UnsafeRawPointer(base).distance(to: UnsafeRawPointer(found))
    }
}

extension UInt8 {
    /// What ends a tag's name: a space, `/` or `>`.
    fileprivate var endsTagName: Bool { isHTMLSpace || self == .slash || self == .greaterThan }
}

/// A tag's name, lower-cased, in one word: every element the decorator acts on has a name of at
/// most eight letters, so a tag is told apart with no allocation and no hash.
struct TagName: Equatable, ExpressibleByStringLiteral {
    private let packed: UInt64
    let count: Int

    /// Any name longer than eight bytes: none the decorator acts on.
    static let unlisted = TagName(packed: 0, count: 0)

    private init(packed: UInt64, count: Int) {
        self.packed = packed
        self.count = count
    }

    init(stringLiteral name: StaticString) {
        var packed: UInt64 = 0
        for index in 0..<name.utf8CodeUnitCount { packed |= UInt64(name.utf8Start[index]) << (8 * index) }
        self.init(packed: packed, count: name.utf8CodeUnitCount)
    }

    /// The name of the tag in `bytes` (from `<`): the bytes after it up to a space, `/` or `>`.
    init(of bytes: [UInt8]) {
        var packed: UInt64 = 0
        var count = 0
        for byte in bytes.dropFirst() {
            if byte.endsTagName { break }
            guard count < 8 else {
                self = .unlisted
                return
            }
            packed |= UInt64(byte.asciiLowercased) << (8 * count)
            count += 1
        }
        self.init(packed: packed, count: count)
    }

    subscript(index: Int) -> UInt8 { UInt8(truncatingIfNeeded: packed >> (8 * index)) }
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

/// One complete start tag (`<` to `>`): its attributes where they sit, read when asked for.
struct TagParser {
    struct Attribute {
        /// The name's bytes in the tag.
        var name: Range<Int>
        /// The value's bytes in the tag, inside its quotes.
        var range: Range<Int>
        var quote: UInt8?
    }

    let bytes: [UInt8]

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// The first attribute named `name` (lower case; later duplicates are ignored, as browsers do).
    func attribute(_ name: StaticString) -> Attribute? {
        var i = 1
        while i < bytes.count, !bytes[i].endsTagName { i += 1 }
        while let attribute = next(from: &i) {
            if attribute.name.count == name.utf8CodeUnitCount,
                zip(bytes[attribute.name], UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)).allSatisfy({ $0.asciiLowercased == $1 })
            {
                return attribute
            }
        }
        return nil
    }

    /// The attribute starting at or after `i` (past spaces and `/`), and `i` moved past it.
    private func next(from i: inout Int) -> Attribute? {
        while i < bytes.count, bytes[i].isHTMLSpace || bytes[i] == UInt8.slash { i += 1 }
        guard i < bytes.count, bytes[i] != UInt8.greaterThan else { return nil }
        let nameStart = i
        // The first character may be `=` (a parse error HTML reads as part of the name).
        repeat { i += 1 } while i < bytes.count && !bytes[i].isHTMLSpace && bytes[i] != UInt8.slash && bytes[i] != UInt8.greaterThan && bytes[i] != UInt8.equals
        let name = nameStart..<i
        var j = i
        while j < bytes.count, bytes[j].isHTMLSpace { j += 1 }
        guard j < bytes.count, bytes[j] == UInt8.equals else { return Attribute(name: name, range: i..<i, quote: nil) }
        j += 1
        while j < bytes.count, bytes[j].isHTMLSpace { j += 1 }
        if j < bytes.count, bytes[j] == UInt8.doubleQuote || bytes[j] == UInt8.singleQuote {
            let end = bytes[(j + 1)...].firstIndex(of: bytes[j]) ?? bytes.count
            i = min(end + 1, bytes.count)
            return Attribute(name: name, range: (j + 1)..<end, quote: bytes[j])
        }
        var end = j
        while end < bytes.count, !bytes[end].isHTMLSpace, bytes[end] != UInt8.greaterThan { end += 1 }
        i = end
        return Attribute(name: name, range: j..<end, quote: nil)
    }

    /// The attribute's value with character references decoded.
    func value(of attribute: Attribute) -> HTMLAttribute.Value {
        HTMLAttribute.decoded(bytes[attribute.range])
    }

    /// Writes the tag with `attribute`'s value (read as `value`) replaced by `new`, which is the
    /// old value with one run of text inserted (what the rewriters produce): only that run is
    /// written, escaped, so every original byte of the tag stays as it was.
    func write(replacing attribute: Attribute, value: HTMLAttribute.Value, with new: String, into out: inout [UInt8]) {
        let quote = attribute.quote ?? UInt8.doubleQuote
        let rawOffsets = value.offsets ?? Array(0...attribute.range.count)
        let old = Array(value.text.utf8)
        let new = Array(new.utf8)
        // A value that is not UTF-8 was repaired when read: its bytes no longer line up, so it stays.
        guard rawOffsets.count == old.count + 1 else { return out += bytes }
        var prefix = 0
        while prefix < old.count, prefix < new.count, old[prefix] == new[prefix] { prefix += 1 }
        var suffix = 0
        while suffix < old.count - prefix, suffix < new.count - prefix, old[old.count - 1 - suffix] == new[new.count - 1 - suffix] { suffix += 1 }
        let at = attribute.range.lowerBound + rawOffsets[prefix]
        out += bytes[..<attribute.range.lowerBound]
        // An unquoted value gains quotes: what was added may hold characters it cannot.
        if attribute.quote == nil { out.append(quote) }
        out += bytes[attribute.range.lowerBound..<at]
        HTMLAttribute.escape(new[prefix..<(new.count - suffix)], quote: quote, into: &out)
        out += bytes[at..<attribute.range.upperBound]
        if attribute.quote == nil { out.append(quote) }
        out += bytes[attribute.range.upperBound...]
    }
}

/// Character references in attribute values: the ones URLs use are decoded; anything else stays.
enum HTMLAttribute {
    private static let named: [String: String] = ["amp": "&", "quot": "\"", "apos": "'", "lt": "<", "gt": ">"]

    struct Value {
        let text: String
        /// For each byte of `text` (and its end), the offset in the raw value where it starts;
        /// nil when nothing was decoded (each byte is where it was).
        let offsets: [Int]?
    }

    /// The value: most have no reference at all and are read as they are.
    static func decoded(_ raw: ArraySlice<UInt8>) -> Value {
        guard raw.contains(UInt8.ampersand) else { return Value(text: String(decoding: raw, as: UTF8.self), offsets: nil) }
        var out: [UInt8] = []
        var offsets: [Int] = []
        out.reserveCapacity(raw.count)
        offsets.reserveCapacity(raw.count + 1)
        var i = raw.startIndex
        while i < raw.endIndex {
            // Up to the next `&` as it is.
            let run = raw[i...].firstIndex(of: UInt8.ampersand) ?? raw.endIndex
            out += raw[i..<run]
            offsets += (i - raw.startIndex)..<(run - raw.startIndex)
            i = run
            guard i < raw.endIndex else { break }
            if let semicolon = raw[i...].prefix(12).firstIndex(of: UInt8.semicolon) {
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
                    offsets += repeatElement(i - raw.startIndex, count: replacement.utf8.count)
                    i = semicolon + 1
                    continue
                }
            }
            out.append(raw[i])
            offsets.append(i - raw.startIndex)
            i += 1
        }
        offsets.append(raw.count)
        return Value(text: String(decoding: out, as: UTF8.self), offsets: offsets)
    }

    /// Appends `text` with `&` and the quote escaped.
    static func escape(_ text: some Sequence<UInt8>, quote: UInt8, into out: inout [UInt8]) {
        for byte in text {
            switch byte {
            case UInt8.ampersand: out += "&amp;".utf8
            case quote where quote == UInt8.doubleQuote: out += "&quot;".utf8
            case quote where quote == UInt8.singleQuote: out += "&#39;".utf8
            default: out.append(byte)
            }
        }
    }
}
