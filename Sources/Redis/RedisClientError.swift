/// Why a Redis command, connection attempt or URL failed.
public enum RedisClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The command link is down (or was never up); only publishes are queued while disconnected.
    case notConnected
    /// The client was shut down.
    case shutDown
    /// The connection closed before Redis answered.
    case connectionClosed
    /// Redis did not answer the connection handshake in time.
    case timedOut
    /// A command without arguments was sent.
    case emptyCommand
    /// Redis refused a command the client sends on its own (AUTH, SELECT, SUBSCRIBE).
    case commandFailed(String)
    /// Sentinel mode: the node at this address is not a master (yet, or any more).
    case notMaster(String, role: String)
    /// Sentinel mode: no sentinel named a master for the set.
    case noMaster(String)
    /// The bytes from Redis were not valid RESP, or a reply came that nothing asked for.
    case protocolError(String)

    public var description: String {
        switch self {
        case .notConnected:
            return "not connected to Redis"
        case .shutDown:
            return "the Redis client is shut down"
        case .connectionClosed:
            return "the connection to Redis closed"
        case .timedOut:
            return "Redis did not answer in time"
        case .emptyCommand:
            return "a Redis command needs at least a name"
        case .commandFailed(let message):
            return "Redis refused the command: \(message)"
        case .notMaster(let address, let role):
            return "\(address) is a \(role), not a master"
        case .noMaster(let reason):
            return "no master found: \(reason)"
        case .protocolError(let message):
            return "Redis protocol error: \(message)"
        }
    }
}
