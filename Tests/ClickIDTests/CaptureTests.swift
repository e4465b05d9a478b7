import Foundation
import ClickID
import Testing

@Suite struct CaptureTests {
    let registry = ClickIDRegistry.standard

    @Test func ttclidFromTheURLWinsOverTheCookie() {
        let cookies = RequestCookies(headers: ["ttclid=OLD; _fbc=fb.1.1700000000000.FBID"])
        let capture = ClickCapture.scan(query: "a=1&ttclid=E.C.P.new-1_~x", cookies: cookies, registry: registry)
        #expect(capture.fromURL.map(\.value) == ["E.C.P.new-1_~x"])
        #expect(capture.value(for: "ttclid") == "E.C.P.new-1_~x")
        #expect(capture.value(for: "fbclid") == "FBID")
    }

    /// A request target's capture reads the same ids as a capture of its query, and nothing from
    /// a target that is no URL reference or from its fragment.
    @Test func aTargetIsCapturedAsItsQuery() {
        let cookies = RequestCookies(headers: ["_fbc=fb.1.1700000000000.FBID"])
        let target = ClickCapture.scan(target: "/lp?a=1&ttclid=E.C.P.x#gclid=G", cookies: cookies, registry: registry)
        #expect(target == ClickCapture.scan(query: "a=1&ttclid=E.C.P.x", cookies: cookies, registry: registry))
        #expect(target.fromURL.map(\.value) == ["E.C.P.x"])
        #expect(ClickCapture.scan(target: "/lp?ttclid=E.C.P.x y", cookies: cookies, registry: registry).fromURL.isEmpty)
        #expect(ClickCapture.scan(target: "/lp", cookies: cookies, registry: registry).value(for: "fbclid") == "FBID")
    }

    @Test(arguments: [
        ("ttclid=a%0D%0ASet-Cookie:x", ClickIDValue.Rejection.badCharacter), ("ttclid=a;b", .badCharacter), ("ttclid=a,b", .badCharacter),
        ("ttclid=%22q%22", .badCharacter), ("ttclid=a+b", .badCharacter), ("ttclid=caf%C3%A9", .badCharacter), ("ttclid=", .empty),
        ("ttclid=%ZZ", .badEncoding), ("ttclid=" + String(repeating: "a", count: 1025), .tooLong),
    ])
    func hostileValuesAreRejected(query: String, reason: ClickIDValue.Rejection) {
        let capture = ClickCapture.scan(query: query, cookies: RequestCookies(headers: []), registry: registry)
        #expect(capture.fromURL.isEmpty)
        #expect(capture.rejected.first?.reason == reason)
    }

    @Test func cookieFormatsRoundTrip() {
        for kind in registry.kinds {
            let value = kind.cookieValue(for: "ID-1.x", unixMilliseconds: 1_700_000_000_123)
            #expect(kind.id(fromCookieValue: value) == "ID-1.x", "\(kind.parameter)")
        }
        #expect(registry.kind(forParameter: "fbclid")?.cookieValue(for: "F", unixMilliseconds: 1_700_000_000_123) == "fb.1.1700000000123.F")
        #expect(registry.kind(forParameter: "gclid")?.cookieValue(for: "G", unixMilliseconds: 1_700_000_000_123) == "GCL.1700000000.G")
    }

    @Test func setCookieAttributes() {
        var cookie = SetCookie(name: "ttclid", value: "E.C.P.x", maxAge: 2_592_000, domain: "example.com")
        #expect(cookie.headerValue == "ttclid=E.C.P.x; Max-Age=2592000; Path=/; Domain=example.com; Secure; SameSite=Lax")
        cookie.httpOnly = true
        cookie.maxAge = 999 * 86_400
        cookie.domain = nil
        #expect(cookie.headerValue == "ttclid=E.C.P.x; Max-Age=34560000; Path=/; Secure; HttpOnly; SameSite=Lax")
        #expect(SetCookie(name: "a", value: "x;Domain=evil", maxAge: 1).headerValue == nil)
        #expect(SetCookie(name: "a b", value: "x", maxAge: 1).headerValue == nil)
        // A path may not end the attribute or the field.
        for bad in ["/a;Domain=evil", "/a\r\nX: y", "/é"] {
            var withPath = SetCookie(name: "a", value: "x", maxAge: 1)
            withPath.path = bad
            #expect(withPath.headerValue == nil, "\(bad.debugDescription)")
        }
        // The value is checked as it is copied: a refused byte anywhere makes no header.
        let template = SetCookie.Template(SetCookie(name: "v", value: "", maxAge: 60, secure: false))!
        #expect(template.headerValue("") == "v=; Max-Age=60; Path=/; SameSite=Lax")
        #expect(template.headerValue("abc") == "v=abc; Max-Age=60; Path=/; SameSite=Lax")
        for bad in ["\rabc", "ab\nc", "abc;", "a b", "\"", "é", "a\u{7F}"] {
            #expect(template.headerValue(bad) == nil, "\(bad.debugDescription)")
            #expect(template.headerValue("0123456789abcdef" + bad) == nil, "\(bad.debugDescription) after sixteen bytes")
        }
    }

    @Test func queryItemsKeepEveryPieceButEmptyOnes() {
        let items = Query.items("&a=1&&b&=c&d=&é=%C3%A9&").map { "\($0.name)|\($0.value ?? "nil")" }
        #expect(items == ["a|1", "b|nil", "|c", "d|", "é|%C3%A9"])
        #expect(Query.items(nil).first == nil && Query.items("&&").first == nil)
        #expect(Query.items("x=1&y=2").first.map { "\($0.name)=\($0.value ?? "")" } == "x=1")
    }

    /// Names are read as a server reads them: escapes and `+` decoded; a broken escape leaves the
    /// raw text, which is no parameter's name.
    @Test func namesAreComparedDecoded() {
        let capture = ClickCapture.scan(query: "tt%63lid=A&ttclid=B&fb+clid=C&gclid%=D&msclkid=%4D", cookies: RequestCookies(headers: []), registry: registry)
        #expect(capture.fromURL.map { "\($0.kind.parameter)=\($0.value)" } == ["ttclid=A", "msclkid=M"])
        let name = { (raw: String) in raw.withUTF8Buffer { Query.RawName($0) } }
        #expect(name("tt%63lid").reads(as: "ttclid") && name("ttclid").reads(as: "ttclid") && name("a+b").reads(as: "a b"))
        #expect(!name("ttclid").reads(as: "ttcli") && !name("%zz").reads(as: "") && name("%zz").reads(as: "%zz"))
    }

    @Test func bytePiecesMatchTheItems() {
        for query in ["&a=1&&b&=c&d=&é=%C3%A9&", "", "&", "x", "=", "a==b&c"] {
            let pieces = query.withUTF8Buffer { bytes in
                Query.Pieces(bytes).map { String(decoding: $0.name, as: UTF8.self) + "|" + ($0.value.map { String(decoding: $0, as: UTF8.self) } ?? "nil") }
            }
            #expect(pieces == Query.items(query).map { "\($0.name)|\($0.value ?? "nil")" }, "\(query)")
        }
    }

    @Test func concatenationCopiesEveryPartOnce() {
        #expect(String(concatenating: "a", "", "ünï", String(repeating: "x", count: 40), "\u{1F600}") == "aünï" + String(repeating: "x", count: 40) + "\u{1F600}")
        #expect(String(concatenating: "", "").isEmpty)
    }

    @Test func requestCookieParsingIsLenient() {
        let cookies = RequestCookies(headers: ["a=1;b=\"2\"; ; =x; junk; _ttp=2abcDEF.tt.1", "c=3"])
        #expect(cookies.first("a") == "1")
        #expect(cookies.first("b") == "2")
        #expect(cookies.first("_ttp") == "2abcDEF.tt.1")
        #expect(cookies.first("c") == "3")
        #expect(cookies.first("junk") == nil)
    }

    @Test func consent() {
        let policy = ConsentPolicy(respectGPC: true, cookieName: "consent", deniedValues: ["denied"])
        #expect(!policy.allowsTracking(globalPrivacyControl: "1", cookies: RequestCookies(headers: [])))
        #expect(!policy.allowsTracking(globalPrivacyControl: nil, cookies: RequestCookies(headers: ["consent=DENIED"])))
        #expect(policy.allowsTracking(globalPrivacyControl: "0", cookies: RequestCookies(headers: ["consent=granted"])))
        #expect(ConsentPolicy(respectGPC: false).allowsTracking(globalPrivacyControl: "1", cookies: RequestCookies(headers: [])))
    }

    @Test func visitorIDs() {
        var generator = SystemRandomNumberGenerator()
        let a = VisitorID.make(using: &generator)
        let b = VisitorID.make(using: &generator)
        #expect(VisitorID.isWellFormed(a) && VisitorID.isWellFormed(b) && a != b)
        #expect(!VisitorID.isWellFormed("0123"))
        // The digits are the generator's two words, high first, zero-padded.
        var fixed = CountingGenerator()
        #expect(VisitorID.make(using: &fixed) == "00000000000000010000000000000002")
        #expect(UInt64(0xfedcba9876543210).fixedWidthHex == "fedcba9876543210")
        #expect(UInt64(0xa).fixedWidthHex == "000000000000000a")
    }

    private struct CountingGenerator: RandomNumberGenerator {
        var count: UInt64 = 0
        mutating func next() -> UInt64 {
            count += 1
            return count
        }
    }
}

@Suite struct SmartlinkTests {
    let targets = [
        SmartlinkTarget(url: "https://a.example/x?src=sl", weight: 3),
        SmartlinkTarget(url: "https://b.example/", weight: 1),
        SmartlinkTarget(url: "https://m.example/", weight: 1, device: .mobile),
        SmartlinkTarget(url: "https://de.example/", weight: 1, header: ("cf-ipcountry", "DE")),
    ]

    @Test func stickyWeightedChoice() {
        var counts: [String: Int] = [:]
        for i in 0..<4000 {
            let key = "visitor-\(i)"
            let first = Smartlinks.choose(targets, stickyKey: key, device: .desktop, header: { _ in nil })
            let again = Smartlinks.choose(targets, stickyKey: key, device: .desktop, header: { _ in nil })
            #expect(first == again)
            counts[first!.url, default: 0] += 1
        }
        #expect(counts.keys.sorted() == ["https://a.example/x?src=sl", "https://b.example/"])
        let share = Double(counts["https://a.example/x?src=sl"]!) / 4000
        #expect(share > 0.7 && share < 0.8, "weight 3:1 gave \(share)")
    }

    @Test func rulesRoute() {
        #expect(Smartlinks.choose(targets, stickyKey: "v", device: .mobile, header: { _ in nil })?.url == "https://m.example/")
        #expect(Smartlinks.choose(targets, stickyKey: "v", device: .desktop, header: { $0 == "cf-ipcountry" ? "DE" : nil })?.url == "https://de.example/")
        #expect(DeviceClass.classify(userAgent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148") == .mobile)
        #expect(DeviceClass.classify(userAgent: "Mozilla/5.0 (Linux; Android 14; SM-X710) Safari/537.36") == .tablet)
        #expect(DeviceClass.classify(userAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/120") == .desktop)
    }

    @Test(arguments: [
        ("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) Mobile/15E148", DeviceClass.tablet),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36", .mobile),
        ("Mozilla/5.0 (Linux; ANDROID 14; Pixel 8) MOBILE Safari", .mobile), ("SOME-TABLET/1.0", .tablet),
        ("Mozilla/5.0 (iPod touch; CPU iPhone OS 12_0)", .mobile), ("Opera/9.80 (J2ME/MIDP; Opera Mini) Presto", .desktop),
        ("", .desktop), ("i", .desktop), ("andro", .desktop), ("xandroidx", .tablet),
    ])
    func devicesAreClassifiedFromTheUserAgentIgnoringCase(userAgent: String, expected: DeviceClass) {
        #expect(DeviceClass.classify(userAgent: userAgent) == expected)
        #expect(DeviceClass.classify(userAgent: nil) == .desktop)
    }

    /// A query piece keeps every byte RFC 3986 allows in a query and percent-encodes the rest.
    @Test func queryPiecesAreMadeHeaderSafeByteForByte() {
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%!$'()*+,=:@/?".utf8)
        for byte in UInt8.min...UInt8.max {
            let piece = Query.sanitizedPiece(Substring(String(decoding: [UInt8(ascii: "a"), byte, UInt8(ascii: "z")], as: UTF8.self)))
            if allowed.contains(byte) {
                #expect(piece == String(decoding: [UInt8(ascii: "a"), byte, UInt8(ascii: "z")], as: UTF8.self))
            } else if byte < 0x80 {
                #expect(piece == "a%" + String(format: "%02X", byte) + "z", "\(byte)")
            }
        }
        #expect(Query.sanitizedPiece("x=é ü") == "x=%C3%A9%20%C3%BC")
    }

    @Test func everyIncomingParameterIsForwardedAndTheTargetWins() {
        let url = Smartlinks.redirectURL(target: "https://a.example/x?src=sl#f", incomingQuery: "ttclid=E.C.P.1&src=evil&utm_source=tiktok&x=a%20b&x=2")
        #expect(url == "https://a.example/x?src=sl&ttclid=E.C.P.1&utm_source=tiktok&x=a%20b#f")
        #expect(Smartlinks.redirectURL(target: "https://b.example/", incomingQuery: nil) == "https://b.example/")
        #expect(Smartlinks.redirectURL(target: "https://b.example/", incomingQuery: "a=\r\n") == "https://b.example/?a=%0D%0A")
    }
}
