import Foundation
import CompressNIO
import NIOCore
import NIOHTTP1

/// The `permessage-deflate` WebSocket extension (RFC 7692) as this server agrees to it.
///
/// The server always answers with `server_no_context_takeover`, which RFC 7692 §7.1.1.1 lets it
/// add to any offer: each message it sends is compressed on its own, with a fresh compressor,
/// so the compressed frame of a broadcast is the same bytes for every recipient and is made
/// once (`EngineIOBroadcastEncoder`). Node's `ws` keeps the context by default, which
/// compresses a stream of similar messages better, but once per recipient. Offers that limit
/// the server's window (`server_max_window_bits` below 15) are declined for the same reason:
/// one shared frame needs one window size.
public enum PerMessageDeflate {
    /// The extension's token.
    static let name = "permessage-deflate"

    /// The extension as agreed with one client.
    struct Agreement: Equatable {
        /// The value of the 101 response's `Sec-WebSocket-Extensions`.
        var responseHeader: String
        /// The client compresses each message on its own, so its inflater need keep nothing.
        var clientNoContextTakeover: Bool

        var clientContext: ClientContext { self.clientNoContextTakeover ? .resetEachMessage : .kept }
    }

    /// How the client compresses, as a connection keeps it.
    enum ClientContext: UInt8 {
        /// Messages refer back to earlier ones (the default, and what browsers do).
        case kept
        /// `client_no_context_takeover`: each message stands alone.
        case resetEachMessage
    }

    /// What the client's `Sec-WebSocket-Extensions` offers allow: the first acceptable
    /// `permessage-deflate` offer, or nil to decline them all (the connection then goes on
    /// uncompressed).
    static func negotiate(_ headers: HTTPHeaders) -> Agreement? {
        for offer in Self.offers(in: headers) where offer.name == Self.name {
            if let response = Self.accept(offer.parameters) { return response }
        }
        return nil
    }

    private static func accept(_ parameters: [(name: String, value: String?)]) -> Agreement? {
        var seen: Set<String> = []
        var clientNoContextTakeover = false
        for (name, value) in parameters {
            // RFC 7692 §7.1: a repeated parameter makes the offer invalid.
            guard seen.insert(name).inserted else { return nil }
            switch name {
            case "server_no_context_takeover":
                guard value == nil else { return nil }
            case "client_no_context_takeover":
                guard value == nil else { return nil }
                clientNoContextTakeover = true
            case "server_max_window_bits":
                guard let value, let bits = Self.windowBits(value), bits == 15 else { return nil }
            case "client_max_window_bits":
                // Inbound messages are inflated with the largest window, which reads any smaller one.
                if let value, Self.windowBits(value) == nil { return nil }
            default:
                return nil
            }
        }
        return Agreement(
            responseHeader: Self.name + "; server_no_context_takeover" + (clientNoContextTakeover ? "; client_no_context_takeover" : ""),
            clientNoContextTakeover: clientNoContextTakeover
        )
    }

    /// 8 to 15 written as decimal digits without leading zeros (RFC 7692 §7.1.2.1).
    private static func windowBits(_ value: String) -> Int? {
        guard let first = value.first, first != "0", let bits = Int(value), (8...15).contains(bits) else { return nil }
        return bits
    }

    /// The offers of every `Sec-WebSocket-Extensions` header, in order: `name; a; b=1, other`.
    /// A quoted parameter value (RFC 6455 §9.1) is unquoted; it holds no comma or semicolon
    /// in any valid permessage-deflate offer, so splitting first is safe for those.
    static func offers(in headers: HTTPHeaders) -> [(name: String, parameters: [(name: String, value: String?)])] {
        headers["Sec-WebSocket-Extensions"].flatMap { $0.split(separator: ",") }.compactMap { offer in
            let parts = offer.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let name = parts.first, !name.isEmpty else { return nil }
            let parameters = parts.dropFirst().map { part -> (name: String, value: String?) in
                guard let equals = part.firstIndex(of: "=") else { return (name: part.lowercased(), value: nil) }
                var value = part[part.index(after: equals)...].trimmingCharacters(in: .whitespaces)
                if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                    value = String(value.dropFirst().dropLast())
                }
                return (name: part[..<equals].trimmingCharacters(in: .whitespaces).lowercased(), value: value)
            }
            return (name: name.lowercased(), parameters: parameters)
        }
    }

    /// The tail every sync-flushed DEFLATE block ends with, which RFC 7692 §7.2.1 has the
    /// sender remove and the receiver put back.
    static let tail: [UInt8] = [0x00, 0x00, 0xFF, 0xFF]
}

/// Compresses outgoing WebSocket messages of at least `threshold` bytes for permessage-deflate,
/// each on its own (`server_no_context_takeover`). One per server, confined to its event loop:
/// the compressor's state is reset for every message, so one serves every connection.
final class WebSocketDeflater {
    let threshold: Int
    private let compressor: ZlibCompressor

    init(threshold: Int) throws {
        self.threshold = threshold
        self.compressor = try ZlibCompressor(algorithm: .deflate, configuration: ZlibConfiguration(windowSize: 15))
    }

    /// The compressed payload, or nil when it is under the threshold or would not be smaller:
    /// RFC 7692 lets each message choose, and an uncompressed frame costs the client nothing.
    func deflate(_ payload: ByteBuffer) -> ByteBuffer? {
        guard payload.readableBytes >= self.threshold else { return nil }
        var input = payload
        do {
            try self.compressor.reset()
            var output = ByteBuffer()
            output.reserveCapacity(self.compressor.maxSize(from: input))
            try self.compressor.deflate(from: &input, to: &output, flush: .sync)
            guard input.readableBytes == 0, output.readableBytes >= PerMessageDeflate.tail.count else { return nil }
            output.moveWriterIndex(to: output.writerIndex - PerMessageDeflate.tail.count)
            return output.readableBytes < payload.readableBytes ? output : nil
        } catch {
            return nil
        }
    }
}

/// Inflates the compressed messages one client sends. Made at its first compressed message and
/// kept, since a client that keeps its context (the default, and what browsers do) sends
/// messages that refer back to earlier ones.
final class WebSocketInflater {
    enum Failure: Error {
        /// Inflated, the message would pass the server's largest accepted message.
        case tooLarge
        case corrupt
    }

    private let decompressor: ZlibDecompressor
    private let resetsEachMessage: Bool

    /// `resetsEachMessage` when `client_no_context_takeover` was agreed.
    init(resetsEachMessage: Bool) throws {
        self.decompressor = try ZlibDecompressor(algorithm: .deflate, windowSize: 15)
        self.resetsEachMessage = resetsEachMessage
    }

    /// The message's payload, inflated to at most `limit` bytes.
    func inflate(_ payload: ByteBuffer, limit: Int) throws(Failure) -> ByteBuffer {
        var input = payload
        input.writeBytes(PerMessageDeflate.tail)
        var output = ByteBuffer()
        output.reserveCapacity(min(limit + 1, max(1024, payload.readableBytes * 4)))
        do {
            if self.resetsEachMessage { try self.decompressor.reset() }
        } catch {
            throw .corrupt
        }
        while true {
            do {
                try self.decompressor.inflate(from: &input, to: &output)
                break
            } catch let error as CompressNIOError where error == .bufferOverflow {
                // Room ran out: grow, up to one byte past the limit, which tells a message too
                // large from one that fills the limit exactly.
                guard output.readableBytes <= limit else { throw .tooLarge }
                output.reserveCapacity(min(limit + 1, output.capacity * 2))
            } catch let error as CompressNIOError where error == .inputBufferOverflow && input.readableBytes == 0 {
                break
            } catch {
                throw .corrupt
            }
        }
        guard output.readableBytes <= limit else { throw .tooLarge }
        return output
    }
}

/// Compresses long-polling responses as Node's `httpCompression` does: payloads of at least
/// `threshold` bytes, in gzip or deflate, whichever the request's `Accept-Encoding` prefers.
/// One per server, confined to its event loop; its two compressors are reset for each response
/// rather than made anew, which would allocate zlib's state every time.
final class HTTPCompression {
    enum Encoding: String {
        case gzip
        case deflate
    }

    let threshold: Int
    private let gzip: ZlibCompressor
    /// HTTP's `deflate` is zlib's format (RFC 9110 §8.4.1.2), as Node's `createDeflate` writes it.
    private let zlib: ZlibCompressor

    init(threshold: Int) throws {
        self.threshold = threshold
        self.gzip = try ZlibCompressor(algorithm: .gzip)
        self.zlib = try ZlibCompressor(algorithm: .zlib)
    }

    /// The encoding `Accept-Encoding` prefers among gzip and deflate: the highest q above 0, the
    /// server's order (gzip first) breaking ties, `*` standing for any not named.
    static func encoding(accepting headers: HTTPHeaders) -> Encoding? {
        var quality: [String: Double] = [:]
        for item in headers["Accept-Encoding"].flatMap({ $0.split(separator: ",") }) {
            let parts = item.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let name = parts.first?.lowercased(), !name.isEmpty else { continue }
            var q = 1.0
            for parameter in parts.dropFirst() where parameter.lowercased().hasPrefix("q=") {
                q = Double(parameter.dropFirst(2)) ?? 0
            }
            quality[name] = q
        }
        let wildcard = quality["*"] ?? 0
        var best: (encoding: Encoding, q: Double)?
        for encoding in [Encoding.gzip, .deflate] {
            let q = quality[encoding.rawValue] ?? wildcard
            if q > 0, q > (best?.q ?? 0) { best = (encoding, q) }
        }
        return best?.encoding
    }

    /// The body, `length` bytes in `parts`, compressed; nil to send it as it is, when it is
    /// under the threshold.
    func compress(_ parts: [ByteBuffer], length: Int, as encoding: Encoding) -> ByteBuffer? {
        guard length >= self.threshold else { return nil }
        let compressor = encoding == .gzip ? self.gzip : self.zlib
        // One input buffer: zlib's bound then holds for the whole output, which a single
        // finishing call writes. Copying the body costs little next to compressing it.
        var input = ByteBuffer()
        input.reserveCapacity(length)
        for part in parts { input.writeImmutableBuffer(part) }
        do {
            try compressor.reset()
            var output = ByteBuffer()
            output.reserveCapacity(compressor.maxSize(from: input))
            try compressor.deflate(from: &input, to: &output, flush: .finish)
            return output
        } catch {
            return nil
        }
    }
}

/// A server's compressors, as its configuration asks: confined to its event loop, like the server.
final class EngineIOCompressors {
    let webSocket: WebSocketDeflater?
    let http: HTTPCompression?
    /// The deflated frames of the last broadcast messages, by the shared frame they were made
    /// from: a broadcast's recipients take its messages one after the other, so the first
    /// recipient that agreed to permessage-deflate compresses a message and the others reuse it.
    private var recentFrames: [(source: ByteBuffer, frame: ByteBuffer?)] = []
    private static let recentFrameCount = 8

    init(configuration: EngineIOConfiguration) {
        // Making them fails only when zlib is out of memory; compression is then left off.
        self.webSocket = configuration.perMessageDeflateThreshold.flatMap { try? WebSocketDeflater(threshold: $0) }
        self.http = configuration.httpCompressionThreshold.flatMap { try? HTTPCompression(threshold: $0) }
    }

    /// The whole frame of `message` compressed, RSV1 set; nil to send it uncompressed.
    func deflatedFrame(for message: EngineIOMessage) -> ByteBuffer? {
        guard let deflater = self.webSocket else { return nil }
        let (opcode, payload) = message.webSocketOpcodeAndPayload
        guard payload.readableBytes >= deflater.threshold else { return nil }
        guard let shared = message.encodedFrame else {
            return deflater.deflate(payload).map { EngineIOBroadcastEncoder.frame(opcode: opcode, payload: $0, compressed: true) }
        }
        if let recent = self.recentFrames.last(where: { $0.source.sharesBytes(with: shared) }) {
            return recent.frame
        }
        let frame = deflater.deflate(payload).map { EngineIOBroadcastEncoder.frame(opcode: opcode, payload: $0, compressed: true) }
        if self.recentFrames.count == Self.recentFrameCount { self.recentFrames.removeFirst() }
        // Keeping `shared` keeps its storage alive, so no other buffer can take its address.
        self.recentFrames.append((shared, frame))
        return frame
    }
}

extension ByteBuffer {
    /// Whether both are views of the same bytes in the same storage: the identity of a shared
    /// broadcast frame, told without comparing its bytes.
    func sharesBytes(with other: ByteBuffer) -> Bool {
        guard self.readableBytes == other.readableBytes else { return false }
        let mine = self.withUnsafeReadableBytes { UnsafeRawPointer($0.baseAddress) }
        let theirs = other.withUnsafeReadableBytes { UnsafeRawPointer($0.baseAddress) }
        return mine == theirs
    }
}

/// Errors of the permessage-deflate extension on a connection.
enum PerMessageDeflateError: Error {
    /// RSV1 set without the extension agreed, or on a control frame (RFC 7692 §6.1).
    case unexpectedCompression
}
