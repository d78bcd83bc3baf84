import EngineIO
import NIOCore

/// How Socket.IO packets are written on the wire (`--parser`).
public enum SocketIOParserKind: String, Sendable, Hashable {
    /// socket.io-parser: JSON text, binary as attachments in messages of their own.
    case `default`
    /// socket.io-msgpack-parser: each packet one msgpack-encoded binary message.
    case msgpack
}

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
    /// Acknowledgements one socket's client may wait for at once (events it sent with an ack
    /// id that nobody answered yet). Past it the oldest is forgotten: its answer, should one
    /// come, no longer reaches the client, whose own ack timeout (if any) fires as if the
    /// server never answered. Bounds what a client emitting unanswered acks makes us hold.
    public var maxAcksOwedToClient: Int = 1000
    /// Namespaces one client may wait to join at once while their authorization is decided.
    /// A further CONNECT gets CONNECT_ERROR "too many pending connects".
    public var maxPendingConnects: Int = 16
    /// The event loop's shard this server is, written into its socket ids.
    public var shard: LoopShard = .only
    /// The packet format of every client, chosen server-wide as Node's `parser` option.
    public var parser: SocketIOParserKind = .default
    /// Connection state recovery (`--recovery-window`); nil keeps it off, as in Node, so
    /// clients that do not expect an offset after an event's arguments never get one.
    public var recovery: RecoveryConfiguration?

    public init() {}
}
