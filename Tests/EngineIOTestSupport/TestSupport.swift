import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest

import EngineIO

/// Records what the server tells its delegate; optionally echoes messages back, like the
/// echo server the official test suite runs against.
public final class RecordingDelegate: EngineIOServerDelegate {
    public var opened: [EngineIOSession] = []
    public var texts: [String] = []
    public var binaries: [[UInt8]] = []
    public var closed: [(sid: String, reason: EngineIOCloseReason)] = []
    public var echo = true
    public var onText: ((EngineIOSession, String) -> Void)?

    public func sessionDidOpen(_ session: EngineIOSession) {
        self.opened.append(session)
    }

    public func session(_ session: EngineIOSession, didReceiveText payload: ByteBuffer) {
        let text = String(buffer: payload)
        self.texts.append(text)
        if self.echo { session.send(.text(text)) }
        self.onText?(session, text)
    }

    public func session(_ session: EngineIOSession, didReceiveBinary data: ByteBuffer) {
        self.binaries.append(Array(data.readableBytesView))
        if self.echo { session.send(.binary(data)) }
    }

    public func session(_ session: EngineIOSession, didCloseWith reason: EngineIOCloseReason) {
        self.closed.append((session.id, reason))
    }
}

/// One HTTP response as the test client parsed it.
public struct TestResponse {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: String

    public func header(_ name: String) -> String? {
        self.headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    public func headerValues(_ name: String) -> [String] {
        self.headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
    }
}

/// One WebSocket frame the server sent, unmasked and whole.
public struct TestFrame: Equatable {
    public var opcode: UInt8
    public var payload: [UInt8]
    public var text: String { String(decoding: self.payload, as: UTF8.self) }

    public init(opcode: UInt8, payload: [UInt8]) {
        self.opcode = opcode
        self.payload = payload
    }

    public static let textOpcode: UInt8 = 0x1
    public static let binaryOpcode: UInt8 = 0x2
    public static let closeOpcode: UInt8 = 0x8
    public static let pingOpcode: UInt8 = 0x9
    public static let pongOpcode: UInt8 = 0xA
}

/// One client connection: raw HTTP/1.1 bytes in, raw bytes out, parsed here.
public final class TestConnection {
    public let channel: EmbeddedChannel
    public let loop: EmbeddedEventLoop
    private var received = ByteBuffer()

    /// - Parameter ahead: a handler put ahead of the server's, as TLS would be.
    public init(server: EngineIOServer, loop: EmbeddedEventLoop, ahead: ChannelHandler? = nil) throws {
        self.loop = loop
        self.channel = EmbeddedChannel(loop: loop)
        if let ahead { try self.channel.pipeline.syncOperations.addHandler(ahead) }
        try server.configureChildChannel(self.channel, handlersAhead: ahead != nil)
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
    }

    public var isActive: Bool { self.channel.isActive }

    public func sendRaw(_ bytes: ByteBuffer) throws {
        if self.channel.isActive {
            try self.channel.writeInbound(bytes)
        }
        self.loop.run()
    }

    /// Sends one request; `keepAlive: false` asks the server to close after answering.
    public func send(_ method: String, _ uri: String, body: String? = nil, headers: [(String, String)] = [],
              keepAlive: Bool = true) throws {
        var text = "\(method) \(uri) HTTP/1.1\r\nHost: localhost\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if !keepAlive { text += "Connection: close\r\n" }
        if let body { text += "Content-Length: \(body.utf8.count)\r\n" }
        text += "\r\n"
        text += body ?? ""
        try self.sendRaw(ByteBuffer(string: text))
    }

    /// Sends a request and returns its response, or nil if the server holds it (long-poll).
    public func request(_ method: String, _ uri: String, body: String? = nil, headers: [(String, String)] = [],
                 keepAlive: Bool = true) throws -> TestResponse? {
        try self.send(method, uri, body: body, headers: headers, keepAlive: keepAlive)
        return try self.readResponse()
    }

    private func drain() throws {
        while let buffer = try self.channel.readOutbound(as: ByteBuffer.self) {
            self.received.writeImmutableBuffer(buffer)
        }
    }

    /// The next complete response, if there is one.
    public func readResponse() throws -> TestResponse? {
        self.loop.run()
        try self.drain()
        let view = self.received.readableBytesView
        let terminator = Array("\r\n\r\n".utf8)
        guard let headEnd = view.indices.first(where: { view[$0...].starts(with: terminator) }) else { return nil }
        let headText = String(decoding: view[view.startIndex..<headEnd], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        let status = Int(statusLine[1])!
        let headers = lines.map { line -> (name: String, value: String) in
            let colon = line.firstIndex(of: ":")!
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        var length = 0
        if let value = headers.first(where: { $0.name.lowercased() == "content-length" })?.value {
            length = Int(value)!
        }
        let bodyStart = headEnd + 4
        guard view.endIndex - bodyStart >= length else { return nil }
        let body = String(decoding: view[bodyStart..<(bodyStart + length)], as: UTF8.self)
        self.received.moveReaderIndex(to: bodyStart + length)
        return TestResponse(status: status, headers: headers, body: body)
    }

    // MARK: WebSocket

    /// Sends a WebSocket upgrade request and returns the response (101 when upgraded).
    public func upgrade(_ uri: String) throws -> TestResponse? {
        try self.request("GET", uri, headers: [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
        ])
    }

    /// Sends one masked client frame.
    public func sendFrame(opcode: UInt8, payload: [UInt8], fin: Bool = true) throws {
        var buffer = ByteBuffer()
        buffer.writeInteger((fin ? 0x80 : 0) | opcode)
        if payload.count < 126 {
            buffer.writeInteger(0x80 | UInt8(payload.count))
        } else if payload.count <= Int(UInt16.max) {
            buffer.writeInteger(UInt8(0x80 | 126))
            buffer.writeInteger(UInt16(payload.count))
        } else {
            buffer.writeInteger(UInt8(0x80 | 127))
            buffer.writeInteger(UInt64(payload.count))
        }
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        buffer.writeBytes(mask)
        buffer.writeBytes(payload.enumerated().map { $0.element ^ mask[$0.offset % 4] })
        try self.sendRaw(buffer)
    }

    public func sendText(_ text: String) throws {
        try self.sendFrame(opcode: TestFrame.textOpcode, payload: Array(text.utf8))
    }

    /// Every complete frame the server sent since the last call.
    public func readFrames() throws -> [TestFrame] {
        self.loop.run()
        try self.drain()
        var frames: [TestFrame] = []
        while true {
            var peek = self.received
            guard let first = peek.readInteger(as: UInt8.self), let second = peek.readInteger(as: UInt8.self) else {
                break
            }
            XCTAssertEqual(second & 0x80, 0, "server frames are not masked")
            var length = Int(second & 0x7F)
            if length == 126 {
                guard let extended = peek.readInteger(as: UInt16.self) else { break }
                length = Int(extended)
            } else if length == 127 {
                guard let extended = peek.readInteger(as: UInt64.self) else { break }
                length = Int(extended)
            }
            guard let payload = peek.readBytes(length: length) else { break }
            frames.append(TestFrame(opcode: first & 0x0F, payload: payload))
            self.received = peek
        }
        return frames
    }

    public func readTexts() throws -> [String] {
        try self.readFrames().map(\.text)
    }
}

/// A server on an embedded loop, configured like the official test suite's server
/// (pingInterval 300 ms, pingTimeout 200 ms).
public final class TestServer {
    public let loop = EmbeddedEventLoop()
    public let server: EngineIOServer
    public let delegate = RecordingDelegate()

    public init(_ configure: (inout EngineIOConfiguration) -> Void = { _ in }) {
        var configuration = EngineIOConfiguration()
        configuration.pingInterval = .milliseconds(300)
        configuration.pingTimeout = .milliseconds(200)
        configure(&configuration)
        var logger = Logger(label: "engine.io-test")
        logger.logLevel = .critical
        self.server = EngineIOServer(configuration: configuration, eventLoop: self.loop, logger: logger)
        self.server.delegate = self.delegate
    }

    public func connect(ahead: ChannelHandler? = nil) throws -> TestConnection {
        try TestConnection(server: self.server, loop: self.loop, ahead: ahead)
    }

    public func advance(by amount: TimeAmount) {
        self.loop.advanceTime(by: amount)
    }

    /// Opens a polling session and returns its sid.
    public func openPollingSession(on connection: TestConnection? = nil) throws -> String {
        let connection = try connection ?? self.connect()
        let response = try XCTUnwrap(connection.request("GET", "/engine.io/?EIO=4&transport=polling"))
        XCTAssertEqual(response.status, 200)
        return try XCTUnwrap(TestServer.openPacket(response.body)["sid"] as? String)
    }

    /// Opens a WebSocket-only session; returns the connection after the open packet was read.
    public func openWebSocketSession(ahead: ChannelHandler? = nil) throws -> (TestConnection, String) {
        let connection = try self.connect(ahead: ahead)
        let response = try XCTUnwrap(connection.upgrade("/engine.io/?EIO=4&transport=websocket"))
        XCTAssertEqual(response.status, 101)
        let frames = try connection.readTexts()
        XCTAssertEqual(frames.count, 1)
        let sid = try XCTUnwrap(TestServer.openPacket(try XCTUnwrap(frames.first))["sid"] as? String)
        return (connection, sid)
    }

    public static func openPacket(_ text: String) throws -> [String: Any] {
        XCTAssertTrue(text.hasPrefix("0"), "open packet: \(text)")
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8.dropFirst()))
        return try XCTUnwrap(object as? [String: Any])
    }

    public static func errorBody(_ response: TestResponse) throws -> (code: Int, message: String) {
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
        return (try XCTUnwrap(object["code"] as? Int), try XCTUnwrap(object["message"] as? String))
    }
}
