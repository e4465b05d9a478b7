import CoreMetrics
import NIOConcurrencyHelpers

/// A metrics backend that only remembers current values (counters' totals, gauges' last values)
/// so the process can read its own metrics back: for `/status` and the dashboard's history.
/// Prometheus gets the same metrics beside it; histograms and timers are Prometheus's alone.
public final class MetricsTally: MetricsFactory, Sendable {
    /// One slot per `name{dimensions}`: a metric made twice (swift-metrics makes a handler per
    /// `Counter(label:)`) counts in one place.
    private let slots = NIOLockedValueBox<[String: Slot]>([:])

    public init() {}

    /// `name{key=value,…}` (dimensions sorted) → value.
    public func snapshot() -> [String: Double] {
        slots.withLockedValue { $0 }.mapValues { slot in slot.value.withLockedValue { $0 } }
    }

    static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        guard !dimensions.isEmpty else { return label }
        return label + "{" + dimensions.sorted { $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
    }

    private func slot(_ label: String, _ dimensions: [(String, String)]) -> Slot {
        let key = Self.key(label, dimensions)
        return slots.withLockedValue { slots in
            if let slot = slots[key] { return slot }
            let slot = Slot()
            slots[key] = slot
            return slot
        }
    }

    /// Its own lock around its value: requests count on every event loop, and a shared
    /// dictionary hashed the key on each increment (about 800 instructions, twice a request).
    final class Slot: CounterHandler, FloatingPointCounterHandler, RecorderHandler, Sendable {
        let value = NIOLockedValueBox<Double>(0)

        func increment(by amount: Int64) { value.withLockedValue { $0 += Double(amount) } }
        func increment(by amount: Double) { value.withLockedValue { $0 += amount } }
        func record(_ value: Int64) { self.value.withLockedValue { $0 = Double(value) } }
        func record(_ value: Double) { self.value.withLockedValue { $0 = value } }
        func reset() { value.withLockedValue { $0 = 0 } }
    }

    /// Histograms and timers: not tallied.
    final class Ignored: RecorderHandler, TimerHandler, Sendable {
        func record(_ value: Int64) {}
        func record(_ value: Double) {}
        func recordNanoseconds(_ duration: Int64) {}
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        slot(label, dimensions)
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        slot(label, dimensions)
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        aggregate ? Ignored() : slot(label, dimensions)
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { Ignored() }

    public func destroyCounter(_ handler: any CounterHandler) {}
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    public func destroyRecorder(_ handler: any RecorderHandler) {}
    public func destroyTimer(_ handler: any TimerHandler) {}
}
