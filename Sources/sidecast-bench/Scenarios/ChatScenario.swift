import Foundation

/// Clients in rooms of `--room-size` emit `chat` events; the backend re-emits each to the
/// sender's room (client → sidecast → backend → sidecast → clients). Measures the whole round
/// trip from the sender's write to each room member's read.
enum ChatScenario {
    static func run(_ bench: Bench) throws -> BenchResult {
        let options = bench.options
        let (clientCount, roomSize, size) = (options.clients, options.roomSize, options.payloadBytes)
        let sidecar = try bench.startSidecast()
        let backend = try bench.attachBackend(to: sidecar)
        let room: @Sendable (Int) -> String = { "room-\($0 / roomSize)" }
        try bench.joinOnConnect(backend: backend, room: room)
        _ = try bench.connectClients(clientCount, to: sidecar)
        try bench.waitForSids(clientCount)
        try bench.load.run { load in
            let handler = load.backends[backend]
            var roomOfSid: [String: String] = [:]
            for (client, sid) in load.sids.enumerated() { if let sid { roomOfSid[sid] = room(client) } }
            handler.onEvent = { [unowned handler] sid, sent, sequence in
                guard let target = roomOfSid[sid] else { return }
                let payload = Payload.make(sequence: sequence, size: size, sent: sent)
                handler.send(#"{"type":"emit","nsp":"/","event":"chat","args":[\#(payload)],"to":["\#(target)"]}"#)
            }
        }
        // The backend sent every join before this query, and sidecast carries its lines out in order.
        let lastRoomSize = clientCount - (clientCount - 1) / roomSize * roomSize
        try bench.waitForRoom(room(clientCount - 1), count: lastRoomSize, backend: backend)
        Thread.sleep(forTimeInterval: 0.5)

        let messages = max(1, Int(options.rate * options.duration))
        let expected = expectedDeliveries(messages: messages, clients: clientCount, roomSize: roomSize)
        let total = expected.reduce(0, +)
        try bench.load.run { $0.resetCounters() }
        let cpuBefore = try sidecar.sample()
        try bench.load.runFuture { load in
            Pacer.run(on: load.loop, rate: options.rate, count: messages) { sequence in
                let payload = Payload.make(sequence: sequence, size: size)
                load.clients[sequence % clientCount]?.emit(event: "chat", argumentsJSON: "[\(payload)]")
            }
        }
        try bench.waitForDeliveries(total, timeout: 10)
        let cpuAfter = try sidecar.sample()

        let (delivered, missing, latency) = try bench.load.run { load in
            (load.totalReceived, load.missing(expected: expected), load.latencies[0].summary())
        }
        let seconds = cpuAfter.taken.seconds(since: cpuBefore.taken)
        let sidecarCPU = cpuAfter.cpu - cpuBefore.cpu
        let kernelCPU = cpuAfter.systemCPU - cpuBefore.systemCPU
        let wakeUps = cpuAfter.voluntarySwitches - cpuBefore.voluntarySwitches
        return BenchResult(
            scenario: "chat",
            parameters: [
                "clients": String(clientCount), "room_size": String(roomSize), "rate_per_s": describe(options.rate),
                "duration_s": describe(options.duration), "payload_bytes": String(size),
            ],
            figures: [
                Figure("clients", Double(clientCount)),
                Figure("messages/s", Double(messages) / seconds),
                Figure("deliveries/s", Double(delivered) / seconds),
                Figure("sidecar CPU/message", sidecarCPU / Double(messages) * 1e6, "µs"),
                Figure("of which user", (sidecarCPU - kernelCPU) / Double(messages) * 1e6, "µs"),
                Figure("of which kernel", kernelCPU / Double(messages) * 1e6, "µs"),
                Figure("wake-ups/message", Double(wakeUps) / Double(messages)),
                Figure("sidecar CPU/delivery", sidecarCPU / Double(max(delivered, 1)) * 1e6, "µs"),
            ] + latency.figures() + [Figure("missing", Double(missing))],
            notes: try bench.healthNotes()
        )
    }

    /// Events each client should receive: every message sent by a member of its room.
    private static func expectedDeliveries(messages: Int, clients: Int, roomSize: Int) -> [Int] {
        var sent = Array(repeating: messages / clients, count: clients)
        for client in 0..<(messages % clients) { sent[client] += 1 }
        var perRoom: [Int: Int] = [:]
        for client in 0..<clients { perRoom[client / roomSize, default: 0] += sent[client] }
        return (0..<clients).map { perRoom[$0 / roomSize] ?? 0 }
    }
}
