import NIOCore
import NIOHTTP1
import Testing

@testable import Gateway

/// ``HeaderFields`` keeps fields as the bytes of their lines and drops removed ones only from its
/// index, sharing bytes between copies until one adds: the cases here hold it to a plain list of
/// pairs, including what a head writer makes of it.
@Suite struct HeaderFieldsTests {
    @Test func lookupsIgnoreTheCaseOfNames() {
        var fields: HeaderFields = ["Set-Cookie": "a=1", "Host": "lp.example"]
        fields.add(name: "set-cookie", value: "b=2")
        #expect(fields.first(name: "SET-COOKIE") == "a=1")
        #expect(fields["set-cookie"] == ["a=1", "b=2"])
        #expect(fields.contains(name: "host") && !fields.contains(name: "hos") && !fields.contains(name: "hostx"))
        fields.replaceOrAdd(name: "SET-cookie", value: "c=3")
        // The first takes the new value where it stood, the second goes.
        #expect(fields.map(\.name) == ["SET-cookie", "Host"] && fields["set-cookie"] == ["c=3"])
        fields.remove(name: "HOST")
        #expect(fields.count == 1 && fields.first(name: "host") == nil)
        // Names that differ only in characters a case fold could confuse (`^`/`~`, `@`/`` ` ``) stay apart.
        let close: HeaderFields = ["x^a": "1", "x`a": "2"]
        #expect(close.first(name: "x~a") == nil && close.first(name: "x@a") == nil && close.first(name: "X^A") == "1")
    }

    @Test func valuesAreTrimmedAndListsSplit() {
        let fields: HeaderFields = ["Cache-Control": " public,  max-age=60 ,,", "cache-control": "\ts-maxage=5\t"]
        #expect(fields["cache-control"] == ["public,  max-age=60 ,,", "s-maxage=5"])
        #expect(fields[canonicalForm: "CACHE-CONTROL"] == ["public", "max-age=60", "s-maxage=5"])
        #expect(fields.nameAndValueBytes == "Cache-Control".utf8.count * 2 + "public,  max-age=60 ,,".utf8.count + "s-maxage=5".utf8.count)
    }

    /// Only a field added by name and value is checked; one that may not be written makes the
    /// whole block unwritable, also once it is removed again (its bytes are still there).
    @Test func aFieldThatMayNotBeWrittenMarksTheBlock() {
        for (name, value) in [("x", "a\r\nb"), ("bad name", "v"), ("", "v"), ("x", "a\u{0}")] {
            var fields: HeaderFields = ["host": "a"]
            fields.add(name: name, value: value)
            #expect(!fields.isWritable, "\(name.debugDescription): \(value.debugDescription)")
            var merged: HeaderFields = ["host": "b"]
            merged.add(contentsOf: fields)
            #expect(!merged.isWritable)
        }
        let fine: HeaderFields = ["x-note": "a\tcafé", "x-empty": ""]
        #expect(fine.isWritable && fine.first(name: "x-empty") == "")
        // A value written in place is checked the same way.
        for (value, writable) in [("v=1; Path=/", true), ("v=1\r\nx: y", false), ("v\u{0}", false)] {
            var written: HeaderFields = ["host": "a"]
            let bytes = Array(value.utf8)
            written.add(name: "set-cookie", valueLength: bytes.count) { out in out.update(from: bytes, count: bytes.count) }
            #expect(written.isWritable == writable && written.first(name: "set-cookie") == value, "\(value.debugDescription)")
        }
    }

    /// Random edits on a block and on a plain list of pairs give the same fields, the same
    /// lookups and the same written head; a copy taken on the way never changes.
    @Test func randomEditsMatchAListOfPairs() throws {
        var random = SplitMix(seed: 41)
        let names = ["Host", "host", "X-A", "x-a", "Set-Cookie", "cookie", "Accept", "x-forwarded-for", "ETag"]
        let values = ["", "1", "a=b; c=d", "lp.example.com:8443", "W/\"x\"", String(repeating: "v", count: 300)]
        for _ in 0..<300 {
            var fields = HeaderFields()
            var model: [(name: String, value: String)] = []
            var snapshots: [(HeaderFields, [(name: String, value: String)])] = []
            for _ in 0..<Int.random(in: 0...24, using: &random) {
                let name = names.randomElement(using: &random)!
                let value = values.randomElement(using: &random)!
                switch Int.random(in: 0..<6, using: &random) {
                case 0, 1:
                    fields.add(name: name, value: value)
                    model.append((name, value))
                case 2:
                    fields.remove(name: name)
                    model.removeAll { $0.name.lowercased() == name.lowercased() }
                case 3:
                    fields.replaceOrAdd(name: name, value: value)
                    if let first = model.firstIndex(where: { $0.name.lowercased() == name.lowercased() }) {
                        model[first] = (name, value)
                        model = model.enumerated().filter { $0.offset <= first || $0.element.name.lowercased() != name.lowercased() }.map(\.element)
                    } else {
                        model.append((name, value))
                    }
                case 4:
                    let other = HeaderFields([(name, value), ("x-b", value)])
                    fields.add(contentsOf: other)
                    model += [(name, value), ("x-b", value)]
                default:
                    snapshots.append((fields, model))
                }
            }
            for (snapshot, expected) in snapshots + [(fields, model)] {
                #expect(snapshot.map(\.name) == expected.map(\.name) && snapshot.map(\.value) == expected.map(\.value))
                for name in names {
                    let matching = expected.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
                    #expect(snapshot[name.uppercased()] == matching && snapshot.first(name: name) == matching.first)
                }
                let head = RequestHead(version: .http1_1, method: .GET, uri: "/", headers: snapshot)
                let draft = try #require(HeadWriter.draft(head, allocator: ByteBufferAllocator()))
                let written = try #require(HeadWriter.finish(draft, of: head, edit: HeadWriter.FramingEdit(), allocator: ByteBufferAllocator()))
                let lines = expected.map { "\($0.name): \($0.value)\r\n" }.joined()
                #expect(String(buffer: written) == "GET / HTTP/1.1\r\n" + lines + "\r\n")
            }
        }
    }

    /// What a proxy forwards shares the received bytes; adding to it leaves the received head as it was.
    @Test func forwardedFieldsLeaveTheReceivedOnesAlone() {
        let received: HeaderFields = ["Host": "a", "Connection": "x-drop", "X-Drop": "1", "Accept": "*/*"]
        var forwarded = HeaderRules.forwardable(received, connection: HeaderRules.connectionOptions(received))
        forwarded.add(name: "x-forwarded-for", value: "203.0.113.7")
        #expect(forwarded.map(\.name) == ["Host", "Accept", "x-forwarded-for"])
        #expect(received.map(\.name) == ["Host", "Connection", "X-Drop", "Accept"])
        // Two copies that both add, with room to add in place as a parsed head has: neither
        // writes over the other's bytes.
        var roomy = HeaderFields(reservingBytes: 1024, fields: 8)
        roomy.add(contentsOf: received)
        var first = roomy
        var second = roomy
        first.add(name: "x-first", value: "1")
        second.add(name: "x-second", value: "2")
        first.add(name: "x-first-again", value: "11")
        #expect(first.map(\.value) == ["a", "x-drop", "1", "*/*", "1", "11"] && second.map(\.value) == ["a", "x-drop", "1", "*/*", "2"])
    }
}
