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

    /// What printing must give: the arguments' text copied when they hold no real (each
    /// `.double` in the converted value) and no escape, else the slow path's print.
    private func expectedPrint(_ text: String) throws -> String {
        let value = try JSONValue(parsing: text)
        let args = value["args"]?.arrayValue ?? []
        func holdsReal(_ value: JSONValue) -> Bool {
            switch value {
            case .double: true
            case .array(let elements): elements.contains(where: holdsReal)
            case .object(let members): members.values.contains(where: holdsReal)
            default: false
            }
        }
        guard !args.isEmpty, !args.contains(where: holdsReal),
              let open = text.range(of: #""args":["#), let close = text.range(of: "]", options: .backwards),
              !text[open.upperBound..<close.lowerBound].contains("\\")
        else { return try printedByValue(text) }
        return "[" + value["event"]!.jsonString() + "," + text[open.upperBound..<close.lowerBound] + "]"
    }

    func testPrintedArrayCopiesArgumentsWithoutRealsAndPrintsTheOthers() throws {
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
            #"{"event":"m","other":2.0,"args":[1]}"#,
            #"{"event":"m","args":[1,"two",null,true,false,{},[]]}"#,
        ]
        for line in lines {
            let printed = try XCTUnwrap(try document(line).printedArray(first: "event", elementsOf: "args"), line)
            XCTAssertEqual(String(buffer: printed.bytes), try expectedPrint(line), line)
            XCTAssertEqual(printed.value, try JSONValue(parsing: printedByValue(line)), line)
        }
    }

    func testCopiedArgumentsKeepTheirWhitespace() throws {
        let line = #" { "type" : "emit" , "event":"m", "args" : [ 1 , "a bé" ,{"k" : [true]} ] } "#
        let printed = try XCTUnwrap(try document(line).printedArray(first: "event", elementsOf: "args"))
        XCTAssertEqual(String(buffer: printed.bytes), #"["m", 1 , "a bé" ,{"k" : [true]} ]"#)
        XCTAssertEqual(printed.value, ["m", 1, "a bé", ["k": [true]]])
    }

    /// An escape anywhere in the arguments (Python's `json.dumps` writes `é` as `\u00e9`) has
    /// them printed: clients get the shorter UTF-8.
    func testArgumentsWithAnEscapeArePrinted() throws {
        let lines = [
            (#"{"event":"m","args":["\u00e9t\u00e9", 1]}"#, #"["m","été",1]"#),
            (#"{"event":"m","args":[{"q":"say \"hi\""}]}"#, #"["m",{"q":"say \"hi\""}]"#),
            (#"{"event":"m","args":["a\/b"]}"#, #"["m","a/b"]"#),
        ]
        for (line, expected) in lines {
            let printed = try XCTUnwrap(try document(line).printedArray(first: "event", elementsOf: "args"), line)
            XCTAssertEqual(String(buffer: printed.bytes), expected, line)
        }
    }

    func testARepeatedKeyCopiesItsLastArray() throws {
        let lines = [
            (#"{"args":[1],"event":"m","args":[2,3]}"#, #"["m",2,3]"#),
            (#"{"args":[1],"args":null,"x":[9],"event":"m"}"#, #"["m"]"#),
            (#"{"args":[1],"args":"s","x":[9],"event":"m","args":[[4]]}"#, #"["m",[4]]"#),
        ]
        for (line, expected) in lines {
            let printed = try XCTUnwrap(try document(line).printedArray(first: "event", elementsOf: "args"), line)
            XCTAssertEqual(String(buffer: printed.bytes), expected, line)
        }
    }

    /// Objects are read member by member; the tree must be the one parsing the text whole gives.
    func testObjectsReadMemberByMemberGiveTheWholeParsesTree() throws {
        let texts = [
            "{}", " { } ", #"{"a":1}"#, "{\r\n\t\"a\" :\t1 ,\n\"b\":[ ] }",
            #"{"a":true,"b":false,"c":null,"d":-0,"e":12,"f":1.5e3,"g":"s","h":{},"i":[1,[2,{"j":3}]]}"#,
            #"{"a":1,"a":2}"#, #"{"a":{"x":1},"a":[2]}"#,
            #"{"k\"q":1,"é":2,"\u00e9":3,"\ud83d\ude00":4,"":5}"#,
            #"{"v":"\u0000","w":"é","x":"\n","y":"\/","z":"😀"}"#,
            #"{"a":9223372036854775807,"b":-9223372036854775808}"#,
            #"{"n":1}"#, #"{"n":true}"#, #"{"n":null }"#,
        ]
        for text in texts {
            XCTAssertEqual(try document(text).value(binaryObjects: .keep), try JSONValue(parsing: text), text)
        }
    }

    /// Whatever the member-by-member reading declines, the whole parse decides: its value or
    /// its error, exactly.
    func testObjectsTheMemberReaderDeclinesParseOrFailAsAWhole() throws {
        let valid = [
            #"{"big":18446744073709551616,"args":[1]}"#,
            #"{"args":[-99999999999999999999]}"#,
        ]
        // jansson nests at most 2048 containers; the object itself is one of them.
        let deepest = #"{"a":"# + String(repeating: "[", count: 2047) + String(repeating: "]", count: 2047) + "}"
        let tooDeep = #"{"a":"# + String(repeating: "[", count: 2048) + String(repeating: "]", count: 2048) + "}"
        for text in valid + [deepest] {
            XCTAssertEqual(try document(text).value(binaryObjects: .keep), try JSONValue(parsing: text), text)
        }
        let invalid = [tooDeep,
            #"{"a":1,}"#, #"{"a" 1}"#, #"{"a":1}x"#, #"{"a":1"#, #"{"a":12abc}"#, #"{"a":tru}"#,
            #"{"a":"x"#, #"{"a\u0000b":1}"#, #"{a:1}"#, #"{"a":1 "b":2}"#, #"{"a":[1,]}"#,
            "{\"a\":\"\u{01}\"}", #"{"a":1}}"#, #"{,}"#, #"{"a"}"#, #"{"a":}"#,
        ]
        assertFailsAsAWhole(ByteBuffer(bytes: Array(#"{"a":""#.utf8) + [0xFF] + Array(#""}"#.utf8)))
        for text in invalid {
            assertFailsAsAWhole(ByteBuffer(string: text))
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
            assertFailsAsAWhole(ByteBuffer(string: text))
        }
    }

    /// `text` is not JSON, and the document fails with the error `JSONValue` gives.
    private func assertFailsAsAWhole(_ text: ByteBuffer, file: StaticString = #filePath, line: UInt = #line) {
        var expected: JSONError?
        do { _ = try JSONValue(parsing: text) } catch { expected = error }
        XCTAssertNotNil(expected, String(buffer: text), file: file, line: line)
        XCTAssertThrowsError(try JSONDocument(parsing: text), String(buffer: text), file: file, line: line) {
            XCTAssertEqual($0 as? JSONError, expected, String(buffer: text), file: file, line: line)
        }
    }
}
