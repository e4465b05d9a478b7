import ClickID
@testable import Diagnostics
import Testing

@Suite struct RedirectSignalTests {
    func find(status: Int = 200, headers: [(name: String, value: String)] = [], body: String?, query: String? = nil) -> RedirectSignal? {
        RedirectSignals.find(status: status, headers: headers, body: body.map { Substring($0) }, currentQuery: query)
    }

    @Test func locationWinsOverEverythingElse() {
        let signal = find(status: 302, headers: [("Location", " /next "), ("Refresh", "0; url=/other")], body: "<meta http-equiv=refresh content='0;url=/x'>")
        #expect(signal == RedirectSignal(kind: .location, target: "/next"))
        #expect(find(status: 304, headers: [("Location", "/n")], body: nil) == nil, "304 is not a redirect")
    }

    @Test func refreshHeaderThenMetaRefresh() {
        #expect(find(headers: [("refresh", "5;URL='/r?a=1'")], body: nil) == RedirectSignal(kind: .refreshHeader, target: "/r?a=1", delay: "5"))
        #expect(find(headers: [("refresh", "10")], body: nil) == nil, "a plain reload goes nowhere")
        let html = #"<html><head><meta charset="utf-8"><meta content="0; url=https://shop.example/p?a=1&amp;ttclid=x" http-equiv="REFRESH"></head>"#
        #expect(find(body: html) == RedirectSignal(kind: .metaRefresh, target: "https://shop.example/p?a=1&ttclid=x", delay: "0"))
    }

    @Test func decoysInCommentsNoscriptAndScriptsAreIgnored() {
        let html = """
            <!-- <meta http-equiv="refresh" content="0; url=/commented"> -->
            <noscript><meta http-equiv="refresh" content="0; url=/noscript"></noscript>
            <script>var s = '<meta http-equiv="refresh" content="0; url=/in-script">';</script>
            <p>no redirect here</p>
            """
        #expect(find(body: html) == nil)
    }

    @Test(arguments: [
        (#"window.location = "https://a.example/x";"#, "https://a.example/x"),
        (#"location.href='/next?ttclid=1'"#, "/next?ttclid=1"),
        (#"top.location.href = `/tpl`;"#, "/tpl"),
        (#"document.location.replace("https:\/\/b.example\/p?a=1\u0026b=2")"#, "https://b.example/p?a=1&b=2"),
        (#"window.location.assign('/assign\x3Fq=1')"#, "/assign?q=1"),
        (#"location.href = "/with" + window.location.search;"#, "/with?ttclid=abc"),
    ])
    func scriptRedirects(script: String, expected: String) {
        #expect(find(body: "<script>\(script)</script>", query: "ttclid=abc") == RedirectSignal(kind: .javascript, target: expected))
    }

    @Test func scriptsThatOnlyReadLocationOrAreLargeAreNotRedirects() {
        #expect(find(body: #"<script>if (location.href == "/x") { track() }</script>"#) == nil)
        #expect(find(body: #"<script src="/app.js">location.href = "/x"</script>"#) == nil)
        let large = String(repeating: "var a = 1;\n", count: 500) + #"location.href = "/deep";"#
        #expect(find(body: "<script>\(large)</script>") == nil, "application bundles are not redirect stubs")
    }
}

@Suite struct TraceAnalysisTests {
    func hop(_ number: Int, _ ids: [(String, String)], via: RedirectKind? = .location) -> TraceReport.Hop {
        var hop = TraceReport.Hop(number: number, url: "https://h\(number).example/")
        hop.clickIDs = ids.map { .init(name: $0.0, value: $0.1, platform: nil) }
        hop.next = via.map { .init(via: $0, target: "/") }
        return hop
    }

    @Test func aClickIDDroppedAndNeverRestoredIsLostAtTheHopThatDroppedIt() {
        var report = TraceReport(start: "s", userAgent: "u")
        report.hops = [hop(1, [("ttclid", "a"), ("gclid", "g")]), hop(2, [("ttclid", "a")], via: .metaRefresh), hop(3, [], via: nil)]
        report.hops[0].clickIDCookies = [.init(name: "_gcl_aw", value: "g", platform: "google")]
        report.analyseClickIDs(registry: .standard)
        #expect(report.outcome == .lost)
        #expect(report.losses == [
            .init(parameter: "gclid", platform: "google", kind: "lost", droppedByHop: 1, via: .location, firstMissingHop: 2, keptInCookieByHop: 1),
            .init(parameter: "ttclid", platform: "tiktok", kind: "lost", droppedByHop: 2, via: .metaRefresh, firstMissingHop: 3),
        ])
        #expect(report.hops[2].missing.sorted() == ["gclid", "ttclid"])
    }

    @Test func restoredOnTheWayIsKeptAndAlteredIsAProblem() {
        var kept = TraceReport(start: "s", userAgent: "u")
        kept.hops = [hop(1, [("ttclid", "a")]), hop(2, []), hop(3, [("ttclid", "a")], via: nil)]
        kept.analyseClickIDs(registry: .standard)
        #expect(kept.outcome == .kept && kept.losses.isEmpty)
        #expect(kept.hops[1].missing == ["ttclid"])

        var altered = TraceReport(start: "s", userAgent: "u")
        altered.hops = [hop(1, [("ttclid", "E.C.P.a")]), hop(2, [("ttclid", "E.C.P.a%2520")], via: nil)]
        altered.analyseClickIDs(registry: .standard)
        #expect(altered.exitCode == 1)
        #expect(altered.losses.first?.kind == "changed")
    }

    @Test func anErrorStaysAnError() {
        var report = TraceReport(start: "s", userAgent: "u")
        report.hops = [hop(1, [("ttclid", "a")]), hop(2, [], via: nil)]
        report.outcome = .error
        report.analyseClickIDs(registry: .standard)
        #expect(report.exitCode == 2)
        #expect(report.losses.count == 1)
    }

    @Test func cookieJarSendsCookiesToTheRightHosts() {
        var jar = CookieJar()
        let set = jar.store([("Set-Cookie", "a=1; Path=/"), ("set-cookie", "b=2; Domain=.shop.example"), ("Set-Cookie", "c=3; Domain=evil.example")], from: "www.shop.example")
        #expect(set.map(\.name) == ["a", "b", "c"])
        #expect(jar.header(for: "www.shop.example") == "a=1; b=2; c=3")
        #expect(jar.header(for: "pay.shop.example") == "b=2")
        #expect(jar.header(for: "evil.example") == nil, "a domain the host is not in is ignored")
        _ = jar.store([("Set-Cookie", "a=; Max-Age=0")], from: "www.shop.example")
        #expect(jar.header(for: "www.shop.example") == "b=2; c=3")
    }
}
