import EngineIO
import Metrics

/// The Socket.IO layer's traffic metrics, made once per server. A broadcast bumps each counter
/// once for all its recipients, so their cost does not grow with the audience.
///
/// "Packets" are Engine.IO message packets (a binary attachment is one of its own); heartbeats
/// and transport framing are not counted. "Deliveries" are Socket.IO packets written to clients.
struct SocketIOMetrics {
    let packetsIn = Counter(label: "sidecast_packets_in_total")
    let bytesIn = Counter(label: "sidecast_bytes_in_total")
    let packetsOut = Counter(label: "sidecast_packets_out_total")
    let bytesOut = Counter(label: "sidecast_bytes_out_total")
    let deliveries = Counter(label: "sidecast_deliveries_total")
    let volatileDrops = Counter(label: "sidecast_drops_total", dimensions: [("cause", "volatile")])
    let slowClientDrops = Counter(label: "sidecast_drops_total", dimensions: [("cause", "slow_client")])
    /// Owed acks forgotten because a socket's client waited for more than `maxAcksOwedToClient`.
    let acksOwedLimit = Counter(label: "sidecast_client_limit_exceeded_total", dimensions: [("limit", "acks_owed")])
    /// CONNECTs refused because a client already waited on `maxPendingConnects` namespaces.
    let pendingConnectsLimit = Counter(
        label: "sidecast_client_limit_exceeded_total", dimensions: [("limit", "pending_connects")]
    )

    /// Recoveries refused because the missed packets would not fit in `maxBufferedBytes`.
    let replayTooLarge = Counter(label: "sidecast_recoveries_total", dimensions: [("result", "replay_too_large")])

    func received(bytes: Int) {
        self.packetsIn.increment()
        self.bytesIn.increment(by: bytes)
    }

    /// One Socket.IO packet, encoded as `messages`, written to `recipients` clients.
    func sent(_ messages: [EngineIOMessage], recipients: Int) {
        guard recipients > 0 else { return }
        var bytes = 0
        for message in messages { bytes += message.byteCount }
        self.deliveries.increment(by: recipients)
        self.packetsOut.increment(by: messages.count * recipients)
        self.bytesOut.increment(by: bytes * recipients)
    }
}
