import Crypto
import Events
import EventsTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import X509

/// Debian's headless Chromium, driven over the DevTools protocol (a WebSocket of JSON messages):
/// what a real visitor's browser does, without Selenium.
final class Chromium: Sendable {
    let process: ChildProcess
    let userDataDir: String
    private let channel: any Channel
    private let pending = NIOLockedValueBox<[Int: CheckedContinuation<JSONValue, any Error>]>([:])
    private let nextID = NIOLockedValueBox(0)

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private init(process: ChildProcess, userDataDir: String, channel: any Channel) {
        self.process = process
        self.userDataDir = userDataDir
        self.channel = channel
    }

    /// Starts the real binary (not Debian's wrapper script) and opens one page.
    /// - Parameters:
    ///   - hosts: names that resolve to 127.0.0.1 for this browser.
    ///   - trusting: the PEM file of the certificate the test hosts present; certificate errors are
    ///     ignored for its key only (Chromium's SPKI allow-list), not for any other site.
    static func launch(hosts: [String], trusting certificateFile: String, extraFlags: [String] = []) async throws -> Chromium {
        // The file holds the chain, leaf first.
        let chain = try String(contentsOfFile: certificateFile, encoding: .utf8)
        let end = "-----END CERTIFICATE-----"
        let leaf = try Certificate(pemEncoded: String(chain[..<(chain.range(of: end)?.upperBound ?? chain.endIndex)]))
        let spki = try leaf.publicKey.serializeAsPEM().derBytes
        let pin = Data(SHA256.hash(data: spki)).base64EncodedString()
        let binary = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"].first(where: FileManager.default.isExecutableFile(atPath:)) ?? "/usr/bin/chromium"
        let userDataDir = TestFiles.makeScratch("chromium")
        let flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0", "--user-data-dir=\(userDataDir)",
            "--host-resolver-rules=" + hosts.map { "MAP \($0) 127.0.0.1" }.joined(separator: ", "),
            "--ignore-certificate-errors-spki-list=\(pin)", "--no-first-run", "--no-default-browser-check", "--window-size=1200,900", "about:blank",
        ] + extraFlags
        let process = try ChildProcess(binary, flags)
        var port = 0
        for _ in 0..<200 {
            if let text = try? String(contentsOfFile: userDataDir + "/DevToolsActivePort", encoding: .utf8),
                let first = text.split(separator: "\n").first, let value = Int(first)
            {
                port = value
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        guard port > 0 else {
            await process.stop()
            throw Failure(description: "chromium did not open its DevTools port")
        }
        let list = try await curl(["http://127.0.0.1:\(port)/json/list"])
        guard let targets = try? JSONValue.parse(Array(list.stdout.utf8)), case .array(let pages) = targets,
            let socketURL = pages.first(where: { $0["type"]?.stringValue == "page" })?["webSocketDebuggerUrl"]?.stringValue,
            let path = URLComponents(string: socketURL)?.path
        else { throw Failure(description: "no page target: \(list.stdout)") }
        let channel = try await connect(port: port, path: path)
        let browser = Chromium(process: process, userDataDir: userDataDir, channel: channel)
        try await channel.pipeline.addHandler(Inbound(browser: browser)).get()
        return browser
    }

    private static func connect(port: Int, path: String) async throws -> any Channel {
        let upgraded = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Void.self)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                let upgrader = NIOWebSocketClientUpgrader(maxFrameSize: 64 << 20) { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(NIOWebSocketFrameAggregator(
                            minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 10_000, maxAccumulatedFrameSize: 64 << 20))
                        upgraded.succeed()
                    }
                }
                return channel.pipeline.addHTTPClientHandlers(withClientUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
            }
            .connect(host: "127.0.0.1", port: port).get()
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: ["Host": "127.0.0.1:\(port)"])
        // Head and end in one go on the loop: once the 101 arrives, nothing more may be written.
        try await channel.eventLoop.flatSubmit {
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            return channel.writeAndFlush(HTTPClientRequestPart.end(nil))
        }.get()
        try await upgraded.futureResult.get()
        return channel
    }

    /// One DevTools command; its `result`, or a failure with the browser's error. A browser under
    /// load has been seen never to answer (a screenshot of a busy page): after `timeout` the
    /// command fails instead of holding the test forever.
    @discardableResult
    func send(_ method: String, _ params: [String: JSONValue] = [:], timeout: TimeAmount = .seconds(30)) async throws -> JSONValue {
        let id = nextID.withLockedValue { n in
            n += 1
            return n
        }
        let message = JSONValue.object(["id": .number(Double(id)), "method": .string(method), "params": .object(params)]).serialized
        let channel = self.channel
        return try await withCheckedThrowingContinuation { continuation in
            pending.withLockedValue { $0[id] = continuation }
            var buffer = channel.allocator.buffer(capacity: message.utf8.count)
            buffer.writeString(message)
            let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: buffer)
            channel.writeAndFlush(frame).whenFailure { [pending] error in
                pending.withLockedValue { $0.removeValue(forKey: id) }?.resume(throwing: error)
            }
            channel.eventLoop.scheduleTask(in: timeout) { [pending] in
                pending.withLockedValue { $0.removeValue(forKey: id) }?.resume(throwing: Failure(description: "DevTools: no answer to \(method)"))
            }
        }
    }

    /// The DevTools connection is gone (the browser exited): nothing pending will be answered.
    fileprivate func failPending() {
        let waiting = pending.withLockedValue { pending in
            defer { pending.removeAll() }
            return Array(pending.values)
        }
        for continuation in waiting { continuation.resume(throwing: Failure(description: "DevTools: the browser closed the connection")) }
    }

    fileprivate func receive(_ text: String) {
        guard let message = try? JSONValue.parse(Array(text.utf8)), case .number(let n)? = message["id"] else { return }
        guard let continuation = pending.withLockedValue({ $0.removeValue(forKey: Int(n)) }) else { return }
        if let error = message["error"] {
            continuation.resume(throwing: Failure(description: "DevTools: \(error.serialized)"))
        } else {
            continuation.resume(returning: message["result"] ?? .null)
        }
    }

    /// A JavaScript expression's value in the page.
    func evaluate(_ expression: String) async throws -> JSONValue {
        let result = try await send("Runtime.evaluate", ["expression": .string(expression), "returnByValue": .bool(true), "awaitPromise": .bool(true)])
        if let exception = result["exceptionDetails"] { throw Failure(description: "script failed: \(exception.serialized)") }
        return result["result"]?["value"] ?? .null
    }

    /// Navigates and waits until the page (after any redirects) has loaded and `until` is true.
    func open(_ url: String, until condition: String = "true", timeout: Duration = .seconds(15)) async throws -> String {
        try await send("Page.navigate", ["url": .string(url)])
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            let state = try? await evaluate("document.readyState === 'complete' && location.href !== 'about:blank' && (\(condition)) ? location.href : ''")
            if let href = state?.stringValue, !href.isEmpty { return href }
        }
        throw Failure(description: "\(url) did not finish loading (\(condition))")
    }

    /// Cookies the browser holds for `url`, by name.
    func cookies(for url: String) async throws -> [String: JSONValue] {
        let result = try await send("Network.getCookies", ["urls": .array([.string(url)])])
        guard case .array(let cookies)? = result["cookies"] else { return [:] }
        return Dictionary(cookies.compactMap { cookie in cookie["name"]?.stringValue.map { ($0, cookie) } }, uniquingKeysWith: { first, _ in first })
    }

    /// Saves what the page shows (kept in artifacts/ for whoever reads a failure).
    func screenshot(to path: String) async {
        guard let data = try? await send("Page.captureScreenshot", ["format": .string("png")], timeout: .seconds(10))["data"]?.stringValue,
            let bytes = Data(base64Encoded: data)
        else { return }
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try? bytes.write(to: URL(fileURLWithPath: path))
    }

    func close() async {
        try? await channel.close()
        await process.stop()
    }

    private final class Inbound: ChannelInboundHandler, Sendable {
        typealias InboundIn = WebSocketFrame
        let browser: Chromium

        init(browser: Chromium) { self.browser = browser }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            guard frame.opcode == .text else { return }
            browser.receive(String(buffer: frame.unmaskedData))
        }

        func channelInactive(context: ChannelHandlerContext) {
            browser.failPending()
            context.fireChannelInactive()
        }
    }
}
