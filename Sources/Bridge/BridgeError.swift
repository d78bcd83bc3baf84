/// A failure reported to a backend as `{"code","message"}` in a `reply` or `error` line.
///
/// Codes are stable strings a backend can switch on; messages are for people.
public struct BridgeError: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    static func badJSON(_ detail: String) -> BridgeError { .init(code: "bad_json", message: "line is not valid JSON: \(detail)") }
    static func badMessage(_ detail: String) -> BridgeError { .init(code: "bad_message", message: detail) }
    static func unknownType(_ type: String) -> BridgeError { .init(code: "unknown_type", message: "unknown message type \"\(type)\"") }
    static func missingField(_ field: String, in type: String) -> BridgeError {
        .init(code: "missing_field", message: "\"\(type)\" needs the field \"\(field)\"")
    }
    static func badField(_ field: String, _ expected: String) -> BridgeError {
        .init(code: "bad_message", message: "field \"\(field)\" must be \(expected)")
    }
    static func unknownSid(_ sid: String, _ nsp: String) -> BridgeError {
        .init(code: "unknown_sid", message: "no socket \"\(sid)\" in namespace \"\(nsp)\" on this node")
    }
    static func unknownNamespace(_ nsp: String) -> BridgeError {
        .init(code: "unknown_namespace", message: "namespace \"\(nsp)\" is not served by this backend")
    }
    static func tooLarge(_ bytes: Int, limit: Int) -> BridgeError {
        .init(code: "too_large", message: "line of \(bytes) bytes exceeds the limit of \(limit) bytes")
    }
    static let timeout = BridgeError(code: "timeout", message: "operation timed out")
}
