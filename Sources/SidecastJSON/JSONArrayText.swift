internal import CJansson
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the elements of a JSON array are in the text it was parsed from: the first element,
/// when it is a string, and the elements after it.
///
/// A client's EVENT is `[name, ...args]`, and the bridge's line to a backend carries the name
/// and the arguments apart. Copying both as the client sent them spares printing them again
/// from the parsed tree, which costs jansson about as much as parsing did. The text must be one
/// that parsed as an array: jansson has checked every token, so between the first element
/// (whose end jansson reports) and the rest there is only whitespace and one comma.
public struct JSONArrayText: Sendable, Equatable {
    /// The first element's text: a JSON string, quotes included.
    public let first: Range<Int>
    /// The text between the comma after the first element and the closing bracket, as it was
    /// sent (it may start or end with whitespace); empty when the array has one element.
    public let rest: Range<Int>

    /// Finds the spans in `bytes`, text that parsed as a JSON array of at least one element.
    /// `nil` when the first element is not a string, or when the elements' text holds a line
    /// break: JSON allows one between tokens, an NDJSON line does not.
    public init?(array bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return nil }
        var start = 0
        while start < bytes.count, Self.isWhitespace(bytes[start]) { start += 1 }
        guard start < bytes.count, bytes[start] == UInt8(ascii: "[") else { return nil }
        start += 1
        while start < bytes.count, Self.isWhitespace(bytes[start]) { start += 1 }
        guard start < bytes.count, bytes[start] == UInt8(ascii: "\"") else { return nil }
        // jansson reads the string alone and reports the bytes it read: a string token ends at
        // its closing quote, with nothing read ahead.
        var error = json_error_t()
        let flags = Int(JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL)
        guard let first = json_loadb(base.advanced(by: start).assumingMemoryBound(to: CChar.self), bytes.count - start, flags, &error) else {
            return nil
        }
        let isString = first.pointee.type == JSON_STRING
        json_decref(first)
        let firstEnd = start + Int(error.position)
        guard isString, firstEnd > start, firstEnd <= bytes.count, bytes[firstEnd - 1] == UInt8(ascii: "\"") else { return nil }

        var end = bytes.count
        while end > firstEnd, Self.isWhitespace(bytes[end - 1]) { end -= 1 }
        guard end > firstEnd, bytes[end - 1] == UInt8(ascii: "]") else { return nil }
        end -= 1
        var cursor = firstEnd
        while cursor < end, Self.isWhitespace(bytes[cursor]) { cursor += 1 }
        if cursor == end {
            rest = end..<end
        } else {
            guard bytes[cursor] == UInt8(ascii: ",") else { return nil }
            rest = (cursor + 1)..<end
        }
        let elements = base.advanced(by: start)
        guard memchr(elements, 0x0A, end - start) == nil, memchr(elements, 0x0D, end - start) == nil else { return nil }
        self.first = start..<firstEnd
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r")
    }
}
