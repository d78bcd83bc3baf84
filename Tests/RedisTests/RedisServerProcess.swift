import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A real redis-server for one test, on a free loopback port (and optionally a Unix socket) in
/// its own temporary directory, without persistence, logging to `redis.log` there. Killed with
/// SIGKILL by ``kill()``. With `sentinelConfig` it runs as a Sentinel with that configuration.
final class RedisServerProcess {
    let port: Int
    let directory: URL
    let arguments: [String]
    /// Arguments redis-cli needs to reach and log in to this server.
    let cliArguments: [String]
    private var process: Process?

    var unixSocketPath: String { self.directory.appendingPathComponent("redis.sock").path }

    init(
        password: String? = nil,
        unixSocket: Bool = false,
        port: Int? = nil,
        extraArguments: [String] = [],
        sentinelConfig: String? = nil
    ) throws {
        self.port = try port ?? RedisServerProcess.freePort()
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("redis-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        var arguments: [String] = []
        if let sentinelConfig {
            let file = self.directory.appendingPathComponent("sentinel.conf")
            try sentinelConfig.write(to: file, atomically: true, encoding: .utf8)
            arguments += [file.path, "--sentinel"]
        } else {
            arguments += ["--save", "", "--appendonly", "no"]
        }
        arguments += [
            "--port", "\(self.port)", "--bind", "127.0.0.1", "--dir", self.directory.path, "--daemonize", "no",
            "--loglevel", "notice", "--logfile", self.directory.appendingPathComponent("redis.log").path,
        ] + extraArguments
        var cliArguments = ["-p", "\(self.port)"]
        if let password {
            arguments += ["--requirepass", password]
            cliArguments += ["--no-auth-warning", "-a", password]
        }
        if unixSocket {
            arguments += ["--unixsocket", self.directory.appendingPathComponent("redis.sock").path, "--unixsocketperm", "700"]
        }
        self.arguments = arguments
        self.cliArguments = cliArguments
    }

    deinit {
        self.kill()
        try? FileManager.default.removeItem(at: self.directory)
    }

    /// Starts the server and waits until it answers PING.
    func start() throws {
        precondition(self.process == nil, "redis-server already running")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        process.arguments = self.arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if (try? self.cli("PING")) == "PONG" { return }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw RedisServerError("redis-server on port \(self.port) did not start")
    }

    /// SIGKILL, as a crash or an OOM kill would do, and waits for the process to be gone.
    func kill() {
        guard let process = self.process else { return }
        self.process = nil
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Runs redis-cli against this server and returns its trimmed output.
    @discardableResult
    func cli(_ arguments: String...) throws -> String {
        try self.cli(arguments)
    }

    func cli(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-cli")
        process.arguments = self.cliArguments + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A free port whose Cluster bus port (10000 above it) is free too.
    static func freeClusterPort() throws -> Int {
        for _ in 0..<100 {
            let port = Int.random(in: 20_000...40_000)
            if RedisServerProcess.isFree(port), RedisServerProcess.isFree(port + 10_000) { return port }
        }
        throw RedisServerError("could not find a free port pair for a cluster node")
    }

    private static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    /// Binds port 0 on loopback to let the kernel pick a free port, then releases it.
    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RedisServerError("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(fd, socketAddress, length) == 0 && getsockname(fd, socketAddress, &length) == 0
            }
        }
        guard bound else { throw RedisServerError("could not find a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

struct RedisServerError: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) {
        self.description = description
    }
}

/// Polls until `condition` holds, failing the test after `timeout` seconds.
func eventually(
    timeout: TimeInterval = 10,
    _ message: @autoclosure () -> String = "condition not met in time",
    file: StaticString = #filePath,
    line: UInt = #line,
    _ condition: () throws -> Bool
) rethrows {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return }
        Thread.sleep(forTimeInterval: 0.02)
    }
    XCTFail(message(), file: file, line: line)
}
