import Foundation
import NIOCore

/// The load generator's state: its clients, backends and what they measured. It lives on the
/// one event loop of this process (like the clients it serves); the main thread reaches it
/// only through `LoadHandle`.
final class Load: ClientDelegate {
    let loop: EventLoop
    /// Connected clients by index; nil until connected and after closing.
    private(set) var clients: [SocketIOClientHandler?]
    private(set) var connected = 0
    private(set) var failed = 0
    /// Clients that closed after having connected: should stay 0 during a run.
    private(set) var dropped = 0
    private(set) var failures: [String: Int] = [:]
    /// Socket ids by client index, as a backend learned them from `connect` lines.
    var sids: [String?]
    /// EVENT packets received per client since the last `resetCounters()`.
    private(set) var received: [Int]
    /// Latencies per cluster node the receiving client is connected to.
    private(set) var latencies: [LatencyRecorder] = [LatencyRecorder(), LatencyRecorder()]
    var recordsLatency = true
    /// Whether clients offer permessage-deflate (`--deflate`).
    let offersDeflate: Bool
    /// Bytes of text frame payloads received, compressed or not, since the last `resetCounters()`.
    private(set) var bytesReceived = 0
    var backends: [BackendHandler] = []
    /// Connection state recovery: each client's first sid, its pid and the offset of the last
    /// event it got; with `recovering`, a client reconnects with `{pid, offset}` in its auth.
    private(set) var recovery: RecoveryTracking?

    struct RecoveryTracking {
        var firstSids: [String?]
        var pids: [String?]
        var offsets: [String?]
        var recovering = false
        /// Clients that came back with their first sid.
        var recovered = 0
    }

    func trackRecovery() {
        recovery = RecoveryTracking(firstSids: sids, pids: sids, offsets: sids)
    }

    /// Every client reconnects with its pid and offset from now on; the closes that came
    /// before were the scenario's own, not drops.
    func startRecovering() {
        recovery?.recovering = true
        dropped = 0
    }

    init(loop: EventLoop, clientCapacity: Int, offersDeflate: Bool = false) {
        self.loop = loop
        self.offersDeflate = offersDeflate
        clients = Array(repeating: nil, count: clientCapacity)
        received = Array(repeating: 0, count: clientCapacity)
        sids = Array(repeating: nil, count: clientCapacity)
    }

    var totalReceived: Int { received.reduce(0, +) }

    func resetCounters() {
        for index in received.indices { received[index] = 0 }
        bytesReceived = 0
        for node in latencies.indices { latencies[node].removeAll() }
    }

    /// Deliveries missing when each client in `indices` should have received `expected` events.
    func missing(expected: Int, of indices: Range<Int>) -> Int {
        indices.reduce(0) { $0 + max(0, expected - received[$1]) }
    }

    /// Deliveries missing when client `index` should have received `expected[index]` events.
    func missing(expected: [Int]) -> Int {
        zip(expected, received).reduce(0) { $0 + max(0, $1.0 - $1.1) }
    }

    func closeAllClients() {
        for client in clients { client?.close() }
    }

    func clientConnected(_ client: SocketIOClientHandler, sid: String, pid: String?) {
        clients[client.index] = client
        connected += 1
        guard var tracking = recovery else { return }
        if tracking.recovering {
            if tracking.firstSids[client.index] == sid { tracking.recovered += 1 }
        } else {
            tracking.firstSids[client.index] = sid
        }
        tracking.pids[client.index] = pid
        recovery = tracking
    }

    func connectPacket(for index: Int) -> String {
        guard let tracking = recovery, tracking.recovering, let pid = tracking.pids[index],
              let offset = tracking.offsets[index]
        else { return "40" }
        return "40{\"pid\":\"\(pid)\",\"offset\":\"\(offset)\"}"
    }

    func clientReceivedEvent(_ client: SocketIOClientHandler, packet: ByteBuffer) {
        received[client.index] += 1
        if recovery != nil, let offset = JSONScan.lastString(in: packet) {
            recovery?.offsets[client.index] = offset
        }
        if recordsLatency, let (sent, _) = Payload.read(packet) {
            let now = NIODeadline.now().uptimeNanoseconds
            latencies[client.node].record(now > sent ? now - sent : 0)
        }
    }

    func clientReceivedBytes(_ count: Int) {
        bytesReceived += count
    }

    func clientFailed(_ index: Int, reason: String) {
        failed += 1
        let kind = String(reason.prefix(80))
        failures[kind, default: 0] += 1
    }

    func clientClosed(_ client: SocketIOClientHandler) {
        clients[client.index] = nil
        connected -= 1
        dropped += 1
    }
}

/// Calls `body(0)`, `body(1)`, … `count` times at `rate` calls per second on `loop`, catching
/// up in bursts when the loop was busy, so the average rate holds.
final class Pacer {
    private let loop: EventLoop
    private let rate: Double
    private let count: Int
    private let body: (Int) -> Void
    private let start = NIODeadline.now()
    private let done: EventLoopPromise<Void>
    private var calls = 0

    /// Ticks every 1 ms up to every 10 ms, so slow rates are not late by a whole period.
    private var tick: TimeAmount {
        .nanoseconds(Int64(min(max(1e9 / rate, 1e6), 1e7)))
    }

    static func run(on loop: EventLoop, rate: Double, count: Int, _ body: @escaping (Int) -> Void) -> EventLoopFuture<Void> {
        let pacer = Pacer(loop: loop, rate: rate, count: count, body: body)
        pacer.step()
        return pacer.done.futureResult
    }

    private init(loop: EventLoop, rate: Double, count: Int, body: @escaping (Int) -> Void) {
        self.loop = loop
        self.rate = rate
        self.count = count
        self.body = body
        done = loop.makePromise()
    }

    private func step() {
        let elapsed = Double((NIODeadline.now() - start).nanoseconds) / 1e9
        let due = min(count, Int(elapsed * rate) + 1)
        while calls < due {
            body(calls)
            calls += 1
        }
        if calls == count {
            done.succeed()
        } else {
            loop.assumeIsolated().scheduleTask(in: tick) { self.step() }
        }
    }
}

/// The main thread's handle on the load event loop: every look at `Load` goes through here.
struct LoadHandle: Sendable {
    let bound: NIOLoopBound<Load>

    var loop: EventLoop { bound.eventLoop }

    /// Runs `body` on the load loop and waits for its result.
    func run<T: Sendable>(_ body: @escaping @Sendable (Load) throws -> T) throws -> T {
        try loop.submit { try body(bound.value) }.wait()
    }

    /// Runs `body` on the load loop and waits for the future it returns.
    func runFuture<T: Sendable>(_ body: @escaping @Sendable (Load) -> EventLoopFuture<T>) throws -> T {
        try loop.flatSubmit { body(bound.value) }.wait()
    }

    /// Polls `condition` every 20 ms until it holds (true) or `timeout` seconds pass (false).
    func wait(timeout: Double, until condition: @escaping @Sendable (Load) -> Bool) throws -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        while ContinuousClock.now < deadline {
            if try run(condition) { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return try run(condition)
    }
}
