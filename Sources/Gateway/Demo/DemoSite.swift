import NIOCore
import NIOHTTP1

/// The built-in origin of the embedded default: a landing page, a redirect that drops the click
/// id (as many redirect layers do), an offer page and a checkout that fires a conversion event.
/// It sits behind the gateway exactly like a customer's origin would.
enum DemoSite {
    static let router: LocalHTTPHandler.Router = { head, _ in page(for: head) }

    private static func page(for head: RequestHead) -> LocalResponse {
        let parts = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = parts.first.map(String.init) ?? "/"
        let query = parts.count > 1 ? String(parts[1]) : ""
        switch path {
        case "/":
            let next = "/redirect" + (query.isEmpty ? "" : "?" + escape(query))
            return page("Spring sale", """
                <p>This is the landing page an ad click arrives on. Try it as an ad click:
                <a href="/?ttclid=demo123&amp;utm_source=tiktok">/?ttclid=demo123&amp;utm_source=tiktok</a>.</p>
                <p><a class="button" href="\(next)">See the offer</a></p>
                <p class="note">That link goes through <code>/redirect</code>, which answers
                <code>302 Location: /offer</code> and drops the whole query string.</p>
                """)
        case "/redirect":
            return LocalResponse(status: .found, headers: ["location": "/offer", "cache-control": "no-store"])
        case "/offer":
            return page("The offer", """
                <p>The origin redirected here with <code>Location: /offer</code>: no click id.</p>
                <p><a class="button" href="/checkout">Go to checkout</a></p>
                """)
        case "/checkout":
            return page("Checkout", """
                <p><button class="button" id="buy">Buy for 19.99 EUR</button></p>
                <pre id="answer"></pre>
                <script>
                document.getElementById('buy').onclick = async () => {
                  const eventId = 'demo-' + Date.now();
                  const body = {event: 'Purchase', event_id: eventId,
                    properties: {value: 19.99, currency: 'EUR', order_id: eventId},
                    page: {url: location.href, referrer: document.referrer}};
                  const r = await fetch('/_clickgate/events', {method: 'POST',
                    headers: {'content-type': 'application/json'}, body: JSON.stringify(body)});
                  document.getElementById('answer').textContent = r.status + ' ' + await r.text();
                };
                </script>
                """)
        default:
            return page("Not found", "<p>Nothing here. Start at <a href=\"/\">the landing page</a>.</p>", status: .notFound)
        }
    }

    private static func page(_ title: String, _ content: String, status: HTTPResponseStatus = .ok) -> LocalResponse {
        let html = """
            <!doctype html><html><head><meta charset="utf-8"><title>\(title) · ClickGate demo</title>
            <style>body{font-family:system-ui,sans-serif;max-width:42em;margin:3em auto;padding:0 1em;color:#222}
            .button{display:inline-block;padding:.6em 1.2em;background:#111;color:#fff;border:0;border-radius:6px;
            text-decoration:none;font-size:1em;cursor:pointer}.note{color:#666}code{background:#f3f3f3;padding:0 .3em}
            table{border-collapse:collapse}td{border:1px solid #ddd;padding:.3em .6em}</style></head><body>
            <h1>\(title)</h1>
            <table><tr><td>click id in this URL</td><td id="url">–</td></tr>
            <tr><td><code>ttclid</code> cookie</td><td id="cookie">–</td></tr></table>
            \(content)
            <script>
            const id = new URLSearchParams(location.search).get('ttclid');
            document.getElementById('url').textContent = id || 'none';
            const c = document.cookie.split('; ').find(x => x.startsWith('ttclid='));
            document.getElementById('cookie').textContent = c ? c.slice(7) : 'none';
            </script>
            </body></html>

            """
        return LocalResponse(
            status: status,
            headers: ["content-type": "text/html; charset=utf-8", "cache-control": "no-store"],
            body: ByteBuffer(string: html))
    }

    private static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "\"", with: "&quot;")
            .replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
