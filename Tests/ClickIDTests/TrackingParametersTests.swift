@testable import ClickID
import Testing

@Suite struct RefreshDirectiveTests {
    @Test(arguments: [
        ("0; url=/next", "0", "/next"), ("5;URL='https://a.example/?x=1'", "5", "https://a.example/?x=1"),
        ("  3 , url = \"/q\" ", "3", "/q"), ("0; https://bare.example/", "0", "https://bare.example/"), ("1.5;url=/d", "1.5", "/d"),
    ])
    func parses(text: String, delay: String, url: String) throws {
        let directive = try #require(RefreshDirective(text))
        #expect(directive.delay == delay)
        #expect(directive.url == url)
    }

    @Test(arguments: ["10", "", "url=/x", "; url=/x", "0;", "0; url="])
    func refuses(text: String) {
        #expect(RefreshDirective(text) == nil)
    }

    @Test func replacingKeepsEverythingElse() throws {
        #expect(try #require(RefreshDirective("5;URL='/a'")).replacingURL(with: "/b?c=1") == "5;URL='/b?c=1'")
    }
}

@Suite struct TrackingParametersTests {
    @Test func findsIDsCampaignsNestedURLsAndMistakes() throws {
        let url = try #require(URLReference(
            "https://l.example/r?ttclid=E.C.P.a&ttclid=E.C.P.b&utm_source=tiktok&utm_campaign={{campaign.name}}&gclid=&u=https%3A%2F%2Fs.example%2F%3Fmsclkid%3Dm1#x&fbclid=f"))
        let found = TrackingParameters.inspect(url)
        #expect(found.clickIDs.map(\.parameter) == ["ttclid", "ttclid", "gclid", "msclkid"])
        #expect(found.clickIDs.last?.nestedIn == ["u"])
        #expect(found.clickIDs.last?.platform == "microsoft")
        #expect(found.clickIDs[2].problem == .empty)
        #expect(found.campaign.map(\.name) == ["utm_source", "utm_campaign"])
        #expect(found.warnings.contains { $0.contains("appears twice") })
        #expect(found.warnings.contains { $0.contains("macro {{campaign.name}}") })
        #expect(found.warnings.contains { $0.contains("fbclid is in the fragment") })
        #expect(found.warnings.contains { $0.contains("gclid is unusable: the value is empty") })
    }

    @Test func doubleEncodingIsCalledOut() throws {
        let found = TrackingParameters.inspect(try #require(URLReference("https://a.example/?ttclid=E.C.P.a%253D")))
        #expect(found.clickIDs.first?.problem == .badCharacter)
        #expect(found.warnings.first?.contains("encoded twice") == true)
    }

    @Test(arguments: [("__CAMPAIGN_NAME__", true), ("{{ad.id}}", true), ("{campaignid}", true), ("__x__", false), ("spring", false), ("__", false)])
    func macros(value: String, isMacro: Bool) {
        #expect(TrackingParameters.isUnfilledMacro(value) == isMacro)
    }
}

@Suite struct CampaignURLTests {
    let fields = [("utm_source", "tiktok"), ("utm_medium", "paid_social"), ("utm_campaign", "Spring Sale/2026")]

    @Test func appendsAfterTheBaseParametersWithClickIDsFirst() throws {
        let built = try CampaignURL.build(base: "https://shop.example/p?b=%7E1&gclid=G1&a&ttclid=T1#frag", fields: fields)
        #expect(built.url == "https://shop.example/p?gclid=G1&ttclid=T1&b=%7E1&a&utm_source=tiktok&utm_medium=paid_social&utm_campaign=Spring%20Sale%2F2026#frag")
        #expect(built.notes == ["moved gclid, ttclid to the front of the query"])
    }

    @Test func replacesExistingUTMAndKeepsMacrosLiteral() throws {
        let built = try CampaignURL.build(base: "https://shop.example/?utm_campaign=old&x=1", fields: [("utm_source", "tiktok"), ("utm_medium", "cpc"), ("utm_campaign", "__CAMPAIGN_NAME__"), ("utm_content", "{{ad.name}}")])
        #expect(built.url == "https://shop.example/?x=1&utm_source=tiktok&utm_medium=cpc&utm_campaign=__CAMPAIGN_NAME__&utm_content={{ad.name}}")
        #expect(built.notes == ["replaced the base URL's utm_campaign=old"])
        let spaced = try CampaignURL.build(base: "https://shop.example/", fields: [("utm_source", "{ x }")])
        #expect(spaced.url == "https://shop.example/?utm_source=%7B%20x%20%7D", "a macro is literal only when it is URL-safe")
    }

    @Test(arguments: [
        ("ftp://shop.example/", "--base must be an absolute"), ("https:///nohost", "--base must be an absolute"), ("https://a b/", "--base is not a URL"),
    ])
    func refusesBadBases(base: String, message: String) {
        #expect(throws: CampaignURL.Problem.self) { try CampaignURL.build(base: base, fields: fields) }
        do { _ = try CampaignURL.build(base: base, fields: fields) } catch { #expect(error.description.contains(message)) }
    }

    @Test func refusesEmptyAndControlValues() {
        #expect(throws: CampaignURL.Problem(description: "--medium is empty")) {
            try CampaignURL.build(base: "https://a.example/", fields: [("utm_source", "x"), ("utm_medium", "  ")])
        }
        #expect(throws: CampaignURL.Problem(description: "--source contains a control character")) {
            try CampaignURL.build(base: "https://a.example/", fields: [("utm_source", "x\ny")])
        }
    }
}
