//! The source's text decoding (`source::charset`): arbitrary bytes under each encoding, read
//! through buffers of a size chosen by the input's second byte, then written back as a reject
//! file writes them. Invariants:
//! - a byte-order mark wins over the declared encoding;
//! - the text is encoding_rs's decoding of the bytes (UTF-32 by its definition), every
//!   malformed sequence marked by one byte that is not UTF-8 (0xFF) where encoding_rs writes
//!   U+FFFD, and UTF-8 input passes unchanged;
//! - small buffers give the same text as one buffer;
//! - text without malformed bytes, written back row by row in its encoding (with the mark a
//!   reject file starts with) and read again, is the same text.
#![no_main]

use std::io::{BufRead, BufReader, Cursor, Read};

use flexprice_import::source::charset::{open_text, Charset};
use libfuzzer_sys::fuzz_target;

const LABELS: [&str; 16] = [
    "utf-8",
    "utf-16le",
    "utf-16be",
    "utf-32le",
    "utf-32be",
    "windows-1252",
    "iso-8859-2",
    "iso-8859-15",
    "koi8-r",
    "windows-1251",
    "shift_jis",
    "euc-jp",
    "gb18030",
    "gbk",
    "euc-kr",
    "big5",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let declared = match usize::from(data[0]) % (LABELS.len() + 1) {
        0 => None,
        i => Some(Charset::for_label(LABELS[i - 1]).expect("a known label")),
    };
    let capacity = usize::from(data[1] % 16) + 1;
    let bytes = &data[2..];
    let (text, charset) = decode(bytes, declared, 0);
    assert_eq!(
        (decode(bytes, declared, capacity)),
        (text.clone(), charset),
        "buffers of {capacity} bytes"
    );
    let (expected_charset, bom) = Charset::sniff(bytes).unwrap_or((declared.unwrap_or_default(), 0));
    assert_eq!(charset, expected_charset);
    let body = &bytes[bom..];
    match charset {
        c if c.is_utf8() => assert_eq!(text, body),
        Charset::Whatwg(encoding) => {
            let (expected, malformed) = encoding.decode_without_bom_handling(body);
            assert_eq!(String::from_utf8_lossy(&text), expected, "{}", encoding.name());
            assert_eq!(text.contains(&0xFF), malformed, "{}", encoding.name());
        }
        Charset::Utf32 { big_endian } => {
            let (expected, malformed) = utf32(body, big_endian);
            assert_eq!(String::from_utf8_lossy(&text), expected);
            assert_eq!(text.contains(&0xFF), malformed);
        }
    }
    if let Ok(text) = std::str::from_utf8(&text) {
        check_written_back(text, charset);
    }
});

fn decode(bytes: &[u8], declared: Option<Charset>, capacity: usize) -> (Vec<u8>, Charset) {
    let input: Box<dyn BufRead + Send> = if capacity == 0 {
        Box::new(Cursor::new(bytes.to_vec()))
    } else {
        Box::new(BufReader::with_capacity(capacity, Cursor::new(bytes.to_vec())))
    };
    let (mut text, charset) = open_text(input, declared).expect("reading memory cannot fail");
    let mut out = Vec::new();
    text.read_to_end(&mut out).expect("reading memory cannot fail");
    (out, charset)
}

/// UTF-32 as the Unicode standard defines it, U+FFFD for what is no scalar value.
fn utf32(bytes: &[u8], big_endian: bool) -> (String, bool) {
    let mut out = String::new();
    let mut malformed = false;
    for unit in bytes.chunks(4) {
        let c = <[u8; 4]>::try_from(unit).ok().and_then(|u| {
            char::from_u32(if big_endian {
                u32::from_be_bytes(u)
            } else {
                u32::from_le_bytes(u)
            })
        });
        malformed |= c.is_none();
        out.push(c.unwrap_or('\u{FFFD}'));
    }
    (out, malformed)
}

/// A reject file writes its rows one at a time in the input's encoding, after the mark that
/// encoding needs and its own header row; reading that file again gives the rows' text back.
fn check_written_back(text: &str, charset: Charset) {
    const HEADER: &str = "line,reason\n";
    let mut file = charset.bom().to_vec();
    for row in std::iter::once(HEADER).chain(text.split_inclusive('\n')) {
        file.extend_from_slice(&charset.encode(row.as_bytes()));
    }
    let (again, charset_again) = decode(&file, Some(charset), 0);
    assert_eq!(charset_again, charset);
    assert_eq!(
        String::from_utf8_lossy(&again),
        format!("{HEADER}{text}"),
        "{} text written back and read again",
        charset.name()
    );
}
