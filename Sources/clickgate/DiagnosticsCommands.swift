import ArgumentParser
import ClickID
import Diagnostics
import Foundation

/// Prints a problem with the command line itself and exits with 2, like a failed trace.
func usageFailure(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    return ExitCode(2)
}

struct Trace: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow a redirect chain hop by hop and show where a click id is lost.",
        discussion: """
            Follows 3xx Location, the Refresh header, <meta http-equiv=refresh> and small inline scripts that set location (reported as "JS redirect (heuristic)"), carrying cookies between hops as a browser does. Each hop shows its status, timing, click ids and UTM parameters; the hop that drops a click id is named.

            Exit status: 0 every click id reaches the end, 1 one is lost or altered, 2 the trace failed.

            Examples:
              clickgate trace 'https://ads.example/c/42?ttclid=E.C.P.abc'
              clickgate trace --user-agent desktop --json \\
                'https://shop.example/?ttclid=E.C.P.abc'
              clickgate trace --resolve shop.example:443:127.0.0.1 \\
                --cacert certs/clickgate-dev-ca.pem 'https://shop.example/?ttclid=x'
            """)

    @Argument(help: "The URL to start from, as the ad opens it (quote it: it contains &).")
    var url: String

    @Flag(help: "A JSON report instead of text.")
    var json = false

    @Option(help: "Stop after this many hops.")
    var maxHops = 20

    @Option(help: "mobile (TikTok's in-app browser on iOS), desktop (Chrome), or a user agent string.")
    var userAgent = "mobile"

    @Option(help: ArgumentHelp("Connect to ADDR for HOST:PORT, as curl's --resolve (repeatable).", valueName: "HOST:PORT:ADDR"))
    var resolve: [String] = []

    @Flag(help: "Do not verify TLS certificates.")
    var insecure = false

    @Option(help: ArgumentHelp("Trust the CA certificates in this PEM file instead of the system's.", valueName: "FILE"))
    var cacert: String?

    @Option(help: "Seconds to wait for each hop.")
    var timeout = 10

    func validate() throws {
        guard (1...100).contains(maxHops) else { throw ValidationError("--max-hops must be from 1 to 100") }
        guard timeout > 0 else { throw ValidationError("--timeout must be at least 1 second") }
        for entry in resolve where Self.parseResolve(entry) == nil {
            throw ValidationError("--resolve \(entry): expected HOST:PORT:ADDR, such as shop.example:443:127.0.0.1")
        }
    }

    /// `host:port:addr` (addr may be `[::1]` or `::1`) → (`host:port`, addr).
    static func parseResolve(_ entry: String) -> (key: String, address: String)? {
        let parts = entry.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, let port = Int(parts[1]), (1...65535).contains(port), !parts[2].isEmpty else { return nil }
        var address = String(parts[2])
        if address.hasPrefix("["), address.hasSuffix("]") { address = String(address.dropFirst().dropLast()) }
        return ("\(parts[0].lowercased()):\(port)", address)
    }

    func run() async throws {
        var settings = FetchSettings()
        settings.insecure = insecure
        settings.caFile = cacert
        settings.timeout = .seconds(timeout)
        for entry in resolve { if let (key, address) = Self.parseResolve(entry) { settings.resolve[key] = address } }
        var tracer: RedirectTracer
        do { tracer = try RedirectTracer(settings: settings) } catch { throw usageFailure("\(error)") }
        tracer.maxHops = maxHops
        tracer.userAgent = RedirectTracer.Agent.named(userAgent)
        let report = await tracer.trace(url)
        print(json ? jsonText(report) : report.rendered(on: .standardOutput))
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}

struct Extract: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the click ids and campaign parameters in URLs, naming each id's platform.",
        discussion: """
            Reads the URLs given, or one per line on standard input. Finds ids inside wrapped URLs too (?u=https%3A…), and warns about unfilled macros, ids after #, and broken encodings.

            Exit status: 0 every URL has a usable click id, 1 some have none, 2 some input is not a URL.

            Examples:
              clickgate extract 'https://shop.example/?ttclid=E.C.P.abc&utm_campaign=x'
              grep -o 'https://[^ "]*' access.log | clickgate extract --json
            """)

    @Argument(help: "URLs (default: read from standard input).")
    var urls: [String] = []

    @Flag(help: "A JSON report instead of a table.")
    var json = false

    func run() throws {
        var inputs = urls
        if inputs.isEmpty {
            while let line = readLine() {
                if !line.trimmingCharacters(in: .whitespaces).isEmpty { inputs.append(line) }
            }
        }
        guard !inputs.isEmpty else { throw usageFailure("no URLs: give them as arguments or one per line on standard input") }
        let report = ExtractReport(urls: inputs)
        print(json ? jsonText(report.entries) : report.rendered(on: .standardOutput))
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}

struct URLCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "url", abstract: "URL tools.", subcommands: [Build.self])

    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build a campaign URL with UTM parameters.",
            discussion: """
                Keeps the base URL's parameters and their encoding, replaces UTM parameters it already has, and moves click-id parameters to the front of the query (they must survive truncation). Values that are ad-platform macros (__CAMPAIGN_NAME__, {{campaign.name}}) are written as they are.

                Examples:
                  clickgate url build --base https://shop.example/landing \\
                    --source tiktok --medium paid_social --campaign spring_sale
                  clickgate url build --base 'https://shop.example/p?ref=7' --source tiktok \\
                    --medium cpc --campaign __CAMPAIGN_NAME__ --content __CID_NAME__
                """)

        @Option(help: "The landing page URL.") var base: String
        @Option(help: "utm_source: who sends the traffic (tiktok).") var source: String
        @Option(help: "utm_medium: the kind of traffic (paid_social, cpc).") var medium: String
        @Option(help: "utm_campaign.") var campaign: String
        @Option(help: "utm_content: the ad or creative.") var content: String?
        @Option(help: "utm_term.") var term: String?
        @Option(help: "utm_id: the campaign id.") var id: String?
        @Flag(help: "JSON (url and notes) instead of the bare URL.") var json = false

        func run() throws {
            var fields = [("utm_source", source), ("utm_medium", medium), ("utm_campaign", campaign)]
            if let id { fields.append(("utm_id", id)) }
            if let term { fields.append(("utm_term", term)) }
            if let content { fields.append(("utm_content", content)) }
            let built: CampaignURL
            do { built = try CampaignURL.build(base: base, fields: fields) } catch { throw usageFailure(error.description) }
            if json {
                struct Output: Encodable { var url: String; var notes: [String] }
                print(jsonText(Output(url: built.url, notes: built.notes)))
            } else {
                print(built.url)
                for note in built.notes { FileHandle.standardError.write(Data("note: \(note)\n".utf8)) }
            }
        }
    }
}
