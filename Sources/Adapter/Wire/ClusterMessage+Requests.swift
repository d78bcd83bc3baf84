/// What a cluster message read from Redis is to the adapter: a request of another node, the
/// answer to one of this node's requests, or one of the heartbeat adapter's node messages.
enum ClusterInbound {
    case request(ClusterRequest)
    case response(ClusterResponse)
    case initialHeartbeat
    case heartbeat
    case adapterClose
}

/// socket.io-adapter's message format and the adapter's `ClusterRequest`/`ClusterResponse`
/// name the same messages; the transports that speak the format translate through these, so the
/// mapping is written once.
extension ClusterMessage.Body {
    /// The message carrying `request`; nil for `allRooms`, which the format has no message for
    /// (the adapter asks `carriesAllRoomsRequests` first).
    init?(_ request: ClusterRequest) {
        switch request {
        case .broadcast(let packet, let options, let requestID):
            self = .broadcast(packet: packet, options: options, requestId: requestID)
        case .socketsJoin(let options, let rooms):
            self = .socketsJoin(options: options, rooms: rooms)
        case .socketsLeave(let options, let rooms):
            self = .socketsLeave(options: options, rooms: rooms)
        case .disconnectSockets(let options, let close):
            self = .disconnectSockets(options: options, close: close)
        case .fetchSockets(let options, let requestID):
            self = .fetchSockets(options: options, requestId: requestID)
        case .serverSideEmit(let requestID, let packet):
            self = .serverSideEmit(requestId: requestID, packet: packet)
        case .allRooms:
            return nil
        }
    }

    /// The message carrying `response`; nil for `allRooms`, as for its request.
    init?(_ response: ClusterResponse) {
        switch response {
        case .fetchSockets(let id, let sockets): self = .fetchSocketsResponse(requestId: id, sockets: sockets)
        case .serverSideEmit(let id, let packet): self = .serverSideEmitResponse(requestId: id, packet: packet)
        case .broadcastClientCount(let id, let count): self = .broadcastClientCount(requestId: id, clientCount: count)
        case .broadcastAck(let id, let packet): self = .broadcastAck(requestId: id, packet: packet)
        case .allRooms: return nil
        }
    }

    var inbound: ClusterInbound {
        switch self {
        case .initialHeartbeat: .initialHeartbeat
        case .heartbeat: .heartbeat
        case .adapterClose: .adapterClose
        case .broadcast(let packet, let options, let requestID):
            .request(.broadcast(packet: packet, options: options, requestId: requestID))
        case .socketsJoin(let options, let rooms): .request(.socketsJoin(options: options, rooms: rooms))
        case .socketsLeave(let options, let rooms): .request(.socketsLeave(options: options, rooms: rooms))
        case .disconnectSockets(let options, let close): .request(.disconnectSockets(options: options, close: close))
        case .fetchSockets(let options, let requestID): .request(.fetchSockets(options: options, requestId: requestID))
        case .serverSideEmit(let requestID, let packet): .request(.serverSideEmit(requestId: requestID, packet: packet))
        case .fetchSocketsResponse(let id, let sockets): .response(.fetchSockets(requestId: id, sockets: sockets))
        case .serverSideEmitResponse(let id, let packet): .response(.serverSideEmit(requestId: id, packet: packet))
        case .broadcastClientCount(let id, let count): .response(.broadcastClientCount(requestId: id, clientCount: count))
        case .broadcastAck(let id, let packet): .response(.broadcastAck(requestId: id, packet: packet))
        }
    }
}
