//! Exact numbers as text. Amounts, quantities and typed properties keep every digit they were
//! given, however many (FlexPrice's amounts are arbitrary-precision decimals): a value is
//! checked against a number grammar and brought to JSON's spelling, never converted to a
//! binary float or a fixed-size decimal.

use serde_json::Number;

/// A decimal number, exactly as given, in JSON's number spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exact {
    text: String,
    /// Below zero (`-0` and `-0.00` are not).
    negative: bool,
    /// No fraction and no exponent.
    integer: bool,
}

impl Exact {
    /// Reads `[+-]digits[.digits][(e|E)[+-]digits]`, where the digits on one side of the point
    /// may be missing (`.5`, `5.`), of any length. The result is valid JSON with the same
    /// digits: a `+` sign, leading zeros of the whole part and a lone point are dropped, a
    /// missing whole part becomes `0`, and the exponent is spelt as serde_json spells it
    /// (`.5` → `0.5`, `-.5` → `-0.5`, `5.` → `5`, `007.10` → `7.10`, `+1.5E3` → `1.5e+3`).
    /// `None` for anything else (white space included).
    pub fn parse(text: &str) -> Option<Exact> {
        let (negative_sign, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (whole, fraction) = match mantissa.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (mantissa, ""),
        };
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
            return None;
        }
        // serde_json spells a JSON number's exponent `e+N` or `e-N`; so does this, so that a
        // number read from JSON and one read from text compare equal.
        let exponent = match exponent.get(1..) {
            None => None,
            Some(power) => {
                let (sign, power) = match power.strip_prefix('-') {
                    Some(p) => ('-', p),
                    None => ('+', power.strip_prefix('+').unwrap_or(power)),
                };
                if power.is_empty() || !digits(power) {
                    return None;
                }
                Some((sign, power))
            }
        };
        let whole = whole.trim_start_matches('0');
        let mut out = String::with_capacity(text.len() + 1);
        if negative_sign {
            out.push('-');
        }
        out.push_str(if whole.is_empty() { "0" } else { whole });
        if !fraction.is_empty() {
            out.push('.');
            out.push_str(fraction);
        }
        if let Some((sign, power)) = exponent {
            out.push('e');
            out.push(sign);
            out.push_str(power);
        }
        let nonzero = whole.bytes().chain(fraction.bytes()).any(|b| b != b'0');
        Some(Exact {
            text: out,
            negative: negative_sign && nonzero,
            integer: fraction.is_empty() && exponent.is_none(),
        })
    }

    /// Reads a whole number of any length: `[+-]digits` (`+007` → `7`).
    pub fn parse_integer(text: &str) -> Option<Exact> {
        Exact::parse(text).filter(|e| e.integer && !text.contains('.'))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// A JSON number with the same digits.
    pub fn to_number(&self) -> Number {
        // `parse` only lets JSON's number grammar through; serde_json's arbitrary_precision
        // keeps the text as it is.
        self.text.parse().expect("a parsed decimal is a JSON number")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_every_digit_in_json_spelling() {
        for (given, kept) in [
            ("1234567890.123456789", "1234567890.123456789"),
            (
                "123456789012345678901234567890.000000000000000000001",
                "123456789012345678901234567890.000000000000000000001",
            ),
            ("-12.5", "-12.5"),
            (".5", "0.5"),
            ("-.5", "-0.5"),
            ("5.", "5"),
            ("+5", "5"),
            ("007.10", "7.10"),
            ("0", "0"),
            ("-0", "-0"),
            ("1e3", "1e+3"),
            ("1.5E+30", "1.5e+30"),
            ("5.e-3", "5e-3"),
            ("1E007", "1e+007"),
            ("2.50", "2.50"),
        ] {
            let exact = Exact::parse(given).unwrap_or_else(|| panic!("{given} is a decimal"));
            assert_eq!(exact.as_str(), kept, "{given}");
            assert_eq!(exact.to_number().to_string(), kept, "{given}");
        }
        for bad in [
            "", ".", "-", "+", "e5", ".e5", "1e", "1e+", "1.2.3", "1,5", " 1", "1 ", "0x10", "1_000", "NaN", "inf",
            "--1", "1e5.5", "١",
        ] {
            assert_eq!(Exact::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn signs_and_integers() {
        assert!(Exact::parse("-0.001").unwrap().is_negative());
        assert!(!Exact::parse("-0.000").unwrap().is_negative());
        assert!(!Exact::parse("0.5").unwrap().is_negative());
        assert_eq!(
            Exact::parse_integer("123456789012345678901234").unwrap().as_str(),
            "123456789012345678901234"
        );
        assert_eq!(Exact::parse_integer("+007").unwrap().as_str(), "7");
        assert_eq!(Exact::parse_integer("-42").unwrap().as_str(), "-42");
        for not_whole in ["1.0", "5.", "1e3", ".5"] {
            assert_eq!(Exact::parse_integer(not_whole), None, "{not_whole}");
        }
    }
}
