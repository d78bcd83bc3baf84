import NIOCore

// Printing is done in Swift rather than with jansson's `json_dumps`: building a jansson tree
// costs one allocation per value plus a malloc'd output string, and jansson prints reals with 17
// significant digits (0.1 as 0.10000000000000001). Writing straight into a `ByteBuffer` lets a
// Socket.IO or Engine.IO frame be built with one allocation, and numbers come out exactly as
// `JSON.stringify` prints them. The output is compact, keeps member order and escapes every
// control character, so it never holds a raw newline (safe for NDJSON).

extension JSONValue {
    /// Compact JSON, as `JSON.stringify(value)` would print it.
    ///
    /// Numbers follow JavaScript: `.double(1)` prints `1` (so it parses back as `.int(1)`),
    /// `.double(1e21)` prints `1e+21`, NaN and infinities print `null`. `.binary` prints as
    /// `{"$binary":"<base64>"}`, the bridge's spelling.
    public func jsonString() -> String {
        var buffer = ByteBuffer()
        write(to: &buffer)
        return String(buffer: buffer)
    }

    /// Appends exactly the bytes of `jsonString()` to `buffer`.
    public func write(to buffer: inout ByteBuffer) {
        write(to: &buffer) { bytes, buffer in
            buffer.writeStaticString(#"{"$binary":""#)
            Base64.encode(bytes, into: &buffer)
            buffer.writeStaticString(#""}"#)
        }
    }

    /// Appends compact JSON, letting `writeBinary` spell each `.binary` value (depth first, in
    /// output order). Socket.IO uses this to put attachment placeholders in their place.
    public func write(to buffer: inout ByteBuffer, binary writeBinary: (ByteBuffer, inout ByteBuffer) -> Void) {
        switch self {
        case .null:
            buffer.writeStaticString("null")
        case .bool(let value):
            buffer.writeStaticString(value ? "true" : "false")
        case .int(let value):
            buffer.writeString(String(value))
        case .double(let value):
            writeJavaScriptNumber(value, to: &buffer)
        case .string(let value):
            writeJSONString(value, to: &buffer)
        case .array(let elements):
            buffer.writeInteger(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
                element.write(to: &buffer, binary: writeBinary)
            }
            buffer.writeInteger(UInt8(ascii: "]"))
        case .object(let members):
            buffer.writeInteger(UInt8(ascii: "{"))
            for (index, member) in members.enumerated() {
                if index > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
                writeJSONString(member.key, to: &buffer)
                buffer.writeInteger(UInt8(ascii: ":"))
                member.value.write(to: &buffer, binary: writeBinary)
            }
            buffer.writeInteger(UInt8(ascii: "}"))
        case .binary(let bytes):
            writeBinary(bytes, &buffer)
        }
    }
}

private func writeJSONString(_ string: String, to buffer: inout ByteBuffer) {
    var string = string
    string.withUTF8 { writeJSONString(UnsafeRawBufferPointer($0), to: &buffer) }
}

/// Escapes what `JSON.stringify` escapes: the quote, the backslash and control characters.
private func writeJSONString(_ utf8: UnsafeRawBufferPointer, to buffer: inout ByteBuffer) {
    let hexDigits: StaticString = "0123456789abcdef"
    buffer.writeInteger(UInt8(ascii: "\""))
    var runStart = 0
    for index in 0..<utf8.count {
        let byte = utf8[index]
        guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
        buffer.writeBytes(UnsafeRawBufferPointer(rebasing: utf8[runStart..<index]))
        runStart = index + 1
        switch byte {
        case UInt8(ascii: "\""): buffer.writeStaticString(#"\""#)
        case UInt8(ascii: "\\"): buffer.writeStaticString(#"\\"#)
        case 0x08: buffer.writeStaticString(#"\b"#)
        case 0x09: buffer.writeStaticString(#"\t"#)
        case 0x0A: buffer.writeStaticString(#"\n"#)
        case 0x0C: buffer.writeStaticString(#"\f"#)
        case 0x0D: buffer.writeStaticString(#"\r"#)
        default:
            buffer.writeStaticString(#"\u00"#)
            buffer.writeInteger(hexDigits.utf8Start[Int(byte >> 4)])
            buffer.writeInteger(hexDigits.utf8Start[Int(byte & 0x0F)])
        }
    }
    buffer.writeBytes(UnsafeRawBufferPointer(rebasing: utf8[runStart...]))
    buffer.writeInteger(UInt8(ascii: "\""))
}

/// ECMAScript's Number::toString: the shortest digits that read back as the same double
/// (Swift's `description` finds those), laid out without an exponent from 1e-7 up to 1e21.
private func writeJavaScriptNumber(_ value: Double, to buffer: inout ByteBuffer) {
    guard value.isFinite else {
        buffer.writeStaticString("null")
        return
    }
    // Whole numbers below 2^53 print all their digits; this also turns -0 into "0".
    if value.rounded(.towardZero) == value, value.magnitude < 9_007_199_254_740_992 {
        buffer.writeString(String(Int64(value)))
        return
    }
    var digits: [UInt8] = []
    var exponent = 0
    var pointSeen = false
    let description = value.magnitude.description
    var mantissa = description[...]
    if let e = description.firstIndex(of: "e") {
        exponent = Int(description[description.index(after: e)...]) ?? 0
        mantissa = description[..<e]
    }
    for byte in mantissa.utf8 {
        if byte == UInt8(ascii: ".") {
            pointSeen = true
        } else {
            digits.append(byte)
            if !pointSeen { exponent += 1 }
        }
    }
    // Now value = 0.DIGITS × 10^exponent; normalise so DIGITS has no leading or trailing zeros.
    while digits.first == UInt8(ascii: "0") {
        digits.removeFirst()
        exponent -= 1
    }
    while digits.last == UInt8(ascii: "0") { digits.removeLast() }

    if value < 0 { buffer.writeInteger(UInt8(ascii: "-")) }
    let count = digits.count
    if count <= exponent, exponent <= 21 {
        buffer.writeBytes(digits)
        buffer.writeRepeatingByte(UInt8(ascii: "0"), count: exponent - count)
    } else if 0 < exponent, exponent <= 21 {
        buffer.writeBytes(digits[..<exponent])
        buffer.writeInteger(UInt8(ascii: "."))
        buffer.writeBytes(digits[exponent...])
    } else if -6 < exponent, exponent <= 0 {
        buffer.writeStaticString("0.")
        buffer.writeRepeatingByte(UInt8(ascii: "0"), count: -exponent)
        buffer.writeBytes(digits)
    } else {
        buffer.writeInteger(digits[0])
        if count > 1 {
            buffer.writeInteger(UInt8(ascii: "."))
            buffer.writeBytes(digits[1...])
        }
        buffer.writeStaticString(exponent - 1 < 0 ? "e-" : "e+")
        buffer.writeString(String((exponent - 1).magnitude))
    }
}
