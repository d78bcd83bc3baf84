import EngineIO
import SidecastJSON

/// The client's handshake as Socket.IO exposes it (`socket.handshake` in Node).
public struct SocketHandshake: Sendable {
    /// Header names in lower case; a repeated header's values joined with ", ".
    public var headers: [String: String]
    public var query: [String: String]
    public var address: String
    public var url: String
    /// Milliseconds since the epoch at which the Engine.IO session opened.
    public var issued: Int64
    public var secure: Bool

    public init(_ handshake: EngineIOHandshake) {
        var headers: [String: String] = [:]
        for (name, value) in handshake.headers {
            let key = name.lowercased()
            if let existing = headers[key] {
                headers[key] = existing + ", " + value
            } else {
                headers[key] = value
            }
        }
        self.headers = headers
        self.query = handshake.query
        self.address = handshake.remoteAddress ?? ""
        self.url = handshake.url
        self.issued = handshake.issued
        self.secure = handshake.secure
    }

    /// The JSON shape the bridge and the cluster adapter send: `{headers, query, address, url, issued, secure}`.
    public var json: JSONValue {
        .object([
            "headers": .object(.init(uniqueKeysWithValues: headers.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })),
            "query": .object(.init(uniqueKeysWithValues: query.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })),
            "address": .string(address),
            "url": .string(url),
            "issued": .int(issued),
            "secure": .bool(secure),
        ])
    }
}
