import NIOHTTP1

/// Request errors with the Node server's codes and messages (`Server.errors`), answered as
/// `{"code":…,"message":…}` with HTTP 400, or 403 for code 4 ("Forbidden"), as the Node
/// server answers a request its `allowRequest` hook refused.
enum EngineIOError: Int, Error, Equatable {
    case unknownTransport = 0
    case unknownSid = 1
    case badHandshakeMethod = 2
    case badRequest = 3
    /// The request's `Origin` is not an allowed origin. The message says which check refused
    /// it, as Node's does when `allowRequest` gives one.
    case forbiddenOrigin = 4
    case unsupportedProtocolVersion = 5

    var message: String {
        switch self {
        case .unknownTransport: "Transport unknown"
        case .unknownSid: "Session ID unknown"
        case .badHandshakeMethod: "Bad handshake method"
        case .badRequest: "Bad request"
        case .forbiddenOrigin: "Origin not allowed"
        case .unsupportedProtocolVersion: "Unsupported protocol version"
        }
    }

    var status: HTTPResponseStatus { self == .forbiddenOrigin ? .forbidden : .badRequest }

    /// The JSON body; the messages hold nothing that needs escaping.
    var body: String { #"{"code":\#(self.rawValue),"message":"\#(self.message)"}"# }
}
