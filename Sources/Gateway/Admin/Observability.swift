import CoreMetrics
import Foundation
import NIOConcurrencyHelpers
import Prometheus
import ServiceLifecycle

/// The process's metrics, exported for Prometheus and kept for the dashboard.
public struct Observability: Sendable {
    public let registry: PrometheusCollectorRegistry
    public let tally: MetricsTally
    public let history: MetricsHistory
    public let startedAt = Date()

    /// Makes the backends and installs them as the process's metrics system (once per process).
    public static func bootstrap(sampleEvery interval: Duration = .seconds(10)) -> Observability {
        let registry = PrometheusCollectorRegistry()
        var prometheus = PrometheusMetricsFactory(registry: registry)
        // Upstream responses and Events API calls: milliseconds to tens of seconds.
        prometheus.defaultDurationHistogramBuckets = [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30),
        ]
        let observability = Observability(registry: registry, tally: MetricsTally(exportingTo: prometheus), history: MetricsHistory(interval: interval))
        MetricsSystem.bootstrap(observability.tally)
        return observability
    }
}

/// The last hour of metric snapshots, one every `interval`, for the dashboard's charts.
public final class MetricsHistory: Sendable {
    public struct Sample: Sendable, Codable {
        /// Unix seconds.
        public var t: Double
        public var values: [String: Double]
    }

    public let interval: Duration
    public let capacity: Int
    private let samples = NIOLockedValueBox<[Sample]>([])

    public init(interval: Duration, span: Duration = .seconds(3600)) {
        self.interval = interval
        self.capacity = max(2, Int(span / interval))
    }

    public func record(_ values: [String: Double], at date: Date = Date()) {
        samples.withLockedValue { samples in
            samples.append(Sample(t: date.timeIntervalSince1970.rounded(), values: values))
            if samples.count > capacity { samples.removeFirst(samples.count - capacity) }
        }
    }

    public var all: [Sample] { samples.withLockedValue { $0 } }
}

/// Takes a snapshot for the history now and every interval until shutdown.
public struct MetricsSampler: Service {
    let observability: Observability

    public init(observability: Observability) {
        self.observability = observability
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                observability.history.record(observability.tally.snapshot())
                try await Task.sleep(for: observability.history.interval)
            }
        }
    }
}
