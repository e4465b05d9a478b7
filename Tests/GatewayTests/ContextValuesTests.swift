import Testing

@testable import Gateway

/// Filters share per-request state through ``ContextValues``: each key reads back what was last
/// stored under it, and nothing stored under another key.
@Suite struct ContextValuesTests {
    final class Count: Sendable {
        let value: Int
        init(_ value: Int) { self.value = value }
    }
    final class Name: Sendable {
        let value: String
        init(_ value: String) { self.value = value }
    }
    enum CountKey: ContextKey { typealias Value = Count }
    enum NameKey: ContextKey { typealias Value = Name }
    enum UnusedKey: ContextKey { typealias Value = Count }

    @Test func eachKeyKeepsItsOwnValue() {
        var values = ContextValues()
        #expect(values[CountKey.self] == nil)
        values[CountKey.self] = Count(1)
        values[NameKey.self] = Name("landing")
        values[CountKey.self] = Count(2)
        #expect(values[CountKey.self]?.value == 2 && values[NameKey.self]?.value == "landing" && values[UnusedKey.self] == nil)
        values[CountKey.self] = nil
        #expect(values[CountKey.self] == nil && values[NameKey.self]?.value == "landing")
        values[UnusedKey.self] = nil
        values[CountKey.self] = Count(3)
        #expect(values[CountKey.self]?.value == 3 && values[NameKey.self]?.value == "landing")
    }

    @Test func aValueReadBackIsTheObjectStored() {
        var values = ContextValues()
        let stored = Count(7)
        values[CountKey.self] = stored
        // Two keys of the same value type stay apart.
        values[UnusedKey.self] = Count(8)
        #expect(values[CountKey.self] === stored && values[UnusedKey.self]?.value == 8)
    }
}
