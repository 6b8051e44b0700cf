//! Text as students' editors write it: UTF-8 mostly, but also Big5 (CP950,
//! what Traditional-Chinese Windows editors write unless told otherwise),
//! GBK, Shift-JIS, or UTF-16 with a byte-order mark. Previews and search
//! decode such a file once, here, so a renderer (and a search) always sees
//! UTF-8; the bytes stored stay as uploaded (`files/`, the zip).

use std::borrow::Cow;

/// Bytes looked at to tell text from binary.
const SNIFF: usize = 8 * 1024;

/// A file's text, and the encoding it was decoded from when it was not
/// UTF-8 (`Big5`, `GBK`, `Shift_JIS`, `UTF-16LE`…).
#[derive(Debug)]
pub struct Decoded<'a> {
    pub text: Cow<'a, str>,
    pub encoding: Option<&'static str>,
}

/// The text of `bytes`, or `None` for a binary file. UTF-8 (with or
/// without a BOM) is taken as it is; UTF-16 by its BOM; anything else is
/// detected from the whole content (`chardetng`, the detector Firefox
/// uses), and a byte sequence the detected encoding cannot decode becomes
/// U+FFFD.
pub fn decode(bytes: &[u8]) -> Option<Decoded<'_>> {
    if let Some((encoding, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom..]);
        let name = (encoding != encoding_rs::UTF_8).then(|| encoding.name());
        return Some(Decoded {
            text,
            encoding: name,
        });
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Some(Decoded {
            text: Cow::Borrowed(text),
            encoding: None,
        });
    }
    // NUL bytes do not occur in text of any 8-bit or multibyte encoding.
    if bytes[..bytes.len().min(SNIFF)].contains(&0) {
        return None;
    }
    // ISO-2022-JP is escape sequences in ASCII: no editor students use
    // writes it, and allowing it would turn ASCII with stray ESC bytes into
    // Japanese.
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(bytes, true);
    // Invalid UTF-8 reached here: UTF-8 is not a guess worth making.
    let encoding = detector.guess(None, chardetng::Utf8Detection::Deny);
    let (text, _, _) = encoding.decode(bytes);
    Some(Decoded {
        text,
        encoding: (encoding != encoding_rs::UTF_8).then(|| encoding.name()),
    })
}

/// Whether a file of this type may be text worth decoding (the types
/// `ticket::content_type_for` gives sources and text).
pub fn is_textual(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.starts_with("text/")
        || matches!(
            essence,
            "application/json" | "application/xml" | "application/javascript" | "application/x-sh"
        )
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn utf8_stays_and_binary_is_not_text() {
        let d = decode("int main() { /* 中文 */ }".as_bytes()).unwrap();
        assert_eq!(d.encoding, None);
        assert!(matches!(d.text, std::borrow::Cow::Borrowed(_)));
        assert!(decode(b"\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe").is_none());
    }

    #[test]
    fn legacy_encodings_are_detected_and_decoded() {
        let source = "// 這是一個計算成績的程式，請助教幫忙看看為什麼輸出不對。\n\
                      #include <iostream>\nint main() {\n    // 讀入學生的分數並計算平均\n    return 0;\n}\n";
        for (encoding, name) in [
            (encoding_rs::BIG5, "Big5"),
            (encoding_rs::GBK, "GBK"),
            (encoding_rs::SHIFT_JIS, "Shift_JIS"),
        ] {
            let text = if name == "Shift_JIS" {
                "// これは成績を計算するプログラムです。出力が正しくない理由を見てください。\nint main() { return 0; }\n"
            } else {
                source
            };
            let (bytes, _, unmappable) = encoding.encode(text);
            assert!(!unmappable, "{name}");
            let d = decode(&bytes).unwrap();
            assert_eq!(d.encoding, Some(name), "{name}");
            assert_eq!(d.text, text, "{name}");
        }
    }

    /// A real student's files, as Visual Studio on Traditional-Chinese
    /// Windows saved them (tests/fixtures/projects/nptu-oop-student).
    #[test]
    fn a_real_big5_homework_is_read_as_big5() {
        let cpp = include_bytes!("../../../tests/fixtures/projects/nptu-oop-student/Student.cpp");
        let d = decode(cpp).unwrap();
        assert_eq!(d.encoding, Some("Big5"));
        assert!(d.text.contains("int times1 = 0;//缺交次數"), "{}", d.text);
        let h = include_bytes!("../../../tests/fixtures/projects/nptu-oop-student/Student.h");
        assert_eq!(decode(h).unwrap().encoding, Some("Big5"));
        let utf8 = include_bytes!("../../../tests/fixtures/projects/nptu-oop-student/Score.cpp");
        assert_eq!(decode(utf8).unwrap().encoding, None);
    }

    #[test]
    fn utf16_by_its_bom() {
        let mut bytes = vec![0xff, 0xfe];
        for unit in "class A {} // 中".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        let d = decode(&bytes).unwrap();
        assert_eq!(
            (d.text.as_ref(), d.encoding),
            ("class A {} // 中", Some("UTF-16LE"))
        );
        // A UTF-8 BOM is not an encoding to mention.
        let d = decode(b"\xef\xbb\xbfhi").unwrap();
        assert_eq!((d.text.as_ref(), d.encoding), ("hi", None));
    }
}
