//! File lines as a person counts them: `\n`, `\r\n` and a lone `\r` (Excel for Mac) each end a
//! line, mixed in any way. Every reader numbers its records with this, so that a record's
//! line is the line a text editor shows.

/// Counts line breaks across buffers: a `\r` at the end of one buffer and a `\n` at the start
/// of the next are one break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCounter {
    /// The line the next byte is on (the first line is 1).
    pub line: u64,
    /// The last byte seen was a `\r`: a `\n` right after it ends no new line.
    after_cr: bool,
}

impl LineCounter {
    pub fn at(line: u64) -> LineCounter {
        LineCounter { line, after_cr: false }
    }

    /// Moves over `bytes`; returns how many line breaks they held.
    pub fn advance(&mut self, bytes: &[u8]) -> u64 {
        let before = self.line;
        let mut rest = bytes;
        while let Some(i) = memchr::memchr2(b'\n', b'\r', rest) {
            let b = rest[i];
            let after_cr = if i == 0 { self.after_cr } else { false };
            if b == b'\r' || !after_cr {
                self.line += 1;
            }
            self.after_cr = b == b'\r';
            rest = &rest[i + 1..];
        }
        if !bytes.is_empty() && !rest.is_empty() {
            self.after_cr = false;
        }
        self.line - before
    }
}

/// The line and column (in characters, from 1) of byte `offset` of `text`, which starts at
/// line `first_line`, column `first_column`.
pub fn position_in(text: &[u8], offset: usize, first_line: u64, first_column: u64) -> (u64, u64) {
    let before = &text[..offset.min(text.len())];
    let mut counter = LineCounter::at(first_line);
    counter.advance(before);
    let line_start = before.iter().rposition(|&b| b == b'\n' || b == b'\r').map(|i| i + 1);
    let (from, base) = match line_start {
        Some(start) => (start, 1),
        None => (0, first_column),
    };
    // Characters, not bytes: a continuation byte of UTF-8 starts no character.
    let chars = before[from..].iter().filter(|&&b| (b & 0xC0) != 0x80).count() as u64;
    (counter.line, base + chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(parts: &[&[u8]]) -> u64 {
        let mut c = LineCounter::at(1);
        for p in parts {
            c.advance(p);
        }
        c.line
    }

    #[test]
    fn every_ending_is_one_break() {
        assert_eq!(lines(&[b"a\nb\nc"]), 3);
        assert_eq!(lines(&[b"a\r\nb\r\nc"]), 3);
        assert_eq!(lines(&[b"a\rb\rc"]), 3);
        assert_eq!(lines(&[b"a\r\n\rb\n\r\nc"]), 5);
        assert_eq!(lines(&[b"\r\r"]), 3);
    }

    #[test]
    fn a_crlf_split_across_buffers_is_one_break() {
        assert_eq!(lines(&[b"a\r", b"\nb"]), 2);
        assert_eq!(lines(&[b"a\r", b"", b"\nb"]), 2);
        assert_eq!(lines(&[b"a\r", b"b\n"]), 3);
        assert_eq!(lines(&[b"a\r", b"\r", b"\n"]), 3);
    }

    #[test]
    fn positions_count_characters() {
        assert_eq!(position_in(b"ab\"cd", 2, 7, 1), (7, 3));
        assert_eq!(position_in("é,\"x".as_bytes(), 3, 1, 1), (1, 3));
        assert_eq!(position_in(b"a\r\nb,\"", 5, 4, 9), (5, 3));
        assert_eq!(position_in(b"  {", 2, 3, 5), (3, 7));
    }
}
