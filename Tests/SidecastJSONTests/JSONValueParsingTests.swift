import NIOCore
import SidecastJSON
import XCTest

final class JSONValueParsingTests: XCTestCase {
    func testScalars() throws {
        XCTAssertEqual(try JSONValue(parsing: "null"), .null)
        XCTAssertEqual(try JSONValue(parsing: "true"), .bool(true))
        XCTAssertEqual(try JSONValue(parsing: "false"), .bool(false))
        XCTAssertEqual(try JSONValue(parsing: "42"), .int(42))
        XCTAssertEqual(try JSONValue(parsing: "-7"), .int(-7))
        XCTAssertEqual(try JSONValue(parsing: "1.5"), .double(1.5))
        XCTAssertEqual(try JSONValue(parsing: "1e3"), .double(1000))
        XCTAssertEqual(try JSONValue(parsing: "1.0"), .double(1))
        XCTAssertEqual(try JSONValue(parsing: #""hi""#), .string("hi"))
        XCTAssertEqual(try JSONValue(parsing: " \n\t 3 \r\n"), .int(3))
    }

    func testContainersAndNesting() throws {
        let value = try JSONValue(parsing: #"{"a":[1,{"b":null,"c":[true,[]]}],"d":{}}"#)
        XCTAssertEqual(value, ["a": [1, ["b": nil, "c": [true, []]]], "d": [:]])
        XCTAssertEqual(try JSONValue(parsing: "[]"), .array([]))
    }

    func testObjectMemberOrderIsPreserved() throws {
        let value = try JSONValue(parsing: #"{"z":1,"a":2,"m":3,"b":4}"#)
        XCTAssertEqual(value.objectValue.map { Array($0.keys) }, ["z", "a", "m", "b"])
    }

    func testRepeatedKeyKeepsFirstPositionAndLastValue() throws {
        let value = try JSONValue(parsing: #"{"a":1,"b":2,"a":3}"#)
        XCTAssertEqual(value.objectValue.map { Array($0.keys) }, ["a", "b"])
        XCTAssertEqual(value["a"], .int(3))
    }

    func testUnicodeAndEscapes() throws {
        XCTAssertEqual(try JSONValue(parsing: #""h\u00e9llo \ud83d\ude00 ✓""#), .string("héllo 😀 ✓"))
        XCTAssertEqual(try JSONValue(parsing: #""\"\\\/\b\f\n\r\t""#), .string("\"\\/\u{8}\u{C}\n\r\t"))
        XCTAssertEqual(try JSONValue(parsing: #"{"ключ":"值"}"#), ["ключ": "值"])
    }

    func testNULInStrings() throws {
        XCTAssertEqual(try JSONValue(parsing: #""a\u0000b""#), .string("a\u{0}b"))
        XCTAssertEqual(try JSONValue(parsing: #"{"k":"\u0000"}"#), ["k": "\u{0}"])
    }

    func testNULInObjectKeysIsRejected() {
        // A jansson limitation (JavaScript accepts it); no Socket.IO client has a reason to send one.
        XCTAssertThrowsError(try JSONValue(parsing: #"{"k\u0000ey":"v"}"#))
    }

    func testIntegerLimits() throws {
        XCTAssertEqual(try JSONValue(parsing: "9223372036854775807"), .int(.max))
        XCTAssertEqual(try JSONValue(parsing: "-9223372036854775808"), .int(.min))
        XCTAssertEqual(try JSONValue(parsing: "9007199254740993"), .int(9_007_199_254_740_993))
    }

    func testIntegersTooBigForInt64BecomeDoubles() throws {
        XCTAssertEqual(try JSONValue(parsing: "9223372036854775808"), .double(0x1p63))
        XCTAssertEqual(try JSONValue(parsing: "-9223372036854775809"), .double(-0x1p63))
        let value = try JSONValue(parsing: #"[18446744073709552000,"12345678901234567890123",1.5e300,123456789012345678901234.5,7]"#)
        XCTAssertEqual(value, [.double(0x1p64), "12345678901234567890123", .double(1.5e300), .double(123_456_789_012_345_678_901_234.5), 7])
    }

    func testErrorsCarryPositions() {
        XCTAssertThrowsError(try JSONValue(parsing: "[1,\n 2,]")) { error in
            guard let error = error as? JSONError else { return XCTFail("\(error)") }
            XCTAssertEqual(error.line, 2)
            XCTAssertEqual(error.position, 8)
            XCTAssertFalse(error.text.isEmpty)
            XCTAssertTrue(error.description.contains("line 2"))
        }
        for bad in ["", "   ", "{", "[1 2]", "{\"a\"}", "nul", "1 2", "'x'", "[1,]", #""\ud800""#, "\"\u{1}\""] {
            XCTAssertThrowsError(try JSONValue(parsing: bad), "accepted \(bad.debugDescription)")
        }
    }

    func testInvalidUTF8IsRejected() {
        let bytes: [UInt8] = [UInt8(ascii: "\""), 0xFF, UInt8(ascii: "\"")]
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try JSONValue(parsing: $0) })
    }

    func testByteBufferAndSubstringAndRawBytesInputs() throws {
        var buffer = ByteBuffer(string: "xxx[1,2]\n")
        buffer.moveReaderIndex(forwardBy: 3)
        XCTAssertEqual(try JSONValue(parsing: buffer), [1, 2])
        let line = #"4{"a":1}"#
        XCTAssertEqual(try JSONValue(parsing: line.dropFirst()), ["a": 1])
        let bytes = Array(#"{"b":true}"#.utf8)
        XCTAssertEqual(try bytes.withUnsafeBytes { try JSONValue(parsing: $0) }, ["b": true])
    }

    func testBinaryObjectsAreKeptByDefault() throws {
        let value = try JSONValue(parsing: #"{"$binary":"AQID"}"#)
        XCTAssertEqual(value, ["$binary": "AQID"])
    }

    func testBinaryObjectsDecode() throws {
        let value = try JSONValue(parsing: #"[{"$binary":"AQID"},{"$binary":""},{"x":{"$binary":"/w=="}}]"#, binaryObjects: .decode)
        XCTAssertEqual(value, [.binary(ByteBuffer(bytes: [1, 2, 3])), .binary(ByteBuffer()), ["x": .binary(ByteBuffer(bytes: [255]))]])
    }

    func testOnlyExactBinaryObjectsDecode() throws {
        let value = try JSONValue(parsing: #"[{"$binary":"AQID","other":1},{"$binary":5}]"#, binaryObjects: .decode)
        XCTAssertEqual(value, [["$binary": "AQID", "other": 1], ["$binary": 5]])
    }

    func testMalformedBase64InBinaryObjectThrows() {
        XCTAssertThrowsError(try JSONValue(parsing: #"[{"$binary":"A?=="}]"#, binaryObjects: .decode)) { error in
            XCTAssertEqual((error as? JSONError)?.position, -1)
        }
    }

    func testRepeatedParsingReleasesMemory() throws {
        // Run under valgrind to check for leaks; here it proves error and success paths both work repeatedly.
        for _ in 0..<2_000 {
            _ = try JSONValue(parsing: #"{"a":[1,2.5,"x",{"b":null}],"c":{"$binary":"AQID"}}"#, binaryObjects: .decode)
            XCTAssertThrowsError(try JSONValue(parsing: #"{"a":[1,2"#))
            XCTAssertThrowsError(try JSONValue(parsing: #"{"c":{"$binary":"!"}}"#, binaryObjects: .decode))
        }
    }
}

final class JSONValueNestingTests: XCTestCase {
    /// Found by running a crafted input through Fuzz/FuzzSocketIO: a client's 2040-deep array
    /// overflowed 8 MiB of stack in an address-sanitized build, converting jansson's tree one
    /// large frame per level. This parses the deepest nesting jansson accepts (2048 levels) on a
    /// thread with 3 MiB of stack, which that conversion overflowed in a debug build too
    /// (parsing needs under 2 MiB now).
    func testDeepestNestingJanssonAcceptsConvertsOnASmallStack() {
        let depth = 2048
        let text = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            var value = try? JSONValue(parsing: text)
            var levels = 0
            while case .array(let elements)? = value {
                levels += 1
                value = elements.first
            }
            XCTAssertEqual(levels, depth)
            done.signal()
        }
        thread.stackSize = 3 << 20
        thread.start()
        done.wait()
    }
}
