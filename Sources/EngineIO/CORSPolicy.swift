import NIOHTTP1

/// CORS headers as the `cors` npm package writes them for the Node server's `cors` option,
/// restricted to what Sidecast configures: an origin list (or "*"), methods GET and POST, and
/// requested headers reflected on preflight. Credentials and exposed headers are not offered.
struct CORSPolicy {
    let origins: AllowedOrigins

    var isEnabled: Bool { !self.origins.isEmpty }

    /// Headers added to every response of the Engine.IO path (errors included, as the Node
    /// server's middleware sets them before any handler runs). With an origin list `Vary:
    /// Origin` is always sent, and the origin is echoed only when it is on the list.
    func responseHeaders(for request: HTTPHeaders) -> HTTPHeaders {
        var headers = HTTPHeaders()
        guard self.isEnabled else { return headers }
        if self.origins.allowsAnyOrigin {
            headers.add(name: "Access-Control-Allow-Origin", value: "*")
        } else {
            if let origin = request.first(name: "origin"), self.origins.allows(origin) {
                headers.add(name: "Access-Control-Allow-Origin", value: origin)
            }
            headers.add(name: "Vary", value: "Origin")
        }
        return headers
    }

    /// Headers of the 204 answer to an OPTIONS preflight request.
    func preflightHeaders(for request: HTTPHeaders) -> HTTPHeaders {
        var headers = self.responseHeaders(for: request)
        headers.add(name: "Access-Control-Allow-Methods", value: "GET,POST")
        let requested = request[canonicalForm: "access-control-request-headers"]
        if !requested.isEmpty {
            headers.add(name: "Access-Control-Allow-Headers", value: requested.joined(separator: ","))
            headers.add(name: "Vary", value: "Access-Control-Request-Headers")
        }
        headers.add(name: "Content-Length", value: "0")
        return headers
    }
}
