//! Citations that hold: the `[n]` markers of an answer are checked against
//! the passages actually given to the model. A marker for a passage that was
//! not given is removed from the text; every kept marker becomes a citation
//! with the passage's source, page and a quote taken from the stored chunk
//! text (the sentence of the chunk that best supports the sentence carrying
//! the marker), so the quote really appears in that chunk.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use utoipa::ToSchema;

use crate::ids::{ChunkId, SourceId};
use crate::knowledge::SearchHit;

/// One citation, as API.md defines it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema, PartialEq)]
pub struct Citation {
    /// Matches a `[n]` marker in the answer's text.
    pub n: usize,
    pub source_id: SourceId,
    pub source_title: String,
    /// Page (or slide; 1-based). For captions and transcripts, the cue's
    /// ordinal page as stored.
    pub page: i64,
    pub chunk_id: ChunkId,
    /// A sentence that appears verbatim in the cited chunk.
    pub quote: String,
}

/// A marker found in the text: its byte range and the numbers it names
/// (`[2]`, `[1, 3]`, `[1-2]` are all markers).
struct Marker {
    start: usize,
    end: usize,
    numbers: Vec<usize>,
}

fn find_markers(text: &str) -> Vec<Marker> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'['
            && let Some(len) = text[i + 1..].find(']')
            && let Some(numbers) = parse_marker(&text[i + 1..i + 1 + len])
        {
            out.push(Marker {
                start: i,
                end: i + len + 2,
                numbers,
            });
            i += len + 2;
            continue;
        }
        i += 1;
    }
    out
}

fn parse_marker(inner: &str) -> Option<Vec<usize>> {
    if inner.is_empty() || inner.len() > 24 {
        return None;
    }
    let mut numbers = Vec::new();
    for part in inner.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once(['-', '–']) {
            let a: usize = a.trim().parse().ok()?;
            let b: usize = b.trim().parse().ok()?;
            if b < a || b - a > 10 {
                return None;
            }
            numbers.extend(a..=b);
        } else {
            numbers.push(part.parse().ok()?);
        }
    }
    Some(numbers)
}

/// Checks the markers of `text` against the `passages` given (marker `n`
/// is `passages[n - 1]`) and `in_scope`. Returns the text with invalid
/// markers removed and the citations, ordered by `n`.
pub fn verify(
    text: &str,
    passages: &[SearchHit],
    in_scope: impl Fn(SourceId) -> bool,
) -> (String, Vec<Citation>) {
    let markers = find_markers(text);
    let mut cleaned = String::with_capacity(text.len());
    let mut last = 0;
    // n → the sentences of the answer that cite it.
    let mut cited: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for m in &markers {
        cleaned.push_str(&text[last..m.start]);
        last = m.end;
        let valid: Vec<usize> = m
            .numbers
            .iter()
            .copied()
            .filter(|n| *n >= 1 && *n <= passages.len() && in_scope(passages[*n - 1].source_id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if valid.is_empty() {
            // Drop the marker and the space before it.
            while cleaned.ends_with(' ') {
                cleaned.pop();
            }
            continue;
        }
        let sentence = sentence_before(text, m.start).to_owned();
        let rendered: Vec<String> = valid.iter().map(|n| format!("[{n}]")).collect();
        cleaned.push_str(&rendered.join(""));
        for n in valid {
            cited.entry(n).or_default().push(sentence.clone());
        }
    }
    cleaned.push_str(&text[last..]);
    let citations = cited
        .into_iter()
        .map(|(n, claims)| {
            let p = &passages[n - 1];
            Citation {
                n,
                source_id: p.source_id,
                source_title: p.source_title.clone(),
                page: p.page,
                chunk_id: p.chunk_id,
                quote: best_quote(&p.text, &claims.join(" ")),
            }
        })
        .collect();
    (cleaned.trim().to_owned(), citations)
}

/// The answer's sentence that ends at `pos` (where a marker starts).
fn sentence_before(text: &str, pos: usize) -> &str {
    let head = &text[..pos];
    let start = head.rfind(['.', '!', '?', '\n']).map_or(0, |i| i + 1);
    head[start..].trim()
}

/// Splits stored text into sentences that appear verbatim in it.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (i, (pos, c)) in chars.iter().enumerate() {
        let end_here = match c {
            '!' | '?' | '\n' => true,
            '.' => {
                // Not a decimal point or an abbreviation's dot.
                let next = chars.get(i + 1).map(|(_, c)| *c);
                let prev_word: String = text[start..*pos]
                    .rsplit(char::is_whitespace)
                    .next()
                    .unwrap_or("")
                    .to_lowercase();
                !matches!(next, Some(n) if n.is_ascii_digit() || n.is_alphanumeric())
                    && !matches!(
                        prev_word.as_str(),
                        "e.g"
                            | "i.e"
                            | "fig"
                            | "eq"
                            | "dr"
                            | "mr"
                            | "mrs"
                            | "ms"
                            | "no"
                            | "vs"
                            | "etc"
                            | "ref"
                    )
            }
            _ => false,
        };
        if end_here {
            let s = text[start..pos + c.len_utf8()].trim();
            if s.chars().filter(|c| c.is_alphanumeric()).count() >= 3 {
                out.push(s);
            }
            start = pos + c.len_utf8();
        }
    }
    let tail = text[start..].trim();
    if tail.chars().filter(|c| c.is_alphanumeric()).count() >= 3 {
        out.push(tail);
    }
    out
}

/// The chunk sentence sharing the most words with `claim` (a quote of at
/// most ~300 characters, cut on a word boundary inside the sentence so it
/// still appears verbatim).
pub fn best_quote(chunk: &str, claim: &str) -> String {
    let claim_words: HashSet<String> = super::safety::words(claim)
        .into_iter()
        .filter(|w| w.len() > 2)
        .collect();
    let best = sentences(chunk)
        .into_iter()
        .enumerate()
        .max_by(|(ia, a), (ib, b)| {
            let score = |s: &str| {
                super::safety::words(s)
                    .into_iter()
                    .filter(|w| claim_words.contains(w))
                    .collect::<HashSet<_>>()
                    .len()
            };
            score(a).cmp(&score(b)).then(ib.cmp(ia))
        })
        .map(|(_, s)| s)
        .unwrap_or_else(|| chunk.trim());
    clip(best, 300).to_owned()
}

fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    match s[..end].rfind(' ') {
        Some(i) if i > max / 2 => &s[..i],
        _ => &s[..end],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(text: &str) -> SearchHit {
        SearchHit {
            chunk_id: ChunkId::new(),
            source_id: SourceId::new(),
            source_title: "Notes".into(),
            page: 3,
            text: text.into(),
            score: 1.0,
            similarity: None,
        }
    }

    #[test]
    fn only_markers_of_given_passages_survive() {
        let passages = vec![
            hit("Lift is the force on a wing. It acts upwards."),
            hit("Drag opposes motion."),
        ];
        let (text, cites) = verify(
            "Lift acts upwards [1]. Drag opposes motion [2][7]. Magic [0].",
            &passages,
            |_| true,
        );
        assert_eq!(
            text,
            "Lift acts upwards [1]. Drag opposes motion [2]. Magic."
        );
        assert_eq!(cites.len(), 2);
        assert_eq!(cites[0].n, 1);
        assert_eq!(cites[0].quote, "It acts upwards.");
        assert!(passages[0].text.contains(&cites[0].quote));
        assert_eq!(cites[1].quote, "Drag opposes motion.");
    }

    #[test]
    fn out_of_scope_passages_are_never_cited() {
        let passages = vec![hit("Lift is the force on a wing.")];
        let (text, cites) = verify("Lift [1].", &passages, |_| false);
        assert_eq!(text, "Lift.");
        assert!(cites.is_empty());
    }

    #[test]
    fn lists_and_ranges_of_markers_are_read() {
        let passages = vec![hit("A one."), hit("B two."), hit("C three.")];
        let (text, cites) = verify("All three [1, 2] and [2-3].", &passages, |_| true);
        assert_eq!(text, "All three [1][2] and [2][3].");
        assert_eq!(cites.iter().map(|c| c.n).collect::<Vec<_>>(), vec![1, 2, 3]);
        let (text, _) = verify("An array [x] stays.", &passages, |_| true);
        assert_eq!(text, "An array [x] stays.");
    }

    #[test]
    fn sentences_respect_decimals_and_abbreviations() {
        let s = sentences("The ratio is 3.5 at Mach 2. See Fig. 4 for details. E.g. this one");
        assert_eq!(
            s,
            vec![
                "The ratio is 3.5 at Mach 2.",
                "See Fig. 4 for details.",
                "E.g. this one"
            ]
        );
    }
}
