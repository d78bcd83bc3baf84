import NIOCore
import SidecastJSON

/// Turns packets into the text of an Engine.IO message plus binary attachments, as
/// socket.io-parser's `Encoder` does.
///
/// Stateless, so one serves the whole server; a broadcast is encoded once and the result is
/// shared by every recipient.
public struct SocketIOPacketEncoder: Sendable {
    public init() {}

    /// The packet's text (without the Engine.IO "4" message prefix) and its attachments, each
    /// to be sent as one binary Engine.IO message after the text, in order.
    public func encode(_ packet: SocketIOPacket) -> (text: String, attachments: [ByteBuffer]) {
        var buffer = ByteBuffer()
        let attachments = encode(packet, into: &buffer)
        return (String(buffer: buffer), attachments)
    }

    /// Appends the packet's text to `buffer` and returns its attachments. A caller that has
    /// already written the Engine.IO "4" gets the whole Engine.IO message in one buffer.
    ///
    /// EVENT and ACK packets whose data holds `.binary` go out as BINARY_EVENT / BINARY_ACK:
    /// each binary value, depth first in output order, is replaced by
    /// `{"_placeholder":true,"num":N}` and becomes attachment N. A `.binaryEvent` or
    /// `.binaryAck` packet without binary data goes out as a plain EVENT or ACK. The other
    /// packet types have no attachments; binary in them prints as `{"$binary":"<base64>"}`.
    /// Printed data (which holds no binary) is copied as it is.
    public func encode(_ packet: SocketIOPacket, into buffer: inout ByteBuffer) -> [ByteBuffer] {
        let isEventOrAck = packet.type != .connect && packet.type != .disconnect && packet.type != .connectError
        let printed = packet.printedData
        let attachmentCount = isEventOrAck && printed == nil ? packet.data.map(Self.countBinaries) ?? 0 : 0
        let type: SocketIOPacketType
        switch packet.type {
        case .event, .binaryEvent: type = attachmentCount > 0 ? .binaryEvent : .event
        case .ack, .binaryAck: type = attachmentCount > 0 ? .binaryAck : .ack
        default: type = packet.type
        }

        buffer.writeInteger(UInt8(ascii: "0") + type.rawValue)
        if attachmentCount > 0 {
            buffer.writeString(String(attachmentCount))
            buffer.writeInteger(UInt8(ascii: "-"))
        }
        if !packet.namespace.isEmpty, packet.namespace != "/" {
            // The comma ends the namespace on the wire and has no escape. Clients cannot name
            // such a namespace (the decoder stops at the comma), so only server code can.
            precondition(!packet.namespace.utf8.contains(UInt8(ascii: ",")), "namespace contains a comma: \(packet.namespace)")
            buffer.writeString(packet.namespace)
            buffer.writeInteger(UInt8(ascii: ","))
        }
        if let id = packet.id {
            buffer.writeString(String(id))
        }
        var attachments: [ByteBuffer] = []
        // `JSON.stringify` is only called for data that is neither undefined nor null.
        if let printed {
            if !printed.isNull { buffer.writeImmutableBuffer(printed.bytes) }
        } else if let data = packet.data, !data.isNull {
            if attachmentCount > 0 {
                attachments.reserveCapacity(attachmentCount)
                data.write(to: &buffer) { bytes in
                    defer { attachments.append(bytes) }
                    return ["_placeholder": true, "num": .int(Int64(attachments.count))]
                }
            } else {
                data.write(to: &buffer)
            }
        }
        return attachments
    }

    private static func countBinaries(in value: JSONValue) -> Int {
        switch value {
        case .binary: 1
        case .array(let elements): elements.reduce(0) { $0 + countBinaries(in: $1) }
        case .object(let members): members.values.reduce(0) { $0 + countBinaries(in: $1) }
        default: 0
        }
    }
}
