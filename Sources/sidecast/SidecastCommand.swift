import ArgumentParser
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import SidecastServer

/// `sidecast`: parses flags (each also read from `SIDECAST_<NAME>`), then runs one node until
/// SIGTERM or SIGINT.
@main
struct SidecastCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sidecast",
        abstract: "A Socket.IO v4 server for backends in any language, over NDJSON on a Unix socket.",
        discussion: """
            Every option can also be set through the environment variable named after it, \
            e.g. SIDECAST_PORT=3001 or SIDECAST_CORS_ORIGIN=https://a.example,https://b.example \
            (repeatable options take a comma-separated list). A flag wins over the environment.
            """
    )

    @Option(help: "Address to listen on for Socket.IO clients. (env: SIDECAST_HOST)")
    var host: String = Environment.string("HOST") ?? "0.0.0.0"

    @Option(help: "TCP port for Socket.IO clients. (env: SIDECAST_PORT)")
    var port: Int = Environment.int("PORT") ?? 3000

    @Option(help: "HTTP path Socket.IO is served under. (env: SIDECAST_PATH)")
    var path: String = Environment.string("PATH") ?? "/socket.io/"

    @Option(help: "Unix socket path backends attach to. (env: SIDECAST_SOCKET)")
    var socket: String = Environment.string("SOCKET") ?? "sidecast.sock"

    @Option(help: "File mode of the backend socket, in octal. (env: SIDECAST_SOCKET_MODE)")
    var socketMode: String = Environment.string("SOCKET_MODE") ?? "0660"

    @Option(
        name: .customLong("cors-origin"),
        help: "Allowed CORS origin; repeat for several, '*' for any. None sends no CORS headers. (env: SIDECAST_CORS_ORIGIN)"
    )
    var corsOrigins: [String] = Environment.list("CORS_ORIGIN")

    @Option(help: "Milliseconds between server pings. (env: SIDECAST_PING_INTERVAL)")
    var pingInterval: Int64 = Environment.int64("PING_INTERVAL") ?? 25_000

    @Option(help: "Milliseconds to wait for a pong before closing with 'ping timeout'. (env: SIDECAST_PING_TIMEOUT)")
    var pingTimeout: Int64 = Environment.int64("PING_TIMEOUT") ?? 20_000

    @Option(help: "Milliseconds a client may stay connected without joining a namespace. (env: SIDECAST_CONNECT_TIMEOUT)")
    var connectTimeout: Int64 = Environment.int64("CONNECT_TIMEOUT") ?? 45_000

    @Option(help: "Largest Engine.IO message or HTTP body a client may send, in bytes. (env: SIDECAST_MAX_PAYLOAD)")
    var maxPayload: Int = Environment.int("MAX_PAYLOAD") ?? 1_000_000

    @Option(help: "Bytes that may wait for one client; past it volatile packets are dropped, then the client is disconnected. (env: SIDECAST_MAX_BUFFERED)")
    var maxBuffered: Int = Environment.int("MAX_BUFFERED") ?? 1_048_576

    @Option(
        name: .customLong("namespace"),
        help: "Namespace that exists even with no backend attached; repeatable. (env: SIDECAST_NAMESPACE)"
    )
    var namespaces: [String] = Environment.list("NAMESPACE")

    @Option(help: "Seconds a backend group's messages wait for a backend to (re)attach. (env: SIDECAST_BACKEND_GRACE)")
    var backendGrace: Double = Environment.double("BACKEND_GRACE") ?? 10

    @Option(help: "Redis URL shared by the cluster: redis://[user:password@]host:port[/db] or unix:///path. None runs a standalone node. (env: SIDECAST_REDIS)")
    var redis: String = Environment.string("REDIS") ?? ""

    @Option(help: "Prefix of the Redis channels, as the Socket.IO Redis adapter's key option. (env: SIDECAST_REDIS_PREFIX)")
    var redisPrefix: String = Environment.string("REDIS_PREFIX") ?? "socket.io"

    @Option(help: "Milliseconds cluster requests (fetch, count, acks across nodes) wait for other nodes. (env: SIDECAST_REQUESTS_TIMEOUT)")
    var requestsTimeout: Int64 = Environment.int64("REQUESTS_TIMEOUT") ?? 5_000

    @Option(help: "trace, debug, info, notice, warning, error or critical. (env: SIDECAST_LOG_LEVEL)")
    var logLevel: String = Environment.string("LOG_LEVEL") ?? "info"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        guard UInt16(socketMode, radix: 8) != nil else { throw ValidationError("--socket-mode must be octal, like 0660") }
        guard (1...65535).contains(port) || port == 0 else { throw ValidationError("--port must be 0...65535") }
        guard path.hasPrefix("/") else { throw ValidationError("--path must start with '/'") }
        for name in namespaces where !name.hasPrefix("/") {
            throw ValidationError("--namespace \(name) must start with '/'")
        }
        guard pingInterval > 0, pingTimeout > 0, connectTimeout > 0 else {
            throw ValidationError("--ping-interval, --ping-timeout and --connect-timeout must be positive")
        }
        guard maxPayload > 0 else { throw ValidationError("--max-payload must be positive") }
        guard maxBuffered > 0 else { throw ValidationError("--max-buffered must be positive") }
        guard backendGrace >= 0 else { throw ValidationError("--backend-grace must not be negative") }
        guard requestsTimeout > 0 else { throw ValidationError("--requests-timeout must be positive") }
        guard !redisPrefix.isEmpty else { throw ValidationError("--redis-prefix must not be empty") }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "sidecast")

        var configuration = SidecastConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.path = path.hasSuffix("/") ? path : path + "/"
        configuration.socketPath = socket
        configuration.socketMode = UInt16(socketMode, radix: 8) ?? 0o660
        configuration.corsOrigins = corsOrigins
        configuration.pingInterval = .milliseconds(pingInterval)
        configuration.pingTimeout = .milliseconds(pingTimeout)
        configuration.connectTimeout = .milliseconds(connectTimeout)
        configuration.maxPayload = maxPayload
        configuration.maxBuffered = maxBuffered
        configuration.namespaces = namespaces.isEmpty ? ["/"] : Set(namespaces)
        configuration.backendGrace = .nanoseconds(Int64(backendGrace * 1_000_000_000))
        configuration.redisURL = redis.isEmpty ? nil : redis
        configuration.redisPrefix = redisPrefix
        configuration.requestsTimeout = .milliseconds(requestsTimeout)

        let sidecast = Sidecast(configuration: configuration, logger: logger)
        let group = ServiceGroup(
            configuration: .init(services: [sidecast], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        do {
            try await group.run()
        } catch let error as SidecastStartError {
            logger.critical("\(error.description)")
            throw ExitCode.failure
        }
    }
}

/// Reads `SIDECAST_<NAME>` variables for the options' defaults.
enum Environment {
    static func string(_ name: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment["SIDECAST_" + name], !value.isEmpty else { return nil }
        return value
    }

    static func int(_ name: String) -> Int? { string(name).flatMap { Int($0) } }
    static func int64(_ name: String) -> Int64? { string(name).flatMap { Int64($0) } }
    static func double(_ name: String) -> Double? { string(name).flatMap { Double($0) } }

    static func list(_ name: String) -> [String] {
        string(name)?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } ?? []
    }
}
