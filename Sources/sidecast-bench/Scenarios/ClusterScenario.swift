import Foundation

/// Two sidecast nodes sharing a real redis-server, half the clients on each, all in one room;
/// a backend of node A emits to the room at a set rate. Compares the latency of A's own clients
/// (local) with B's (through Redis).
enum ClusterScenario {
    static func run(_ bench: Bench) throws -> BenchResult {
        let options = bench.options
        let redis = try bench.startRedis()
        let nodeA = try bench.startSidecast(name: "sidecast-a", redisPort: redis.port)
        let nodeB = try bench.startSidecast(name: "sidecast-b", redisPort: redis.port)
        let backendA = try bench.attachBackend(to: nodeA)
        let backendB = try bench.attachBackend(to: nodeB)
        for backend in [backendA, backendB] {
            try bench.joinOnConnect(backend: backend) { _ in "cluster" }
        }
        let remoteCount = options.clients / 2
        let local = try bench.connectClients(options.clients - remoteCount, node: 0, to: nodeA)
        let remote = try bench.connectClients(remoteCount, node: 1, to: nodeB)
        try bench.waitForSids(options.clients)
        try bench.waitForRoom("cluster", count: options.clients, backend: backendA)
        Thread.sleep(forTimeInterval: 0.5)

        try bench.load.run { $0.resetCounters() }
        let events = max(1, Int(options.rate * options.duration))
        let samplesBefore = try [nodeA.sample(), nodeB.sample(), ProcessSampler.sample(pid: redis.process.pid)]
        try bench.emitPaced(backend: backendA, rooms: ["cluster"], event: "tick", rate: options.rate, count: events)
        try bench.waitForDeliveries(events * options.clients, timeout: 15)
        let samplesAfter = try [nodeA.sample(), nodeB.sample(), ProcessSampler.sample(pid: redis.process.pid)]

        let (missingLocal, missingRemote, localLatency, remoteLatency) = try bench.load.run { load in
            (
                load.missing(expected: events, of: local), load.missing(expected: events, of: remote),
                load.latencies[0].summary(), load.latencies[1].summary()
            )
        }
        let seconds = samplesAfter[0].taken.seconds(since: samplesBefore[0].taken)
        let cpu = zip(samplesBefore, samplesAfter).map { ($1.cpu - $0.cpu) / seconds * 100 }
        return BenchResult(
            scenario: "cluster",
            parameters: [
                "clients": String(options.clients), "rate_per_s": describe(options.rate),
                "duration_s": describe(options.duration), "payload_bytes": String(options.payloadBytes),
                "redis": options.redisStreams ? "stream" : "pub/sub",
            ],
            figures: [
                Figure("clients A+B", Double(options.clients)),
                Figure("emits/s", Double(events) / seconds),
            ] + localLatency.figures("local ") + remoteLatency.figures("remote ") + [
                Figure("p99 remote-local", remoteLatency.p99 - localLatency.p99, "ms"),
                Figure("missing local", Double(missingLocal)),
                Figure("missing remote", Double(missingRemote)),
                Figure("CPU A", cpu[0], "%"),
                Figure("CPU B", cpu[1], "%"),
                Figure("CPU redis", cpu[2], "%"),
            ],
            notes: try bench.healthNotes()
        )
    }
}
