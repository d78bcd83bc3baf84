internal import CJansson
import ExtrasBase64
import NIOCore

// Printing builds a jansson tree and lets `json_dumpb` print it straight into the caller's
// `ByteBuffer`, so a Socket.IO or Engine.IO frame needs no intermediate C string.
// The output is compact, keeps member order and escapes every control character, so it never
// holds a raw newline (safe for NDJSON). A lone integer, or a lone string with nothing to
// escape (a socket id, most names), is written without a tree: its text is then its digits, or
// its bytes between quotes (RFC 8259 §7), byte for byte what jansson prints, for a fraction of
// the cost of building and printing a tree.

extension JSONValue {
    /// Compact JSON text for this value.
    ///
    /// Whole doubles of magnitude below 2^53 print as integers, as `JSON.stringify` prints them
    /// (`.double(1)` prints `1` and parses back as `.int(1)`; `-0.0` prints `0`). Other doubles
    /// print with 17 significant digits, the fewest that read back as the same double for every
    /// value (`0.1` prints `0.10000000000000001`, `1e21` prints `1e21`). NaN and infinities
    /// print `null`. `.binary` prints as `{"$binary":"<base64>"}`, the bridge's spelling.
    public func jsonString() -> String {
        var buffer = ByteBuffer()
        write(to: &buffer)
        return String(buffer: buffer)
    }

    /// Appends exactly the bytes of `jsonString()` to `buffer`.
    public func write(to buffer: inout ByteBuffer) {
        write(to: &buffer, binary: Self.base64Object)
    }

    /// Appends compact JSON in which each `.binary` is printed as the value `replacement`
    /// returns for it; `replacement` is called depth first, in output order. Socket.IO uses this
    /// to put attachment placeholders in their place. A `.binary` inside a replacement prints as
    /// `{"$binary":"<base64>"}`.
    public func write(to buffer: inout ByteBuffer, binary replacement: (ByteBuffer) -> JSONValue) {
        switch self {
        case .int(let value):
            buffer.writeString(String(value))
            return
        case .string(var value):
            if value.withUTF8({ appendUnescapedJSONString(UnsafeRawBufferPointer($0), to: &buffer) }) { return }
        default:
            break
        }
        let root = makeJansson(binary: replacement)
        defer { json_decref(root) }
        appendCompactJSON(root, to: &buffer)
    }

    /// The bridge's spelling of binary data.
    private static func base64Object(_ bytes: ByteBuffer) -> JSONValue {
        .object(["$binary": .string(Base64.encodeToString(bytes: bytes.readableBytesView))])
    }

    /// A new jansson value (one reference, owned by the caller) holding this value.
    private func makeJansson(binary replacement: (ByteBuffer) -> JSONValue) -> UnsafeMutablePointer<json_t> {
        let json: UnsafeMutablePointer<json_t>?
        switch self {
        case .null:
            json = json_null()
        case .bool(let value):
            json = value ? json_true() : json_false()
        case .int(let value):
            json = json_integer(value)
        case .double(let value):
            if !value.isFinite {
                // jansson refuses non-finite reals; JSON.stringify prints them as null.
                json = json_null()
            } else if value.rounded(.towardZero) == value, value.magnitude < 9_007_199_254_740_992 {
                json = json_integer(Int64(value))
            } else {
                json = json_real(value)
            }
        case .string(let value):
            json = withUTF8Pointer(value) { json_stringn_nocheck($0, $1) }
        case .array(let elements):
            json = json_array()
            for element in elements {
                // `_new` takes over the element's reference, also when it fails.
                guard json_array_append_new(json, element.makeJansson(binary: replacement)) == 0 else {
                    preconditionFailure("jansson failed to grow an array")
                }
            }
        case .object(let members):
            json = json_object()
            for (key, value) in members {
                let member = value.makeJansson(binary: replacement)
                // Swift strings are valid UTF-8, so jansson's check can be skipped.
                guard withUTF8Pointer(key, { json_object_setn_new_nocheck(json, $0, $1, member) }) == 0 else {
                    preconditionFailure("jansson failed to grow an object")
                }
            }
        case .binary(let bytes):
            json = replacement(bytes).makeJansson(binary: Self.base64Object)
        }
        guard let json else { preconditionFailure("jansson could not allocate a value") }
        return json
    }
}

/// Calls `body` with the UTF-8 bytes of `string` (which may hold NUL) and their count.
private func withUTF8Pointer<Result>(_ string: String, _ body: (UnsafePointer<CChar>, Int) -> Result) -> Result {
    var string = string
    return string.withUTF8 { utf8 in
        UnsafeRawBufferPointer(utf8).withMemoryRebound(to: CChar.self) { chars in
            guard let base = chars.baseAddress else {
                let empty: StaticString = ""
                return UnsafeRawPointer(empty.utf8Start).withMemoryRebound(to: CChar.self, capacity: 1) { body($0, 0) }
            }
            return body(base, chars.count)
        }
    }
}

/// Prints `json` compactly at the end of `buffer`. A lone integer or a lone string with nothing
/// to escape is written directly, as `JSONValue.write` does. `json_dumpb` fills the memory it is given in
/// one call, where a dump callback would cost a `ByteBuffer` write per token. When the space
/// tried first is too small, the exact size jansson reported is reserved and the value printed
/// again. A buffer with some room left is tried as it is, so a caller that reserved room for a
/// whole message (printing several values into it) makes it grow at most once.
func appendCompactJSON(_ json: UnsafeMutablePointer<json_t>, to buffer: inout ByteBuffer) {
    switch json.pointee.type {
    case JSON_INTEGER:
        buffer.writeString(String(json_integer_value(json)))
        return
    case JSON_STRING:
        let utf8 = UnsafeRawBufferPointer(start: json_string_value(json), count: json_string_length(json))
        if appendUnescapedJSONString(utf8, to: &buffer) { return }
    default:
        break
    }
    let flags = Int(JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER)
    var needed = 0
    let written = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: buffer.writableBytes >= 64 ? 0 : 256) { space in
        needed = json_dumpb(json, space.baseAddress?.assumingMemoryBound(to: CChar.self), space.count, flags)
        return needed <= space.count ? needed : 0
    }
    // Every value prints as at least one byte: nothing means jansson ran out of memory.
    precondition(needed > 0, "jansson failed to print a JSON value")
    guard written == 0 else { return }
    buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: needed) { space in
        json_dumpb(json, space.baseAddress?.assumingMemoryBound(to: CChar.self), space.count, flags)
    }
}

/// Writes the string whose UTF-8 is `utf8` as JSON when it has nothing to escape, and says
/// whether it did. jansson, with our flags, escapes the quote, the backslash and control
/// characters and writes every other byte as it is, so such a string prints as its bytes
/// between quotes.
private func appendUnescapedJSONString(_ utf8: UnsafeRawBufferPointer, to buffer: inout ByteBuffer) -> Bool {
    guard utf8.allSatisfy({ $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }) else { return false }
    buffer.writeInteger(UInt8(ascii: "\""))
    buffer.writeBytes(utf8)
    buffer.writeInteger(UInt8(ascii: "\""))
    return true
}
