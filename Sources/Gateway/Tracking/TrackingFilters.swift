import Config
import Events

/// The filters in the order their phases must run: capture first (the others read its state),
/// then event ingest and smartlinks (which answer directly), then redirect preservation and HTML
/// decoration.
public enum TrackingFilters {
    public static func make(config: GatewayConfig, clickSink: (any ClickSink)?, ingestor: EventIngestor?) -> [any ProxyFilter] {
        let smartlinks = SmartlinkFilter(config: config)
        let html = HTMLDecorationFilter(config: config)
        let ledger = config.events.clickLedger ? clickSink : nil
        return [ClickCaptureFilter(tracking: config.tracking, sites: config.sites, sink: ledger)]
            + (ingestor.map { [EventIngestFilter(path: config.events.path, ingestor: $0)] } ?? [])
            + (smartlinks.isEmpty ? [] : [smartlinks])
            + [RedirectPreservationFilter(config: config)]
            + (html.isEmpty ? [] : [html])
    }
}
