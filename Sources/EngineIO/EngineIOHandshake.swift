import Foundation
import NIOCore
import NIOHTTP1

/// What the client sent when it opened the session: the Socket.IO handshake object is built
/// from it. Headers keep the request's order, names as sent, and repeated names.
///
/// Every session keeps one for its whole life while it is read only when a namespace is
/// joined, so the request is kept as one string and taken apart on demand: a string per
/// header, an array and a query dictionary cost about 700 bytes per idle connection more.
public struct EngineIOHandshake: Sendable {
    /// The peer's IP address (empty when unknown), the request URI, then each header as
    /// "name:value", each on its own line: none of them (as NIO parses them) holds a line
    /// break, and a header name holds no colon.
    private let request: String
    /// When the session was opened, in milliseconds since the Unix epoch.
    public let issued: Int64
    /// Whether the request came over TLS.
    public let secure: Bool

    init(head: HTTPRequestHead, remoteAddress: SocketAddress?, secure: Bool) {
        let address = remoteAddress?.ipAddress ?? ""
        var length = address.utf8.count + 1 + head.uri.utf8.count
        for header in head.headers {
            length += header.name.utf8.count + header.value.utf8.count + 2
        }
        var request = ""
        request.reserveCapacity(length)
        request += address
        request += "\n"
        request += head.uri
        for header in head.headers {
            request += "\n"
            request += header.name
            request += ":"
            request += header.value
        }
        self.request = request
        self.issued = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
        self.secure = secure
    }

    /// The peer's IP address, without the port.
    public var remoteAddress: String? {
        let address = self.lines.first!
        return address.isEmpty ? nil : String(address)!
    }

    /// The request URI as sent, e.g. "/socket.io/?EIO=4&transport=polling&t=x".
    public var url: String {
        String(self.lines.dropFirst().first!)!
    }

    public var headers: [(name: String, value: String)] {
        self.lines.dropFirst(2).map { line in
            let colon = line.firstIndex(of: UInt8(ascii: ":"))!
            return (name: String(line[..<colon])!, value: String(line[line.index(after: colon)...])!)
        }
    }

    /// Decoded query parameters of the first request; a repeated name keeps its last value,
    /// like `Object.fromEntries(url.searchParams)` in the Node server.
    public var query: [String: String] {
        EngineIORequestURI(self.url).query
    }

    private var lines: [Substring.UTF8View] {
        self.request.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
    }
}

/// The parts of a request URI the server routes on.
public struct EngineIORequestURI: Equatable {
    public var path: Substring
    public var query: [String: String]

    public init(_ uri: String) {
        if let mark = uri.firstIndex(of: "?") {
            self.path = uri[..<mark]
            self.query = Self.parseQuery(uri[uri.index(after: mark)...])
        } else {
            self.path = uri[...]
            self.query = [:]
        }
    }

    /// `application/x-www-form-urlencoded` decoding as `URLSearchParams` does it: "+" is a
    /// space, bad percent escapes are kept literally, a fragment ends the query.
    public static func parseQuery(_ query: Substring) -> [String: String] {
        var result: [String: String] = [:]
        let query = query.prefix { $0 != "#" }
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let name: Substring
            let value: Substring
            if let equals = pair.firstIndex(of: "=") {
                name = pair[..<equals]
                value = pair[pair.index(after: equals)...]
            } else {
                name = pair
                value = ""
            }
            result[decodeComponent(name)] = decodeComponent(value)
        }
        return result
    }

    private static func decodeComponent(_ component: Substring) -> String {
        let utf8 = Array(component.utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count)
        var index = 0
        while index < utf8.count {
            let byte = utf8[index]
            if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), index + 2 < utf8.count,
                      let high = hexValue(utf8[index + 1]), let low = hexValue(utf8[index + 2]) {
                bytes.append(high << 4 | low)
                index += 2
            } else {
                bytes.append(byte)
            }
            index += 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
