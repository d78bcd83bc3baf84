import Adapter
import Bridge
import EngineIO
import Logging
import NIOCore
import Redis
import SocketIO

/// The object graph of one running node, built and used on its single event loop.
///
/// Engine.IO hands sessions to Socket.IO, Socket.IO hands activity to the bridge, the bridge
/// acts through the adapter: each layer only knows the one below it through a protocol.
final class SidecastRuntime {
    let engineIO: EngineIOServer
    let socketIO: SocketIOServer
    let adapter: Adapter
    let bridge: Bridge
    /// The cluster link; `nil` on a standalone node.
    let redis: RedisClient?

    init(configuration: SidecastConfiguration, nodeID: String, eventLoop: EventLoop, logger: Logger) throws {
        var engineConfiguration = EngineIOConfiguration()
        engineConfiguration.path = configuration.path
        engineConfiguration.pingInterval = configuration.pingInterval
        engineConfiguration.pingTimeout = configuration.pingTimeout
        engineConfiguration.maxPayload = configuration.maxPayload
        engineConfiguration.corsOrigins = configuration.corsOrigins
        engineIO = EngineIOServer(configuration: engineConfiguration, eventLoop: eventLoop, logger: logger)

        var socketConfiguration = SocketIOServerConfiguration()
        socketConfiguration.connectTimeout = configuration.connectTimeout
        socketConfiguration.maxBufferedBytes = configuration.maxBuffered
        socketIO = SocketIOServer(configuration: socketConfiguration, eventLoop: eventLoop, logger: logger)
        engineIO.delegate = socketIO

        if let url = configuration.redisURL {
            let redisURL: RedisURL
            do {
                redisURL = try RedisURL(url)
            } catch {
                throw SidecastStartError(description: "--redis \(url): \(error)")
            }
            let redis = RedisClient(configuration: RedisClientConfiguration(url: redisURL), eventLoop: eventLoop, logger: logger)
            self.redis = redis
            adapter = RedisAdapter(
                server: socketIO,
                redis: redis,
                uid: nodeID,
                prefix: configuration.redisPrefix,
                requestsTimeout: configuration.requestsTimeout,
                logger: logger
            )
        } else {
            redis = nil
            adapter = LocalAdapter(server: socketIO)
        }

        var bridgeConfiguration = BridgeConfiguration(nodeID: nodeID)
        bridgeConfiguration.namespaces = configuration.namespaces
        bridgeConfiguration.backendGrace = configuration.backendGrace
        bridgeConfiguration.requestsTimeout = configuration.requestsTimeout
        bridge = Bridge(configuration: bridgeConfiguration, server: socketIO, adapter: adapter, logger: logger)
        redis?.start()
    }

    /// Closes every client with "server shutting down", tells the backends, then lets the
    /// Redis outbox drain.
    func shutdown() -> EventLoopFuture<Void> {
        socketIO.closeAll(reason: .serverShuttingDown)
        engineIO.closeAll(reason: .serverShuttingDown)
        bridge.shutdown()
        return redis?.shutdown() ?? engineIO.eventLoop.makeSucceededVoidFuture()
    }
}
