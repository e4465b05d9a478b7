import Events
import Foundation
import Testing

private func json(_ text: String) throws -> JSONValue { try JSONValue.parse(Array(text.utf8)) }

private let now = Date(timeIntervalSince1970: 1_760_000_000)

private func normalize(_ text: String, enrichment: EventEnrichment = EventEnrichment(), normalizer: EventNormalizer = EventNormalizer())
    throws -> Result<NormalizedEvent, EventRejection>
{
    normalizer.normalize(try json(text), index: 0, enrichment: enrichment, now: now)
}

@Suite struct PIITests {
    @Test func tiktokGoldenVectors() {
        #expect(PII.hashEmail(" ALICE_abc@gmail.com ") == "848a771458438fc2ec420560d769fb9b9b86851ee338ec56517baabd79d3bb4f")
        #expect(PII.hashPhone("(+1)2133734253") == "9f7ec22d72092cd3c0b58726ed9c2d91b92e51a3f29837508fb2948bb22dd2fd")
        #expect(PII.hashExternalID("user_123") == "80fba0ae1c48e3978e43e4efc365e14e12ea0c830ba8ba5b9a2dafc7e3f2ab8b")
    }

    @Test func phonesBecomeE164BeforeHashing() {
        let e164 = PII.hashPhone("+12133734253")
        #expect(PII.hashPhone("+1 (213) 373-4253") == e164)
        #expect(PII.hashPhone("0012133734253") == e164)
        #expect(PII.hashPhone("2133734253", defaultCountryCode: "1") == e164)
        #expect(PII.hashPhone("030 1234567", defaultCountryCode: "49") == PII.hashPhone("+49301234567"))
        #expect(PII.hashPhone("12") == nil)
    }

    @Test func hashesPassThroughAndExternalIDsKeepTheirCase() {
        let digest = String(repeating: "AB", count: 32)
        #expect(PII.hashEmail(digest) == digest.lowercased())
        #expect(PII.hashExternalID("User_123") != PII.hashExternalID("user_123"))
        #expect(PII.hashEmail("not-an-address") == nil)
    }
}

@Suite struct NormalizerTests {
    @Test func aBrowserEventIsEnrichedWithoutOverwritingWhatItCarries() throws {
        let enrichment = EventEnrichment(
            ttclid: "E.C.P.cookie", ttp: "ttp-cookie", ip: "203.0.113.7", userAgent: "UA/1", pageURL: "https://lp.example.com/checkout",
            referrer: "https://lp.example.com/offer", visitorID: "0123456789abcdef0123456789abcdef")
        let event = try normalize("""
            {"event":"CompletePayment","event_id":"ord-1","properties":{"value":19.99,"currency":"eur","order_id":"A1","contents":[{"content_id":"sku"}]},
             "user":{"email":" ALICE_abc@gmail.com ","ip":"198.51.100.1"},"page":{"url":"https://lp.example.com/thanks"}}
            """, enrichment: enrichment).get()
        #expect(event.event == "Purchase")
        #expect(event.eventID == "ord-1")
        #expect(event.eventTime == 1_760_000_000)
        #expect(event.user.email == ["848a771458438fc2ec420560d769fb9b9b86851ee338ec56517baabd79d3bb4f"])
        #expect(event.user.ip == "198.51.100.1", "the event's own value wins")
        #expect(event.user.ttclid == "E.C.P.cookie" && event.user.ttp == "ttp-cookie" && event.user.userAgent == "UA/1")
        #expect(event.page == NormalizedEvent.Page(url: "https://lp.example.com/thanks", referrer: "https://lp.example.com/offer"))
        #expect(event.properties["currency"] == .string("EUR"))
        #expect(event.visitorID == "0123456789abcdef0123456789abcdef")
        let payload = event.apiPayload.serialized
        #expect(!payload.contains("ALICE") && !payload.contains("alice"), "raw PII never reaches the payload")
        #expect(payload.contains("\"event_id\":\"ord-1\""))
    }

    @Test func eventIDsAreStringsAndDerivedFromOrderIDs() throws {
        #expect(try normalize(#"{"event":"Purchase","event_id":12345}"#).get().eventID == "12345")
        let a = try normalize(#"{"event":"Purchase","properties":{"order_id":"A-77"}}"#).get().eventID
        let b = try normalize(#"{"event":"Purchase","properties":{"order_id":"A-77"}}"#).get().eventID
        let other = try normalize(#"{"event":"AddToCart","properties":{"order_id":"A-77"}}"#).get().eventID
        #expect(a == b && a.hasPrefix("oid-") && a != other)
        let random1 = try normalize(#"{"event":"ViewContent"}"#).get().eventID
        let random2 = try normalize(#"{"event":"ViewContent"}"#).get().eventID
        #expect(random1 != random2)
    }

    @Test(arguments: [
        (#"{"event":"purchase"}"#, "event"),
        (#"{"event":"Purchase","event_time":1760000900}"#, "event_time"),
        (#"{"event":"Purchase","event_time":1759000000}"#, "event_time"),
        (#"{"event":"Purchase","event_time":1e30}"#, "event_time"),
        (#"{"event":"Purchase","event_time":"yesterday"}"#, "event_time"),
        (#"{"event":"Purchase","properties":{"currency":"EURO"}}"#, "properties.currency"),
        (#"{"event":"Purchase","properties":{"value":"19.99"}}"#, "properties.value"),
        (#"{"event":"Purchase","user":{"email":"nope"}}"#, "user.email"),
        (#"{"event":"Purchase","event_id":{"a":1}}"#, "event_id"),
        (#"{"event_id":"x"}"#, "event"),
        (#"[1]"#, ""),
    ])
    func badEventsNameTheField(body: String, field: String) throws {
        switch try normalize(body) {
        case .success: Issue.record("accepted \(body)")
        case .failure(let rejection): #expect(rejection.problems.map(\.field).contains(field), "\(rejection.problems)")
        }
    }

    @Test func storedEventsRoundTrip() throws {
        let event = try normalize(#"{"event":"Purchase","event_id":"r-1","properties":{"value":1.25,"currency":"EUR","contents":[{"id":"a\"b"}]},"user":{"email":"x@y.example","phone":"+12133734253"},"page":{"url":"https://p/é"},"limited_data_use":true,"visitor_id":"v1"}"#).get()
        let text = event.storageJSON.serialized
        #expect(NormalizedEvent(storage: try json(text)) == event)
        #expect(try json(text) == event.storageJSON, "the serializer and the parser agree")
    }

    @Test func millisecondsAreDetectedAndCustomEventsAllowed() throws {
        #expect(try normalize(#"{"event":"Purchase","event_time":1759999000123}"#).get().eventTime == 1_759_999_000)
        let normalizer = EventNormalizer(customEvents: ["BookDemo"])
        #expect(try normalize(#"{"event":"BookDemo"}"#, normalizer: normalizer).get().event == "BookDemo")
    }

    @Test func batchShapes() throws {
        #expect(EventNormalizer.events(in: try json(#"{"event":"Lead"}"#))?.count == 1)
        #expect(EventNormalizer.events(in: try json(#"[{"event":"Lead"},{"event":"Lead"}]"#))?.count == 2)
        #expect(EventNormalizer.events(in: try json(#"{"event_source":"web","event_source_id":"C1","data":[{"event":"Lead"}]}"#))?.count == 1)
        #expect(EventNormalizer.events(in: try json(#"{"nothing":1}"#)) == nil)
    }

    @Test func malformedJSONIsAnError() {
        for bad in ["{\"event\": ", "[1,]", "{\"a\" 1}", "01", "\"\u{01}\"", "[\"\\x\"]", "tru", "1 2", "\"\\ud800\"",
                    String(repeating: "[", count: 100) + String(repeating: "]", count: 100)] {
            #expect(throws: (any Error).self, "\(bad)") { try json(bad) }
        }
    }

    @Test func jsonValuesParseExactly() throws {
        let value = try json(#" {"s":"a\"b\\c\/\n\u00e9\ud83d\ude00","n":[-1.5e2,0,12345678901234],"t":true,"f":false,"z":null,"e":{},"a":[]} "#)
        #expect(value["s"] == .string("a\"b\\c/\né😀"))
        #expect(value["n"] == .array([.number(-150), .number(0), .number(12_345_678_901_234)]))
        #expect(value["t"] == .bool(true) && value["f"] == .bool(false) && value["z"] == .null)
        #expect(value["e"] == .object([:]) && value["a"] == .array([]))
        #expect(try json("\"plain é text\"") == .string("plain é text"))
    }
}
