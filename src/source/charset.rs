//! The input's text encoding. Readers work on UTF-8; a file in another encoding (told by a
//! byte-order mark, or by `--encoding`) is decoded to UTF-8 as it is read, and its reject
//! file is written back in the same encoding so that it imports like the original.
//!
//! Decoding is encoding_rs's (the WHATWG Encoding Standard, as browsers do it): labels such as
//! `windows-1252`, `latin1`, `utf-16le`, `shift_jis` mean what they mean on the web. UTF-32,
//! which the standard leaves out, is decoded here when a byte-order mark announces it.
//!
//! Bytes that are not valid in the encoding are never replaced silently: each malformed
//! sequence becomes the byte 0xFF, which is not UTF-8, so the row holding it is rejected with
//! its column named, as an invalid UTF-8 byte in a UTF-8 file is.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, BufRead, Read};
use std::sync::{Mutex, OnceLock};

use encoding_rs::{DecoderResult, EncoderResult, Encoding, EUC_JP, GB18030, GBK, UTF_16BE, UTF_16LE, UTF_8};

/// A text encoding the tool reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// Any encoding of the WHATWG standard (UTF-8 included).
    Whatwg(&'static Encoding),
    /// UTF-32, little- or big-endian.
    Utf32 { big_endian: bool },
}

impl Default for Charset {
    fn default() -> Charset {
        Charset::Whatwg(UTF_8)
    }
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

impl Charset {
    /// The encoding a label names: a WHATWG label, or `utf-32`/`utf-32le`/`utf-32be`.
    ///
    /// Errors: a label that names no encoding, with examples of labels that do.
    pub fn for_label(label: &str) -> Result<Charset, String> {
        match label.trim().to_ascii_lowercase().as_str() {
            "utf-32" | "utf32" | "utf-32le" | "utf32le" => return Ok(Charset::Utf32 { big_endian: false }),
            "utf-32be" | "utf32be" => return Ok(Charset::Utf32 { big_endian: true }),
            _ => {}
        }
        Encoding::for_label(label.trim().as_bytes())
            .map(Charset::Whatwg)
            .ok_or_else(|| {
                format!(
                    "{label:?} is not an encoding label (WHATWG labels such as utf-8, windows-1252, latin1, \
                     utf-16le, utf-16be, iso-8859-15, shift_jis, gb18030)"
                )
            })
    }

    /// The encoding's name: `UTF-8`, `windows-1252`, `UTF-16LE`, `UTF-32BE`.
    pub fn name(self) -> &'static str {
        match self {
            Charset::Whatwg(e) => e.name(),
            Charset::Utf32 { big_endian: false } => "UTF-32LE",
            Charset::Utf32 { big_endian: true } => "UTF-32BE",
        }
    }

    pub fn is_utf8(self) -> bool {
        self == Charset::Whatwg(UTF_8)
    }

    /// The encoding a byte-order mark at the start of `head` announces, and the mark's length.
    pub fn sniff(head: &[u8]) -> Option<(Charset, usize)> {
        if head.starts_with(b"\xFF\xFE\x00\x00") {
            Some((Charset::Utf32 { big_endian: false }, 4))
        } else if head.starts_with(b"\x00\x00\xFE\xFF") {
            Some((Charset::Utf32 { big_endian: true }, 4))
        } else if head.starts_with(UTF8_BOM) {
            Some((Charset::Whatwg(UTF_8), 3))
        } else if head.starts_with(b"\xFF\xFE") {
            Some((Charset::Whatwg(UTF_16LE), 2))
        } else if head.starts_with(b"\xFE\xFF") {
            Some((Charset::Whatwg(UTF_16BE), 2))
        } else {
            None
        }
    }

    /// The byte-order mark a file in this encoding starts with when written by this tool:
    /// UTF-16 and UTF-32 need one to be told apart when read again.
    pub fn bom(self) -> &'static [u8] {
        match self {
            Charset::Whatwg(e) if e == UTF_16LE => b"\xFF\xFE",
            Charset::Whatwg(e) if e == UTF_16BE => b"\xFE\xFF",
            Charset::Utf32 { big_endian: false } => b"\xFF\xFE\x00\x00",
            Charset::Utf32 { big_endian: true } => b"\x00\x00\xFE\xFF",
            Charset::Whatwg(_) => b"",
        }
    }

    /// `text` (UTF-8, as read) in this encoding, for writing back: text read from a file in
    /// this encoding reads the same again. Bytes that were malformed in the input (0xFF, see
    /// the module) come back as U+FFFD; characters the encoding cannot hold (only in messages
    /// the tool adds) as HTML character references, as encoding_rs writes them.
    pub fn encode(self, text: &[u8]) -> Cow<'_, [u8]> {
        if self.is_utf8() {
            return Cow::Borrowed(text);
        }
        let text = String::from_utf8_lossy(text);
        match self {
            Charset::Whatwg(e) if e == UTF_16LE || e == UTF_16BE => {
                let big = e == UTF_16BE;
                let units = text.encode_utf16();
                Cow::Owned(
                    units
                        .flat_map(|u| if big { u.to_be_bytes() } else { u.to_le_bytes() })
                        .collect(),
                )
            }
            Charset::Whatwg(e) => Cow::Owned(encode_legacy(e, &text)),
            Charset::Utf32 { big_endian } => Cow::Owned(
                text.chars()
                    .flat_map(|c| {
                        let n = c as u32;
                        if big_endian {
                            n.to_be_bytes()
                        } else {
                            n.to_le_bytes()
                        }
                    })
                    .collect(),
            ),
        }
    }
}

/// `text` in a legacy encoding. The WHATWG encoders leave out characters their decoders read
/// (Big5's HKSCS characters, EUC-JP's JIS X 0212, GBK's four-byte sequences) so that pages
/// are written in the common subset; a reject file must give back what was read, so such a
/// character is written as the bytes that decode to it.
fn encode_legacy(encoding: &'static Encoding, text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding.encode(text);
    if !unmappable {
        return bytes.into_owned();
    }
    let decodable = decoder_only(encoding);
    let mut encoder = encoding.new_encoder();
    let mut out = Vec::with_capacity(text.len() * 2);
    let mut rest = text;
    loop {
        let room = encoder
            .max_buffer_length_from_utf8_without_replacement(rest.len())
            .unwrap_or(rest.len() * 4 + 16);
        let start = out.len();
        out.resize(start + room, 0);
        let (result, read, written) = encoder.encode_from_utf8_without_replacement(rest, &mut out[start..], true);
        out.truncate(start + written);
        rest = &rest[read..];
        let c = match result {
            EncoderResult::InputEmpty => return out,
            EncoderResult::OutputFull => continue,
            EncoderResult::Unmappable(c) => c,
        };
        // A pair the decoder reads from one sequence (Big5's Ê̄) before the character alone.
        let pair = rest.chars().next().map(|next| (format!("{c}{next}"), next.len_utf8()));
        if let Some((bytes, len)) = pair.and_then(|(pair, len)| decodable.get(&pair).map(|b| (b, len))) {
            out.extend_from_slice(bytes);
            rest = &rest[len..];
        } else if let Some(bytes) = decodable.get(c.encode_utf8(&mut [0; 4]) as &str) {
            out.extend_from_slice(bytes);
        } else if encoding == GBK {
            // GBK's decoder is GB18030's: GB18030's four bytes read the same.
            out.extend_from_slice(&GB18030.encode(c.encode_utf8(&mut [0; 4])).0);
        } else {
            out.extend_from_slice(format!("&#{};", u32::from(c)).as_bytes());
        }
    }
}

/// Text a decoder reads from one sequence of bytes, and those bytes.
type Decodable = HashMap<String, Vec<u8>>;

/// What `encoding`'s decoder reads from one sequence of bytes, with the first such bytes
/// (looked up only for what its encoder cannot write): every single byte above ASCII and
/// every two-byte sequence (and EUC-JP's three-byte JIS X 0212 ones) decoded once, on first
/// use. Any entry is right by construction: its bytes decode to its text.
fn decoder_only(encoding: &'static Encoding) -> &'static Decodable {
    static TABLES: OnceLock<Mutex<HashMap<&'static str, &'static Decodable>>> = OnceLock::new();
    let mut tables = TABLES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    tables.entry(encoding.name()).or_insert_with(|| {
        let two = (0x81..=0xFEu8).flat_map(|lead| (0x40..=0xFEu8).map(move |trail| vec![lead, trail]));
        let three = (encoding == EUC_JP)
            .then(|| (0xA1..=0xFEu8).flat_map(|b| (0xA1..=0xFEu8).map(move |c| vec![0x8F, b, c])))
            .into_iter()
            .flatten();
        let single = (0x80..=0xFFu8).map(|b| vec![b]);
        let mut table = HashMap::new();
        for bytes in single.chain(two).chain(three) {
            let Some(decoded) = encoding.decode_without_bom_handling_and_without_replacement(&bytes) else {
                continue;
            };
            if !decoded.is_empty() {
                table.entry(decoded.into_owned()).or_insert(bytes);
            }
        }
        Box::leak(Box::new(table))
    })
}

/// Steps over a byte-order mark at the start of `input` and decodes the rest to UTF-8 where
/// it is in another encoding. A byte-order mark wins over `declared`, as the WHATWG standard
/// has it.
pub fn open_text(
    mut input: Box<dyn BufRead + Send>,
    declared: Option<Charset>,
) -> io::Result<(Box<dyn Read + Send>, Charset)> {
    // Four bytes tell every mark apart (UTF-32LE's starts like UTF-16LE's): they are read
    // ahead, whatever a pipe hands over at a time, and what is not a mark is put back.
    let mut head = Vec::with_capacity(4);
    while head.len() < 4 {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len().min(4 - head.len());
        head.extend_from_slice(&buf[..n]);
        input.consume(n);
    }
    let (charset, bom) = match Charset::sniff(&head) {
        Some(found) => found,
        None => (declared.unwrap_or_default(), 0),
    };
    let input: Box<dyn BufRead + Send> = Box::new(io::Cursor::new(head.split_off(bom)).chain(input));
    let text: Box<dyn Read + Send> = match charset {
        c if c.is_utf8() => Box::new(input),
        Charset::Whatwg(e) => Box::new(Decoded::new(
            input,
            Decoding::Whatwg(e.new_decoder_without_bom_handling()),
        )),
        Charset::Utf32 { big_endian } => Box::new(Decoded::new(input, Decoding::Utf32 { big_endian })),
    };
    Ok((text, charset))
}

/// The byte written for each malformed sequence: never valid UTF-8.
const MALFORMED: u8 = 0xFF;

enum Decoding {
    Whatwg(encoding_rs::Decoder),
    Utf32 { big_endian: bool },
}

/// UTF-8 from text in another encoding, decoded as it is read.
struct Decoded {
    input: Box<dyn BufRead + Send>,
    decoding: Decoding,
    out: Vec<u8>,
    /// Decoded bytes in `out` not yet handed out: `out[at..len]`.
    at: usize,
    len: usize,
    /// UTF-32: the bytes of a code unit split across input buffers.
    partial: Vec<u8>,
    done: bool,
}

impl Decoded {
    fn new(input: Box<dyn BufRead + Send>, decoding: Decoding) -> Decoded {
        Decoded {
            input,
            decoding,
            out: vec![0; 64 * 1024],
            at: 0,
            len: 0,
            partial: Vec::with_capacity(4),
            done: false,
        }
    }

    /// Decodes the next piece of input into `out`.
    fn refill(&mut self) -> io::Result<()> {
        self.at = 0;
        self.len = 0;
        while self.len == 0 && !self.done {
            let src = self.input.fill_buf()?;
            let last = src.is_empty();
            let (read, written, malformed) = match &mut self.decoding {
                Decoding::Whatwg(decoder) => {
                    // Room for the malformed marker after what is written.
                    let room = self.out.len() - 1;
                    let (result, read, written) =
                        decoder.decode_to_utf8_without_replacement(src, &mut self.out[..room], last);
                    if result == DecoderResult::InputEmpty && last {
                        self.done = true;
                    }
                    (read, written, matches!(result, DecoderResult::Malformed(..)))
                }
                Decoding::Utf32 { big_endian } => {
                    let (read, written) = utf32_to_utf8(src, &mut self.partial, *big_endian, &mut self.out, last);
                    if last {
                        self.done = true;
                    }
                    (read, written, false)
                }
            };
            self.input.consume(read);
            self.len = written;
            if malformed {
                self.out[self.len] = MALFORMED;
                self.len += 1;
            }
        }
        Ok(())
    }
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.len {
            self.refill()?;
        }
        let n = (self.len - self.at).min(buf.len());
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Decodes whole UTF-32 code units of `src` (after any left in `partial`) into `out`, which
/// must hold at least 4 bytes; returns (bytes of `src` consumed, bytes written). A code unit
/// that is no Unicode scalar value, or one cut short by the end of the input, becomes the
/// malformed marker.
fn utf32_to_utf8(src: &[u8], partial: &mut Vec<u8>, big_endian: bool, out: &mut [u8], last: bool) -> (usize, usize) {
    let (mut read, mut written) = (0, 0);
    let put = |unit: [u8; 4], out: &mut [u8], written: &mut usize| {
        let n = if big_endian {
            u32::from_be_bytes(unit)
        } else {
            u32::from_le_bytes(unit)
        };
        match char::from_u32(n) {
            Some(c) => *written += c.encode_utf8(&mut out[*written..]).len(),
            None => {
                out[*written] = MALFORMED;
                *written += 1;
            }
        }
    };
    while written + 4 <= out.len() {
        let need = 4 - partial.len();
        if src.len() - read < need {
            partial.extend_from_slice(&src[read..]);
            read = src.len();
            break;
        }
        partial.extend_from_slice(&src[read..read + need]);
        read += need;
        let unit = [partial[0], partial[1], partial[2], partial[3]];
        partial.clear();
        put(unit, out, &mut written);
    }
    if last && !partial.is_empty() && written < out.len() {
        partial.clear();
        out[written] = MALFORMED;
        written += 1;
    }
    (read, written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], declared: Option<Charset>) -> (Vec<u8>, Charset) {
        let input: Box<dyn BufRead + Send> = Box::new(io::BufReader::with_capacity(3, io::Cursor::new(bytes.to_vec())));
        let (mut text, charset) = open_text(input, declared).unwrap();
        let mut out = Vec::new();
        text.read_to_end(&mut out).unwrap();
        (out, charset)
    }

    #[test]
    fn byte_order_marks_tell_the_encoding() {
        let text = "a,é\n😀";
        let mut utf16le = vec![0xFF, 0xFE];
        utf16le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(
            decode(&utf16le, None),
            (text.as_bytes().to_vec(), Charset::Whatwg(UTF_16LE))
        );
        let mut utf16be = vec![0xFE, 0xFF];
        utf16be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(decode(&utf16be, None).0, text.as_bytes());
        let mut utf32le = vec![0xFF, 0xFE, 0, 0];
        utf32le.extend(text.chars().flat_map(|c| (c as u32).to_le_bytes()));
        assert_eq!(
            decode(&utf32le, None),
            (text.as_bytes().to_vec(), Charset::Utf32 { big_endian: false })
        );
        let mut utf8 = UTF8_BOM.to_vec();
        utf8.extend_from_slice(text.as_bytes());
        assert_eq!(
            decode(&utf8, Some(Charset::for_label("latin1").unwrap())).0,
            text.as_bytes()
        );
    }

    #[test]
    fn a_declared_encoding_is_decoded_and_malformed_bytes_stay_visible() {
        let latin1 = Charset::for_label("latin1").unwrap();
        assert_eq!(latin1.name(), "windows-1252");
        assert_eq!(decode(b"caf\xE9 \x80", Some(latin1)).0, "café €".as_bytes());
        // An unpaired surrogate is no character: it becomes a byte that is not UTF-8.
        let (out, _) = decode(b"\xFF\xFEa\x00\x00\xD8b\x00", None);
        assert_eq!(out, b"a\xFFb");
        let (out, _) = decode(b"\xFF\xFE\x00\x00a\x00\x00\x00\x00\x00\x11\x00b\x00", None);
        assert_eq!(out, b"a\xFF\xFF");
        assert!(Charset::for_label("klingon").unwrap_err().contains("windows-1252"));
    }

    /// Found by fuzz_charset: the WHATWG encoders of Big5, EUC-JP and GBK leave out
    /// characters their decoders read, which came back in reject files as `&#202;&#772;`.
    #[test]
    fn characters_only_the_decoder_knows_are_written_back_as_read() {
        for (label, bytes) in [
            ("big5", &b"a\x88\x62b\x88\x66\x87\x40"[..]),
            ("euc-jp", b"\x8F\xB0\xA1x"),
            ("gbk", b"\x81\x30\x81\x30\xA1\xA1"),
            ("shift_jis", b"\x87\x40\xED\x40"),
        ] {
            let charset = Charset::for_label(label).unwrap();
            let (text, _) = decode(bytes, Some(charset));
            assert!(!text.contains(&MALFORMED), "{label}: {text:?}");
            let again = charset.encode(&text);
            assert_eq!(decode(&again, Some(charset)).0, text, "{label}: {again:?}");
            assert!(!again.contains(&b'&'), "{label}: {again:?}");
        }
        // What no sequence decodes to stays a character reference.
        let big5 = Charset::for_label("big5").unwrap();
        assert_eq!(big5.encode("😀".as_bytes()).as_ref(), b"&#128512;");
    }

    #[test]
    fn encoding_back_gives_the_input_bytes() {
        let latin1 = Charset::for_label("windows-1252").unwrap();
        assert_eq!(latin1.encode("café €".as_bytes()).as_ref(), b"caf\xE9 \x80");
        let utf16 = Charset::Whatwg(UTF_16LE);
        assert_eq!(utf16.encode("é".as_bytes()).as_ref(), b"\xE9\x00");
        assert_eq!(Charset::default().encode(b"\xFFx").as_ref(), b"\xFFx");
    }
}
