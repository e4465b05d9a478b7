// libFuzzer entry point for the configuration loader (Sources/Config with Yams, compiled by
// scripts/fuzz): any text an operator or a broken deploy puts in clickgate.yaml ends in a config or
// in problems that each name a key and what is wrong, never in a crash.
import Config
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func configFuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        // Certificate files "exist", so inputs get past that check into the rest of validation.
        let config = try ConfigLoader.load(yaml: text, fileExists: { _ in true })
        precondition(!config.sites.isEmpty, "a loaded configuration without sites")
    } catch {
        precondition(!error.problems.isEmpty, "a refusal without a problem")
        for problem in error.problems { precondition(!problem.message.isEmpty, "a problem without a message at \(problem.path)") }
    }
    return 0
}
