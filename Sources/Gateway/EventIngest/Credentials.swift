import Config
import Events
import Foundation
import Logging

/// Secrets named by the configuration (pixel tokens, admin API keys), read from the environment or
/// files when a configuration is loaded or reloaded. Their values are never logged.
public enum Credentials {
    /// Each configured pixel with its token, read once from the environment or a file. The token is
    /// never logged; a pixel without one delivers to the dry-run log.
    public static func pixelTargets(_ events: GatewayConfig.Events, logger: Logger) -> [PixelTarget] {
        events.pixels.sorted { $0.key < $1.key }.map { name, pixel in
            let target = pixelTarget(name: name, pixel)
            if target.accessToken == nil {
                logger.warning("no access token for this pixel: its events go to the dry-run log", metadata: [
                    "pixel": "\(name)", "access_token_env": "\(pixel.accessTokenEnv ?? "-")", "access_token_file": "\(pixel.accessTokenFile ?? "-")",
                ])
            }
            return target
        }
    }

    /// One pixel with its token (nil when neither its variable nor its file holds one).
    public static func pixelTarget(name: String, _ pixel: GatewayConfig.Events.Pixel) -> PixelTarget {
        var token = pixel.accessTokenEnv.flatMap { ProcessInfo.processInfo.environment[$0] }
        if token == nil, let file = pixel.accessTokenFile {
            token = (try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if token?.isEmpty ?? true { token = nil }
        return PixelTarget(name: name, pixelCode: pixel.pixelCode, accessToken: token, testEventCode: pixel.testEventCode)
    }

    /// Keys for the admin listener's `POST /v1/events`, from the environment and/or a file.
    public static func apiKeys(_ events: GatewayConfig.Events) -> Set<String> {
        var text = events.apiKeysEnv.flatMap { ProcessInfo.processInfo.environment[$0] } ?? ""
        if let file = events.apiKeysFile { text += "\n" + ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "") }
        return Set(text.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\n" }).map(String.init))
    }
}
