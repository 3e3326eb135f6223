//! Byte ranges and validators for serving model files: owns the reading of
//! `Range` (RFC 9110 §14) and `If-None-Match` (RFC 9110 §13.1.2) headers and
//! the shape of the entity tags the server emits.
//!
//! Policy choices, all allowed by RFC 9110:
//! - A `Range` header that is malformed, uses another unit, or asks for more
//!   than one range is ignored: the whole representation is served (200).
//!   Multipart responses are not produced.
//! - For an empty representation every range is ignored (nothing to slice).
//! - `If-None-Match` uses the weak comparison, as the RFC requires.

/// What to do with a request's `Range` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Serve the whole representation (200).
    Full,
    /// Serve bytes `start..=end_inclusive` (206 with `Content-Range`).
    Partial {
        /// First byte served.
        start: u64,
        /// Last byte served (always `< len`).
        end_inclusive: u64,
    },
    /// No byte of the range exists (416 with `Content-Range: bytes */len`).
    Unsatisfiable,
}

/// Parses a digit string; `None` if empty or not all ASCII digits. Values
/// beyond `u64` saturate (they are positions past any real length).
fn parse_pos(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Interprets a `Range` header for a representation of `len` bytes.
///
/// Handles `bytes=first-last` (last clamped to the end), `bytes=first-`,
/// and `bytes=-suffix` (the last `suffix` bytes, or all of them if fewer).
pub fn parse_range(header: &str, len: u64) -> RangeOutcome {
    let header = header.trim();
    let Some((unit, set)) = header.split_once('=') else {
        return RangeOutcome::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || len == 0 {
        return RangeOutcome::Full;
    }
    // A list may contain empty elements (RFC 9110 §5.6.1).
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeOutcome::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeOutcome::Full;
    };
    let end = len - 1;
    match (first, last) {
        ("", suffix) => match parse_pos(suffix) {
            None => RangeOutcome::Full,
            Some(0) => RangeOutcome::Unsatisfiable,
            Some(n) => RangeOutcome::Partial {
                start: len.saturating_sub(n),
                end_inclusive: end,
            },
        },
        (first, "") => match parse_pos(first) {
            None => RangeOutcome::Full,
            Some(start) if start >= len => RangeOutcome::Unsatisfiable,
            Some(start) => RangeOutcome::Partial {
                start,
                end_inclusive: end,
            },
        },
        (first, last) => match (parse_pos(first), parse_pos(last)) {
            (Some(start), Some(last)) if start <= last => {
                if start >= len {
                    RangeOutcome::Unsatisfiable
                } else {
                    RangeOutcome::Partial {
                        start,
                        end_inclusive: last.min(end),
                    }
                }
            }
            // last < first, or not numbers: an invalid range-spec.
            _ => RangeOutcome::Full,
        },
    }
}

/// The `Content-Range` value of a 206 response.
pub fn content_range(start: u64, end_inclusive: u64, len: u64) -> String {
    format!("bytes {start}-{end_inclusive}/{len}")
}

/// The `Content-Range` value of a 416 response.
pub fn unsatisfied_content_range(len: u64) -> String {
    format!("bytes */{len}")
}

/// The strong entity tag for content with the given SHA-256 (hex), quoted as
/// it goes in the `ETag` header: `"sha256-<hex>"`.
pub fn strong_etag(content_sha256_hex: &str) -> String {
    format!("\"sha256-{content_sha256_hex}\"")
}

/// The opaque tag of an entity tag (`W/"x"` or `"x"` → `x`), if well formed.
fn opaque_tag(etag: &str) -> Option<&str> {
    let etag = etag.trim();
    let quoted = etag.strip_prefix("W/").unwrap_or(etag);
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('"')).then_some(inner)
}

/// Whether an `If-None-Match` value matches `etag` (so a 304 is due): `*`
/// matches any current representation; otherwise any listed tag whose
/// opaque part equals `etag`'s (weak comparison). Malformed lists match
/// nothing from the first malformed element on.
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let value = if_none_match.trim();
    if value == "*" {
        return true;
    }
    let Some(wanted) = opaque_tag(etag) else {
        return false;
    };
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        if rest.is_empty() {
            return false;
        }
        let body = rest.strip_prefix("W/").unwrap_or(rest);
        let Some(body) = body.strip_prefix('"') else {
            return false;
        };
        // etagc excludes '"' but may contain ',', so find the closing quote.
        let Some(close) = body.find('"') else {
            return false;
        };
        if &body[..close] == wanted {
            return true;
        }
        rest = &body[close + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::RangeOutcome::{Full, Partial, Unsatisfiable};
    use super::*;

    fn partial(start: u64, end_inclusive: u64) -> RangeOutcome {
        Partial {
            start,
            end_inclusive,
        }
    }

    #[test]
    fn closed_ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), partial(0, 99));
        assert_eq!(parse_range("bytes=0-0", 1000), partial(0, 0));
        assert_eq!(parse_range("bytes=999-999", 1000), partial(999, 999));
        // End beyond the length is clamped.
        assert_eq!(parse_range("bytes=500-5000", 1000), partial(500, 999));
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 10),
            partial(0, 9)
        );
        // Whitespace, unit case and empty list elements are tolerated.
        assert_eq!(parse_range("  Bytes = 10-19 , ", 100), partial(10, 19));
    }

    #[test]
    fn open_and_suffix_ranges() {
        assert_eq!(parse_range("bytes=100-", 1000), partial(100, 999));
        assert_eq!(parse_range("bytes=-500", 1000), partial(500, 999));
        // A suffix longer than the representation selects all of it.
        assert_eq!(parse_range("bytes=-5000", 1000), partial(0, 999));
        assert_eq!(parse_range("bytes=-1", 1), partial(0, 0));
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=1000-2000", 1000), Unsatisfiable);
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 1000),
            Unsatisfiable
        );
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
    }

    #[test]
    fn malformed_or_unsupported_is_full() {
        for header in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=abc",
            "bytes=5",
            "bytes=10-5",
            "bytes=+1-2",
            "bytes=1-2-3",
            "bytes=0x10-20",
            "bytes= 1 - 2",
            "bytes=-1-",
            "items=0-10",
            "0-10",
            // Several ranges: served whole rather than as multipart.
            "bytes=0-1,5-6",
            "bytes=0-1, 2000-3000",
        ] {
            assert_eq!(parse_range(header, 1000), Full, "{header:?}");
        }
        // Nothing to slice in an empty representation.
        assert_eq!(parse_range("bytes=0-10", 0), Full);
        assert_eq!(parse_range("bytes=-10", 0), Full);
    }

    #[test]
    fn content_range_values() {
        assert_eq!(content_range(0, 99, 1000), "bytes 0-99/1000");
        assert_eq!(unsatisfied_content_range(1000), "bytes */1000");
    }

    #[test]
    fn etags() {
        let etag = strong_etag("ab12");
        assert_eq!(etag, "\"sha256-ab12\"");
        assert!(etag_matches("\"sha256-ab12\"", &etag));
        assert!(etag_matches("*", &etag));
        assert!(etag_matches(" * ", &etag));
        // Weak comparison: W/ on either side still matches.
        assert!(etag_matches("W/\"sha256-ab12\"", &etag));
        assert!(etag_matches("\"sha256-ab12\"", "W/\"sha256-ab12\""));
        // Lists, with odd spacing and commas inside tags.
        assert!(etag_matches("\"x\", W/\"sha256-ab12\"", &etag));
        assert!(etag_matches("\"a,b\",\"sha256-ab12\"", &etag));
        assert!(etag_matches(",,\"sha256-ab12\"", &etag));
        assert!(!etag_matches("\"x\", \"y\"", &etag));
        assert!(!etag_matches("\"sha256-ab1\"", &etag));
        assert!(!etag_matches("sha256-ab12", &etag));
        assert!(!etag_matches("", &etag));
        assert!(!etag_matches("\"sha256-ab12", &etag));
        // Malformed element stops the scan.
        assert!(!etag_matches("junk, \"sha256-ab12\"", &etag));
        // A malformed current etag never matches a list.
        assert!(!etag_matches("\"x\"", "x"));
    }
}
