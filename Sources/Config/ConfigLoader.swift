import Foundation
import Yams

/// A configuration that cannot be used, with every problem found.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var source: String
    public var problems: [ConfigProblem]

    public var description: String {
        (["\(source): \(problems.count) problem\(problems.count == 1 ? "" : "s")"] + problems.map { "  - \($0)" })
            .joined(separator: "\n")
    }
}

/// Turns YAML into a ``GatewayConfig``, checking everything once: unknown keys, types, ranges,
/// URLs, CIDRs, references between sections and that certificate files exist.
public enum ConfigLoader {
    public static func load(file path: String) throws(ConfigError) -> GatewayConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(source: path, problems: [ConfigProblem(path: "", message: "cannot read the file: \(error.localizedDescription)")])
        }
        return try load(yaml: text, source: path)
    }

    /// - Parameter fileExists: how certificate and key paths are checked (tests may substitute it).
    public static func load(
        yaml: String,
        source: String = "<config>",
        fileExists: @escaping (String) -> Bool = { FileManager.default.isReadableFile(atPath: $0) }
    ) throws(ConfigError) -> GatewayConfig {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: yaml) else {
                throw ConfigError(source: source, problems: [ConfigProblem(path: "", message: "the file is empty")])
            }
            root = node
        } catch let error as ConfigError {
            throw error
        } catch {
            throw ConfigError(source: source, problems: [ConfigProblem(path: "", message: "not valid YAML: \(error)")])
        }
        let diagnostics = Diagnostics()
        let reader = Reader(diagnostics: diagnostics, fileExists: fileExists)
        let config = reader.gateway(YAMLValue(node: root, path: "", diagnostics: diagnostics))
        guard diagnostics.problems.isEmpty, let config else {
            throw ConfigError(source: source, problems: diagnostics.problems)
        }
        return config
    }
}

private struct Reader {
    let diagnostics: Diagnostics
    let fileExists: (String) -> Bool

    func gateway(_ value: YAMLValue) -> GatewayConfig? {
        guard let root = value.object(allowedKeys: [
            "listen", "tls", "trusted_proxies", "unknown_host", "sites", "smartlinks", "events", "limits", "timeouts", "log",
            "tracking", "admin",
        ]) else { return nil }

        let listen = root["listen"].map(self.listen) ?? GatewayConfig.Listen(
            https: HostPort(host: "0.0.0.0", port: 8443), http: nil, admin: HostPort(host: "127.0.0.1", port: 9090))
        let tls = root.required("tls").flatMap(self.tls)
        let trusted = root["trusted_proxies"]?.array()?.compactMap { $0.parsed(CIDR.parse) } ?? []
        var unknownHost = GatewayConfig.UnknownHostPolicy.misdirected
        if let v = root["unknown_host"], let text = v.string() {
            if let policy = GatewayConfig.UnknownHostPolicy(rawValue: text) { unknownHost = policy } else {
                v.report("expected 'misdirected' (answer 421) or 'default_site'")
            }
        }
        let events = root["events"].flatMap(self.events) ?? GatewayConfig.Events()
        let sitesValue = root.required("sites")
        let sites = sitesValue?.array()?.compactMap { site($0, pixels: events.pixels) } ?? []
        if let sitesValue, sites.isEmpty, diagnostics.problems.isEmpty { sitesValue.report("at least one site is required") }
        checkSites(sites, at: sitesValue)
        let smartlinks = root["smartlinks"]?.array()?.compactMap(smartlink) ?? []
        let limits = root["limits"].flatMap(self.limits) ?? GatewayConfig.Limits()
        let timeouts = root["timeouts"].flatMap(self.timeouts) ?? GatewayConfig.Timeouts()
        let log = root["log"].flatMap(self.log) ?? GatewayConfig.Log()
        let tracking = root["tracking"].flatMap(self.tracking) ?? GatewayConfig.Tracking()
        let admin = root["admin"].flatMap(self.admin) ?? GatewayConfig.Admin()

        if listen.https != nil, let tls, tls.certificates.isEmpty {
            root.required("tls")?.report("listen.https needs at least one certificate in tls.certificates")
        }
        guard let tls else { return nil }
        return GatewayConfig(
            listen: listen, tls: tls, trustedProxies: trusted, unknownHost: unknownHost, sites: sites,
            smartlinks: smartlinks, events: events, limits: limits, timeouts: timeouts, log: log, tracking: tracking, admin: admin)
    }

    func listen(_ value: YAMLValue) -> GatewayConfig.Listen {
        let object = value.object(allowedKeys: ["https", "http", "admin"])
        let https = object?["https"]?.parsed(HostPort.parse)
        let http = object?["http"]?.parsed(HostPort.parse)
        let admin = object?["admin"]?.parsed(HostPort.parse)
        if let object, https == nil, http == nil, object["https"] == nil, object["http"] == nil {
            value.report("needs https or http (or both)")
        }
        return GatewayConfig.Listen(https: https, http: http, admin: admin)
    }

    func tls(_ value: YAMLValue) -> GatewayConfig.TLS? {
        guard let object = value.object(allowedKeys: ["certificates", "hsts_max_age"]) else { return nil }
        let pairs = object["certificates"]?.array()?.compactMap { entry -> GatewayConfig.CertificatePair? in
            guard let pair = entry.object(allowedKeys: ["cert", "key"]),
                let cert = pair.required("cert"), let key = pair.required("key"),
                let certPath = existingFile(cert), let keyPath = existingFile(key)
            else { return nil }
            return GatewayConfig.CertificatePair(certificatePath: certPath, keyPath: keyPath)
        } ?? []
        let hsts = object["hsts_max_age"]?.parsed(ValueParsers.duration)
        return GatewayConfig.TLS(certificates: pairs, hstsMaxAge: hsts)
    }

    func existingFile(_ value: YAMLValue) -> String? {
        guard let path = value.nonEmptyString() else { return nil }
        guard fileExists(path) else {
            value.report("file '\(path)' does not exist or is not readable (relative paths start at the working directory)")
            return nil
        }
        return path
    }

    func site(_ value: YAMLValue, pixels: [String: GatewayConfig.Events.Pixel]) -> GatewayConfig.Site? {
        guard let object = value.object(allowedKeys: [
            "hosts", "upstream", "upstream_tls", "cookie_domain", "decorate_hosts", "pixel", "max_body_size", "default", "preserve_host",
            "rewrite_html",
        ]) else { return nil }
        var hosts: [String] = []
        if let hostsValue = object.required("hosts"), let list = hostsValue.array() {
            hosts = list.compactMap { hostName($0) }
            if list.isEmpty { hostsValue.report("at least one host is required") }
        }
        guard var upstream = object.required("upstream")?.parsed(Self.upstream) else { return nil }
        if let tlsValue = object["upstream_tls"], let tls = tlsValue.object(allowedKeys: ["verify", "ca"]) {
            if upstream.scheme != .https { tlsValue.report("only applies to https:// upstreams") }
            if let verify = tls["verify"]?.bool() { upstream.verifyCertificate = verify }
            if let ca = tls["ca"] { upstream.caFile = existingFile(ca) }
        }
        let cookieDomain = object["cookie_domain"].flatMap { v -> String? in
            guard let d = hostName(v) else { return nil }
            let domain = d.hasPrefix(".") ? String(d.dropFirst()) : d
            for host in hosts where !(host == domain || host.hasSuffix("." + domain)) {
                v.report("'\(domain)' does not cover host '\(host)': browsers would refuse the cookie")
            }
            return domain
        }
        let decorate = object["decorate_hosts"]?.array()?.compactMap { hostName($0) } ?? []
        let pixel = object["pixel"].flatMap { v -> String? in
            guard let name = v.nonEmptyString() else { return nil }
            if pixels[name] == nil {
                v.report("no pixel named '\(name)' in events.pixels (known: \(pixels.keys.sorted().joined(separator: ", ")))")
            }
            return name
        }
        let maxBody = object["max_body_size"]?.parsed(ValueParsers.byteSize)
        let isDefault = object["default"]?.bool() ?? false
        let preserveHost = object["preserve_host"]?.bool() ?? true
        let rewriteHTML = object["rewrite_html"]?.bool() ?? false
        return GatewayConfig.Site(
            hosts: hosts, upstream: upstream, cookieDomain: cookieDomain, decorateHosts: decorate, pixel: pixel,
            maxBodySize: maxBody, isDefault: isDefault, preserveHost: preserveHost, rewriteHTML: rewriteHTML)
    }

    func checkSites(_ sites: [GatewayConfig.Site], at value: YAMLValue?) {
        guard let value else { return }
        var seen: [String: Int] = [:]
        for (i, site) in sites.enumerated() {
            for host in site.hosts {
                if let other = seen[host] {
                    diagnostics.report("sites[\(i)].hosts", "host '\(host)' is already served by sites[\(other)]", value.node)
                }
                seen[host] = i
            }
        }
        if sites.filter(\.isDefault).count > 1 {
            value.report("only one site may be 'default: true'")
        }
    }

    func hostName(_ value: YAMLValue) -> String? {
        guard let raw = value.nonEmptyString() else { return nil }
        let host = raw.lowercased()
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-.*:[]_")
        guard host.allSatisfy({ allowed.contains($0) }), !host.contains("..") else {
            value.report("'\(raw)' is not a host name (use the punycode form for international names)")
            return nil
        }
        return host
    }

    static func upstream(_ text: String) -> Result<GatewayConfig.Upstream, ValueError> {
        if text == "builtin:demo" { return .success(.builtinDemo) }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            let host = components.host, !host.isEmpty
        else {
            return .failure(.init("'\(text)' is not a URL like http://127.0.0.1:3000 or https://origin.example.com"))
        }
        guard let kind = GatewayConfig.Upstream.Scheme(rawValue: scheme), kind != .builtinDemo else {
            return .failure(.init("scheme '\(scheme)' is not supported: use http or https"))
        }
        guard components.path.isEmpty || components.path == "/", components.query == nil, components.fragment == nil else {
            return .failure(.init("an upstream is an origin only (no path, query or fragment): '\(text)'"))
        }
        guard components.user == nil else { return .failure(.init("credentials in the upstream URL are not supported")) }
        let port = components.port ?? (kind == .https ? 443 : 80)
        guard (1...65535).contains(port) else { return .failure(.init("port \(port) is out of range")) }
        let bareHost = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        return .success(GatewayConfig.Upstream(scheme: kind, host: bareHost, port: port))
    }

    func smartlink(_ value: YAMLValue) -> GatewayConfig.Smartlink? {
        guard let object = value.object(allowedKeys: ["path", "host", "status", "targets"]),
            let pathValue = object.required("path"), let path = pathValue.nonEmptyString()
        else { return nil }
        if !path.hasPrefix("/") { pathValue.report("must start with '/'") }
        let host = object["host"].flatMap { hostName($0) }
        let status = object["status"]?.int(in: 300...399) ?? 302
        if ![301, 302, 303, 307, 308].contains(status) {
            object["status"]?.report("must be one of 301, 302, 303, 307, 308")
        }
        let targetsValue = object.required("targets")
        let targets = targetsValue?.array()?.compactMap { t -> GatewayConfig.Smartlink.Target? in
            guard let target = t.object(allowedKeys: ["url", "weight", "device", "header"]), let urlValue = target.required("url"),
                let url = urlValue.nonEmptyString()
            else { return nil }
            guard let c = URLComponents(string: url), ["http", "https"].contains(c.scheme?.lowercased() ?? ""), c.host?.isEmpty == false else {
                urlValue.report("'\(url)' is not an absolute http(s) URL")
                return nil
            }
            let weight = target["weight"]?.int(in: 0...1_000_000) ?? 1
            var result = GatewayConfig.Smartlink.Target(url: url, weight: weight)
            if let v = target["device"], let device = v.nonEmptyString() {
                if ["mobile", "tablet", "desktop"].contains(device) { result.device = device } else { v.report("expected mobile, tablet or desktop") }
            }
            if let v = target["header"], let header = v.object(allowedKeys: ["name", "value"]) {
                result.headerName = header.required("name")?.nonEmptyString()?.lowercased()
                result.headerValue = header.required("value")?.string()
            }
            return result
        } ?? []
        if let targetsValue, !targets.isEmpty, targets.allSatisfy({ $0.weight == 0 }) {
            targetsValue.report("at least one target needs a weight above 0")
        }
        if let targetsValue, targets.isEmpty, targetsValue.array()?.isEmpty == true {
            targetsValue.report("at least one target is required")
        }
        return GatewayConfig.Smartlink(path: path, host: host, status: status, targets: targets)
    }

    func events(_ value: YAMLValue) -> GatewayConfig.Events? {
        guard let object = value.object(allowedKeys: [
            "path", "store", "endpoint", "pixels", "custom_events", "phone_country", "attribution_window", "click_ledger", "batch_size",
            "linger", "lease", "api_keys_env", "api_keys_file",
        ]) else { return nil }
        var events = GatewayConfig.Events()
        if let v = object["path"], let path = v.nonEmptyString() {
            if path.hasPrefix("/") { events.path = path } else { v.report("must start with '/'") }
        }
        if let v = object["store"], let store = v.nonEmptyString() {
            if store.hasPrefix("sqlite:"), store.count > "sqlite:".count {
                events.store = store
            } else if store.hasPrefix("postgres://") || store.hasPrefix("postgresql://") {
                let url = URLComponents(string: store)
                let sslmode = url?.queryItems?.first { $0.name == "sslmode" }?.value ?? "prefer"
                if url?.host?.isEmpty ?? true || url?.user?.isEmpty ?? true {
                    v.report("expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
                } else if !["disable", "allow", "prefer", "require", "verify-ca", "verify-full"].contains(sslmode) {
                    v.report("sslmode '\(sslmode)' is not one of disable, prefer, require, verify-full")
                } else {
                    events.store = store
                }
            } else {
                v.report("expected sqlite:PATH or postgres://USER@HOST/DB")
            }
        }
        if let v = object["endpoint"], let endpoint = v.nonEmptyString() {
            if let c = URLComponents(string: endpoint), ["http", "https"].contains(c.scheme ?? ""), c.host?.isEmpty == false {
                events.endpoint = endpoint
            } else {
                v.report("'\(endpoint)' is not an absolute http(s) URL")
            }
        }
        if let names = object["custom_events"]?.stringList() { events.customEvents = names }
        if let v = object["phone_country"], let code = v.nonEmptyString() {
            let digits = code.hasPrefix("+") ? String(code.dropFirst()) : code
            if (1...3).contains(digits.count), digits.allSatisfy(\.isASCIIDigit) { events.phoneCountry = digits } else {
                v.report("expected a country calling code such as 1, 44 or 49")
            }
        }
        if let d = object["attribution_window"]?.parsed(ValueParsers.duration) { events.attributionWindow = d }
        if let b = object["click_ledger"]?.bool() { events.clickLedger = b }
        if let n = object["batch_size"]?.int(in: 1...1000) { events.batchSize = n }
        events.apiKeysEnv = object["api_keys_env"]?.nonEmptyString()
        if let v = object["api_keys_file"] { events.apiKeysFile = existingFile(v) }
        if let d = object["linger"]?.parsed(ValueParsers.duration) { events.linger = d }
        if let v = object["lease"], let d = v.parsed(ValueParsers.duration) {
            if d < .seconds(5) || d > .seconds(3600) { v.report("must be from 5s to 1h (longer than a request to the Events API takes)") } else { events.lease = d }
        }
        for (name, entry) in object["pixels"]?.namedEntries() ?? [] {
            guard let pixel = entry.object(allowedKeys: ["pixel_code", "access_token_env", "access_token_file", "test_event_code"]),
                let code = pixel.required("pixel_code")?.nonEmptyString()
            else { continue }
            events.pixels[name] = GatewayConfig.Events.Pixel(
                pixelCode: code,
                accessTokenEnv: pixel["access_token_env"]?.nonEmptyString(),
                accessTokenFile: pixel["access_token_file"]?.nonEmptyString(),
                testEventCode: pixel["test_event_code"]?.nonEmptyString())
        }
        return events
    }

    func limits(_ value: YAMLValue) -> GatewayConfig.Limits? {
        guard let object = value.object(allowedKeys: [
            "max_header_bytes", "max_header_count", "max_body_size", "h2_max_concurrent_streams", "upstream_idle_connections",
        ]) else { return nil }
        var limits = GatewayConfig.Limits()
        if let v = object["max_header_bytes"]?.parsed(ValueParsers.byteSize) { limits.maxHeaderBytes = v }
        if let v = object["max_header_count"]?.int(in: 1...10_000) { limits.maxHeaderCount = v }
        if let v = object["max_body_size"]?.parsed(ValueParsers.byteSize) { limits.maxBodySize = v }
        if let v = object["h2_max_concurrent_streams"]?.int(in: 1...10_000) { limits.h2MaxConcurrentStreams = v }
        if let v = object["upstream_idle_connections"]?.int(in: 0...100_000) { limits.upstreamIdleConnections = v }
        if let v = object["max_header_bytes"], limits.maxHeaderBytes < 1024 { v.report("must be at least 1KiB") }
        return limits
    }

    func timeouts(_ value: YAMLValue) -> GatewayConfig.Timeouts? {
        let keys: [(String, WritableKeyPath<GatewayConfig.Timeouts, Duration>)] = [
            ("handshake", \.handshake), ("header", \.header), ("idle", \.idle), ("body", \.body),
            ("upstream_connect", \.upstreamConnect), ("upstream_response_header", \.upstreamResponseHeader),
            ("upstream_idle", \.upstreamIdle), ("upstream_keepalive", \.upstreamKeepalive), ("shutdown_grace", \.shutdownGrace),
        ]
        guard let object = value.object(allowedKeys: Set(keys.map(\.0))) else { return nil }
        var timeouts = GatewayConfig.Timeouts()
        for (key, path) in keys {
            guard let v = object[key], let d = v.parsed(ValueParsers.duration) else { continue }
            if d <= .zero { v.report("must be greater than zero") } else { timeouts[keyPath: path] = d }
        }
        return timeouts
    }

    func tracking(_ value: YAMLValue) -> GatewayConfig.Tracking? {
        guard let object = value.object(allowedKeys: [
            "click_ids", "visitor_cookie", "visitor_max_age", "ttp_max_age", "pass_through", "consent", "headers", "rewrite_refresh",
        ]) else { return nil }
        var tracking = GatewayConfig.Tracking()
        for entry in object["click_ids"]?.array() ?? [] {
            guard let fields = entry.object(allowedKeys: ["param", "platform", "cookie", "format", "max_age"]),
                let parameter = fields.required("param")?.nonEmptyString()
            else { continue }
            var item = GatewayConfig.Tracking.ClickIDEntry(parameter: parameter)
            item.platform = fields["platform"]?.nonEmptyString()
            if let v = fields["cookie"], let name = v.nonEmptyString() {
                if Self.isCookieName(name) { item.cookie = name } else { v.report("'\(name)' is not a valid cookie name") }
            }
            if let v = fields["format"], let format = v.nonEmptyString() {
                if GatewayConfig.Tracking.cookieFormats.contains(format) { item.format = format } else {
                    v.report("expected one of \(GatewayConfig.Tracking.cookieFormats.joined(separator: ", "))")
                }
            }
            item.maxAge = fields["max_age"]?.parsed(ValueParsers.duration)
            tracking.clickIDs.append(item)
        }
        if let v = object["visitor_cookie"], let name = v.nonEmptyString() {
            if Self.isCookieName(name) { tracking.visitorCookie = name } else { v.report("'\(name)' is not a valid cookie name") }
        }
        if let d = object["visitor_max_age"]?.parsed(ValueParsers.duration) { tracking.visitorMaxAge = d }
        if let d = object["ttp_max_age"]?.parsed(ValueParsers.duration) { tracking.ttpMaxAge = d }
        if let list = object["pass_through"]?.stringList() { tracking.passThrough = list }
        if let v = object["consent"], let consent = v.object(allowedKeys: ["respect_gpc", "cookie", "denied"]) {
            if let b = consent["respect_gpc"]?.bool() { tracking.respectGPC = b }
            tracking.consentCookie = consent["cookie"]?.nonEmptyString()
            if let list = consent["denied"]?.stringList() { tracking.consentDeniedValues = list.map { $0.lowercased() } }
        }
        if let v = object["headers"], let headers = v.object(allowedKeys: ["click_id", "visitor"]) {
            for (key, path) in [("click_id", \GatewayConfig.Tracking.clickIDHeader), ("visitor", \.visitorHeader)] {
                guard let h = headers[key], let name = h.nonEmptyString() else { continue }
                if Self.isCookieName(name) { tracking[keyPath: path] = name } else { h.report("'\(name)' is not a valid header name") }
            }
        }
        if let b = object["rewrite_refresh"]?.bool() { tracking.rewriteRefresh = b }
        return tracking
    }

    /// RFC 7230 token: valid as a cookie or header name.
    static func isCookieName(_ name: String) -> Bool {
        !name.isEmpty && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "!#$%&'*+-.^_`|~".contains($0)) }
    }

    func admin(_ value: YAMLValue) -> GatewayConfig.Admin? {
        guard let object = value.object(allowedKeys: ["history_interval"]) else { return nil }
        var admin = GatewayConfig.Admin()
        if let v = object["history_interval"], let d = v.parsed(ValueParsers.duration) {
            if d < .seconds(1) || d > .seconds(600) { v.report("must be from 1s to 10m") } else { admin.historyInterval = d }
        }
        return admin
    }

    func log(_ value: YAMLValue) -> GatewayConfig.Log? {
        guard let object = value.object(allowedKeys: ["access", "level"]) else { return nil }
        var log = GatewayConfig.Log()
        if let text = object["access"]?.nonEmptyString() {
            switch text {
            case "stdout": log.access = .stdout
            case "stderr": log.access = .stderr
            case "off": log.access = .off
            default: log.access = .file(text)
            }
        }
        if let v = object["level"], let level = v.nonEmptyString() {
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            if levels.contains(level) { log.level = level } else { v.report("expected one of \(levels.joined(separator: ", "))") }
        }
        return log
    }
}
