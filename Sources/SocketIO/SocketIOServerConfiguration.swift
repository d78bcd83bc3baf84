import NIOCore

/// Settings of the Socket.IO layer; transport settings live in `EngineIOConfiguration`.
public struct SocketIOServerConfiguration: Sendable {
    /// A client that opens a session and joins no namespace within this time is closed.
    public var connectTimeout: TimeAmount = .milliseconds(45_000)
    /// Attachments a single binary packet may announce; more is treated as a parse error.
    public var maxAttachments: Int = 10

    public init() {}
}
