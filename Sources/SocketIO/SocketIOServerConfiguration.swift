import NIOCore

/// Settings of the Socket.IO layer; transport settings live in `EngineIOConfiguration`.
public struct SocketIOServerConfiguration: Sendable {
    /// A client that opens a session and joins no namespace within this time is closed.
    public var connectTimeout: TimeAmount = .milliseconds(45_000)
    /// Attachments a single binary packet may announce; more is treated as a parse error.
    public var maxAttachments: Int = 10
    /// Bytes that may wait for one client (`--max-buffered`). Past it, volatile packets for the
    /// client are dropped and any other packet disconnects it: memory stays bounded whatever a
    /// client that stopped reading does.
    public var maxBufferedBytes: Int = 1 << 20

    public init() {}
}
