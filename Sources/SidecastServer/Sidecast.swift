import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
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

/// One sidecast node as a service: listens for Socket.IO clients on TCP, for backends on a
/// Unix socket and for /metrics, /healthz and /readyz on the admin listener, until asked to stop.
///
/// `run()` traps SIGTERM and SIGINT itself, because they stop a node differently: SIGTERM (and
/// the service group's graceful shutdown) drains — /readyz turns false and new clients get
/// HTTP 503 at once, clients are closed with "server shutting down" after the drain delay —
/// while SIGINT (and task cancellation) closes clients at once; a SIGINT during the delay ends
/// it. Either way backends are told, the Redis outbox is flushed and `run()` returns within
/// the drain timeout. Run it in a service group that traps no signals of its own.
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
        // Before the runtime exists: its layers make their metrics as they are built.
        let registry = SidecastMetrics.registry
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

        // Trapped before anything listens: whoever sees a port open may already send a signal.
        let signals = StopSignals { request in
            loop.execute { runtime.value.requestStop(request) }
        }
        let clients: Channel
        let backends: Channel
        let admin: Channel
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
                // NIO keeps each connection's receive buffer between reads, for good, at the
                // largest size it has grown to. Start small, and cap it at 16 KiB rather than
                // NIO's 64 KiB: a client that once sent a large message keeps a quarter of it
                // while idle, at the price of more reads per large message.
                .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 16384))
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try runtime.value.engineIO.configureChildChannel(channel) }
                }
                .bind(host: configuration.host, port: configuration.port)
                .get()
            admin = try await Self.bindAdmin(configuration, group: group, registry: registry, runtime: runtime)
        } catch {
            signals.cancel()
            try? await group.shutdownGracefully()
            throw error
        }
        let stopped = try await loop.submit { runtime.value.didStartListening() }.get()
        logger.info("sidecast listening", metadata: [
            "node": "\(nodeID)",
            "clients": "http://\(configuration.host):\(clients.localAddress?.port ?? configuration.port)\(configuration.path)",
            "backends": "\(configuration.socketPath)",
            "admin": "http://\(configuration.adminHost):\(admin.localAddress?.port ?? configuration.adminPort)",
            "redis": "\(configuration.redisMode)",
        ])

        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                try? await stopped.get()
            } onGracefulShutdown: {
                loop.execute { runtime.value.requestStop(.terminate) }
            }
        } onCancel: {
            loop.execute { runtime.value.requestStop(.interrupt) }
        }
        signals.cancel()

        try? await clients.close()
        // Close frames, DISCONNECT packets and the backends' `shutdown` lines are flushed by the
        // loop; give them a moment to leave before the loop stops.
        try? await Task.sleep(for: .milliseconds(200))
        try? await backends.close()
        try? await admin.close()
        unlink(configuration.socketPath)
        try await group.shutdownGracefully()
        logger.info("sidecast stopped")
    }

    private static func bindAdmin(
        _ configuration: SidecastConfiguration,
        group: EventLoopGroup,
        registry: PrometheusCollectorRegistry,
        runtime: NIOLoopBound<SidecastRuntime>
    ) async throws -> Channel {
        do {
            return try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(
                            AdminHTTPHandler(registry: registry) { runtime.value.notReadyReasons() }
                        )
                    }
                }
                .bind(host: configuration.adminHost, port: configuration.adminPort)
                .get()
        } catch {
            throw SidecastStartError(
                description: "cannot listen for admin requests on \(configuration.adminHost):\(configuration.adminPort): \(error)"
            )
        }
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
