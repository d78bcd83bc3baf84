import Foundation
import Logging
import NIOCore
import NIOPosix
import XCTest

@testable import Redis

/// Every log line the client wrote, so tests can check what an operator would see.
final class LogRecorder: @unchecked Sendable {  // `lines` is only touched under `lock`.
    struct Line {
        var level: Logger.Level
        var message: String
        var metadata: Logger.Metadata
    }

    private let lock = NSLock()
    private var recorded: [Line] = []

    var lines: [Line] {
        self.lock.withLock { self.recorded }
    }

    func append(_ line: Line) {
        self.lock.withLock { self.recorded.append(line) }
    }

    func count(_ level: Logger.Level, _ message: String) -> Int {
        self.lines.filter { $0.level == level && $0.message == message }.count
    }

    var logger: Logger {
        var logger = Logger(label: "redis-test") { _ in RecordingLogHandler(recorder: self) }
        logger.logLevel = .debug
        return logger
    }
}

struct RecordingLogHandler: LogHandler {
    let recorder: LogRecorder
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let metadata = self.metadata.merging(event.metadata ?? [:]) { $1 }
        self.recorder.append(.init(level: event.level, message: "\(event.message)", metadata: metadata))
    }
}

/// What subscription handlers and `onStateChange` saw; lives on the client's event loop.
final class Inbox {
    var messages: [String] = []
    var states: [Bool] = []
    var payloads: [ByteBuffer] = []
}

/// Starts redis-servers and clients for a test and tears all of them down after it.
class RedisIntegrationTestCase: XCTestCase {
    var group: MultiThreadedEventLoopGroup!
    var loop: EventLoop!
    let logs = LogRecorder()
    private var servers: [RedisServerProcess] = []
    private var clients: [NIOLoopBound<RedisClient>] = []

    override func setUp() {
        super.setUp()
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.loop = self.group.next()
    }

    override func tearDownWithError() throws {
        for client in self.clients {
            try? self.loop.flatSubmit { client.value.shutdown() }.wait()
        }
        self.clients = []
        for server in self.servers {
            server.kill()
        }
        self.servers = []
        try self.group.syncShutdownGracefully()
        try super.tearDownWithError()
    }

    func makeServer(
        password: String? = nil,
        unixSocket: Bool = false,
        port: Int? = nil,
        extraArguments: [String] = [],
        sentinelConfig: String? = nil,
        start: Bool = true
    ) throws -> RedisServerProcess {
        let server = try RedisServerProcess(
            password: password, unixSocket: unixSocket, port: port, extraArguments: extraArguments, sentinelConfig: sentinelConfig
        )
        self.servers.append(server)
        if start { try server.start() }
        return server
    }

    /// A started client with test-sized backoff, and the inbox that records its state changes
    /// from before it starts.
    func makeClient(
        _ url: String,
        outboxLimit: Int = 10_000,
        connectTimeout: TimeAmount = .seconds(2),
        logger: Logger? = nil
    ) throws -> (NIOLoopBound<RedisClient>, NIOLoopBound<Inbox>) {
        let configuration = RedisClientConfiguration(
            url: try RedisURL(url),
            outboxLimit: outboxLimit,
            minBackoff: .milliseconds(10),
            maxBackoff: .milliseconds(200),
            connectTimeout: connectTimeout
        )
        return try self.makeClient(configuration: configuration, logger: logger)
    }

    func makeClient(configuration: RedisClientConfiguration, logger: Logger? = nil) throws -> (NIOLoopBound<RedisClient>, NIOLoopBound<Inbox>) {
        let loop = self.loop!
        let logger = logger ?? self.logs.logger
        let (client, inbox) = try loop.submit {
            let client = RedisClient(configuration: configuration, eventLoop: loop, logger: logger)
            let inbox = NIOLoopBound(Inbox(), eventLoop: loop)
            client.onStateChange = { inbox.value.states.append($0) }
            client.start()
            return (NIOLoopBound(client, eventLoop: loop), inbox)
        }.wait()
        self.clients.append(client)
        return (client, inbox)
    }

    func run<T: Sendable>(_ client: NIOLoopBound<RedisClient>, _ body: @escaping @Sendable (RedisClient) throws -> T) throws -> T {
        try self.loop.submit { try body(client.value) }.wait()
    }

    func send(_ client: NIOLoopBound<RedisClient>, _ arguments: String...) throws -> RedisReply {
        try self.loop.flatSubmit { client.value.send(arguments.map { ByteBuffer(string: $0) }) }.wait()
    }

    func messages(_ inbox: NIOLoopBound<Inbox>) throws -> [String] {
        try self.loop.submit { inbox.value.messages }.wait()
    }

    func states(_ inbox: NIOLoopBound<Inbox>) throws -> [Bool] {
        try self.loop.submit { inbox.value.states }.wait()
    }

    func subscribe(_ client: NIOLoopBound<RedisClient>, _ channel: String, into inbox: NIOLoopBound<Inbox>) throws {
        try self.run(client) { client in
            client.subscribe(channel) { name, message in
                inbox.value.messages.append("\(name):\(String(buffer: message))")
            }
        }
    }

    func psubscribe(_ client: NIOLoopBound<RedisClient>, _ pattern: String, into inbox: NIOLoopBound<Inbox>) throws {
        try self.run(client) { client in
            client.psubscribe(pattern) { pattern, name, message in
                inbox.value.messages.append("\(pattern)|\(name):\(String(buffer: message))")
            }
        }
    }

    func publish(_ client: NIOLoopBound<RedisClient>, _ channel: String, _ messages: [String]) throws {
        try self.run(client) { client in
            for message in messages {
                client.publish(channel, ByteBuffer(string: message))
            }
        }
    }

    func waitUntilConnected(_ client: NIOLoopBound<RedisClient>, _ expected: Bool = true, file: StaticString = #filePath, line: UInt = #line) throws {
        try eventually("isConnected never became \(expected)", file: file, line: line) {
            try self.run(client) { $0.isConnected } == expected
        }
    }

    /// Subscriptions are asynchronous: wait until Redis counts `count` subscribers on `channel`.
    func waitForSubscribers(_ client: NIOLoopBound<RedisClient>, _ channel: String, count: Int64, file: StaticString = #filePath, line: UInt = #line) {
        eventually("\(channel) never had \(count) subscribers", file: file, line: line) {
            (try? self.send(client, "PUBSUB", "NUMSUB", channel)) == .array([.bulk(ByteBuffer(string: channel)), .integer(count)])
        }
    }
}
