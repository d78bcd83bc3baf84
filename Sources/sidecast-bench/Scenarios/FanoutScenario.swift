import Foundation

/// C clients in one room; the backend emits R events/s to the room over the bridge. Measures
/// sidecast's CPU per delivery (and its kernel part: each delivery is a `write` of its own),
/// latency from the backend's write to each client's read, and that every client got every event.
enum FanoutScenario {
    static func run(_ bench: Bench) throws -> BenchResult {
        let options = bench.options
        let sidecar = try bench.startSidecast()
        let backend = try bench.attachBackend(to: sidecar)
        try bench.joinOnConnect(backend: backend) { _ in "fanout" }
        let clients = try bench.connectClients(options.clients, to: sidecar)
        try bench.waitForRoom("fanout", count: options.clients, backend: backend)
        Thread.sleep(forTimeInterval: 0.5)

        try bench.load.run { $0.resetCounters() }
        let events = max(1, Int(options.rate * options.duration))
        let expected = events * options.clients
        let cpuBefore = try sidecar.sample()
        let ownBefore = ProcessSampler.ownCPU()
        try bench.emitPaced(backend: backend, rooms: ["fanout"], event: "tick", rate: options.rate, count: events)
        try bench.waitForDeliveries(expected, timeout: 10)
        let cpuAfter = try sidecar.sample()
        let ownCPU = ProcessSampler.ownCPU() - ownBefore

        let (delivered, missing, latency, bytes) = try bench.load.run { load in
            (load.totalReceived, load.missing(expected: events, of: clients), load.latencies[0].summary(), load.bytesReceived)
        }
        let seconds = cpuAfter.taken.seconds(since: cpuBefore.taken)
        let sidecarCPU = cpuAfter.cpu - cpuBefore.cpu
        let perDelivery = sidecarCPU / Double(max(delivered, 1)) * 1e6
        let kernelPerDelivery = (cpuAfter.systemCPU - cpuBefore.systemCPU) / Double(max(delivered, 1)) * 1e6
        let loadPerDelivery = ownCPU / Double(max(delivered, 1)) * 1e6
        var notes = try bench.healthNotes()
        notes.append(
            "load generator floor: reading one event's \(options.clients) frames takes this process about "
                + String(format: "%.2f ms (%.2f µs CPU per delivery)", loadPerDelivery * Double(options.clients) / 1000, loadPerDelivery)
        )
        return BenchResult(
            scenario: "fanout",
            parameters: [
                "clients": String(options.clients), "rate_per_s": describe(options.rate),
                "duration_s": describe(options.duration), "payload_bytes": String(options.payloadBytes),
                "deflate": String(options.deflate),
            ],
            figures: [
                Figure("clients", Double(options.clients)),
                Figure("events", Double(events)),
                Figure("deliveries/s", Double(delivered) / seconds),
                Figure("sidecar CPU/delivery", perDelivery, "µs"),
                Figure("of which kernel", kernelPerDelivery, "µs"),
                Figure("sidecar CPU", sidecarCPU / seconds * 100, "%"),
                Figure("bytes/delivery", Double(bytes) / Double(max(delivered, 1)), "B"),
            ] + latency.figures() + [
                Figure("missing", Double(missing)),
                Figure("load floor", loadPerDelivery * Double(options.clients) / 1000, "ms"),
            ],
            notes: notes
        )
    }
}
