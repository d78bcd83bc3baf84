import Dispatch
import Logging
import NIOCore
import NIOSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The PEM files of the client listener's TLS (`--tls-cert`, `--tls-key`, `--tls-ca`), read at
/// start and again on every SIGHUP.
public struct ClientTLSFiles: Sendable, Equatable {
    /// The server's certificate, followed by any intermediates it is sent with.
    public var certificatePath: String
    public var keyPath: String
    /// CA certificates a client's certificate must chain to; when set, a client without such a
    /// certificate is refused during the TLS handshake.
    public var clientCAPath: String?

    public init(certificatePath: String, keyPath: String, clientCAPath: String? = nil) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.clientCAPath = clientCAPath
    }

    /// Reads the files and builds the context new connections get. The error names the file
    /// and its flag, in one line.
    func makeContext() throws(SidecastStartError) -> NIOSSLContext {
        let chain = try Self.certificates(at: certificatePath, flag: "--tls-cert")
        let keyBytes = try Self.read(keyPath, flag: "--tls-key")
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(bytes: keyBytes, format: .pem)
        } catch {
            throw SidecastStartError(description: "cannot load the TLS key \(keyPath) (--tls-key): not a PEM private key, or one protected by a passphrase")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        // Node's default since 12; older versions have known weaknesses.
        configuration.minimumTLSVersion = .tlsv12
        // How long a closing connection waits for the client's close_notify. Many clients never
        // send one, and Node does not wait for it at all: without this, each of them would hold
        // a shutdown up for NIO's default five seconds.
        configuration.shutdownTimeout = .seconds(1)
        if let clientCAPath {
            configuration.trustRoots = .certificates(try Self.certificates(at: clientCAPath, flag: "--tls-ca"))
            // Verifies the client's chain; there is no host name to check a client against.
            configuration.certificateVerification = .noHostnameVerification
            configuration.sendCANameList = true
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw SidecastStartError(
                description: "cannot use the TLS key \(keyPath) (--tls-key) with the certificate \(certificatePath) (--tls-cert): \(error)"
            )
        }
    }

    /// What a log line says of the certificate in use, so a reload can be checked.
    func describeCertificate() -> String {
        guard let leaf = try? NIOSSLCertificate.fromPEMFile(certificatePath).first else { return "unreadable" }
        let serial = leaf.serialNumber.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        return "serial \(serial)"
    }

    private static func certificates(at path: String, flag: String) throws(SidecastStartError) -> [NIOSSLCertificate] {
        let bytes = try read(path, flag: flag)
        let certificates = try? NIOSSLCertificate.fromPEMBytes(bytes)
        guard let certificates, !certificates.isEmpty else {
            throw SidecastStartError(description: "cannot load the TLS certificate \(path) (\(flag)): no PEM certificate in it")
        }
        return certificates
    }

    /// The whole file; reading it here rather than in BoringSSL gives the reason a file cannot
    /// be opened, which BoringSSL's error stack does not.
    private static func read(_ path: String, flag: String) throws(SidecastStartError) -> [UInt8] {
        guard let file = fopen(path, "rb") else {
            throw SidecastStartError(description: "cannot read \(path) (\(flag)): \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            bytes.append(contentsOf: chunk[..<count])
            if count < chunk.count { break }
        }
        guard ferror(file) == 0 else {
            throw SidecastStartError(description: "cannot read \(path) (\(flag)): \(String(cString: strerror(errno)))")
        }
        return bytes
    }
}

/// Lets a client that drops its TCP connection without TLS's close_notify, as many do, end as
/// it would without TLS: as a "transport close", not a logged "transport error". A message cut
/// short by such an end is still found out: HTTP bodies have their length, WebSocket frames theirs.
final class UncleanShutdownFilter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let error = error as? NIOSSLError, case .uncleanShutdown = error { return }
        context.fireErrorCaught(error)
    }
}

/// Rereads the TLS files on SIGHUP, as nginx and HAProxy reload theirs, and hands the new context
/// to `install`: connections accepted from then on get the new certificate, open ones keep the
/// one they were made with. Files that do not load log an error and leave the old context in use.
///
/// `@unchecked Sendable`: `source` is set once, in `init`, and only cancelled after.
final class CertificateReloader: @unchecked Sendable {
    private let source: DispatchSourceSignal

    /// Returns once SIGHUP is trapped (`SignalTrap` says why that takes a wait).
    init(files: ClientTLSFiles, logger: Logger, install: @escaping @Sendable (NIOSSLContext) -> Void) async {
        source = await SignalTrap.trap(SIGHUP, on: DispatchQueue(label: "sidecast.tls-reload")) {
            do throws(SidecastStartError) {
                let context = try files.makeContext()
                install(context)
                logger.info("TLS certificate reloaded", metadata: ["certificate": "\(files.describeCertificate())"])
            } catch {
                logger.error("TLS certificate not reloaded, the old one stays in use: \(error.description)")
            }
        }
    }

    /// Stops trapping SIGHUP.
    func cancel() {
        source.cancel()
        signal(SIGHUP, SIG_DFL)
    }
}
