// libFuzzer entry point for the event decoder's JSON layer (Sources/Events/JSONParser.swift and
// JSONValue.swift, compiled alone by scripts/fuzz): every request body the ingest paths accept
// goes through it first. Each invariant below is a crash when broken.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func eventJSONFuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let value = try? JSONValue.parse(bytes) else { return 0 }
    // What the parser accepts, the serializer writes back as JSON that parses to the same value...
    let text = value.serialized
    guard let again = try? JSONValue.parse(Array(text.utf8)) else { preconditionFailure("serialized output does not parse: \(text)") }
    precondition(again == value, "round trip changed \(text)")
    // ...and that another parser accepts too.
    precondition((try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) != nil, "Foundation refuses \(text)")
    return 0
}
