internal import CJansson
import ExtrasBase64
import NIOCore
import OrderedCollections

extension JSONValue {
    /// What the parser does with an object whose only member is `"$binary"` holding a string.
    public enum BinaryObjects: Sendable, Hashable {
        /// Leave it an ordinary object (Socket.IO payloads: a client may send any object).
        case keep
        /// Turn it into `.binary` with the base64-decoded bytes; malformed base64 is an error
        /// (bridge lines, where this object is the agreed spelling of binary data).
        case decode
    }

    /// Parses one JSON text of any type (not only objects and arrays, as `JSON.parse`).
    ///
    /// Integers become `.int` and numbers with a fraction or exponent `.double`; an integer
    /// too large for `Int64` (JavaScript prints 2^64 as `18446744073709552000`) becomes
    /// `.double` instead of failing. Object members keep their order; a repeated key keeps its
    /// first position and its last value, as in JavaScript.
    public init(parsing text: some StringProtocol, binaryObjects: BinaryObjects = .keep) throws(JSONError) {
        let parsed = text.utf8.withContiguousStorageIfAvailable {
            Self.parse(UnsafeRawBufferPointer($0), binaryObjects: binaryObjects)
        }
        if let parsed {
            self = try parsed.get()
        } else {
            self = try Array(text.utf8).withUnsafeBytes { Self.parse($0, binaryObjects: binaryObjects) }.get()
        }
    }

    /// Parses the readable bytes of `buffer` (for example one NDJSON line) without copying them.
    public init(parsing buffer: ByteBuffer, binaryObjects: BinaryObjects = .keep) throws(JSONError) {
        self = try buffer.withUnsafeReadableBytes { Self.parse($0, binaryObjects: binaryObjects) }.get()
    }

    public init(parsing bytes: UnsafeRawBufferPointer, binaryObjects: BinaryObjects = .keep) throws(JSONError) {
        self = try Self.parse(bytes, binaryObjects: binaryObjects).get()
    }

    private static func parse(_ bytes: UnsafeRawBufferPointer, binaryObjects: BinaryObjects) -> Result<JSONValue, JSONError> {
        switch loadTree(bytes) {
        case .success(let root): convert(root, binaryObjects: binaryObjects)
        case .failure(let error): .failure(error)
        }
    }

    /// jansson's tree for `bytes`, owned by the caller (one reference).
    static func loadTree(_ bytes: UnsafeRawBufferPointer) -> Result<UnsafeMutablePointer<json_t>, JSONError> {
        var error = json_error_t()
        if let root = load(bytes, error: &error) {
            return .success(root)
        }
        guard json_error_code(&error) == json_error_numeric_overflow else {
            return .failure(JSONError(error))
        }
        // jansson has no "integers as reals only when they overflow" flag. Rewriting every
        // overflowing integer in one pass and parsing again keeps the cost linear however many
        // such integers the text holds. Positions of a later error refer to the rewritten text.
        let rewritten = markingOverflowingIntegersAsReals(bytes)
        let root = rewritten.withUnsafeBytes { load($0, error: &error) }
        guard let root else { return .failure(JSONError(error)) }
        return .success(root)
    }

    private static func load(_ bytes: UnsafeRawBufferPointer, error: inout json_error_t) -> UnsafeMutablePointer<json_t>? {
        let flags = Int(JSON_DECODE_ANY | JSON_ALLOW_NUL)
        guard let base = bytes.baseAddress else {
            let empty: StaticString = ""
            return UnsafeRawPointer(empty.utf8Start).withMemoryRebound(to: CChar.self, capacity: 1) {
                json_loadb($0, 0, flags, &error)
            }
        }
        return json_loadb(base.assumingMemoryBound(to: CChar.self), bytes.count, flags, &error)
    }

    /// Converts and then releases the tree jansson returned.
    private static func convert(_ root: UnsafeMutablePointer<json_t>, binaryObjects: BinaryObjects) -> Result<JSONValue, JSONError> {
        defer { json_decref(root) }
        do {
            return .success(try JSONValue(borrowing: root, decodingBinary: binaryObjects == .decode))
        } catch {
            return .failure(error)
        }
    }

    /// Reads a jansson value without taking ownership of it.
    ///
    /// Containers are read by their own functions, which call back here for each member: this
    /// recursion runs once per level of nesting (up to jansson's 2048), so each frame on it is
    /// kept to what one level needs. With every branch's locals in this one function, 2048
    /// levels took more than 8 MiB of stack in an address-sanitized build (found with
    /// Fuzz/FuzzSocketIO).
    init(borrowing json: UnsafeMutablePointer<json_t>, decodingBinary: Bool) throws(JSONError) {
        switch json.pointee.type {
        case JSON_NULL:
            self = .null
        case JSON_TRUE:
            self = .bool(true)
        case JSON_FALSE:
            self = .bool(false)
        case JSON_INTEGER:
            self = .int(Int64(json_integer_value(json)))
        case JSON_REAL:
            self = .double(json_real_value(json))
        case JSON_STRING:
            self = .string(Self.string(json_string_value(json), count: json_string_length(json)))
        case JSON_ARRAY:
            self = .array(try Self.elements(of: json, decodingBinary: decodingBinary))
        default:
            self = try Self.object(json, decodingBinary: decodingBinary)
        }
    }

    @inline(never)
    private static func elements(of json: UnsafeMutablePointer<json_t>, decodingBinary: Bool) throws(JSONError) -> [JSONValue] {
        let count = json_array_size(json)
        var elements: [JSONValue] = []
        elements.reserveCapacity(count)
        for index in 0..<count {
            elements.append(try JSONValue(borrowing: json_array_get(json, index)!, decodingBinary: decodingBinary))
        }
        return elements
    }

    /// An object, or the binary value a `{"$binary": base64}` object stands for.
    @inline(never)
    private static func object(_ json: UnsafeMutablePointer<json_t>, decodingBinary: Bool) throws(JSONError) -> JSONValue {
        var members = OrderedDictionary<String, JSONValue>(minimumCapacity: json_object_size(json))
        var iterator = json_object_iter(json)
        while let current = iterator {
            let key = Self.string(json_object_iter_key(current), count: json_object_iter_key_len(current))
            members[key] = try JSONValue(borrowing: json_object_iter_value(current)!, decodingBinary: decodingBinary)
            iterator = json_object_iter_next(json, current)
        }
        if decodingBinary, members.count == 1, case .string(let base64)? = members["$binary"] {
            guard let bytes = try? Base64.decode(string: base64) else {
                throw JSONError(text: "invalid base64 in $binary object")
            }
            return .binary(ByteBuffer(bytes: bytes))
        }
        return .object(members)
    }

    /// jansson validated the UTF-8; strings may hold NUL, hence the explicit length.
    private static func string(_ pointer: UnsafePointer<CChar>?, count: Int) -> String {
        guard let pointer, count > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: count), as: UTF8.self)
    }
}

extension JSONError {
    fileprivate init(_ error: json_error_t) {
        let text = withUnsafeBytes(of: error.text) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        self.init(line: Int(error.line), column: Int(error.column), position: Int(error.position), text: text)
    }
}

/// Appends ".0" to every integer literal outside strings that does not fit in `Int64`, so that
/// jansson reads it as a real, as JavaScript would read it as a (rounded) number.
private func markingOverflowingIntegersAsReals(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
    var output: [UInt8] = []
    output.reserveCapacity(bytes.count + 16)
    var index = 0
    var inString = false
    while index < bytes.count {
        let byte = bytes[index]
        if inString {
            output.append(byte)
            if byte == UInt8(ascii: "\\"), index + 1 < bytes.count {
                output.append(bytes[index + 1])
                index += 1
            } else if byte == UInt8(ascii: "\"") {
                inString = false
            }
            index += 1
            continue
        }
        guard byte == UInt8(ascii: "-") || isDigit(byte) else {
            inString = byte == UInt8(ascii: "\"")
            output.append(byte)
            index += 1
            continue
        }
        let start = index
        let negative = byte == UInt8(ascii: "-")
        if negative { index += 1 }
        let digitsStart = index
        while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        let digits = UnsafeRawBufferPointer(rebasing: bytes[digitsStart..<index])
        var isInteger = true
        while index < bytes.count, isNumberContinuation(bytes[index]) {
            isInteger = false
            index += 1
        }
        output.append(contentsOf: bytes[start..<index])
        if isInteger, !fitsInInt64(digits, negative: negative) {
            output.append(contentsOf: ".0".utf8)
        }
    }
    return output
}

private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

/// Bytes that may follow the integer part of a JSON number (fraction and exponent).
private func isNumberContinuation(_ byte: UInt8) -> Bool {
    isDigit(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
        || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-")
}

private func fitsInInt64(_ digits: UnsafeRawBufferPointer, negative: Bool) -> Bool {
    let limit = negative ? "9223372036854775808" : "9223372036854775807"
    if digits.count != limit.utf8.count { return digits.count < limit.utf8.count }
    return !limit.utf8.lexicographicallyPrecedes(digits)
}
