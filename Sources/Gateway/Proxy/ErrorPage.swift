import NIOCore
import NIOHTTP1

/// The small page the gateway answers with when it cannot proxy.
enum ErrorPage {
    static func response(_ status: HTTPResponseStatus, requestID: String, detail: String) -> LocalResponse {
        let title = "\(status.code) \(status.reasonPhrase)"
        let body = """
            <!doctype html><html><head><meta charset="utf-8"><title>\(title)</title></head>\
            <body style="font-family:system-ui,sans-serif;margin:3em"><h1>\(title)</h1><p>\(detail)</p>\
            <p style="color:#777">ClickGate · request \(requestID)</p></body></html>

            """
        var headers = HeaderFields()
        headers.add(name: "content-type", value: "text/html; charset=utf-8")
        headers.add(name: "cache-control", value: "no-store")
        return LocalResponse(status: status, headers: headers, body: ByteBuffer(string: body))
    }
}
