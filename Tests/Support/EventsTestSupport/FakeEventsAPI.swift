import Events
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A local stand-in for TikTok's Events API v1.3 that enforces its contract and injects faults.
///
/// Contract: `POST /open_api/v1.3/event/track/`; `Access-Token` must match (else code 40001);
/// `{event_source: "web", event_source_id, data: [1...1000 events]}`; each event has a string
/// `event`, `event_time` in Unix seconds, a string `event_id`, and hashed PII as 64-hex strings.
/// Any breach is code 40002 for the whole batch, with a message naming the field, answered with
/// HTTP 200, as TikTok does.
public final class FakeEventsAPI: Sendable {
    public enum Fault: Sendable, Equatable {
        case http500, rateLimit, garbage, drop, hang
        case unauthorized
    }

    struct State: Sendable {
        var faults: [Fault] = []
        /// Every batch containing one of these ids is refused with 40002.
        var poisoned: Set<String> = []
        var delivered: [String] = []
        /// The last delivered copy of each event, by event_id.
        var events: [String: JSONValue] = [:]
        var batchSizes: [Int] = []
        var requests = 0
        var testEventCodes: [String?] = []
    }

    public let channel: any Channel
    public let token: String
    private let state: NIOLockedValueBox<State>

    public var url: String { "http://127.0.0.1:\(channel.localAddress!.port!)/open_api/v1.3/event/track/" }
    public var delivered: [String] { state.withLockedValue { $0.delivered } }
    public var batchSizes: [Int] { state.withLockedValue { $0.batchSizes } }
    public var requests: Int { state.withLockedValue { $0.requests } }
    public var testEventCodes: [String?] { state.withLockedValue { $0.testEventCodes } }
    /// The delivered event with this event_id, as TikTok received it.
    public func event(_ eventID: String) -> JSONValue? { state.withLockedValue { $0.events[eventID] } }

    private init(channel: any Channel, token: String, state: NIOLockedValueBox<State>) {
        self.channel = channel
        self.token = token
        self.state = state
    }

    public static func start(token: String = "test-token") async throws -> FakeEventsAPI {
        let state = NIOLockedValueBox(State())
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(FakeAPIHandler(token: token, state: state))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return FakeEventsAPI(channel: channel, token: token, state: state)
    }

    /// Faults for the next requests, in order; then it behaves.
    public func inject(_ faults: [Fault]) { state.withLockedValue { $0.faults += faults } }
    public func poison(_ eventID: String) { _ = state.withLockedValue { $0.poisoned.insert(eventID) } }

    public func stop() async { try? await channel.close() }

    /// The contract check; nil when the request is valid.
    public static func contractViolation(_ body: JSONValue) -> String? {
        guard case .object(let root) = body else { return "Invalid value for field: body must be an object" }
        guard root["event_source"] == .string("web") else { return "Invalid value for field: event_source" }
        guard case .string(let source)? = root["event_source_id"], !source.isEmpty else { return "Invalid value for field: event_source_id" }
        guard case .array(let data)? = root["data"], (1...1000).contains(data.count) else { return "Invalid value for field: data (1 to 1000 events)" }
        for (i, item) in data.enumerated() {
            guard case .object(let e) = item else { return "Invalid value for field: data[\(i)]" }
            guard case .string(let name)? = e["event"], !name.isEmpty else { return "Invalid value for field: data[\(i)].event" }
            guard case .number(let time)? = e["event_time"], time == time.rounded(), time < 1e11 else { return "Invalid value for field: data[\(i)].event_time" }
            guard case .string? = e["event_id"] else { return "Invalid value for field: data[\(i)].event_id must be a string" }
            if case .object(let user)? = e["user"] {
                for key in ["email", "phone", "external_id"] {
                    guard let value = user[key] else { continue }
                    guard case .array(let hashes) = value, hashes.allSatisfy({ $0.stringValue.map(PII.isHashed) ?? false }) else {
                        return "Invalid value for field: data[\(i)].user.\(key) must be SHA-256 hashes"
                    }
                }
            }
        }
        return nil
    }
}

private final class FakeAPIHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let token: String
    private let state: NIOLockedValueBox<FakeEventsAPI.State>
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    init(token: String, state: NIOLockedValueBox<FakeEventsAPI.State>) {
        self.token = token
        self.state = state
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            guard let head else { return }
            handle(head, context: context)
        }
    }

    private func handle(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let fault = state.withLockedValue { s -> FakeEventsAPI.Fault? in
            s.requests += 1
            return s.faults.isEmpty ? nil : s.faults.removeFirst()
        }
        switch fault {
        case .hang?: return
        case .drop?: context.close(promise: nil); return
        case .http500?: return respond(status: .internalServerError, "internal error", context)
        case .garbage?: return respond(status: .ok, "<html>upstream maintenance</html>", context)
        case .rateLimit?: return respond(code: 40100, "Too many requests", context)
        case .unauthorized?: return respond(code: 40001, "No permission to operate pixel", context)
        case nil: break
        }
        guard head.method == .POST, head.uri == "/open_api/v1.3/event/track/" else {
            return respond(status: .notFound, "not found", context)
        }
        guard head.headers.first(name: "access-token") == token else {
            return respond(code: 40001, "No permission to operate pixel", context)
        }
        guard let json = try? JSONValue.parse(Array(body.readableBytesView)) else {
            return respond(code: 40002, "Invalid value for field: body is not JSON", context)
        }
        if let violation = FakeEventsAPI.contractViolation(json) { return respond(code: 40002, violation, context) }
        guard case .array(let data)? = json["data"] else { return }
        let ids = data.compactMap { $0["event_id"]?.stringValue }
        let poisoned = state.withLockedValue { s in ids.firstIndex { s.poisoned.contains($0) } }
        if let index = poisoned {
            return respond(code: 40002, "Invalid value for field: data[\(index)].properties.currency", context)
        }
        state.withLockedValue { s in
            s.delivered += ids
            for item in data { if let id = item["event_id"]?.stringValue { s.events[id] = item } }
            s.batchSizes.append(ids.count)
            s.testEventCodes.append(json["test_event_code"]?.stringValue)
        }
        respond(code: 0, "OK", context)
    }

    private func respond(code: Int, _ message: String, _ context: ChannelHandlerContext) {
        respond(status: .ok, #"{"code":\#(code),"message":"\#(message)","request_id":"fake","data":{}}"#, context)
    }

    private func respond(status: HTTPResponseStatus, _ text: String, _ context: ChannelHandlerContext) {
        let head = HTTPResponseHead(version: .http1_1, status: status, headers: ["content-type": "application/json", "content-length": "\(text.utf8.count)"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}
