import Crypto
import Events
import EventsTestSupport
import Foundation
import Testing

/// A real browser (headless Chromium over the DevTools protocol) through the gateway: a landing
/// host and a cross-domain checkout host in front of the test origin, events to the fake API.
/// Each journey asserts what the browser holds and what reached the API; a screenshot of each
/// journey's last page is kept in artifacts/journeys/.
@Suite(.serialized) struct BrowserJourneyTests {
    struct Setup {
        let gateway: GatewayProcess
        let api: FakeEventsAPI
        let origin: TestOrigin
        let port: Int
        let certificate: String

        func url(_ host: String, _ path: String) -> String { "https://\(host):\(port)\(path)" }
    }

    static let hosts = ["lp.test", "checkout.test", "thirdparty.test"]

    func start() async throws -> Setup {
        let api = try await FakeEventsAPI.start(token: "journey-token")
        let origin = try await TestOrigin.start()
        let scratch = TestFiles.makeScratch("journeys")
        let certificate = try TestFiles.certificate(for: Self.hosts, in: scratch)
        // The smartlink's target names the port, so it is chosen here; if a parallel test takes it
        // first, another is tried.
        var attempt = 0
        while true {
            attempt += 1
            let port = freeLoopbackPort()
            let yaml = """
                listen: { https: "127.0.0.1:\(port)", admin: "127.0.0.1:0" }
                tls: { certificates: [ { cert: \(certificate.cert), key: \(certificate.key) } ] }
                sites:
                  - { hosts: [lp.test], upstream: "\(origin.url)", decorate_hosts: [checkout.test], pixel: main, rewrite_html: true }
                  - { hosts: [checkout.test], upstream: "\(origin.url)", pixel: main }
                  - { hosts: [thirdparty.test], upstream: "\(origin.url)" }   # someone else's site, also reachable
                smartlinks:
                  - { path: /go/spring, host: lp.test, targets: [ { url: "https://lp.test:\(port)/journey/landing" } ] }
                events:
                  store: sqlite:\(scratch)/events.sqlite
                  endpoint: \(api.url)
                  linger: 100ms
                  pixels: { main: { pixel_code: CJOURNEY, access_token_env: JOURNEY_TOKEN } }
                """
            do {
                let gateway = try await GatewayProcess.start(yaml: yaml, directory: scratch, environment: ["JOURNEY_TOKEN": "journey-token"])
                return Setup(gateway: gateway, api: api, origin: origin, port: port, certificate: certificate.cert)
            } catch where attempt < 3 {
                continue
            }
        }
    }

    func stop(_ setup: Setup) {
        setup.gateway.signal(SIGKILL)
        let (api, origin) = (setup.api, setup.origin)
        Task { await api.stop(); await origin.stop() }
    }

    func waitForEvent(_ id: String, in api: FakeEventsAPI) async throws -> JSONValue? {
        for _ in 0..<100 {
            if let event = api.event(id) { return event }
            try await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    @Test(arguments: ["h2", "http/1.1"])
    func journeysThroughTheGateway(protocolName: String) async throws {
        let setup = try await start()
        defer { stop(setup) }
        let browser = try await Chromium.launch(hosts: Self.hosts, trusting: setup.certificate, extraFlags: protocolName == "h2" ? [] : ["--disable-http2"])
        let shots = OperationsTests.repository.appendingPathComponent("artifacts/journeys").path + "/" + (protocolName == "h2" ? "h2" : "h1")
        do {
            // 1. The ad click: a first-party ttclid cookie the page's script can read; the visitor id is HttpOnly.
            let landing = try await browser.open(setup.url("lp.test", "/journey/landing?ttclid=E.C.P.journey1&utm_source=tiktok"))
            #expect(landing.hasSuffix("/journey/landing?ttclid=E.C.P.journey1&utm_source=tiktok"))
            let cookies = try await browser.cookies(for: setup.url("lp.test", "/"))
            let ttclid = try #require(cookies["ttclid"], "no ttclid cookie: \(cookies.keys.sorted())")
            #expect(ttclid["value"]?.stringValue == "E.C.P.journey1")
            #expect(ttclid["domain"]?.stringValue == "lp.test")
            #expect(ttclid["path"]?.stringValue == "/")
            #expect(ttclid["secure"] == .bool(true))
            #expect(ttclid["httpOnly"] == .bool(false))
            #expect(ttclid["sameSite"]?.stringValue == "Lax")
            if case .number(let expires)? = ttclid["expires"] {
                #expect(abs(expires - Date().timeIntervalSince1970 - 30 * 86_400) < 120, "30 days")
            }
            #expect(cookies["_cg_vid"]?["httpOnly"] == .bool(true))
            #expect(try await browser.evaluate("document.cookie").stringValue?.contains("ttclid=E.C.P.journey1") == true)
            await browser.screenshot(to: shots + "-1-landing.png")

            // 2. The origin's 302 drops the query; the browser still arrives with the click id.
            let offer = try await browser.open(setup.url("lp.test", "/journey/hop?ttclid=E.C.P.journey1&utm_source=tiktok"))
            #expect(offer.contains("/journey/offer?") && offer.contains("ttclid=E.C.P.journey1") && offer.contains("utm_source=tiktok"), "\(offer)")

            // 3. To the cross-domain checkout: the id travels and checkout sets its own cookie; a third party gets nothing.
            let checkout = try await browser.open(
                setup.url("lp.test", "/journey/to-checkout?ttclid=E.C.P.journey1"), until: "window.journey && window.journey.answers.length == 2")
            #expect(checkout.hasPrefix(setup.url("checkout.test", "/journey/checkout?")) && checkout.contains("ttclid=E.C.P.journey1"), "\(checkout)")
            #expect(try await browser.cookies(for: setup.url("checkout.test", "/"))["ttclid"]?["value"]?.stringValue == "E.C.P.journey1")

            // 4. The checkout page's Purchase reaches TikTok enriched; its repeat is deduplicated.
            let eventID = try #require(try await browser.evaluate("window.journey.eventId").stringValue)
            let answers = try await browser.evaluate("window.journey.answers")
            #expect(answers.serialized.contains(#"202 {\"accepted\":1,\"duplicates\":0}"#), "\(answers.serialized)")
            #expect(answers.serialized.contains(#"\"duplicates\":1"#), "\(answers.serialized)")
            let userAgent = try await browser.evaluate("navigator.userAgent").stringValue
            let event = try #require(try await waitForEvent(eventID, in: setup.api), "the Purchase never reached the API")
            #expect(event["user"]?["ttclid"]?.stringValue == "E.C.P.journey1")
            #expect(event["user"]?["ttp"]?.stringValue == "ttp.journey-1")
            #expect(event["user"]?["user_agent"]?.stringValue == userAgent)
            #expect(event["user"]?["ip"]?.stringValue == "127.0.0.1")
            let emailHash = SHA256.hash(data: Data("buyer@example.com".utf8)).map { String(format: "%02x", $0) }.joined()
            #expect(event["user"]?["email"] == .array([.string(emailHash)]))
            #expect(setup.api.delivered.filter { $0 == eventID }.count == 1)
            await browser.screenshot(to: shots + "-4-checkout.png")

            let third = try await browser.open(setup.url("lp.test", "/journey/to-thirdparty?ttclid=E.C.P.journey1"))
            #expect(third.hasPrefix("https://thirdparty.test:") && !third.contains("ttclid"), "\(third)")

            // 5. A smartlink lands on its target with every parameter.
            let smart = try await browser.open(setup.url("lp.test", "/go/spring?ttclid=E.C.P.smart&utm_campaign=spring&x=1"))
            #expect(smart.hasPrefix(setup.url("lp.test", "/journey/landing?")), "\(smart)")
            for part in ["ttclid=E.C.P.smart", "utm_campaign=spring", "x=1"] { #expect(smart.contains(part), "\(smart) lacks \(part)") }

            // 7. The protocol the browser really used.
            let proto = protocolName == "h2" ? "\"proto\":\"h2\"" : "\"proto\":\"h1\""
            #expect(setup.gateway.log.contains(proto), "the access log shows no \(proto) request")
        } catch {
            await browser.screenshot(to: shots + "-failure.png")
            await browser.close()
            throw error
        }
        await browser.close()
    }

    /// 6. With Global Privacy Control the gateway sets no tracking cookie and marks the event.
    @Test func globalPrivacyControlSetsNoCookieAndLimitsTheEvent() async throws {
        let setup = try await start()
        defer { stop(setup) }
        let browser = try await Chromium.launch(hosts: Self.hosts, trusting: setup.certificate)
        defer { Task { await browser.close() } }
        try await browser.send("Network.enable")
        try await browser.send("Network.setExtraHTTPHeaders", ["headers": .object(["Sec-GPC": .string("1")])])
        _ = try await browser.open(setup.url("lp.test", "/journey/landing?ttclid=E.C.P.private"))
        let cookies = try await browser.cookies(for: setup.url("lp.test", "/"))
        #expect(cookies["ttclid"] == nil && cookies["_cg_vid"] == nil, "\(cookies.keys.sorted())")
        _ = try await browser.open(setup.url("checkout.test", "/journey/checkout"), until: "window.journey && window.journey.answers.length == 2")
        let eventID = try #require(try await browser.evaluate("window.journey.eventId").stringValue)
        let event = try #require(try await waitForEvent(eventID, in: setup.api))
        #expect(event["limited_data_use"] == .bool(true), "\(event.serialized)")
        await browser.screenshot(to: OperationsTests.repository.appendingPathComponent("artifacts/journeys/gpc-checkout.png").path)
    }

    /// 7. The landing page's link and GET form toward the checkout (decorated as the HTML streams
    /// through the gateway) carry the click id there; the third-party link carries nothing.
    @Test func linksAndFormsTowardTheCheckoutCarryTheClickID() async throws {
        let setup = try await start()
        defer { stop(setup) }
        let browser = try await Chromium.launch(hosts: Self.hosts, trusting: setup.certificate)
        defer { Task { await browser.close() } }
        let shop = setup.url("lp.test", "/journey/shop?ttclid=E.C.P.linked&utm_source=tiktok")
        func arriveAtCheckout(_ action: String) async throws -> [String: String] {
            _ = try await browser.open(shop)
            _ = try await browser.evaluate(action)
            for _ in 0..<100 {
                let href = try await browser.evaluate("document.readyState === 'complete' ? location.href : ''").stringValue ?? ""
                if href.contains("checkout.test") {
                    return Dictionary((URLComponents(string: href)?.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { a, _ in a })
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw Chromium.Failure(description: "\(action) did not reach the checkout")
        }
        let linked = try await arriveAtCheckout("document.getElementById('checkout').click(); true")
        #expect(linked["ttclid"] == "E.C.P.linked" && linked["utm_source"] == "tiktok", "\(linked)")
        let cookies = try await browser.cookies(for: setup.url("checkout.test", "/"))
        #expect(cookies["ttclid"]?["value"]?.stringValue == "E.C.P.linked", "the checkout sets its own cookie from the URL")
        let submitted = try await arriveAtCheckout("document.getElementById('buy').submit(); true")
        #expect(submitted["ttclid"] == "E.C.P.linked" && submitted["sku"] == "42", "\(submitted)")
        _ = try await browser.open(shop)
        let third = try await browser.evaluate("document.getElementById('third').href").stringValue
        #expect(third == setup.url("thirdparty.test", "/journey/landing"))
        await browser.screenshot(to: OperationsTests.repository.appendingPathComponent("artifacts/journeys/decorated-checkout.png").path)
    }
}
