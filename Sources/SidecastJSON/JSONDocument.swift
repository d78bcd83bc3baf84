internal import CJansson
import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A JSON text parsed by jansson and kept as jansson's tree.
///
/// The bridge reads a handful of members of each backend line and passes an emit's arguments on
/// to clients as text. Keeping the tree lets it convert only the members it reads to
/// `JSONValue`, and print the arguments straight from the parsed tree, where converting the
/// whole line to `JSONValue` and building a jansson tree again to print would do the work
/// twice. One owner on one thread, so not Sendable.
public final class JSONDocument {
    private let root: UnsafeMutablePointer<json_t>
    /// The text parsed, when the root is an object whose array members' text is known.
    private let text: ByteBuffer?
    private let arraySpans: [(value: UnsafeMutablePointer<json_t>, span: Range<Int>)]

    /// Parses one JSON text of any type, as `JSONValue(parsing:)` does (same errors, same
    /// handling of integers too large for `Int64`). An object's array members keep their text,
    /// for ``printedArray(first:elementsOf:)`` to copy.
    public init(parsing buffer: ByteBuffer) throws(JSONError) {
        if let members = buffer.withUnsafeReadableBytes({ JSONObjectText(object: $0) }) {
            root = members.object
            text = buffer
            arraySpans = members.arraySpans
        } else {
            root = try buffer.withUnsafeReadableBytes { JSONValue.loadTree($0) }.get()
            text = nil
            arraySpans = []
        }
    }

    /// Parses bytes borrowed from elsewhere, such as the payload part of a Socket.IO packet.
    public init(parsing bytes: UnsafeRawBufferPointer) throws(JSONError) {
        root = try JSONValue.loadTree(bytes).get()
        text = nil
        arraySpans = []
    }

    deinit {
        json_decref(root)
    }

    /// The whole document as a value, as `JSONValue(parsing:binaryObjects:)` returns it.
    public func value(binaryObjects: JSONValue.BinaryObjects) throws(JSONError) -> JSONValue {
        try JSONValue(borrowing: root, decodingBinary: binaryObjects == .decode)
    }

    public var isObject: Bool {
        root.pointee.type == JSON_OBJECT
    }

    /// The root object's member `key` as a value (a `{"$binary":…}` object stays an object);
    /// `nil` when it has no such member or the root is not an object.
    public subscript(key: String) -> JSONValue? {
        guard let member = member(key) else { return nil }
        do {
            return try JSONValue(borrowing: member, decodingBinary: false)
        } catch {
            preconditionFailure("only decoding $binary objects can fail: \(error)")
        }
    }

    /// Whether some object in the document has `"$binary"` holding a string as its only
    /// member: the bridge's spelling of binary data.
    public var containsBinaryObject: Bool {
        Self.containsBinaryObject(root)
    }

    /// Prints the array `[root[first], ...root[rest]]`, the data of a Socket.IO EVENT made of
    /// an event name and its arguments. A missing or null `rest` adds nothing; returns `nil`
    /// when `first` is missing or `rest` is something other than an array.
    ///
    /// The elements of `rest` are copied from the parsed text when they hold no real number and
    /// no escape (their whitespace stays as written, which every JSON reader takes as the same
    /// value). Otherwise the text is what `JSONValue.write(to:)` prints for the same value:
    /// whole reals of magnitude below 2^53 print as integers, as `JSON.stringify` prints them.
    /// To get there they are replaced by integers in this document's tree, so read no member
    /// after printing it.
    public func printedArray(first firstKey: String, elementsOf restKey: String) -> JSONText? {
        guard let first = member(firstKey) else { return nil }
        var rest = member(restKey)
        if let array = rest {
            switch array.pointee.type {
            case JSON_NULL: rest = nil
            case JSON_ARRAY: break
            default: return nil
            }
        }
        // Room for a typical message, so that printing the arguments grows nothing.
        var bytes = ByteBufferAllocator().buffer(capacity: 256)
        bytes.writeInteger(UInt8(ascii: "["))
        if let integer = Self.integer(replacing: first) {
            appendCompactJSON(integer, to: &bytes)
            json_decref(integer)
        } else {
            Self.replaceWholeReals(in: first)
            appendCompactJSON(first, to: &bytes)
        }
        if let rest, json_array_size(rest) > 0, let elements = copiableElements(of: rest) {
            bytes.writeInteger(UInt8(ascii: ","))
            bytes.writeImmutableBuffer(elements)
            bytes.writeInteger(UInt8(ascii: "]"))
        } else if let rest, json_array_size(rest) > 0 {
            Self.replaceWholeReals(in: rest)
            // The array prints as `[a,b]`: its bracket becomes the comma after the first element.
            let bracket = bytes.readableBytes
            appendCompactJSON(rest, to: &bytes)
            bytes.withUnsafeMutableReadableBytes { $0[bracket] = UInt8(ascii: ",") }
        } else {
            bytes.writeInteger(UInt8(ascii: "]"))
        }
        return JSONText(printed: bytes)
    }

    /// The number of elements when the root is an array, else `nil`.
    public var arrayCount: Int? {
        root.pointee.type == JSON_ARRAY ? json_array_size(root) : nil
    }

    /// Element `index` of the root array as a value (a `{"$binary":…}` object stays an
    /// object); `nil` when the root is not an array or has no such element.
    public func element(_ index: Int) -> JSONValue? {
        guard index >= 0, let element = json_array_get(root, index) else { return nil }
        do {
            return try JSONValue(borrowing: element, decodingBinary: false)
        } catch {
            preconditionFailure("only decoding $binary objects can fail: \(error)")
        }
    }

    /// The root array without its first `count` elements, as values.
    public func elements(droppingFirst count: Int) -> [JSONValue] {
        let size = arrayCount ?? 0
        guard count < size else { return [] }
        return (count..<size).map { element($0)! }
    }

    /// Appends the array `[root[count], root[count + 1], ...]` (the arguments of a Socket.IO
    /// EVENT whose data is the root) to `buffer`, exactly as `JSONValue.write(to:)` prints the
    /// same values. The root must be an array. Whole reals are replaced by integers in this
    /// document's tree, as `printedArray` does: elements read afterwards may be `.int` where
    /// they were `.double`, with the same printed text.
    public func writeArray(droppingFirst count: Int, to buffer: inout ByteBuffer) {
        precondition(root.pointee.type == JSON_ARRAY, "writeArray(droppingFirst:) needs an array root")
        Self.replaceWholeReals(in: root)
        guard count > 0 else { return appendCompactJSON(root, to: &buffer) }
        guard let array = json_array() else { preconditionFailure("jansson could not allocate an array") }
        defer { json_decref(array) }
        let size = json_array_size(root)
        if count < size {
            for index in count..<size {
                // Adds a reference: the elements stay shared with the root.
                guard json_array_append(array, json_array_get(root, index)) == 0 else {
                    preconditionFailure("jansson failed to grow an array")
                }
            }
        }
        appendCompactJSON(array, to: &buffer)
    }

    /// The text between the brackets of `array`, a member of the parsed object, when it can
    /// be copied as it is: it holds no real, which printing would change.
    private func copiableElements(of array: UnsafeMutablePointer<json_t>) -> ByteBuffer? {
        guard let text, let span = arraySpans.first(where: { $0.value == array })?.span, !Self.containsReal(array) else {
            return nil
        }
        // jansson read the array from its "[" to its "]".
        guard let elements = text.getSlice(at: text.readerIndex + span.lowerBound + 1, length: span.count - 2) else { return nil }
        // An escape is printed shorter: many encoders (Python's json, PHP's) write every
        // non-ASCII character as `\uXXXX`, six bytes where UTF-8 takes two or three.
        let hasEscape = elements.withUnsafeReadableBytes { bytes in
            bytes.baseAddress.map { memchr($0, Int32(UInt8(ascii: "\\")), bytes.count) != nil } ?? false
        }
        return hasEscape ? nil : elements
    }

    private static func containsReal(_ json: UnsafeMutablePointer<json_t>) -> Bool {
        contains(json) { $0.pointee.type == JSON_REAL }
    }

    private func member(_ key: String) -> UnsafeMutablePointer<json_t>? {
        guard root.pointee.type == JSON_OBJECT else { return nil }
        return key.withCString { json_object_get(root, $0) }
    }

    private static func containsBinaryObject(_ json: UnsafeMutablePointer<json_t>) -> Bool {
        contains(json) { json in
            guard json.pointee.type == JSON_OBJECT, json_object_size(json) == 1, let member = json_object_get(json, "$binary") else {
                return false
            }
            return member.pointee.type == JSON_STRING
        }
    }

    /// Whether `json` or a value anywhere inside it is one `matches` accepts.
    private static func contains(
        _ json: UnsafeMutablePointer<json_t>, where matches: (UnsafeMutablePointer<json_t>) -> Bool
    ) -> Bool {
        if matches(json) { return true }
        switch json.pointee.type {
        case JSON_ARRAY:
            for index in 0..<json_array_size(json) where contains(json_array_get(json, index)!, where: matches) {
                return true
            }
        case JSON_OBJECT:
            var iterator = json_object_iter(json)
            while let current = iterator {
                if contains(json_object_iter_value(current)!, where: matches) { return true }
                iterator = json_object_iter_next(json, current)
            }
        default:
            break
        }
        return false
    }

    /// Replaces every whole real below 2^53 in magnitude inside `json` by the integer, as
    /// `JSONValue` printing does (`JSON.stringify` prints `1.0` as `1`).
    private static func replaceWholeReals(in json: UnsafeMutablePointer<json_t>) {
        switch json.pointee.type {
        case JSON_ARRAY:
            for index in 0..<json_array_size(json) {
                let element = json_array_get(json, index)!
                if let integer = integer(replacing: element) {
                    json_array_set_new(json, index, integer)
                } else {
                    replaceWholeReals(in: element)
                }
            }
        case JSON_OBJECT:
            var iterator = json_object_iter(json)
            while let current = iterator {
                let value = json_object_iter_value(current)!
                if let integer = integer(replacing: value) {
                    json_object_iter_set_new(json, current, integer)
                } else {
                    replaceWholeReals(in: value)
                }
                iterator = json_object_iter_next(json, current)
            }
        default:
            break
        }
    }

    /// A new integer for a whole real that `JSONValue` would print as one, else `nil`.
    private static func integer(replacing json: UnsafeMutablePointer<json_t>) -> UnsafeMutablePointer<json_t>? {
        guard json.pointee.type == JSON_REAL else { return nil }
        let value = json_real_value(json)
        guard value.rounded(.towardZero) == value, value.magnitude < 9_007_199_254_740_992 else { return nil }
        return json_integer(Int64(value))
    }
}
