import Events
import Foundation
import Logging
import NIOConcurrencyHelpers

/// Where log lines go: a file descriptor shared by every logger that writes there.
public final class LogSink: Sendable {
    private let lock = NIOLock()
    private let handle: FileHandle

    public static let stdout = LogSink(handle: .standardOutput)
    public static let stderr = LogSink(handle: .standardError)

    public init(handle: FileHandle) {
        self.handle = handle
    }

    /// Appends to `path`, creating it when needed.
    public convenience init(appendingTo path: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        handle.seekToEndOfFile()
        self.init(handle: handle)
    }

    func write(_ line: String) {
        let data = Data((line + "\n").utf8)
        lock.withLock { handle.write(data) }
    }
}

/// One JSON object per line: `time`, `level`, `logger`, `message`, then the metadata fields.
/// Machines read it; `jq` makes it readable for people.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let sink: LogSink

    public init(label: String, sink: LogSink, level: Logger.Level = .info) {
        self.label = label
        self.sink = sink
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object: [String: String] = [:]
        for (key, value) in metadata { object[key] = "\(value)" }
        for (key, value) in event.metadata ?? [:] { object[key] = "\(value)" }
        if let error = event.error { object["error"] = "\(error)" }
        var text = "{\"time\":\(JSONValue.quoted(Self.timestamp())),\"level\":\(JSONValue.quoted(event.level.rawValue)),"
        text += "\"logger\":\(JSONValue.quoted(label)),\"message\":\(JSONValue.quoted(event.message.description))"
        for key in object.keys.sorted() {
            text += ",\(JSONValue.quoted(key)):\(JSONValue.quoted(object[key]!))"
        }
        sink.write(text + "}")
    }

    static func timestamp() -> String {
        Date().formatted(.iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: true).timeSeparator(.colon))
    }
}
