import Foundation

/// N connected WebSocket clients that do nothing: what each costs sidecast in memory, and what
/// keeping them alive (heartbeats) costs in CPU. With `--first-message`, each client first
/// sends one event of that size: what a connection keeps after it once carried a large message.
enum IdleScenario {
    static func run(_ bench: Bench) throws -> BenchResult {
        let options = bench.options
        let sidecar = try bench.startSidecast()
        let backend = try bench.attachBackend(to: sidecar)
        Thread.sleep(forTimeInterval: 0.5)
        let before = try sidecar.sample()

        let rampStart = ContinuousClock.now
        _ = try bench.connectClients(options.clients, to: sidecar)
        let rampSeconds = ContinuousClock.now.seconds(since: rampStart)
        // How the ramp spread over sidecast's loops, as its /metrics counts them.
        let perShard = try sidecar.clientsPerShard()
        if options.firstMessageBytes > 0 {
            let payload = Payload.make(sequence: 0, size: options.firstMessageBytes)
            try bench.load.run { load in
                for client in load.clients { client?.emit(event: "first", argumentsJSON: "[\(payload)]") }
            }
            let count = options.clients
            guard try bench.load.wait(timeout: 60, until: { $0.backends[backend].eventsReceived >= count }) else {
                throw BenchError("the backend did not get every client's first message within 60 s")
            }
        }
        // Let sidecast finish writing the connect lines to the backend before reading its size.
        Thread.sleep(forTimeInterval: 2)
        let connected = try sidecar.sample()
        Thread.sleep(forTimeInterval: options.duration)
        let end = try sidecar.sample()

        let n = Double(options.clients)
        let perConnection = Double(connected.rss - before.rss) / n
        let idleCPU = (end.cpu - connected.cpu) / end.taken.seconds(since: connected.taken)
        return BenchResult(
            scenario: "idle",
            parameters: [
                "clients": String(options.clients), "window_s": describe(options.duration),
                "ping_interval_ms": String(options.pingInterval), "ramp_per_s": describe(options.ramp),
                "first_message_bytes": String(options.firstMessageBytes),
            ],
            figures: [
                Figure("clients", n),
                Figure("connect rate", n / rampSeconds, "conn/s"),
                Figure("RSS before", Double(before.rss) / 1_048_576, "MiB"),
                Figure("RSS after", Double(connected.rss) / 1_048_576, "MiB"),
                Figure("RSS/conn", perConnection / 1024, "KiB"),
                Figure("idle CPU", idleCPU * 100, "%"),
                Figure("idle CPU/conn", idleCPU / n * 1e6, "µs/s"),
            ] + shardBalance(perShard),
            notes: try bench.healthNotes() + (perShard.map { ["clients per shard: " + $0.map { String(Int($0)) }.joined(separator: " ")] } ?? [])
        )
    }

    /// The busiest and the idlest shard's clients over the mean (1.00 both: even).
    private static func shardBalance(_ perShard: [Double]?) -> [Figure] {
        guard let perShard, !perShard.isEmpty else { return [] }
        let mean = perShard.reduce(0, +) / Double(perShard.count)
        guard mean > 0 else { return [] }
        return [
            Figure("shards", Double(perShard.count)),
            Figure("shard max/mean", (perShard.max() ?? 0) / mean),
            Figure("shard min/mean", (perShard.min() ?? 0) / mean),
        ]
    }
}
