/// The whole gateway configuration: one value, built and validated once by ``ConfigLoader``.
///
/// Everything downstream (listeners, sites, the proxy engine, the sidecar) reads this value and
/// never re-validates it. The YAML key that fills each field is named in its doc comment; those
/// names are a contract other tools rely on.
public struct GatewayConfig: Sendable, Equatable {
    /// `listen`
    public var listen: Listen
    /// `tls`
    public var tls: TLS
    /// `trusted_proxies`: peers whose X-Forwarded-* / Forwarded headers are believed.
    public var trustedProxies: [CIDR]
    /// `unknown_host`: what a request for a host that no site serves gets.
    public var unknownHost: UnknownHostPolicy
    /// `sites`
    public var sites: [Site]
    /// `smartlinks`
    public var smartlinks: [Smartlink]
    /// `events`
    public var events: Events
    /// `limits`
    public var limits: Limits
    /// `timeouts`
    public var timeouts: Timeouts
    /// `log`
    public var log: Log
    /// `tracking`
    public var tracking: Tracking
    /// `admin`
    public var admin: Admin

    public init(
        listen: Listen,
        tls: TLS,
        trustedProxies: [CIDR] = [],
        unknownHost: UnknownHostPolicy = .misdirected,
        sites: [Site],
        smartlinks: [Smartlink] = [],
        events: Events = Events(),
        limits: Limits = Limits(),
        timeouts: Timeouts = Timeouts(),
        log: Log = Log(),
        tracking: Tracking = Tracking(),
        admin: Admin = Admin()
    ) {
        self.listen = listen
        self.tls = tls
        self.trustedProxies = trustedProxies
        self.unknownHost = unknownHost
        self.sites = sites
        self.smartlinks = smartlinks
        self.events = events
        self.limits = limits
        self.timeouts = timeouts
        self.log = log
        self.tracking = tracking
        self.admin = admin
    }
}

extension GatewayConfig {
    public struct Listen: Sendable, Equatable {
        /// `listen.https`: TLS listener with ALPN h2 and http/1.1.
        public var https: HostPort?
        /// `listen.http`: optional plain-HTTP listener.
        public var http: HostPort?
        /// `listen.admin`: loopback by default; never public unless configured so.
        public var admin: HostPort?

        public init(https: HostPort?, http: HostPort?, admin: HostPort?) {
            self.https = https
            self.http = http
            self.admin = admin
        }
    }

    public struct TLS: Sendable, Equatable {
        /// `tls.certificates`: the first pair is the default for clients without a matching SNI name.
        public var certificates: [CertificatePair]
        /// `tls.hsts_max_age`: adds `Strict-Transport-Security` on HTTPS responses when set.
        public var hstsMaxAge: Duration?

        public init(certificates: [CertificatePair], hstsMaxAge: Duration? = nil) {
            self.certificates = certificates
            self.hstsMaxAge = hstsMaxAge
        }
    }

    public struct CertificatePair: Sendable, Equatable {
        /// `cert`: PEM chain, leaf first.
        public var certificatePath: String
        /// `key`: PEM private key.
        public var keyPath: String

        public init(certificatePath: String, keyPath: String) {
            self.certificatePath = certificatePath
            self.keyPath = keyPath
        }
    }

    public enum UnknownHostPolicy: String, Sendable, Equatable {
        /// 421 Misdirected Request.
        case misdirected
        /// Serve the site marked `default: true` (or the first site).
        case defaultSite = "default_site"
    }

    public struct Site: Sendable, Equatable {
        /// `hosts`: lower-cased names without port, or `*.example.com` for its subdomains.
        public var hosts: [String]
        /// How metrics, logs and the dashboard name the site: its first host.
        public var name: String { hosts.first ?? "default" }
        /// `upstream`
        public var upstream: Upstream
        /// `cookie_domain`: host-only cookies when absent.
        public var cookieDomain: String?
        /// `decorate_hosts`: other hosts that may receive click ids.
        public var decorateHosts: [String]
        /// `pixel`: key into `events.pixels`.
        public var pixel: String?
        /// `max_body_size`: overrides `limits.max_body_size` for this site.
        public var maxBodySize: Int?
        /// `default`: the site for unknown hosts when `unknown_host: default_site`.
        public var isDefault: Bool
        /// `preserve_host`: send the client's Host upstream (default) or the upstream's own authority.
        public var preserveHost: Bool
        /// `rewrite_html`: decorate links, forms and refreshes toward the decorate hosts in HTML
        /// answers to requests with a click id (off by default).
        public var rewriteHTML: Bool

        public init(
            hosts: [String],
            upstream: Upstream,
            cookieDomain: String? = nil,
            decorateHosts: [String] = [],
            pixel: String? = nil,
            maxBodySize: Int? = nil,
            isDefault: Bool = false,
            preserveHost: Bool = true,
            rewriteHTML: Bool = false
        ) {
            self.hosts = hosts
            self.upstream = upstream
            self.cookieDomain = cookieDomain
            self.decorateHosts = decorateHosts
            self.pixel = pixel
            self.maxBodySize = maxBodySize
            self.isDefault = isDefault
            self.preserveHost = preserveHost
            self.rewriteHTML = rewriteHTML
        }
    }

    /// Where a site's requests go.
    public struct Upstream: Sendable, Equatable, CustomStringConvertible {
        public enum Scheme: String, Sendable, Equatable {
            case http, https
            /// `builtin:demo`: the in-process demo origin of the embedded default.
            case builtinDemo = "builtin"
        }

        public var scheme: Scheme
        public var host: String
        public var port: Int
        /// `upstream_tls.verify`: check the upstream's certificate (https upstreams).
        public var verifyCertificate: Bool
        /// `upstream_tls.ca`: extra PEM trust roots for the upstream.
        public var caFile: String?

        public init(scheme: Scheme, host: String, port: Int, verifyCertificate: Bool = true, caFile: String? = nil) {
            self.scheme = scheme
            self.host = host
            self.port = port
            self.verifyCertificate = verifyCertificate
            self.caFile = caFile
        }

        public static let builtinDemo = Upstream(scheme: .builtinDemo, host: "demo", port: 0)

        public var description: String {
            scheme == .builtinDemo ? "builtin:demo" : "\(scheme.rawValue)://\(HostPort.format(host: host, port: port))"
        }
    }

    public struct Smartlink: Sendable, Equatable {
        public struct Target: Sendable, Equatable {
            public var url: String
            public var weight: Int
            /// `device`: mobile, tablet or desktop (from the User-Agent).
            public var device: String?
            /// `header: {name, value}`: e.g. a country header a CDN sets.
            public var headerName: String?
            public var headerValue: String?

            public init(url: String, weight: Int, device: String? = nil, headerName: String? = nil, headerValue: String? = nil) {
                self.url = url
                self.weight = weight
                self.device = device
                self.headerName = headerName
                self.headerValue = headerValue
            }
        }

        /// `path`: exact path, e.g. `/go/spring`.
        public var path: String
        /// `host`: only on this host when set; every site otherwise.
        public var host: String?
        /// `status`: the redirect status (301, 302, 303, 307 or 308).
        public var status: Int
        public var targets: [Target]

        public init(path: String, host: String? = nil, status: Int = 302, targets: [Target]) {
            self.path = path
            self.host = host
            self.status = status
            self.targets = targets
        }
    }

    public struct Events: Sendable, Equatable {
        public struct Pixel: Sendable, Equatable {
            public var pixelCode: String
            public var accessTokenEnv: String?
            public var accessTokenFile: String?
            public var testEventCode: String?

            public init(pixelCode: String, accessTokenEnv: String? = nil, accessTokenFile: String? = nil, testEventCode: String? = nil) {
                self.pixelCode = pixelCode
                self.accessTokenEnv = accessTokenEnv
                self.accessTokenFile = accessTokenFile
                self.testEventCode = testEventCode
            }
        }

        /// `events.path`: first-party browser ingest path on every site.
        public var path: String
        /// `events.store`: `sqlite:PATH` or `postgres://…`.
        public var store: String
        /// `events.endpoint`: the Events API URL.
        public var endpoint: String
        /// `events.pixels`
        public var pixels: [String: Pixel]
        /// `events.custom_events`: event names allowed besides TikTok's standard ones.
        public var customEvents: [String] = []
        /// `events.phone_country`: country calling code for national phone numbers, e.g. "1".
        public var phoneCountry: String?
        /// `events.attribution_window`: how long a click enriches later events.
        public var attributionWindow: Duration = .seconds(28 * 86_400)
        /// `events.click_ledger`: whether captured clicks (visitor id, click ids, IP, user agent,
        /// landing page) are stored for later events to be joined to. Off, nothing about a click
        /// is stored and events carry only what they bring.
        public var clickLedger = true
        /// `events.api_keys_env` / `events.api_keys_file`: keys (comma, space or line separated) for
        /// `POST /v1/events` on the admin listener.
        public var apiKeysEnv: String?
        public var apiKeysFile: String?
        /// `events.batch_size`: events per Events API request (at most 1,000).
        public var batchSize = 50
        /// `events.linger`: how long delivery waits for more events when the queue is empty.
        public var linger: Duration = .seconds(1)
        /// `events.lease`: how long a batch being sent belongs to the instance sending it; after a
        /// crash, another instance (or the restarted one, with PostgreSQL) takes it over then.
        public var lease: Duration = .seconds(60)

        public init(
            path: String = "/_clickgate/events",
            store: String = "sqlite:data/clickgate.sqlite",
            endpoint: String = "https://business-api.tiktok.com/open_api/v1.3/event/track/",
            pixels: [String: Pixel] = [:]
        ) {
            self.path = path
            self.store = store
            self.endpoint = endpoint
            self.pixels = pixels
        }
    }

    public struct Limits: Sendable, Equatable {
        /// `limits.max_header_bytes`: all request header names and values together (431 above).
        public var maxHeaderBytes: Int = 32 * 1024
        /// `limits.max_header_count` (431 above).
        public var maxHeaderCount: Int = 100
        /// `limits.max_body_size`: request body per site unless the site overrides it (413 above).
        public var maxBodySize: Int = 10 * 1024 * 1024
        /// `limits.h2_max_concurrent_streams`
        public var h2MaxConcurrentStreams: Int = 128
        /// `limits.upstream_idle_connections`: kept-alive upstream connections per origin and core.
        /// Each HTTP/2 stream in flight holds an HTTP/1.1 upstream connection: with 64, bursts of
        /// streams reconnected for nearly every request (docs/PERFORMANCE.md).
        public var upstreamIdleConnections: Int = 256

        public init() {}
    }

    public struct Timeouts: Sendable, Equatable {
        /// `timeouts.handshake`: TLS handshake.
        public var handshake: Duration = .seconds(10)
        /// `timeouts.header`: request head after the connection opened or its first byte (408).
        public var header: Duration = .seconds(15)
        /// `timeouts.idle`: keep-alive connection with nothing in flight.
        public var idle: Duration = .seconds(75)
        /// `timeouts.body`: gap between two reads of a request body (408).
        public var body: Duration = .seconds(60)
        /// `timeouts.upstream_connect` (502 when refused, 504 when it expires).
        public var upstreamConnect: Duration = .seconds(5)
        /// `timeouts.upstream_response_header`: from request sent to response head (504).
        public var upstreamResponseHeader: Duration = .seconds(60)
        /// `timeouts.upstream_idle`: gap between two reads of a response body.
        public var upstreamIdle: Duration = .seconds(60)
        /// `timeouts.upstream_keepalive`: how long an idle upstream connection is kept.
        public var upstreamKeepalive: Duration = .seconds(30)
        /// `timeouts.shutdown_grace`: how long in-flight requests may drain on SIGTERM.
        public var shutdownGrace: Duration = .seconds(30)

        public init() {}
    }

    /// What the admin listener (`listen.admin`) keeps besides its endpoints.
    public struct Admin: Sendable, Equatable {
        /// `admin.history_interval`: how often the dashboard's hour of metrics is sampled (1s to 10m).
        public var historyInterval: Duration = .seconds(10)

        public init() {}
    }

    public struct Log: Sendable, Equatable {
        public enum Destination: Sendable, Equatable {
            case stdout, stderr, off
            case file(String)
        }

        /// `log.access`: stdout (default), stderr, off or a file path.
        public var access: Destination = .stdout
        /// `log.level`: trace, debug, info, notice, warning, error, critical.
        public var level: String = "info"

        public init() {}
    }
}

extension GatewayConfig {
    /// Click-id capture, cookies, consent and what the origin is told.
    public struct Tracking: Sendable, Equatable {
        /// An entry of `tracking.click_ids`: overrides the built-in entry for the same parameter, or adds one.
        public struct ClickIDEntry: Sendable, Equatable {
            public var parameter: String
            public var platform: String?
            public var cookie: String?
            /// raw, fbc, gcl or uet.
            public var format: String?
            public var maxAge: Duration?

            public init(parameter: String, platform: String? = nil, cookie: String? = nil, format: String? = nil, maxAge: Duration? = nil) {
                self.parameter = parameter
                self.platform = platform
                self.cookie = cookie
                self.format = format
                self.maxAge = maxAge
            }
        }

        public static let cookieFormats = ["raw", "fbc", "gcl", "uet"]

        /// `tracking.click_ids`
        public var clickIDs: [ClickIDEntry] = []
        /// `tracking.visitor_cookie`: the HttpOnly first-party visitor id.
        public var visitorCookie = "_cg_vid"
        /// `tracking.visitor_max_age`
        public var visitorMaxAge: Duration = .seconds(400 * 86_400)
        /// `tracking.ttp_max_age`: TikTok's `_ttp`, re-issued server-side (13 months, browsers cap at 400 days).
        public var ttpMaxAge: Duration = .seconds(395 * 86_400)
        /// `tracking.pass_through`: parameters redirects carry besides click ids (`utm_*` is a prefix).
        public var passThrough: [String] = ["utm_*"]
        /// `tracking.consent.respect_gpc`
        public var respectGPC = true
        /// `tracking.consent.cookie`: a consent manager's cookie.
        public var consentCookie: String?
        /// `tracking.consent.denied`: its values that mean "no".
        public var consentDeniedValues: [String] = ["denied", "0", "false", "no"]
        /// `tracking.headers.click_id`: tells the origin the ttclid.
        public var clickIDHeader = "X-ClickGate-Ttclid"
        /// `tracking.headers.visitor`: tells the origin the visitor id.
        public var visitorHeader = "X-ClickGate-Visitor"
        /// `tracking.rewrite_refresh`: also restore click ids in `Refresh` headers.
        public var rewriteRefresh = true

        public init() {}
    }
}

extension GatewayConfig.Site {
    /// Body limit in force for this site.
    public func maxBodySize(in limits: GatewayConfig.Limits) -> Int {
        maxBodySize ?? limits.maxBodySize
    }
}
