/// Runs `body`, or throws ``DeadlineExceeded`` when it takes longer than `limit`: for calls into
/// something that may never answer (a database that went away, a disk that hangs).
public func withDeadline<T: Sendable>(_ limit: Duration, what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { tasks in
        tasks.addTask { try await body() }
        tasks.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { tasks.cancelAll() }
        guard let first = try await tasks.next(), let value = first else {
            throw DeadlineExceeded(description: "\(what): no answer within \(limit.components.seconds) s")
        }
        return value
    }
}

public struct DeadlineExceeded: Error, CustomStringConvertible {
    public var description: String
}
