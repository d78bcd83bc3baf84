import NIOCore
import NIOHTTP1
import Prometheus

/// Serves the admin listener: `GET /metrics` in the Prometheus text format, `GET /healthz`
/// (the process serves) and `GET /readyz` (it takes new clients). Runs on the node's event
/// loop, so `notReadyReasons` can read the node's state directly.
final class AdminHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private let notReadyReasons: () -> [String]
    /// The request being received; answered at its end, its body ignored.
    private var head: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry, notReadyReasons: @escaping () -> [String]) {
        self.registry = registry
        self.notReadyReasons = notReadyReasons
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head else { return }
            self.head = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard ["/metrics", "/healthz", "/readyz"].contains(path) else {
            return send(.notFound, json: #"{"error":"not found"}"#, head: head, context: context)
        }
        guard head.method == .GET || head.method == .HEAD else {
            return send(.methodNotAllowed, json: #"{"error":"method not allowed"}"#, head: head, context: context)
        }
        switch path {
        case "/metrics":
            var bytes: [UInt8] = []
            registry.emit(into: &bytes)
            send(.ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: ByteBuffer(bytes: bytes),
                 head: head, context: context)
        case "/healthz":
            send(.ok, json: #"{"status":"ok"}"#, head: head, context: context)
        default:
            let reasons = notReadyReasons()
            if reasons.isEmpty {
                send(.ok, json: #"{"ready":true}"#, head: head, context: context)
            } else {
                let list = reasons.map(Self.jsonString).joined(separator: ",")
                send(.serviceUnavailable, json: #"{"ready":false,"reasons":[\#(list)]}"#, head: head, context: context)
            }
        }
    }

    private func send(_ status: HTTPResponseStatus, json: String, head: HTTPRequestHead, context: ChannelHandlerContext) {
        send(status, contentType: "application/json", body: ByteBuffer(string: json), head: head, context: context)
    }

    private func send(_ status: HTTPResponseStatus, contentType: String, body: ByteBuffer, head: HTTPRequestHead,
                      context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "Cache-Control", value: "no-store")
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
                      promise: nil)
        if head.method != .HEAD {
            context.write(Self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let written = context.writeAndFlush(Self.wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// A JSON string literal; reasons can carry namespace names, which may hold any character.
    private static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
