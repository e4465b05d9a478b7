import ClickID

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The fields of one HTTP head, kept as the bytes of `name: value` lines.
///
/// Not NIO's `HTTPHeaders`, an array of string pairs: with it a proxied request made a string of
/// every field it received (≈ 190 instructions each), walked strings for every lookup, checked
/// every byte again when it wrote the head out (≈ 600 instructions a field) and tore the array
/// down through generic tuple witnesses (≈ 160 a field); a plaintext request took 9 % fewer
/// instructions without it. Here a parsed head is copied once into one buffer, laid out as it
/// will be written; the engine reads fields as bytes, filters ask for the few strings they need,
/// and writing a head copies runs of lines. Offsets are 32-bit: heads are bounded far below that
/// by the parsers' limits.
///
/// Names are compared ignoring ASCII case. A field added with a name that is not a token, or a
/// value with a control byte, makes the block unwritable: the encoders refuse it rather than let
/// a CR or LF end a head early or smuggle a field.
public struct HeaderFields: Sendable {
    /// Where one field lies in ``bytes``: the name is `start..<nameEnd`, `: ` follows it, the value
    /// runs to `valueEnd`, then CRLF.
    struct Line: Sendable {
        var start: Int32
        var nameEnd: Int32
        var valueEnd: Int32

        var valueStart: Int { Int(nameEnd) + 2 }
        /// The whole line, CRLF included.
        var range: Range<Int> { Int(start)..<(Int(valueEnd) + 2) }
    }

    /// Removed fields leave their bytes behind: only ``lines`` says what the block holds.
    private(set) var bytes = FieldBytes()
    private(set) var lines: [Line] = []
    /// No field added since the block was made holds a byte a head may not carry.
    private(set) var isWritable = true

    public init() {}

    /// Room for a parsed head's fields and what filters usually add to them.
    init(reservingBytes byteCount: Int, fields fieldCount: Int) {
        bytes = FieldBytes(capacity: byteCount)
        lines.reserveCapacity(fieldCount)
    }

    /// A block that starts as a copy of a parsed head's field section, with room for `extra` more
    /// bytes: the lines already laid out as `name: value` CRLF are then indexed where they lie
    /// (``indexReceivedLine(start:nameEnd:valueEnd:)``), one copy for the whole section instead of
    /// one a field.
    init(receivedSection section: UnsafeBufferPointer<UInt8>, room extra: Int, fields fieldCount: Int) {
        bytes = FieldBytes(capacity: section.count + extra)
        if let source = section.baseAddress {
            bytes.append(count: section.count) { $0.update(from: source, count: section.count) }
        }
        lines.reserveCapacity(fieldCount)
    }

    /// Room in the index for `count` fields.
    mutating func reserveCapacity(fields count: Int) {
        lines.reserveCapacity(count)
    }

    /// Indexes a line of the received section (offsets from its start) whose name is a token, whose
    /// name is followed by exactly `: `, and whose value, ending right before CRLF, holds no control byte.
    mutating func indexReceivedLine(start: Int, nameEnd: Int, valueEnd: Int) {
        lines.append(Line(start: Int32(start), nameEnd: Int32(nameEnd), valueEnd: Int32(valueEnd)))
    }

    public init(_ fields: [(String, String)]) {
        self.init(reservingBytes: fields.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 4 }, fields: fields.count)
        for (name, value) in fields { add(name: name, value: value) }
    }

    public var count: Int { lines.count }
    public var isEmpty: Bool { lines.isEmpty }

    // MARK: Adding

    /// Appends a field whose name is a token and whose value holds no control byte and no
    /// surrounding whitespace, as a parser checked them: nothing is checked again.
    mutating func appendChecked(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        appendLine(name: name, valueLength: value.count) { out in
            if let source = value.baseAddress { out.update(from: source, count: value.count) }
        }
    }

    /// Writes `name: value` CRLF at the end, the value put in place by `write`, and indexes it.
    /// Returns the line.
    @discardableResult
    private mutating func appendLine(
        name: UnsafeBufferPointer<UInt8>, valueLength length: Int, writingValue write: (UnsafeMutablePointer<UInt8>) -> Void
    ) -> Line {
        let start = bytes.count
        bytes.append(count: name.count + length + 4) { out in
            if let source = name.baseAddress { out.update(from: source, count: name.count) }
            out[name.count] = UInt8(ascii: ":")
            out[name.count + 1] = UInt8(ascii: " ")
            write(out + name.count + 2)
            out[name.count + 2 + length] = UInt8(ascii: "\r")
            out[name.count + 3 + length] = UInt8(ascii: "\n")
        }
        let nameEnd = start + name.count
        let line = Line(start: Int32(start), nameEnd: Int32(nameEnd), valueEnd: Int32(nameEnd + 2 + length))
        lines.append(line)
        return line
    }

    /// ``appendChecked(name:value:)`` for strings: a field the gateway composed from values
    /// already held to a field's rules (a parsed or decoded field, an address it formatted, an id
    /// it validated), where ``add(name:value:)`` would scan both again (≈ 300 instructions a
    /// field). Debug builds, which the in-process tests run, still check.
    mutating func appendChecked(_ name: String, _ value: String) {
        name.withUTF8Buffer { name in
            value.withUTF8Buffer { value in
                assert(!name.isEmpty && ByteClass.token.admits(all: name) && ByteClass.fieldValue.admits(all: value), "unchecked field \(name)")
                appendChecked(name: name, value: value)
            }
        }
    }

    /// ``appendChecked(_:_:)`` for a value `write` puts in place (`length` bytes).
    mutating func appendChecked(_ name: String, valueLength length: Int, writingValue write: (UnsafeMutablePointer<UInt8>) -> Void) {
        name.withUTF8Buffer { name in
            let line = appendLine(name: name, valueLength: length, writingValue: write)
            assert(
                !name.isEmpty && ByteClass.token.admits(all: name) && withBytes { ByteClass.fieldValue.admits(all: Self.value(of: line, in: $0)) },
                "unchecked field \(name)")
        }
    }

    /// Whole field lines the gateway composed, `name: value` CRLF each (names tokens, values held
    /// to a field's rules), `length` bytes that `write` puts in place in one append, then indexed
    /// where they lie: the four forwarding fields appended one by one cost ≈ 2,000 instructions a
    /// request. Debug builds, which the in-process tests run, check each line.
    mutating func appendCheckedLines(length: Int, writing write: (UnsafeMutablePointer<UInt8>) -> Void) {
        let start = bytes.count
        bytes.append(count: length, write)
        let end = start + length
        let block = bytes
        block.withBytes { all in
            let base = all.baseAddress!
            func next(_ byte: UInt8, from index: Int) -> Int {
                UnsafeRawPointer(base).distance(to: UnsafeRawPointer(memchr(base + index, Int32(byte), end - index)!))
            }
            var index = start
            while index < end {
                let colon = next(UInt8(ascii: ":"), from: index)
                let cr = next(UInt8(ascii: "\r"), from: colon)
                let line = Line(start: Int32(index), nameEnd: Int32(colon), valueEnd: Int32(cr))
                assert(
                    colon > index && all[colon + 1] == UInt8(ascii: " ") && all[cr + 1] == UInt8(ascii: "\n")
                        && ByteClass.token.admits(all: Self.name(of: line, in: all))
                        && ByteClass.fieldValue.admits(all: Self.value(of: line, in: all)), "unchecked field line")
                lines.append(line)
                index = cr + 2
            }
        }
    }

    /// ``appendChecked(_:_:)``, the field put first: its bytes go at the end like any other's, only
    /// its place in the index moves.
    mutating func prependChecked(_ name: String, _ value: String) {
        appendChecked(name, value)
        lines.insert(lines.removeLast(), at: 0)
    }

    /// Appends a field. Surrounding whitespace is trimmed from the value, as a parser would.
    public mutating func add(name: String, value: String) {
        name.withUTF8Buffer { name in
            value.withUTF8Buffer { value in add(name: name, value: value) }
        }
    }

    /// Appends a field whose value `write` puts in place (`length` bytes), with no string made for
    /// it; name and value are checked as ``add(name:value:)`` checks them.
    public mutating func add(name: String, valueLength length: Int, writingValue write: (UnsafeMutablePointer<UInt8>) -> Void) {
        name.withUTF8Buffer { name in
            let line = appendLine(name: name, valueLength: length, writingValue: write)
            let valid = withBytes { bytes in
                !name.isEmpty && ByteClass.token.admits(all: name) && ByteClass.fieldValue.admits(all: Self.value(of: line, in: bytes))
            }
            if !valid { isWritable = false }
        }
    }

    mutating func add(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        var first = 0
        var last = value.count
        while first < last, value[first] == space || value[first] == tab { first += 1 }
        while last > first, value[last - 1] == space || value[last - 1] == tab { last -= 1 }
        let trimmed = UnsafeBufferPointer(rebasing: value[first..<last])
        if name.isEmpty || !ByteClass.token.admits(all: name) || !ByteClass.fieldValue.admits(all: trimmed) { isWritable = false }
        appendChecked(name: name, value: trimmed)
    }

    public mutating func add(contentsOf other: HeaderFields) {
        guard !other.isEmpty else { return }
        let offset = Int32(bytes.count)
        other.bytes.withBytes { appended in
            bytes.append(count: appended.count) { out in
                if let source = appended.baseAddress { out.update(from: source, count: appended.count) }
            }
        }
        lines.reserveCapacity(lines.count + other.lines.count)
        for line in other.lines {
            lines.append(Line(start: line.start + offset, nameEnd: line.nameEnd + offset, valueEnd: line.valueEnd + offset))
        }
        if !other.isWritable { isWritable = false }
    }

    /// The first field named `name` gets `value` where it stands (checked as ``add(name:value:)``
    /// checks it), and any later one goes; with none, the field is added. A rewritten `Location`
    /// took a removal pass over the whole index and an addition (≈ 1,300 instructions).
    public mutating func replaceOrAdd(name: String, value: String) {
        guard let index = firstIndex(named: name) else { return add(name: name, value: value) }
        add(name: name, value: value)
        lines[index] = lines.removeLast()
        removeAll(after: index) { field, _ in Self.sameName(field, name) }
    }

    public mutating func remove(name: String) {
        removeAll { field, _ in Self.sameName(field, name) }
    }

    /// Removes the fields `drop` picks, given each field's name and value. The index is written
    /// only once a line is dropped, compacted where it is (a new array cost ≈ 500 instructions a
    /// replaced `Location`); the bytes stay.
    mutating func removeAll(where drop: (_ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) -> Bool) {
        removeAll(after: -1, where: drop)
    }

    /// ``removeAll(where:)`` among the fields after the one at `index`.
    private mutating func removeAll(
        after index: Int, where drop: (_ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) -> Bool
    ) {
        let bytes = self.bytes
        bytes.withBytes { bytes in
            func dropped(_ line: Line) -> Bool { drop(Self.name(of: line, in: bytes), Self.value(of: line, in: bytes)) }
            guard let first = lines[(index + 1)...].firstIndex(where: dropped) else { return }
            var kept = first
            for index in (first + 1)..<lines.count where !dropped(lines[index]) {
                lines[kept] = lines[index]
                kept += 1
            }
            lines.removeSubrange(kept...)
        }
    }

    // MARK: Reading

    /// Calls `body` with every field's name and value, in order.
    func forEach(_ body: (_ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) throws -> Void) rethrows {
        try withBytes { bytes in
            for line in lines { try body(Self.name(of: line, in: bytes), Self.value(of: line, in: bytes)) }
        }
    }

    /// The value of the first field named `name`, handed to `body` as bytes; nil when there is none.
    func withFirstValue<Result>(of name: String, _ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result? {
        guard let index = firstIndex(named: name) else { return nil }
        return withBytes { body(Self.value(of: lines[index], in: $0)) }
    }

    /// Where the first field named `name` is in the index.
    private func firstIndex(named name: String) -> Int? {
        name.withUTF8Buffer { name in
            withBytes { bytes in lines.firstIndex { Self.sameName(Self.name(of: $0, in: bytes), name) } }
        }
    }

    public func first(name: String) -> String? {
        withFirstValue(of: name) { String(decoding: $0, as: UTF8.self) }
    }

    public func contains(name: String) -> Bool {
        withFirstValue(of: name) { _ in true } ?? false
    }

    /// Every value of the fields named `name`, in order.
    public subscript(name: String) -> [String] {
        var values: [String] = []
        name.withUTF8Buffer { name in
            forEach { field, value in
                if Self.sameName(field, name) { values.append(String(decoding: value, as: UTF8.self)) }
            }
        }
        return values
    }

    /// The comma-separated elements of every field named `name`, trimmed, empty ones left out
    /// (RFC 9110 §5.6.1).
    public subscript(canonicalForm name: String) -> [Substring] {
        self[name].flatMap { $0.split(separator: ",") }.map { element in
            var element = element
            while element.first == " " || element.first == "\t" { element.removeFirst() }
            while element.last == " " || element.last == "\t" { element.removeLast() }
            return element
        }.filter { !$0.isEmpty }
    }

    /// The length of every name and value together, as HTTP/2 counts a head's size.
    var nameAndValueBytes: Int {
        lines.reduce(0) { $0 + Int($1.valueEnd - $1.start) - 2 }
    }

    /// The bytes a head writer copies, and where each field's line lies in them.
    func withLines<Result>(_ body: (_ bytes: UnsafeBufferPointer<UInt8>, _ lines: [Line]) -> Result) -> Result {
        withBytes { body($0, lines) }
    }

    static func name(of line: Line, in bytes: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(rebasing: bytes[Int(line.start)..<Int(line.nameEnd)])
    }

    static func value(of line: Line, in bytes: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(rebasing: bytes[line.valueStart..<Int(line.valueEnd)])
    }

    /// Whether two field names are equal, ignoring ASCII case. Lengths first: that settles
    /// nearly every comparison.
    static func sameName(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<a.count where a[i] != b[i] && a[i].asciiLowercased != b[i].asciiLowercased { return false }
        return true
    }

    static func sameName(_ a: UnsafeBufferPointer<UInt8>, _ b: String) -> Bool {
        b.withUTF8Buffer { sameName(a, $0) }
    }

    private func withBytes<Result>(_ body: (UnsafeBufferPointer<UInt8>) throws -> Result) rethrows -> Result {
        try bytes.withBytes(body)
    }
}

/// A growable run of bytes, copied on write. Not an array: a field goes in with one write
/// through a pointer, where each `append(contentsOf:)` of an array cost about a hundred
/// instructions (and a `ByteBuffer`'s write three hundred, with its exclusivity checks).
///
/// Sendable as an array is: storage is written only while this value holds the one reference.
struct FieldBytes: @unchecked Sendable {
    private final class Storage: ManagedBuffer<Void, UInt8> {}

    private var storage: Storage?
    /// Kept here, not in the storage's header: reading a class's stored property costs a dynamic
    /// exclusivity check, about seventy instructions.
    private var capacity = 0
    private(set) var count = 0

    init() {}

    init(capacity: Int) {
        if capacity > 0 { allocate(capacity) }
    }

    private mutating func allocate(_ capacity: Int) {
        let grown = unsafeDowncast(Storage.create(minimumCapacity: capacity) { _ in }, to: Storage.self)
        if let storage {
            let count = self.count
            storage.withUnsafeMutablePointerToElements { old in
                grown.withUnsafeMutablePointerToElements { $0.update(from: old, count: count) }
            }
        }
        storage = grown
        self.capacity = capacity
    }

    /// Appends `length` bytes that `write` puts in place.
    mutating func append(count length: Int, _ write: (UnsafeMutablePointer<UInt8>) -> Void) {
        let needed = count + length
        if needed > capacity || !isKnownUniquelyReferenced(&storage) {
            allocate(Swift.max(needed, capacity * 2, 64))
        }
        storage!.withUnsafeMutablePointerToElements { write($0 + count) }
        count = needed
    }

    func withBytes<Result>(_ body: (UnsafeBufferPointer<UInt8>) throws -> Result) rethrows -> Result {
        guard let storage else { return try body(UnsafeBufferPointer(start: nil, count: 0)) }
        return try storage.withUnsafeMutablePointerToElements { try body(UnsafeBufferPointer(start: $0, count: count)) }
    }
}

extension HeaderFields: Sequence {
    public struct Iterator: IteratorProtocol {
        private let fields: HeaderFields
        private var index = 0

        fileprivate init(_ fields: HeaderFields) {
            self.fields = fields
        }

        public mutating func next() -> (name: String, value: String)? {
            guard index < fields.lines.count else { return nil }
            let line = fields.lines[index]
            index += 1
            return fields.withBytes { bytes in
                (String(decoding: HeaderFields.name(of: line, in: bytes), as: UTF8.self), String(decoding: HeaderFields.value(of: line, in: bytes), as: UTF8.self))
            }
        }
    }

    public func makeIterator() -> Iterator { Iterator(self) }

    public var underestimatedCount: Int { lines.count }
}

extension HeaderFields: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }
}

extension HeaderFields: Equatable {
    /// The same fields in the same order; names compared ignoring case.
    public static func == (lhs: HeaderFields, rhs: HeaderFields) -> Bool {
        guard lhs.count == rhs.count, lhs.isWritable == rhs.isWritable else { return false }
        return lhs.withBytes { left in
            rhs.withBytes { right in
                zip(lhs.lines, rhs.lines).allSatisfy { a, b in
                    sameName(name(of: a, in: left), name(of: b, in: right)) && value(of: a, in: left).elementsEqual(value(of: b, in: right))
                }
            }
        }
    }
}

extension HeaderFields: CustomStringConvertible {
    public var description: String {
        "[" + map { "\($0.name): \($0.value)" }.joined(separator: ", ") + "]"
    }
}

private let space = UInt8(ascii: " ")
private let tab = UInt8(ascii: "\t")
