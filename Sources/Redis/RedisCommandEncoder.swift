import CHiredis
import NIOCore

/// Encodes a ``RedisCommand`` as a RESP array of bulk strings with hiredis's `redisFormatCommandArgv`.
struct RedisCommandEncoder: MessageToByteEncoder {
    typealias OutboundIn = RedisCommand

    func encode(data: RedisCommand, out: inout ByteBuffer) throws {
        try RedisCommandEncoder.encode(data, into: &out)
    }

    static func encode(_ command: RedisCommand, into out: inout ByteBuffer) throws {
        guard !command.arguments.isEmpty else { throw RedisClientError.emptyCommand }
        // hiredis wants every argument as a pointer at once: lay them out in one array and point into it.
        var joined: [UInt8] = []
        joined.reserveCapacity(command.arguments.reduce(1) { $0 + $1.readableBytes })
        var offsets: [Int] = []
        var lengths: [Int] = []
        for argument in command.arguments {
            offsets.append(joined.count)
            lengths.append(argument.readableBytes)
            joined.append(contentsOf: argument.readableBytesView)
        }
        // Keeps the base address non-nil when every argument is empty.
        joined.append(0)

        var formatted: UnsafeMutablePointer<CChar>?
        let length = joined.withUnsafeBufferPointer { bytes in
            let base = UnsafeRawPointer(bytes.baseAddress!).assumingMemoryBound(to: CChar.self)
            var argv: [UnsafePointer<CChar>?] = offsets.map { base + $0 }
            return redisFormatCommandArgv(&formatted, Int32(argv.count), &argv, lengths)
        }
        guard length >= 0, let formatted else {
            throw RedisClientError.protocolError("hiredis could not format the command")
        }
        defer { redisFreeCommand(formatted) }
        out.writeBytes(UnsafeRawBufferPointer(start: formatted, count: Int(length)))
    }
}
