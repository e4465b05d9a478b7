import ArgumentParser

@main
struct ClickGateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clickgate",
        abstract: "An edge gateway that keeps paid-social click ids (TikTok's ttclid first) alive.",
        subcommands: [Serve.self, CheckConfig.self, Reload.self, Health.self, Certs.self, EventsCommand.self, Trace.self, Extract.self, URLCommand.self],
        defaultSubcommand: Serve.self)
}

/// Exit code 2: the configuration cannot be used (nothing was started).
let configErrorExit = ExitCode(2)
