import NIOConcurrencyHelpers

/// Runs `body`, or throws ``DeadlineExceeded`` when it takes longer than `limit`: for calls into
/// something that may never answer (a database that went away, a disk that hangs).
///
/// At the deadline the caller gets its error at once and `body` is cancelled and left to finish
/// on its own. A task group would not do: it waits for its children, so a call that ignores
/// cancellation (a query on a connection to a stopped database) would hold the caller forever.
public func withDeadline<T: Sendable>(_ limit: Duration, what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let race = DeadlineRace<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            race.wait(continuation)
            let work = Task {
                do { race.settle(.success(try await body())) } catch { race.settle(.failure(error)) }
            }
            let timer = Task {
                guard (try? await Task.sleep(for: limit)) != nil else { return }
                race.settle(.failure(DeadlineExceeded(description: "\(what): no answer within \(limit.components.seconds) s")))
            }
            race.started(work, timer)
            if Task.isCancelled { race.settle(.failure(CancellationError())) }
        }
    } onCancel: {
        race.settle(.failure(CancellationError()))
    }
}

public struct DeadlineExceeded: Error, CustomStringConvertible {
    public var description: String
}

/// The first of the body's result, the deadline and the caller's cancellation resumes the caller;
/// the losers are cancelled.
private final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var waiter: CheckedContinuation<T, any Error>?
        var tasks: [Task<Void, Never>] = []
        /// Set by the first to settle; kept until the waiter arrives if it is not there yet.
        var result: Result<T, any Error>?
    }
    private let state = NIOLockedValueBox(State())

    func wait(_ continuation: CheckedContinuation<T, any Error>) {
        let early = state.withLockedValue { state -> Result<T, any Error>? in
            if state.result == nil { state.waiter = continuation }
            return state.result
        }
        if let early { continuation.resume(with: early) }
    }

    func started(_ tasks: Task<Void, Never>...) {
        let late = state.withLockedValue { state in
            if state.result == nil { state.tasks = tasks }
            return state.result != nil
        }
        if late { tasks.forEach { $0.cancel() } }
    }

    func settle(_ result: Result<T, any Error>) {
        let (waiter, tasks) = state.withLockedValue { state -> (CheckedContinuation<T, any Error>?, [Task<Void, Never>]) in
            guard state.result == nil else { return (nil, []) }
            state.result = result
            defer {
                state.waiter = nil
                state.tasks = []
            }
            return (state.waiter, state.tasks)
        }
        tasks.forEach { $0.cancel() }
        waiter?.resume(with: result)
    }
}
