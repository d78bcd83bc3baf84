import NIOCore

/// The arguments of one Redis command, the command name first, as the binary-safe bulk strings
/// the unified request protocol sends.
struct RedisCommand: Sendable, Hashable {
    var arguments: [ByteBuffer]

    init(_ arguments: [ByteBuffer]) {
        self.arguments = arguments
    }

    init(_ arguments: [String]) {
        self.arguments = arguments.map { ByteBuffer(string: $0) }
    }

    static func publish(_ channel: String, _ message: ByteBuffer) -> RedisCommand {
        RedisCommand([ByteBuffer(string: "PUBLISH"), ByteBuffer(string: channel), message])
    }
}
