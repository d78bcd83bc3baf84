import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why `sidecast` could not start.
public struct SidecastStartError: Error, CustomStringConvertible {
    public var description: String
}

/// One sidecast node as a service: listens for Socket.IO clients on TCP and for backends on a
/// Unix socket until graceful shutdown (SIGTERM/SIGINT through the service group).
///
/// All Socket.IO state lives on a single event loop, as Node keeps it on one thread: rooms,
/// sockets and backends need no locks, and a node scales out by running one per host.
public struct Sidecast: Service {
    public let configuration: SidecastConfiguration
    public let logger: Logger
    /// A fresh id per process, like the Redis adapter's uid.
    public let nodeID: String

    public init(configuration: SidecastConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        var generator = SystemRandomNumberGenerator()
        self.nodeID = (0..<6).map { _ in String(format: "%02x", generator.next() as UInt8) }.joined()
    }

    public func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let configuration = self.configuration
        let logger = self.logger
        let nodeID = self.nodeID
        let runtime: NIOLoopBound<SidecastRuntime>
        do {
            runtime = try await loop.submit {
                NIOLoopBound(
                    try SidecastRuntime(configuration: configuration, nodeID: nodeID, eventLoop: loop, logger: logger),
                    eventLoop: loop
                )
            }.get()
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }

        let clients: Channel
        let backends: Channel
        do {
            try await Self.removeStaleSocket(at: configuration.socketPath, group: group)
            backends = try await ServerBootstrap(group: group)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try runtime.value.bridge.configureBackendChannel(channel) }
                }
                .bind(unixDomainSocketPath: configuration.socketPath, cleanupExistingSocketFile: false)
                .get()
            guard chmod(configuration.socketPath, mode_t(configuration.socketMode)) == 0 else {
                throw SidecastStartError(description: "cannot set mode \(String(configuration.socketMode, radix: 8)) on \(configuration.socketPath): errno \(errno)")
            }
            clients = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try runtime.value.engineIO.configureChildChannel(channel) }
                }
                .bind(host: configuration.host, port: configuration.port)
                .get()
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        logger.info("sidecast listening", metadata: [
            "node": "\(nodeID)",
            "clients": "http://\(configuration.host):\(clients.localAddress?.port ?? configuration.port)\(configuration.path)",
            "backends": "\(configuration.socketPath)",
            "redis": "\(configuration.redisURL.map { _ in "on" } ?? "off (standalone)")",
        ])

        try? await gracefulShutdown()

        logger.info("sidecast shutting down")
        try? await clients.close()
        try? await loop.flatSubmit { runtime.value.shutdown() }.get()
        // Close frames, DISCONNECT packets and the backends' `shutdown` lines are flushed by the
        // loop; give them a moment to leave before the loop stops.
        try? await Task.sleep(for: .milliseconds(200))
        try? await backends.close()
        unlink(configuration.socketPath)
        try await group.shutdownGracefully()
        logger.info("sidecast stopped")
    }

    /// A socket file left by a crash is replaced; one that still accepts belongs to a live
    /// sidecast, and starting a second one on it is an error.
    private static func removeStaleSocket(at path: String, group: EventLoopGroup) async throws {
        var status = stat()
        guard lstat(path, &status) == 0 else { return }
        guard (status.st_mode & S_IFMT) == S_IFSOCK else {
            throw SidecastStartError(description: "\(path) exists and is not a socket; refusing to replace it")
        }
        if let live = try? await ClientBootstrap(group: group).connect(unixDomainSocketPath: path).get() {
            try? await live.close()
            throw SidecastStartError(description: "another sidecast is already listening on \(path)")
        }
        unlink(path)
    }
}
