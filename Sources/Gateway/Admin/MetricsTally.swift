import CoreMetrics
import NIOConcurrencyHelpers

/// A metrics backend that only remembers current values (counters' totals, gauges' last values)
/// so the process can read its own metrics back: for `/status` and the dashboard's history.
/// Prometheus gets the same metrics beside it; histograms and timers are Prometheus's alone.
public final class MetricsTally: MetricsFactory, Sendable {
    private let values = NIOLockedValueBox<[String: Double]>([:])

    public init() {}

    /// `name{key=value,…}` (dimensions sorted) → value.
    public func snapshot() -> [String: Double] {
        values.withLockedValue { $0 }
    }

    static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        guard !dimensions.isEmpty else { return label }
        return label + "{" + dimensions.sorted { $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
    }

    final class Slot: CounterHandler, FloatingPointCounterHandler, RecorderHandler, Sendable {
        let key: String
        let values: NIOLockedValueBox<[String: Double]>

        init(key: String, values: NIOLockedValueBox<[String: Double]>) {
            self.key = key
            self.values = values
            values.withLockedValue { if $0[key] == nil { $0[key] = 0 } }
        }

        func increment(by amount: Int64) { values.withLockedValue { $0[key, default: 0] += Double(amount) } }
        func increment(by amount: Double) { values.withLockedValue { $0[key, default: 0] += amount } }
        func record(_ value: Int64) { values.withLockedValue { $0[key] = Double(value) } }
        func record(_ value: Double) { values.withLockedValue { $0[key] = value } }
        func reset() { values.withLockedValue { $0[key] = 0 } }
    }

    /// Histograms and timers: not tallied.
    final class Ignored: RecorderHandler, TimerHandler, Sendable {
        func record(_ value: Int64) {}
        func record(_ value: Double) {}
        func recordNanoseconds(_ duration: Int64) {}
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        Slot(key: Self.key(label, dimensions), values: values)
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        Slot(key: Self.key(label, dimensions), values: values)
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        aggregate ? Ignored() : Slot(key: Self.key(label, dimensions), values: values)
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { Ignored() }

    public func destroyCounter(_ handler: any CounterHandler) {}
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    public func destroyRecorder(_ handler: any RecorderHandler) {}
    public func destroyTimer(_ handler: any TimerHandler) {}
}
