import NIOCore
import OrderedCollections

/// A JSON document as a value, plus one non-JSON case for binary data.
///
/// Every layer above the C wrappers speaks `JSONValue`: Socket.IO event arguments, bridge
/// lines and (later) Redis adapter payloads. Parsing and printing go through jansson; see
/// `JSONValue+Parsing.swift` and `JSONValue+Printing.swift`. Binary data has no JSON spelling of its own, so each wire format
/// chooses one: Socket.IO replaces it with attachment placeholders, the bridge writes
/// `{"$binary":"<base64>"}`, msgpack uses its `bin` type.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    /// Members keep the order they were parsed or inserted in, as JavaScript objects do.
    case object(OrderedDictionary<String, JSONValue>)
    case binary(ByteBuffer)
}

extension JSONValue {
    /// The member `key` when this is an object, otherwise `nil`.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members[key]
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// Integers, and doubles that hold a whole number (JavaScript has one number type).
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 9.007_199_254_740_992e15: return Int64(d)
        default: return nil
        }
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var objectValue: OrderedDictionary<String, JSONValue>? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// True when this value, or anything nested in it, is `.binary`.
    public var containsBinary: Bool {
        switch self {
        case .binary: return true
        case .array(let a): return a.contains { $0.containsBinary }
        case .object(let o): return o.values.contains { $0.containsBinary }
        default: return false
        }
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(nilLiteral: ()) { self = .null }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(OrderedDictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}
