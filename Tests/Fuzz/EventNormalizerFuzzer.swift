// libFuzzer entry point for the event normaliser (Sources/Events: the JSON layer, vocabulary, PII
// and normaliser, compiled by scripts/fuzz with a stand-in for swift-crypto): every event body
// the ingest paths accept is split and normalised here. Each invariant below is a crash when broken.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func eventNormalizerFuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let body = try? JSONValue.parse(Array(UnsafeBufferPointer(start: data, count: size))),
        let events = EventNormalizer.events(in: body)
    else { return 0 }
    let normalizer = EventNormalizer(customEvents: ["Signup"], defaultCountryCode: "49")
    let enrichment = EventEnrichment(ttclid: "E.C.P.fuzz", ttp: "ttp-fuzz", ip: "203.0.113.9", userAgent: "fuzz", pageURL: "https://lp.example/")
    let now = Date(timeIntervalSince1970: 1_760_000_000)
    for (index, raw) in events.enumerated() {
        switch normalizer.normalize(raw, index: index, enrichment: enrichment, now: now) {
        case .success(let event):
            precondition(!event.event.isEmpty && !event.eventID.isEmpty, "an accepted event without a name or id")
            // Only digests leave the normaliser: 64 lower-case hex characters each.
            for digest in (event.user.email ?? []) + (event.user.phone ?? []) + (event.user.externalID ?? []) {
                precondition(digest.utf8.count == 64 && digest.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }, "not a digest: \(digest)")
            }
            // What the outbox stores comes back as the same event.
            let stored = event.storageJSON.serialized
            guard let parsed = try? JSONValue.parse(Array(stored.utf8)), let back = NormalizedEvent(storage: parsed) else {
                preconditionFailure("the stored form does not read back: \(stored)")
            }
            precondition(back == event, "the stored form changed the event: \(stored)")
        case .failure(let rejection):
            precondition(!rejection.problems.isEmpty, "a rejection without a problem")
            for problem in rejection.problems { precondition(problem.index == index && !problem.reason.isEmpty, "a problem without a reason") }
        }
    }
    return 0
}
