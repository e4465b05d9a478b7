import Crypto

/// PII as TikTok's Events API wants it: normalised, then SHA-256 as lower-case hex. Raw values
/// never leave this type: callers store and log only the hashes.
public enum PII {
    public static func sha256Hex(_ text: String) -> String {
        SHA256.hash(data: Array(text.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// A value that already is a SHA-256 hex digest passes through (lower-cased).
    public static func isHashed(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) || ($0 >= 0x41 && $0 <= 0x46) }
    }

    /// Trimmed and lower-cased, then hashed; nil when it is not an address.
    public static func hashEmail(_ raw: String) -> String? {
        let trimmed = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        if isHashed(trimmed) { return trimmed.lowercased() }
        let email = trimmed.lowercased()
        guard let at = email.firstIndex(of: "@"), at != email.startIndex, email[email.index(after: at)...].contains("."),
            !email.contains(where: { $0 == " " || $0 == "\t" })
        else { return nil }
        return sha256Hex(email)
    }

    /// E.164 (`+`, country code, digits), then hashed. A number written without `+` or `00` is
    /// national: `defaultCountryCode` is put in front (its trunk `0` dropped); without one, the
    /// digits are taken to include the country code. Nil when too short or too long for E.164.
    public static func hashPhone(_ raw: String, defaultCountryCode: String? = nil) -> String? {
        let trimmed = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        if isHashed(trimmed) { return trimmed.lowercased() }
        var digits = trimmed.filter { $0.isASCII && $0.isNumber }
        let international = trimmed.drop(while: { $0 == "(" || $0 == " " }).hasPrefix("+")
        if !international {
            if digits.hasPrefix("00") {
                digits.removeFirst(2)
            } else if let country = defaultCountryCode {
                if digits.hasPrefix("0") { digits.removeFirst() }
                digits = country + digits
            }
        }
        guard (8...15).contains(digits.count) else { return nil }
        return sha256Hex("+" + digits)
    }

    /// Hashed as given: external ids are case-sensitive.
    public static func hashExternalID(_ raw: String) -> String? {
        let trimmed = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { return nil }
        return isHashed(trimmed) ? trimmed.lowercased() : sha256Hex(trimmed)
    }
}

import Foundation
