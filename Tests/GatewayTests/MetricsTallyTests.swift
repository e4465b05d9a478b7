import Prometheus
import Testing

@testable import Gateway

/// The tally the dashboard and `/status` read back: one value per metric name and dimensions,
/// however many handlers swift-metrics made for it.
@Suite struct MetricsTallyTests {
    @Test func handlersForOneMetricShareItsValue() {
        let tally = MetricsTally()
        let first = tally.makeCounter(label: "hits", dimensions: [("site", "a"), ("code", "200")])
        let second = tally.makeCounter(label: "hits", dimensions: [("code", "200"), ("site", "a")])
        first.increment(by: 2)
        second.increment(by: 3)
        tally.makeCounter(label: "hits", dimensions: [("site", "b"), ("code", "200")]).increment(by: 1)
        let gauge = tally.makeRecorder(label: "depth", dimensions: [], aggregate: false)
        gauge.record(7.5)
        gauge.record(Int64(4))
        tally.makeRecorder(label: "sizes", dimensions: [], aggregate: true).record(Int64(9))
        let bytes = tally.makeFloatingPointCounter(label: "bytes", dimensions: [])
        bytes.increment(by: 0.25)
        bytes.increment(by: 0.5)
        #expect(tally.snapshot() == ["hits{code=200,site=a}": 5, "hits{code=200,site=b}": 1, "depth": 4, "bytes": 0.75])
        second.reset()
        #expect(tally.snapshot()["hits{code=200,site=a}"] == 0)
    }

    @Test func incrementsFromManyThreadsAllCount() async {
        let tally = MetricsTally()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    let counter = tally.makeCounter(label: "requests", dimensions: [])
                    for _ in 0..<2_000 { counter.increment(by: 1) }
                }
            }
        }
        #expect(tally.snapshot() == ["requests": 16_000])
    }

    /// With an exporter (Prometheus, as the gateway runs), every metric reaches both: counters and
    /// gauges are tallied and exported, histograms and timers exported only.
    @Test func anExporterGetsEveryMetricBesideTheTally() {
        let registry = PrometheusCollectorRegistry()
        let tally = MetricsTally(exportingTo: PrometheusMetricsFactory(registry: registry))
        let counter = tally.makeCounter(label: "hits", dimensions: [("site", "a")])
        counter.increment(by: 2)
        tally.makeCounter(label: "hits", dimensions: [("site", "a")]).increment(by: 1)
        tally.makeRecorder(label: "depth", dimensions: [], aggregate: false).record(Int64(4))
        tally.makeFloatingPointCounter(label: "bytes", dimensions: []).increment(by: 0.5)
        tally.makeTimer(label: "latency_seconds", dimensions: []).recordNanoseconds(2_000_000)
        #expect(tally.snapshot() == ["hits{site=a}": 3, "depth": 4, "bytes": 0.5])
        var text: [UInt8] = []
        registry.emit(into: &text)
        let exported = String(decoding: text, as: UTF8.self)
        for line in [#"hits{site="a"} 3"#, "depth 4", "bytes 0.5", "latency_seconds_count 1"] {
            #expect(exported.contains(line), "the exporter lacks \(line):\n\(exported)")
        }
        // A destroyed metric leaves the exporter too.
        tally.destroyCounter(counter)
        text = []
        registry.emit(into: &text)
        #expect(!String(decoding: text, as: UTF8.self).contains("hits{"), "\(String(decoding: text, as: UTF8.self))")
    }
}
