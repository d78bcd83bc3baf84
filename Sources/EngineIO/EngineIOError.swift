import NIOHTTP1

/// Request errors with the Node server's codes and messages (`Server.errors`), answered as
/// `{"code":…,"message":…}` with HTTP 400. Code 4 ("Forbidden") is left out: there is no
/// `allowRequest` hook here that could produce it.
enum EngineIOError: Int, Error, Equatable {
    case unknownTransport = 0
    case unknownSid = 1
    case badHandshakeMethod = 2
    case badRequest = 3
    case unsupportedProtocolVersion = 5

    var message: String {
        switch self {
        case .unknownTransport: "Transport unknown"
        case .unknownSid: "Session ID unknown"
        case .badHandshakeMethod: "Bad handshake method"
        case .badRequest: "Bad request"
        case .unsupportedProtocolVersion: "Unsupported protocol version"
        }
    }

    var status: HTTPResponseStatus { .badRequest }

    /// The JSON body; the messages hold nothing that needs escaping.
    var body: String { #"{"code":\#(self.rawValue),"message":"\#(self.message)"}"# }
}
