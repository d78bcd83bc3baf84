import Bridge
import EngineIO
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
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
/// Clients are spread over `--threads` event loops, one shard each: a shard's sessions, sockets
/// and rooms live on its loop only, as Node keeps them on one thread, so they need no locks. The
/// bridge, the adapter, Redis and the listeners live on the first loop; work crosses loops by
/// hand-offs (BENCHMARKS.md, "Many event loops").
public struct Sidecast: Service {
    /// The version `sidecast --version` prints and the start log shows.
    public static let version = "0.1.0"
    /// The most event loops (`--threads`) a node runs: as many shards as session and socket
    /// ids can tell apart.
    public static let maximumThreads = LoopShard.maximumCount

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
        let capacity = ClientCapacity(configuration: configuration, limit: .raisingSoftLimit())
        let configuration = self.configuration
        let logger = self.logger
        let nodeID = self.nodeID
        let signals = await StopSignals()
        let tlsContext: NIOSSLContext?
        do {
            tlsContext = try configuration.tls?.makeContext()
        } catch {
            signals.cancel()
            throw error
        }
        // Read by each accepted connection, on whichever loop accepts it, and replaced on SIGHUP,
        // which is trapped before the port accepts, like SIGTERM.
        let tls = tlsContext.map { NIOLockedValueBox($0) }
        let reloader: CertificateReloader?
        if let files = configuration.tls, let tls {
            reloader = await CertificateReloader(files: files, logger: logger) { context in
                tls.withLockedValue { $0 = context }
            }
        } else {
            reloader = nil
        }
        // Every socket is bound before anything else exists, so a port in use or a bad address
        // stops the start while nothing runs that would need stopping.
        let sockets: ListeningSockets
        do {
            sockets = try ListeningSockets(configuration)
        } catch {
            signals.cancel()
            reloader?.cancel()
            throw error
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: min(max(configuration.threads, 1), Self.maximumThreads))
        // The home loop holds the bridge, the adapter, Redis and the listeners; every loop, the
        // home loop too, serves a shard of the clients.
        let loops = Array(group.makeIterator())
        let loop = loops[0]
        let parts: Parts
        do {
            var shards: [Shard] = []
            for (index, shardLoop) in loops.enumerated() {
                shards.append(try await shardLoop.submit {
                    try Shard(index: index, count: loops.count, configuration: configuration, loop: shardLoop, logger: logger)
                }.get())
            }
            let built = shards
            parts = try await loop.submit {
                Parts(
                    shards: built,
                    runtime: NIOLoopBound(
                        try SidecastRuntime(configuration: configuration, nodeID: nodeID, shards: built, logger: logger),
                        eventLoop: loop
                    ),
                    limit: ClientConnectionLimit(maximum: capacity.maxConnections),
                    reserve: NIOLoopBound(DescriptorReserve(), eventLoop: loop),
                    openFileLimit: capacity.openFileLimit
                )
            }.get()
            try await Self.connect(shards, bridge: parts.runtime)
            let engines = shards.map(\.engineIO)
            try await loop.flatSubmit { parts.runtime.value.relay?.join(shards: engines) ?? loop.makeSucceededVoidFuture() }.get()
        } catch {
            signals.cancel()
            reloader?.cancel()
            sockets.discard(socketPath: configuration.socketPath)
            try? await group.shutdownGracefully()
            throw error
        }
        let runtime = parts.runtime
        let limit = parts.limit
        signals.forward { request in
            loop.execute { runtime.value.requestStop(request) }
        }
        let clients: Channel
        let backends: Channel
        let admin: Channel
        // Which listener is being registered, for the error.
        var starting = sockets.backends
        do {
            // Backend connections go to the loops in turn, as clients do (NIO's group hands out
            // its loops round-robin; `ServerBootstrap` takes no other kind of group): each parses
            // its lines on its own loop and hands them to the bridge on the home loop.
            let backendChannels = try await loop.submit { runtime.value.bridge.backendChannels }.get()
            backends = try await parts.register(sockets.backends, group: loop, childGroup: group, logger: logger) { channel in
                try backendChannels.configure(channel)
            }
            starting = sockets.clients
            // NIO keeps each connection's receive buffer between reads, for good, at the largest
            // size it has grown to. Start small, and cap it at 16 KiB rather than NIO's 64 KiB: a
            // client that once sent a large message keeps a quarter of it while idle, at the price
            // of more reads per large message.
            let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 16384)
            // One acceptor on the home loop hands connections to the loops in turn: every loop gets
            // the same number to within one, whatever the ramp (BENCHMARKS.md, "Many event
            // loops", has SO_REUSEPORT's spread, measured). Each connection is set up on its loop,
            // for that loop's shard.
            let engines = Dictionary(uniqueKeysWithValues: parts.shards.map { (ObjectIdentifier($0.eventLoop), $0.engineIO) })
            clients = try await parts.register(
                sockets.clients, group: loop, childGroup: group, logger: logger, closedAtOnce: ClientConnectionLimit.refusedNoDescriptors,
                options: {
                    $0.childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                        .childChannelOption(.recvAllocator, value: receiveBuffers)
                }
            ) { channel in
                // First, so that even a refusal for a full server is sent over TLS.
                if let tls {
                    try channel.pipeline.syncOperations.addHandlers(NIOSSLServerHandler(context: tls.withLockedValue { $0 }), UncleanShutdownFilter())
                }
                guard try limit.admit(channel), let engineIO = engines[ObjectIdentifier(channel.eventLoop)] else { return }
                try engineIO.value.configureChildChannel(channel, handlersAhead: tls != nil)
            }
            starting = sockets.admin
            admin = try await parts.register(sockets.admin, group: loop, logger: logger) { channel in
                try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                try channel.pipeline.syncOperations.addHandler(
                    AdminHTTPHandler(registry: registry) {
                        runtime.value.notReadyReasons() + (limit.isFull ? ["full"] : [])
                    }
                )
            }
        } catch {
            // Only registering with the event loop can fail here: binding and listening are done,
            // and failed earlier with advice. The runtime has started its Redis links: they are
            // closed before the loop stops, which they would otherwise outlive with reconnects
            // scheduled on a dead loop. The loop's shutdown closes the channels made so far; the
            // sockets not taken over yet go with the process, which exits.
            signals.cancel()
            reloader?.cancel()
            try? await loop.flatSubmit { runtime.value.redis?.shutdown() ?? loop.makeSucceededVoidFuture() }.get()
            unlink(configuration.socketPath)
            try? await group.shutdownGracefully()
            throw SidecastStartError(description: "cannot listen for \(starting.description): \(error)")
        }
        let stopped = try await loop.submit { runtime.value.didStartListening() }.get()
        let relayNode = try await loop.submit { runtime.value.relay?.node.tag }.get()
        logger.info("sidecast listening", metadata: [
            "version": "\(Self.version)",
            "node": "\(nodeID)",
            "clients": "\(tls == nil ? "http" : "https")://\(configuration.host):\(clients.localAddress?.port ?? configuration.port)\(configuration.path)",
            "backends": "\(configuration.socketPath)",
            "admin": "http://\(configuration.adminHost):\(admin.localAddress?.port ?? configuration.adminPort)",
            "redis": "\(configuration.redisMode)",
            "max_connections": "\(capacity.maxConnections)",
            "threads": "\(configuration.threads)",
            "relay_node": "\(relayNode ?? "off")",
        ])
        if capacity.isAboveLimit {
            logger.warning("--max-connections leaves too few descriptors for backends, Redis and the admin listener", metadata: [
                "max_connections": "\(capacity.derivation)",
            ])
        }

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
        reloader?.cancel()

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

    /// Makes the shards of a node of several loops one node: each Engine.IO server relays the
    /// requests for the others' sessions, and each Socket.IO server but the home one hands its
    /// clients to the bridge through a sink.
    private static func connect(_ shards: [Shard], bridge runtime: NIOLoopBound<SidecastRuntime>) async throws {
        guard shards.count > 1 else { return }
        let engines = shards.map(\.engineIO)
        for shard in shards {
            try await shard.eventLoop.submit { shard.engineIO.value.join(shards: engines) }.get()
        }
        let home = shards[0].eventLoop
        let bridge = try await home.submit { NIOLoopBound(runtime.value.bridge, eventLoop: home) }.get()
        var sinks: [NIOLoopBound<ShardSink>] = []
        for shard in shards.dropFirst() {
            sinks.append(try await shard.eventLoop.submit {
                let sink = Bridge.makeShardSink(for: bridge, on: shard.eventLoop)
                shard.socketIO.value.sink = sink
                return NIOLoopBound(sink, eventLoop: shard.eventLoop)
            }.get())
        }
        let connected = sinks
        try await home.submit { runtime.value.bridge.connect(shardSinks: connected) }.get()
    }

    /// What a node keeps on its event loop besides the runtime.
    private struct Parts: Sendable {
        var shards: [Shard]
        var runtime: NIOLoopBound<SidecastRuntime>
        var limit: ClientConnectionLimit
        var reserve: NIOLoopBound<DescriptorReserve>
        var openFileLimit: Int

        /// Registers `listener`, bound and listening, with the event loop; `child` sets up each
        /// connection it accepts.
        func register(
            _ listener: ListeningSocket,
            group: EventLoop,
            childGroup: EventLoopGroup? = nil,
            logger: Logger,
            closedAtOnce: Metrics.Counter? = nil,
            options: (ServerBootstrap) -> ServerBootstrap = { $0 },
            child: @escaping @Sendable (Channel) throws -> Void
        ) async throws -> Channel {
            try await options(ServerBootstrap(group: group, childGroup: childGroup ?? group))
                .serverChannelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try guardAccepts(on: channel, listener: listener, logger: logger, closedAtOnce: closedAtOnce)
                    }
                }
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try child(channel) }
                }
                .withBoundSocket(listener.descriptor)
                .get()
        }

        /// Makes a listening channel survive running out of descriptors: it drains its backlog
        /// through the reserve and pauses rather than spin on `EMFILE`. NIO's `ServerBootstrap`
        /// adds an `AcceptBackoffHandler` only on its async bind path, so it is added here.
        func guardAccepts(on channel: Channel, listener: ListeningSocket, logger: Logger, closedAtOnce: Metrics.Counter?) throws {
            // NIO listens again, with its default backlog of 128, as it takes over a bound
            // socket; a flood of clients needs a longer one.
            _ = listen(listener.descriptor, ListeningSockets.backlog)
            let runtime = self.runtime
            let limit = self.limit
            let openFileLimit = self.openFileLimit
            try channel.pipeline.syncOperations.addHandlers([
                AcceptOverflowHandler(listener: listener, reserve: reserve.value, logger: logger, closedAtOnce: closedAtOnce) {
                    [
                        "open_file_limit": "\(openFileLimit)",
                        "max_connections": "\(limit.maximum)",
                        "clients": "\(limit.open)",
                        "backends": "\(runtime.value.bridge.backendCount)",
                    ]
                },
                AcceptBackoffHandler(shouldForwardIOErrorCaught: false) { error in
                    AcceptOverflowHandler.isOutOfDescriptors(error) || error.errnoCode == ENOBUFS || error.errnoCode == ENOMEM
                        ? AcceptOverflowHandler.backoff : nil
                },
            ])
        }
    }

    /// The node's three listening sockets, bound in this order; a failure closes the ones
    /// already bound and removes the backend socket file it made.
    private struct ListeningSockets: Sendable {
        static let backlog: CInt = 1024

        let backends: ListeningSocket
        let clients: ListeningSocket
        let admin: ListeningSocket

        init(_ configuration: SidecastConfiguration) throws {
            try ListeningSocket.removeStaleSocket(at: configuration.socketPath)
            backends = try ListeningSocket.unix(path: configuration.socketPath, mode: configuration.socketMode, backlog: Self.backlog)
            do {
                clients = try ListeningSocket.tcp(host: configuration.host, port: configuration.port, backlog: Self.backlog, role: .clients)
            } catch {
                Self.discard([backends], socketPath: configuration.socketPath)
                throw error
            }
            do {
                admin = try ListeningSocket.tcp(host: configuration.adminHost, port: configuration.adminPort, backlog: Self.backlog, role: .admin)
            } catch {
                Self.discard([backends, clients], socketPath: configuration.socketPath)
                throw error
            }
        }

        /// Closes the sockets no channel has taken over yet.
        func discard(socketPath: String) {
            Self.discard([backends, clients, admin], socketPath: socketPath)
        }

        private static func discard(_ sockets: [ListeningSocket], socketPath: String) {
            for socket in sockets { socket.discard() }
            unlink(socketPath)
        }
    }
}
