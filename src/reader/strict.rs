//! A JSON object that names a key twice is refused, as a CSV header that names a column twice
//! is: serde_json keeps the last value and drops the other without a word.

use std::borrow::Cow;
use std::collections::HashSet;

/// The first key named twice in one object of `text`, with the byte offset of its second
/// naming. `text` must already be known to be valid JSON.
pub fn duplicate_key(text: &[u8]) -> Option<(String, usize)> {
    struct Frame<'t> {
        object: bool,
        expect_key: bool,
        /// Most objects have a few keys: compared in a list, without hashing or allocating
        /// more than once; past `FEW` they move to a set, so a huge object stays linear.
        few: Vec<Cow<'t, [u8]>>,
        many: Option<HashSet<Cow<'t, [u8]>>>,
    }
    const FEW: usize = 16;
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            open @ (b'{' | b'[') => stack.push(Frame {
                object: open == b'{',
                expect_key: open == b'{',
                few: Vec::new(),
                many: None,
            }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => {
                if let Some(frame) = stack.last_mut() {
                    frame.expect_key = frame.object;
                }
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                let Some(frame) = stack.last_mut().filter(|f| f.object && f.expect_key) else {
                    i += 1;
                    continue;
                };
                frame.expect_key = false;
                let inner = &text[(start + 1).min(text.len())..i.min(text.len())];
                // Escapes are decoded, so that "a" and "\u0061" are one key.
                let key: Cow<'_, [u8]> = if inner.contains(&b'\\') {
                    match serde_json::from_slice::<String>(&text[start..(i + 1).min(text.len())]) {
                        Ok(decoded) => Cow::Owned(decoded.into_bytes()),
                        Err(_) => Cow::Borrowed(inner),
                    }
                } else {
                    Cow::Borrowed(inner)
                };
                let seen = match &mut frame.many {
                    Some(many) => !many.insert(key.clone()),
                    None if frame.few.contains(&key) => true,
                    None => {
                        frame.few.push(key.clone());
                        if frame.few.len() > FEW {
                            frame.many = Some(frame.few.drain(..).collect());
                        }
                        false
                    }
                };
                if seen {
                    return Some((String::from_utf8_lossy(&key).into_owned(), start));
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_key_named_twice_at_any_depth() {
        assert_eq!(duplicate_key(br#"{"a":1,"b":2}"#), None);
        assert_eq!(duplicate_key(br#"{"a":1,"a":2}"#), Some(("a".into(), 7)));
        assert_eq!(
            duplicate_key(br#"{"p":{"x":"a","y":{"x":1}},"q":[{"x":1},{"x":2}]}"#),
            None
        );
        assert_eq!(duplicate_key(br#"{"p":{"x":"\"x\"","x":2}}"#), Some(("x".into(), 18)));
        assert_eq!(duplicate_key(br#"{"a":1,"\u0061":2}"#).map(|d| d.0), Some("a".into()));
        assert_eq!(duplicate_key(br#"["a","a",{"a":"a"}]"#), None);
        // Past the few keys compared in a list, a set takes over and still finds a repeat.
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let text = format!("{{{},\"k3\":0}}", many.join(","));
        assert_eq!(duplicate_key(text.as_bytes()).map(|d| d.0), Some("k3".into()));
        let text = format!("{{{}}}", many.join(","));
        assert_eq!(duplicate_key(text.as_bytes()), None);
    }
}
