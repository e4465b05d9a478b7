import Config
import Events
import Foundation

extension EventIngestor {
    /// The same store, validating and enriching as `events` says (custom events, phone country,
    /// attribution window): what each configuration generation ingests with.
    public func configured(for events: GatewayConfig.Events) -> EventIngestor {
        var ingestor = self
        ingestor.normalizer = EventNormalizer(customEvents: Set(events.customEvents), defaultCountryCode: events.phoneCountry)
        ingestor.attributionWindow = TimeInterval(events.attributionWindow.components.seconds)
        return ingestor
    }
}
