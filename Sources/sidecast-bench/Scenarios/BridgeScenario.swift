import Foundation
import NIOCore

/// How many `emit` lines backend connections can push (one, or `--backends` at once): each
/// backend writes as fast as sidecast reads, first to single sockets (round robin), then to one
/// room holding every client, while the clients drain. A line counts as accepted once a later
/// request's reply comes back (sidecast carries out a backend's lines in order).
enum BridgeScenario {
    struct Phase {
        var acceptedPerSecond: Double
        var deliveriesPerSecond: Double
        var cpuPerEmit: Double
        /// This process's CPU use: near 100 % means the load generator, not sidecast, set the pace.
        var loadCPU: Double
        var missing: Int
    }

    static func run(_ bench: Bench) throws -> BenchResult {
        let options = bench.options
        let sidecar = try bench.startSidecast()
        // The backends form one group: each client's connect reaches one of them, which joins it.
        let backends = try (0..<options.backends).map { _ in try bench.attachBackend(to: sidecar) }
        for backend in backends {
            try bench.joinOnConnect(backend: backend) { _ in "bridge" }
        }
        _ = try bench.connectClients(options.clients, to: sidecar)
        try bench.waitForSids(options.clients)
        try bench.waitForRoom("bridge", count: options.clients, backend: backends[0])
        try bench.load.run { $0.recordsLatency = false }

        let sids = try bench.load.run { $0.sids.compactMap { $0 } }
        let single = try phase(bench, sidecar: sidecar, backends: backends, fanout: 1) { sids[$0 % sids.count] }
        let room = try phase(bench, sidecar: sidecar, backends: backends, fanout: options.clients) { _ in "bridge" }
        return BenchResult(
            scenario: "bridge",
            parameters: [
                "clients": String(options.clients), "duration_s": describe(options.duration),
                "payload_bytes": String(options.payloadBytes), "backends": String(options.backends),
            ],
            figures: [
                Figure("clients", Double(options.clients)),
                Figure("to-socket emits/s", single.acceptedPerSecond),
                Figure("to-socket CPU/emit", single.cpuPerEmit, "µs"),
                Figure("to-socket load CPU", single.loadCPU, "%"),
                Figure("to-room emits/s", room.acceptedPerSecond),
                Figure("to-room deliveries/s", room.deliveriesPerSecond),
                Figure("to-room CPU/emit", room.cpuPerEmit, "µs"),
                Figure("to-room load CPU", room.loadCPU, "%"),
                Figure("missing", Double(single.missing + room.missing)),
            ],
            notes: try bench.healthNotes()
        )
    }

    /// Floods emits to `target(n)` from every backend for the run's duration; `fanout` is how many
    /// clients each reaches.
    private static func phase(
        _ bench: Bench,
        sidecar: Sidecar,
        backends: [Int],
        fanout: Int,
        target: @escaping @Sendable (Int) -> String
    ) throws -> Phase {
        let (size, duration) = (bench.options.payloadBytes, bench.options.duration)
        try bench.load.run { $0.resetCounters() }
        let cpuBefore = try sidecar.sample()
        let ownBefore = ProcessSampler.ownCPU()
        let emits = try bench.load.runFuture { load in
            let deadline = NIODeadline.now() + .nanoseconds(Int64(duration * 1e9))
            let floods = backends.map { backend in
                let handler = load.backends[backend]
                return handler.startFlood(until: deadline) { sequence in
                    let payload = Payload.make(sequence: sequence, size: size)
                    return #"{"type":"emit","nsp":"/","event":"flood","args":[\#(payload)],"to":["\#(target(sequence))"]}"#
                }.assumeIsolated().flatMap { emits in
                    handler.request(#"{"type":"count","nsp":"/"}"#).map { _ in emits }
                }.nonisolated()
            }
            return EventLoopFuture.reduce(0, floods, on: load.loop, +)
        }
        let accepted = ContinuousClock.now
        let expected = emits * fanout
        let drained = try bench.waitForDeliveries(expected, timeout: 30)
        let cpuAfter = try sidecar.sample()
        let ownCPU = ProcessSampler.ownCPU() - ownBefore
        let delivered = try bench.load.run { $0.totalReceived }
        return Phase(
            acceptedPerSecond: Double(emits) / accepted.seconds(since: cpuBefore.taken),
            deliveriesPerSecond: Double(delivered) / drained.seconds(since: cpuBefore.taken),
            cpuPerEmit: (cpuAfter.cpu - cpuBefore.cpu) / Double(max(emits, 1)) * 1e6,
            loadCPU: ownCPU / cpuAfter.taken.seconds(since: cpuBefore.taken) * 100,
            missing: max(0, expected - delivered)
        )
    }
}
