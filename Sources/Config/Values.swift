/// A listen address, `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (all interfaces).
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`; returns a reason on failure.
    public static func parse(_ text: String) -> Result<HostPort, ValueError> {
        var host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return .failure(.init("missing ']' after IPv6 address")) }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return .failure(.init("expected ':PORT' after ']'")) }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return .failure(.init("expected HOST:PORT")) }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return .failure(.init("IPv6 addresses need brackets: [::1]:PORT")) }
        }
        if host.isEmpty { host = "0.0.0.0" }
        guard let port = Int(portText), (0...65535).contains(port) else {
            return .failure(.init("port '\(portText)' is not a number from 0 to 65535"))
        }
        return .success(HostPort(host: String(host), port: port))
    }

    static func format(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    public var description: String { Self.format(host: host, port: port) }
}

/// Why a single value was refused; the loader adds the key path.
public struct ValueError: Error, Sendable, Equatable {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
}

/// An IPv4 or IPv6 network in CIDR notation; a bare address means a single host.
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    /// 16 bytes; IPv4 is stored as an IPv4-mapped IPv6 address.
    public let network: [UInt8]
    /// Prefix length over the 128-bit form.
    public let prefixLength: Int
    public let description: String

    public static func parse(_ text: String) -> Result<CIDR, ValueError> {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2 else { return .failure(.init("'\(text)' has more than one '/'")) }
        guard let address = IPAddressBytes.parse(String(parts[0])) else {
            return .failure(.init("'\(parts[0])' is not an IPv4 or IPv6 address"))
        }
        let isV4 = address.isIPv4Mapped
        let maxPrefix = isV4 ? 32 : 128
        var prefix = maxPrefix
        if parts.count == 2 {
            guard let p = Int(parts[1]), (0...maxPrefix).contains(p) else {
                return .failure(.init("prefix '/\(parts[1])' must be 0 to \(maxPrefix)"))
            }
            prefix = p
        }
        let fullPrefix = isV4 ? prefix + 96 : prefix
        return .success(CIDR(network: IPAddressBytes.mask(address.bytes, prefix: fullPrefix), prefixLength: fullPrefix, description: text))
    }

    /// Whether `address` (textual IPv4 or IPv6) lies in this network.
    public func contains(_ address: String) -> Bool {
        guard let parsed = IPAddressBytes.parse(address) else { return false }
        return contains(parsed)
    }

    public func contains(_ address: IPAddressBytes) -> Bool {
        IPAddressBytes.mask(address.bytes, prefix: prefixLength) == network
    }
}

/// A parsed IP address in 16-byte form (IPv4 as `::ffff:a.b.c.d`).
public struct IPAddressBytes: Sendable, Hashable {
    public let bytes: [UInt8]

    public var isIPv4Mapped: Bool {
        bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xff && bytes[11] == 0xff
    }

    public static func parse(_ text: String) -> IPAddressBytes? {
        if let v4 = parseIPv4(Substring(text)) {
            var bytes: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
            bytes += v4
            return IPAddressBytes(bytes: bytes)
        }
        return parseIPv6(text).map(IPAddressBytes.init(bytes:))
    }

    static func parseIPv4(_ text: Substring) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(4)
        var value = 0
        var digits = 0
        for byte in text.utf8 {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, out.count < 3 else { return nil }
                out.append(UInt8(value))
                value = 0
                digits = 0
            } else {
                guard byte >= 0x30, byte <= 0x39, digits < 3 else { return nil }
                value = value * 10 + Int(byte - 0x30)
                digits += 1
                guard value <= 255 else { return nil }
            }
        }
        guard digits > 0, out.count == 3 else { return nil }
        out.append(UInt8(value))
        return out
    }

    static func parseIPv6(_ text: String) -> [UInt8]? {
        var text = Substring(text)
        if let zone = text.firstIndex(of: "%") { text = text[..<zone] }
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ s: String) -> [UInt8]? {
            if s.isEmpty { return [] }
            var out: [UInt8] = []
            let pieces = s.split(separator: ":", omittingEmptySubsequences: false)
            for (i, piece) in pieces.enumerated() {
                if i == pieces.count - 1, piece.contains("."), let v4 = parseIPv4(piece) {
                    out += v4
                    continue
                }
                guard (1...4).contains(piece.count), let v = UInt16(piece, radix: 16) else { return nil }
                out += [UInt8(v >> 8), UInt8(v & 0xff)]
            }
            return out
        }
        guard let head = groups(halves[0]) else { return nil }
        if halves.count == 1 { return head.count == 16 ? head : nil }
        guard let tail = groups(halves[1]), head.count + tail.count < 16 else { return nil }
        return head + Array(repeating: 0, count: 16 - head.count - tail.count) + tail
    }

    static func mask(_ bytes: [UInt8], prefix: Int) -> [UInt8] {
        var out = bytes
        for i in 0..<16 {
            let bitsHere = max(0, min(8, prefix - i * 8))
            out[i] &= bitsHere == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bitsHere))
        }
        return out
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}

enum ValueParsers {
    static let longestDurationMilliseconds = 100 * 365 * 86_400_000.0

    /// `90`, `90s`, `500ms`, `2m`, `1h`, `30d` (bare numbers are seconds).
    static func duration(_ text: String) -> Result<Duration, ValueError> {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
        var number = Substring(text.trimmingCharacters(in: .whitespaces))
        var scale = 1.0
        for (suffix, factor) in units where number.hasSuffix(suffix) {
            number = number.dropLast(suffix.count)
            scale = factor
            break
        }
        guard let value = Double(number), value >= 0, value.isFinite else {
            return .failure(.init("'\(text)' is not a duration (examples: 500ms, 10s, 2m, 1h, 30d)"))
        }
        // Past Int64's milliseconds the conversion would trap; no clock needs a century.
        let milliseconds = (value * scale * 1000).rounded()
        guard milliseconds <= Self.longestDurationMilliseconds else {
            return .failure(.init("'\(text)' is longer than the 100 years a duration may be"))
        }
        return .success(.milliseconds(Int64(milliseconds)))
    }

    /// `1048576`, `512KiB`, `10MiB`, `1GiB`, `10MB` (decimal units accepted too).
    static func byteSize(_ text: String) -> Result<Int, ValueError> {
        let units: [(String, Int)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30),
            ("KB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("B", 1),
        ]
        var number = Substring(text.trimmingCharacters(in: .whitespaces))
        var scale = 1
        for (suffix, factor) in units where number.hasSuffix(suffix) {
            number = number.dropLast(suffix.count).drop(while: { $0 == " " })
            scale = factor
            break
        }
        guard let value = Int(number.trimmingCharacters(in: .whitespaces)), value >= 0 else {
            return .failure(.init("'\(text)' is not a size (examples: 65536, 512KiB, 10MiB, 1GiB)"))
        }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: scale)
        guard !overflow else { return .failure(.init("'\(text)' is larger than any size a setting can hold")) }
        return .success(bytes)
    }
}

import Foundation
