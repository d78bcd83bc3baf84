import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Two sidecast nodes with `--relay-sessions` sharing a redis-server. Each client opens a
/// polling session on node A, then posts a noop packet ("6", answered "ok" at once) in a closed
/// loop: for half the time to A itself (direct), then to B, which relays each POST to A over
/// Redis and the answer back (relayed). Compares the latency and the CPU per request of sidecast
/// and Redis in the two phases: what relaying adds to one polling request.
enum RelayScenario {
    static func run(_ bench: Bench) throws -> BenchResult {
        let options = bench.options
        let redis = try bench.startRedis()
        let flags = ["--relay-sessions"]
        let nodeA = try bench.startSidecast(name: "sidecast-a", redisPort: redis.port, extraArguments: flags)
        let nodeB = try bench.startSidecast(name: "sidecast-b", redisPort: redis.port, extraArguments: flags)
        let sids = try (0..<options.clients).map { _ in try PollingConnection(host: nodeA.host, port: nodeA.port).handshake() }
        // Both nodes subscribe their relay channel as their Redis link comes up: wait for B's
        // first relayed answer before measuring.
        let warmup = try PollingConnection(host: nodeB.host, port: nodeB.port)
        let deadline = ContinuousClock.now + .seconds(15)
        while try warmup.postNoop(sid: sids[0]) != 200 {
            guard ContinuousClock.now < deadline else { throw BenchError("node B did not relay within 15 s") }
            Thread.sleep(forTimeInterval: 0.1)
        }
        let processes = [nodeA.process.pid, nodeB.process.pid, redis.process.pid]
        var figures: [Figure] = []
        var perRequest: [String: Double] = [:]
        var p50: [String: Double] = [:]
        for (phase, node) in [("direct", nodeA), ("relayed", nodeB)] {
            let before = try processes.map { try ProcessSampler.sample(pid: $0) }
            let latencies = try closedLoop(sids: sids, node: node, seconds: options.duration)
            let after = try processes.map { try ProcessSampler.sample(pid: $0) }
            let cpu = zip(before, after).map { $1.cpu - $0.cpu }
            let requests = Double(latencies.count)
            let summary = latencies
            let cpuPerRequest = cpu.reduce(0, +) / requests * 1e6
            figures += [Figure("\(phase) requests/s", requests / options.duration)] + summary.figures("\(phase) ")
            figures += zip(["A", "B", "redis"], cpu).map { Figure("\(phase) CPU \($0)/request", $1 / requests * 1e6, "µs") }
            perRequest[phase] = cpuPerRequest
            p50[phase] = summary.p50
        }
        figures += [
            Figure("relay adds CPU/request", (perRequest["relayed"] ?? .nan) - (perRequest["direct"] ?? .nan), "µs"),
            Figure("relay adds p50", (p50["relayed"] ?? .nan) - (p50["direct"] ?? .nan), "ms"),
        ]
        return BenchResult(
            scenario: "relay",
            parameters: ["clients": String(options.clients), "duration_s": describe(options.duration)],
            figures: figures,
            notes: []
        )
    }

    /// Every session posts noops back to back on its own connection for `seconds`; the latencies.
    private static func closedLoop(sids: [String], node: Sidecar, seconds: Double) throws -> LatencySummary {
        let results = Mutex<(samples: [UInt64], failure: String?)>(([], nil))
        let group = DispatchGroup()
        let host = node.host, port = node.port
        for sid in sids {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                var samples: [UInt64] = []
                do {
                    let connection = try PollingConnection(host: host, port: port)
                    let end = ContinuousClock.now + .seconds(seconds)
                    while ContinuousClock.now < end {
                        let start = ContinuousClock.now
                        let status = try connection.postNoop(sid: sid)
                        guard status == 200 else { throw BenchError("a POST was answered \(status)") }
                        let elapsed = ContinuousClock.now - start
                        samples.append(UInt64(elapsed.components.seconds) * 1_000_000_000 + UInt64(elapsed.components.attoseconds / 1_000_000_000))
                    }
                } catch {
                    results.withLock { $0.failure = "\(error)" }
                }
                results.withLock { $0.samples += samples }
            }
        }
        group.wait()
        let (samples, failure) = results.withLock { $0 }
        if let failure { throw BenchError(failure) }
        return LatencySummary(samples)
    }
}

/// One keep-alive HTTP/1.1 connection speaking Engine.IO long-polling, blocking: the least a
/// client does per request, so the figures are sidecast's.
private final class PollingConnection {
    private let descriptor: Int32
    private var buffer: [UInt8] = []

    init(host: String, port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw BenchError("socket: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(descriptor)
            throw BenchError("connect to \(host):\(port): errno \(errno)")
        }
    }

    deinit { close(descriptor) }

    /// Opens a polling session; its sid.
    func handshake() throws -> String {
        let (status, body) = try exchange("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: bench\r\n\r\n")
        guard status == 200, let range = body.range(of: #""sid":""#), let end = body[range.upperBound...].firstIndex(of: "\"") else {
            throw BenchError("handshake answered \(status): \(body)")
        }
        return String(body[range.upperBound..<end])
    }

    /// POSTs a noop packet to session `sid`; the status.
    func postNoop(sid: String) throws -> Int {
        try exchange("POST /socket.io/?EIO=4&transport=polling&sid=\(sid) HTTP/1.1\r\nHost: bench\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\n6").status
    }

    private func exchange(_ request: String) throws -> (status: Int, body: String) {
        var bytes = Array(request.utf8)
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeMutableBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { throw BenchError("send: errno \(errno)") }
            sent += count
        }
        bytes.removeAll()
        while true {
            if let headerEnd = find([13, 10, 13, 10]) {
                let head = String(decoding: buffer[..<headerEnd], as: UTF8.self)
                let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                if buffer.count >= headerEnd + 4 + length {
                    let body = String(decoding: buffer[(headerEnd + 4)..<(headerEnd + 4 + length)], as: UTF8.self)
                    buffer.removeFirst(headerEnd + 4 + length)
                    let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
                    return (status, body)
                }
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { throw BenchError("connection closed by sidecast") }
            buffer += chunk[..<count]
        }
    }

    private func find(_ pattern: [UInt8]) -> Int? {
        guard buffer.count >= pattern.count else { return nil }
        for start in 0...(buffer.count - pattern.count) where buffer[start..<start + pattern.count].elementsEqual(pattern) {
            return start
        }
        return nil
    }
}
