import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A socket bound and listening before anything else of a node exists: a port in use or an
/// address that is not this machine's fails the start while nothing is running yet, and the
/// message names the address and the flag that changes it. Connections that come before NIO takes
/// it over (`withBoundSocket`) wait in the backlog. The descriptor also lets a listener out of
/// descriptors drain its backlog (`AcceptOverflowHandler`).
struct ListeningSocket {
    let descriptor: CInt
    /// "clients on 0.0.0.0:3000", for log lines.
    let description: String

    /// What listens where, and which flags move it, as error messages name them.
    struct Role {
        var name: String
        var hostFlag: String
        var portFlag: String

        static let clients = Role(name: "clients", hostFlag: "--host", portFlag: "--port")
        static let admin = Role(name: "admin requests", hostFlag: "--admin-host", portFlag: "--admin-port")
    }

    /// Binds `host:port` for `role`, with SO_REUSEADDR so a restart does not wait for the old
    /// connections' TIME_WAIT.
    static func tcp(host: String, port: Int, backlog: CInt, role: Role) throws -> ListeningSocket {
        let place = "cannot listen for \(role.name) on \(host):\(port)"
        let address: SocketAddress
        do {
            address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        } catch {
            throw SidecastStartError(
                description: "\(place): \(host) is neither an IP address nor a host name this machine resolves; check \(role.hostFlag)"
            )
        }
        let descriptor = try makeSocket(address, place: place)
        var one: CInt = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        try bindOrClose(descriptor, address, place: place) { code in
            switch code {
            case EADDRINUSE:
                return "the port is already in use by another process; stop it or choose another port with \(role.portFlag)"
            case EACCES:
                return "permission denied (ports below 1024 need privileges); choose another port with \(role.portFlag)"
            case EADDRNOTAVAIL:
                return "\(host) is not an address of this machine; check \(role.hostFlag)"
            default:
                return nil
            }
        }
        try listenOrClose(descriptor, backlog: backlog, place: place)
        return ListeningSocket(descriptor: descriptor, description: "\(role.name) on \(host):\(port)")
    }

    /// Binds the backends' Unix socket at `path`, which must not exist (see `removeStaleSocket`),
    /// and gives it `mode` before it listens, so no backend ever reaches it under another mode.
    static func unix(path: String, mode: UInt16, backlog: CInt) throws -> ListeningSocket {
        let place = "cannot create the backend socket \(path)"
        let address: SocketAddress
        do {
            address = try SocketAddress(unixDomainSocketPath: path)
        } catch {
            throw SidecastStartError(description: "\(place): the path is too long for a Unix socket; choose a shorter one with --socket")
        }
        let descriptor = try makeSocket(address, place: place)
        try bindOrClose(descriptor, address, place: place) { code in
            switch code {
            case EACCES: return "permission denied; choose a writable directory with --socket"
            case ENOENT: return "its directory does not exist; create it or choose another path with --socket"
            case EADDRINUSE: return "the file exists; choose another path with --socket"
            default: return nil
            }
        }
        guard chmod(path, mode_t(mode)) == 0 else {
            let reason = String(cString: strerror(errno))
            _ = close(descriptor)
            unlink(path)
            throw SidecastStartError(description: "cannot set mode \(String(mode, radix: 8)) on \(path): \(reason)")
        }
        do {
            try listenOrClose(descriptor, backlog: backlog, place: place)
        } catch {
            unlink(path)
            throw error
        }
        return ListeningSocket(descriptor: descriptor, description: "backends on \(path)")
    }

    /// A socket file left by a crash is replaced; one that still accepts belongs to a live
    /// sidecast, and starting a second one on it is an error.
    static func removeStaleSocket(at path: String) throws {
        var status = stat()
        guard lstat(path, &status) == 0 else { return }
        guard (status.st_mode & S_IFMT) == S_IFSOCK else {
            throw SidecastStartError(description: "\(path) exists and is not a socket; refusing to replace it (choose another path with --socket)")
        }
        if let address = try? SocketAddress(unixDomainSocketPath: path), let probe = try? makeSocket(address, place: "") {
            defer { close(probe) }
            // Non-blocking: a live listener with a full backlog answers EAGAIN rather than
            // making the start wait.
            _ = fcntl(probe, F_SETFL, O_NONBLOCK)
            let result = address.withSockAddr { connect(probe, $0, socklen_t($1)) }
            if result == 0 || errno == EAGAIN {
                throw SidecastStartError(description: "another sidecast is already listening on \(path); stop it or choose another path with --socket")
            }
        }
        unlink(path)
    }

    /// Closes a socket that no channel took over.
    func discard() {
        _ = close(descriptor)
    }

    private static func makeSocket(_ address: SocketAddress, place: String) throws -> CInt {
        #if os(Linux)
        let type = CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue)
        #else
        let type = SOCK_STREAM
        #endif
        let descriptor = socket(address.protocol.rawValue, type, 0)
        guard descriptor >= 0 else {
            throw SidecastStartError(description: "\(place): \(String(cString: strerror(errno)))")
        }
        return descriptor
    }

    /// Binds, closing the socket on failure; `advice` turns an errno into what to do.
    private static func bindOrClose(_ descriptor: CInt, _ address: SocketAddress, place: String, advice: (CInt) -> String?) throws {
        guard address.withSockAddr({ bind(descriptor, $0, socklen_t($1)) }) != 0 else { return }
        let failed = errno
        _ = close(descriptor)
        throw SidecastStartError(description: "\(place): \(advice(failed) ?? String(cString: strerror(failed)))")
    }

    private static func listenOrClose(_ descriptor: CInt, backlog: CInt, place: String) throws {
        guard listen(descriptor, backlog) != 0 else { return }
        let failed = errno
        _ = close(descriptor)
        throw SidecastStartError(description: "\(place): \(String(cString: strerror(failed)))")
    }
}
