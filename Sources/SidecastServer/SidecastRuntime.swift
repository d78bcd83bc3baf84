import Adapter
import Bridge
import EngineIO
import Logging
import NIOCore
import SocketIO

/// The object graph of one running node, built and used on its single event loop.
///
/// Engine.IO hands sessions to Socket.IO, Socket.IO hands activity to the bridge, the bridge
/// acts through the adapter: each layer only knows the one below it through a protocol.
final class SidecastRuntime {
    let engineIO: EngineIOServer
    let socketIO: SocketIOServer
    let adapter: LocalAdapter
    let bridge: Bridge

    init(configuration: SidecastConfiguration, nodeID: String, eventLoop: EventLoop, logger: Logger) {
        var engineConfiguration = EngineIOConfiguration()
        engineConfiguration.path = configuration.path
        engineConfiguration.pingInterval = configuration.pingInterval
        engineConfiguration.pingTimeout = configuration.pingTimeout
        engineConfiguration.maxPayload = configuration.maxPayload
        engineConfiguration.corsOrigins = configuration.corsOrigins
        engineIO = EngineIOServer(configuration: engineConfiguration, eventLoop: eventLoop, logger: logger)

        var socketConfiguration = SocketIOServerConfiguration()
        socketConfiguration.connectTimeout = configuration.connectTimeout
        socketIO = SocketIOServer(configuration: socketConfiguration, eventLoop: eventLoop, logger: logger)
        engineIO.delegate = socketIO

        adapter = LocalAdapter(server: socketIO)

        var bridgeConfiguration = BridgeConfiguration(nodeID: nodeID)
        bridgeConfiguration.namespaces = configuration.namespaces
        bridgeConfiguration.backendGrace = configuration.backendGrace
        bridgeConfiguration.requestsTimeout = configuration.requestsTimeout
        bridge = Bridge(configuration: bridgeConfiguration, server: socketIO, adapter: adapter, logger: logger)
    }

    /// Closes every client with "server shutting down", then tells the backends.
    func shutdown() {
        socketIO.closeAll(reason: .serverShuttingDown)
        engineIO.closeAll(reason: .serverShuttingDown)
        bridge.shutdown()
    }
}
