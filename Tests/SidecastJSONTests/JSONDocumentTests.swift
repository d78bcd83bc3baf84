import NIOCore
import SidecastJSON
import XCTest

final class JSONDocumentTests: XCTestCase {
    private func document(_ text: String) throws -> JSONDocument {
        try JSONDocument(parsing: ByteBuffer(string: text))
    }

    /// What the slow path prints for the same arguments: convert, prepend the event, print.
    private func printedByValue(_ text: String) throws -> String {
        let value = try JSONValue(parsing: text)
        return JSONValue.array([value["event"]!] + (value["args"]?.arrayValue ?? [])).jsonString()
    }

    func testPrintedArrayMatchesPrintingTheConvertedValue() throws {
        let lines = [
            #"{"event":"m","args":[1,"two",null,true,false,{},[]]}"#,
            #"{"event":"m","args":[1.0,-0.0,2.5,1e3,1e300,0.1,9007199254740991.0,9007199254740992.0,-1.5e-7]}"#,
            #"{"event":"m","args":[{"a":1.0,"b":[2.0,[3.0,{"c":4.0}]]}]}"#,
            #"{"event":"m","args":[18446744073709551616,-99999999999999999999,9223372036854775807]}"#,
            #"{"event":"é\n\"x\"","args":["\u0000nul","\u2028","😀","\/",{"dup":1,"k":2,"dup":3}]}"#,
            #"{"event":"m","args":null}"#,
            #"{"event":"m"}"#,
            #"{"event":"m","args":[]}"#,
            #"{"event":2.0,"args":[[1.0]]}"#,
            #"{"event":7,"args":[]}"#,
            #"{"event":{"k":1.0},"args":[0.5]}"#,
            #"{"args":[1],"event":"m","other":2.0}"#,
        ]
        for line in lines {
            let printed = try XCTUnwrap(try document(line).printedArray(first: "event", elementsOf: "args"), line)
            XCTAssertEqual(String(buffer: printed.bytes), try printedByValue(line), line)
        }
    }

    func testWritesTheRootArrayAfterItsFirstElementsAsTheValuesPrint() throws {
        let texts = [
            #"["m",1,"two",null,true,false,{},[]]"#,
            #"["m",1.0,-0.0,2.5,1e3,1e300,0.1,9007199254740991.0,9007199254740992.0,-1.5e-7]"#,
            #"["m",{"a":1.0,"b":[2.0,[3.0,{"c":4.0}]]},18446744073709551616]"#,
            #"["é","\u0000nul","\u2028","😀",{"dup":1,"k":2,"dup":3}]"#,
            #"["m"]"#,
        ]
        for text in texts {
            let value = try JSONValue(parsing: text)
            for count in 0...2 {
                let doc = try document(text)
                XCTAssertEqual(doc.arrayCount, value.arrayValue?.count, text)
                XCTAssertEqual(doc.elements(droppingFirst: count), Array(value.arrayValue!.dropFirst(count)), text)
                var printed = ByteBuffer()
                doc.writeArray(droppingFirst: count, to: &printed)
                XCTAssertEqual(String(buffer: printed), JSONValue.array(Array(value.arrayValue!.dropFirst(count))).jsonString(), text)
            }
        }
    }

    func testReadsElementsOfAnArrayRoot() throws {
        let doc = try document(#"["chat",{"$binary":"AAE="},2.5]"#)
        XCTAssertEqual(doc.element(0), "chat")
        XCTAssertEqual(doc.element(1), ["$binary": "AAE="])
        XCTAssertEqual(doc.element(2), .double(2.5))
        XCTAssertNil(doc.element(3))
        XCTAssertNil(doc.element(-1))
        XCTAssertNil(try document(#"{"a":1}"#).element(0))
        XCTAssertNil(try document(#"{"a":1}"#).arrayCount)
        XCTAssertEqual(try document("[]").elements(droppingFirst: 1), [])
    }

    func testParsesBorrowedBytes() throws {
        let doc = try Array(#"x[1,2]"#.utf8).withUnsafeBytes { bytes in
            try JSONDocument(parsing: UnsafeRawBufferPointer(rebasing: bytes[1...]))
        }
        XCTAssertEqual(try doc.value(binaryObjects: .keep), [1, 2])
        XCTAssertThrowsError(try Array("[1,".utf8).withUnsafeBytes { try JSONDocument(parsing: $0) })
    }

    func testPrintedArrayRefusesArgumentsThatAreNotAnArray() throws {
        XCTAssertNil(try document(#"{"event":"m","args":{"a":1}}"#).printedArray(first: "event", elementsOf: "args"))
        XCTAssertNil(try document(#"{"event":"m","args":"x"}"#).printedArray(first: "event", elementsOf: "args"))
        XCTAssertNil(try document(#"{"args":[]}"#).printedArray(first: "event", elementsOf: "args"))
        XCTAssertNil(try document(#"[1]"#).printedArray(first: "event", elementsOf: "args"))
    }

    func testPrintedTextParsesBackToTheValue() throws {
        let printed = try XCTUnwrap(try document(#"{"event":"m","args":[1,{"a":[null]}]}"#).printedArray(first: "event", elementsOf: "args"))
        XCTAssertEqual(printed.value, ["m", 1, ["a": [nil]]])
        XCTAssertFalse(printed.isNull)
        XCTAssertTrue(JSONText(nil).isNull)
    }

    func testMembersConvertOneByOne() throws {
        let doc = try document(#"{"type":"emit","to":["a","b"],"n":1.5,"bin":{"$binary":"AAE="}}"#)
        XCTAssertTrue(doc.isObject)
        XCTAssertEqual(doc["type"], "emit")
        XCTAssertEqual(doc["to"], ["a", "b"])
        XCTAssertEqual(doc["n"], .double(1.5))
        XCTAssertEqual(doc["bin"], ["$binary": "AAE="])
        XCTAssertNil(doc["missing"])
        XCTAssertNil(try document("[1]")["type"])
        XCTAssertFalse(try document("[1]").isObject)
    }

    func testFindsBinaryObjectsAnywhere() throws {
        XCTAssertTrue(try document(#"{"args":[1,[{"x":{"$binary":"AAE="}}]]}"#).containsBinaryObject)
        XCTAssertTrue(try document(#"{"$binary":""}"#).containsBinaryObject)
        XCTAssertFalse(try document(#"{"args":[{"$binary":"AAE=","other":1},{"$binary":1}]}"#).containsBinaryObject)
        XCTAssertFalse(try document(#"{"args":["$binary"]}"#).containsBinaryObject)
    }

    func testValueDecodesBinaryObjectsAsParsingDoes() throws {
        let text = #"{"a":[{"$binary":"AAE="}],"big":18446744073709551616}"#
        XCTAssertEqual(try document(text).value(binaryObjects: .decode), try JSONValue(parsing: text, binaryObjects: .decode))
        XCTAssertEqual(try document(text).value(binaryObjects: .keep), try JSONValue(parsing: text, binaryObjects: .keep))
        XCTAssertThrowsError(try document(#"{"$binary":"!!"}"#).value(binaryObjects: .decode))
    }

    func testParseErrorsAreThoseOfJSONValue() {
        for text in ["{", "", #"{"a":}"#] {
            var expected: JSONError?
            do { _ = try JSONValue(parsing: text) } catch { expected = error }
            XCTAssertNotNil(expected, text)
            do {
                _ = try document(text)
                XCTFail("parsed \(text)")
            } catch {
                XCTAssertEqual(error as? JSONError, expected, text)
            }
        }
    }
}
