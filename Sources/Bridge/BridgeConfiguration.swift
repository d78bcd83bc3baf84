import NIOCore

/// Settings of the backend bridge (PROTOCOL.md §11 names the limits).
public struct BridgeConfiguration: Sendable {
    /// This node's id, sent in `welcome` (the cluster adapter's uid).
    public var nodeID: String
    /// Namespaces that exist even while no backend serves them (`--namespace`).
    public var namespaces: Set<String> = ["/"]
    /// Namespaces that require authorization from the start (`--authorize`), whether or not a
    /// backend said `authorize:true` yet; they exist like `namespaces` (PROTOCOL.md §6).
    public var authorizedNamespaces: Set<String> = []
    /// How long a group without backends keeps its queue (`--backend-grace`).
    public var backendGrace: TimeAmount = .seconds(10)
    public var helloTimeout: TimeAmount = .seconds(10)
    public var authorizationTimeout: TimeAmount = .seconds(10)
    /// How long another node waits for a `serverAck` (`--requests-timeout`).
    public var requestsTimeout: TimeAmount = .seconds(5)
    public var maxLineLength = 16 * 1024 * 1024
    /// Messages a group in grace may queue.
    public var graceQueueLimit = 10_000
    /// The shortest time between two warnings about the same problem of one namespace (events
    /// dropped without a backend, clients refused without an authorizer).
    public var warningInterval: TimeAmount = .seconds(10)

    public init(nodeID: String) {
        self.nodeID = nodeID
    }
}
