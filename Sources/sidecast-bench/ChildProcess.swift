import Foundation

/// A server this tool starts and stops (sidecast or redis-server), pinned to one core with
/// taskset, its output kept in a log file of the run's temporary folder.
final class ChildProcess {
    let name: String
    let process = Process()
    let log: URL

    var pid: Int32 { process.processIdentifier }

    init(name: String, executable: String, arguments: [String], core: Int?, folder: URL) throws {
        self.name = name
        log = folder.appendingPathComponent("\(name).log")
        guard FileManager.default.createFile(atPath: log.path, contents: nil) else {
            throw BenchError("cannot create \(log.path)")
        }
        let output = try FileHandle(forWritingTo: log)
        // taskset execs the server, so the pid we sample is the server's own.
        if let core, let taskset = ["/usr/bin/taskset", "/bin/taskset"].first(where: FileManager.default.isExecutableFile) {
            process.executableURL = URL(fileURLWithPath: taskset)
            process.arguments = ["-c", String(core), executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        process.standardOutput = output
        process.standardError = output
        do {
            try process.run()
        } catch {
            throw BenchError("cannot start \(executable): \(error)")
        }
    }

    /// Waits until `host:port` accepts TCP connections (and `socketFile` exists, if given).
    func waitUntilListening(host: String, port: Int, socketFile: String? = nil, timeout: Double = 15) throws {
        let deadline = ContinuousClock.now + .seconds(timeout)
        while ContinuousClock.now < deadline {
            guard process.isRunning else { throw BenchError("\(name) exited early; see \(log.path)") }
            if Network.canConnect(host: host, port: port),
                socketFile.map({ FileManager.default.fileExists(atPath: $0) }) ?? true
            {
                return
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw BenchError("\(name) did not listen on \(host):\(port) within \(Int(timeout)) s; see \(log.path)")
    }

    /// SIGTERM, then SIGKILL if it is still running after `grace` seconds.
    func stop(grace: Double = 15) {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = ContinuousClock.now + .seconds(grace)
        while process.isRunning, ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Blocking socket helpers for setup, outside any event loop.
enum Network {
    static func canConnect(host: String, port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = inetAddress(host: host, port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    /// A TCP port nobody listens on right now, as the kernel picks one for port 0.
    static func freePort(host: String) throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket() failed: errno \(errno)") }
        defer { close(fd) }
        var address = inetAddress(host: host, port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else { throw BenchError("cannot find a free port on \(host): errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// The body of an HTTP/1.0 GET of `path`, read to the end of the connection.
    static func get(host: String, port: Int, path: String) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket() failed: errno \(errno)") }
        defer { close(fd) }
        var address = inetAddress(host: host, port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard connected else { throw BenchError("cannot connect to \(host):\(port): errno \(errno)") }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: \(host)\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else {
            throw BenchError("cannot send to \(host):\(port): errno \(errno)")
        }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            response += chunk[..<count]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard text.hasPrefix("HTTP/1."), text.split(separator: " ", maxSplits: 2).dropFirst().first == "200",
            let body = text.range(of: "\r\n\r\n")
        else { throw BenchError("GET \(path) from \(host):\(port) failed: \(text.prefix(80))") }
        return String(text[body.upperBound...])
    }

    private static func inetAddress(host: String, port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        return address
    }
}
