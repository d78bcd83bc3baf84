import NIOCore
import SidecastJSON
import XCTest

final class JSONValuePrintingTests: XCTestCase {
    func testScalars() {
        XCTAssertEqual(JSONValue.null.jsonString(), "null")
        XCTAssertEqual(JSONValue.bool(true).jsonString(), "true")
        XCTAssertEqual(JSONValue.bool(false).jsonString(), "false")
        XCTAssertEqual(JSONValue.int(-12).jsonString(), "-12")
        XCTAssertEqual(JSONValue.int(.min).jsonString(), "-9223372036854775808")
        XCTAssertEqual(JSONValue.string("hi").jsonString(), #""hi""#)
    }

    /// Lone strings with nothing to escape and lone integers skip jansson's tree; what they
    /// print must be what jansson prints for them inside an array.
    func testLoneStringsAndIntegersPrintAsJanssonPrintsThem() {
        var strings = (0..<128).map { String(UnicodeScalar(UInt8($0))) }
        strings += ["", "Ab_c-1", "/ns", "é", "😀", "\u{2028}", "\u{7f}", "a/b", "x\"y", "back\\slash", "tab\tend", String(repeating: "z", count: 300)]
        for string in strings {
            let viaTree = JSONValue.array([.string(string)]).jsonString()
            XCTAssertEqual("[" + JSONValue.string(string).jsonString() + "]", viaTree, string.debugDescription)
        }
        for integer: Int64 in [0, 1, -1, 42, .max, .min, 9_007_199_254_740_993] {
            XCTAssertEqual("[" + JSONValue.int(integer).jsonString() + "]", JSONValue.array([.int(integer)]).jsonString())
        }
    }

    func testContainersAreCompactAndKeepOrder() {
        let value: JSONValue = ["z": [1, "two", nil, [:]], "a": ["nested": []], "m": true]
        XCTAssertEqual(value.jsonString(), #"{"z":[1,"two",null,{}],"a":{"nested":[]},"m":true}"#)
    }

    func testWholeDoublesPrintAsIntegersAsInJavaScript() {
        let cases: [(Double, String)] = [
            (1, "1"), (-1, "-1"), (0, "0"), (-0.0, "0"), (1e15, "1000000000000000"),
            (9_007_199_254_740_991, "9007199254740991"), (-9_007_199_254_740_991, "-9007199254740991"),
        ]
        for (value, expected) in cases {
            XCTAssertEqual(JSONValue.double(value).jsonString(), expected, "\(value)")
        }
    }

    func testNonFiniteDoublesPrintAsNull() {
        for value in [Double.nan, .infinity, -.infinity] {
            XCTAssertEqual(JSONValue.double(value).jsonString(), "null", "\(value)")
        }
        XCTAssertEqual(JSONValue.array([.double(.nan), 1]).jsonString(), "[null,1]")
    }

    func testDoublesRoundTripTheirValue() throws {
        let values: [Double] = [
            0.1, 1.5, -2.25, 123.456, 0.1 + 0.2, 1.0 / 3, 2.5e-300, 1e300, 123_456.789, -9.87654321e-5,
            1e20, 1e21, 1.5e21, 2e22, 0.000001, 1e-7, 1.25e-7, 0.001234, 1_152_921_504_606_846_976,
            9_007_199_254_740_992, .leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude,
            -.greatestFiniteMagnitude, .pi, -.ulpOfOne,
        ]
        for value in values {
            let text = JSONValue.double(value).jsonString()
            XCTAssertEqual(try JSONValue(parsing: text), .double(value), text)
        }
        for _ in 0..<1000 {
            let value = Double(bitPattern: .random(in: 0..<0x7FF0_0000_0000_0000))
            let text = JSONValue.double(value).jsonString()
            let parsed = try JSONValue(parsing: text)
            if case .int(let i) = parsed {
                XCTAssertEqual(Double(i), value, text)
            } else {
                XCTAssertEqual(parsed, .double(value), text)
            }
        }
    }

    func testStringEscapes() {
        XCTAssertEqual(JSONValue.string("a\"b\\c/d").jsonString(), #""a\"b\\c/d""#)
        XCTAssertEqual(JSONValue.string("\u{8}\u{C}\n\r\t").jsonString(), #""\b\f\n\r\t""#)
        XCTAssertEqual(JSONValue.string("\u{0}\u{1}\u{1F}\u{7F}").jsonString(), "\"\\u0000\\u0001\\u001F\u{7F}\"")
        XCTAssertEqual(JSONValue.string("héllo 😀 \u{2028}").jsonString(), "\"héllo 😀 \u{2028}\"")
        XCTAssertEqual(JSONValue.object(["k\"\n": 1]).jsonString(), #"{"k\"\n":1}"#)
        XCTAssertEqual(JSONValue.object(["\u{0}k": "\u{0}"]).jsonString(), #"{"\u0000k":"\u0000"}"#)
    }

    func testOutputNeverContainsARawNewline() {
        let value: JSONValue = ["line\nbreak": ["a\r\nb", .double(1e-9), .binary(ByteBuffer(bytes: Array(0..<200)))]]
        XCTAssertFalse(value.jsonString().contains { $0.isNewline })
    }

    func testBinaryPrintsAsBase64Object() {
        let value: JSONValue = ["data": .binary(ByteBuffer(bytes: [1, 2, 3, 4])), "empty": .binary(ByteBuffer())]
        XCTAssertEqual(value.jsonString(), #"{"data":{"$binary":"AQIDBA=="},"empty":{"$binary":""}}"#)
    }

    func testWriteAppendsTheSameBytesAsJSONString() {
        let value: JSONValue = ["a": [1, 2.5, "x\u{0}", nil, true], "b": .binary(ByteBuffer(bytes: [9, 8]))]
        var buffer = ByteBuffer(string: "4")
        value.write(to: &buffer)
        XCTAssertEqual(String(buffer: buffer), "4" + value.jsonString())
    }

    func testCustomBinaryWriterSeesBinariesInOutputOrder() {
        let value: JSONValue = [.binary(ByteBuffer(bytes: [1])), ["k": .binary(ByteBuffer(bytes: [2])), "j": [.binary(ByteBuffer(bytes: [3]))]]]
        var seen: [ByteBuffer] = []
        var buffer = ByteBuffer()
        value.write(to: &buffer) { bytes in
            seen.append(bytes)
            return ["n": .int(Int64(seen.count - 1))]
        }
        XCTAssertEqual(String(buffer: buffer), #"[{"n":0},{"k":{"n":1},"j":[{"n":2}]}]"#)
        XCTAssertEqual(seen, [ByteBuffer(bytes: [1]), ByteBuffer(bytes: [2]), ByteBuffer(bytes: [3])])
    }

    func testBinaryInsideAReplacementPrintsAsBase64Object() {
        var buffer = ByteBuffer()
        JSONValue.array([.binary(ByteBuffer(bytes: [1]))]).write(to: &buffer) { bytes in ["inner": .binary(bytes)] }
        XCTAssertEqual(String(buffer: buffer), #"[{"inner":{"$binary":"AQ=="}}]"#)
    }

    func testRoundTrips() throws {
        let values: [JSONValue] = [
            nil, true, 0, -5, .int(.max), .int(.min), 2.5, "", "a\u{0}b", "😀\"\\\n",
            [], [:], [1, [2, [3, ["deep": [nil]]]]],
            ["z": 1, "a": ["b": "c"], "\u{1}": false, "é": [1.25, -3]],
        ]
        for value in values {
            XCTAssertEqual(try JSONValue(parsing: value.jsonString()), value, value.jsonString())
        }
        let binary: JSONValue = ["file": .binary(ByteBuffer(bytes: Array(0...255))), "list": [.binary(ByteBuffer(bytes: [7]))]]
        XCTAssertEqual(try JSONValue(parsing: binary.jsonString(), binaryObjects: .decode), binary)
    }
}
