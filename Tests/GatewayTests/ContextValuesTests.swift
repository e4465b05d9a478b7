import Testing

@testable import Gateway

/// Filters share per-request state through ``ContextValues``: each key reads back what was last
/// stored under it, and nothing stored under another key.
@Suite struct ContextValuesTests {
    enum Count: ContextKey { typealias Value = Int }
    enum Name: ContextKey { typealias Value = String }
    enum Unused: ContextKey { typealias Value = Int }

    @Test func eachKeyKeepsItsOwnValue() {
        var values = ContextValues()
        #expect(values[Count.self] == nil)
        values[Count.self] = 1
        values[Name.self] = "landing"
        values[Count.self] = 2
        #expect(values[Count.self] == 2 && values[Name.self] == "landing" && values[Unused.self] == nil)
        values[Count.self] = nil
        #expect(values[Count.self] == nil && values[Name.self] == "landing")
        values[Unused.self] = nil
        values[Count.self] = 3
        #expect(values[Count.self] == 3 && values[Name.self] == "landing")
    }
}
