//! Structure-aware chunking for retrieval.
//!
//! A [`Document`] is cut into chunks of about `target_tokens` (never more
//! than `max_tokens`), preferring, in order: heading boundaries, paragraph
//! boundaries (`"\n\n"`), sentence boundaries, line breaks, and finally
//! word boundaries. Each chunk keeps where it came from (first page and
//! last page, heading path, caption start) so answers can cite it.
//!
//! Rules:
//! - A chunk never spans two pages, so its page is the page to cite.
//! - A chunk never spans two different top-level headings. Below the top
//!   level, small subsections are merged (the chunk's heading path is then
//!   their common prefix) until the chunk holds at least half the target.
//! - When a chunk is cut for size inside one section, the next chunk starts
//!   with the last sentence(s) of the previous one (about `overlap_tokens`)
//!   so a fact split at the cut is still findable. No overlap is carried
//!   across a heading boundary.
//!
//! Token estimate: `max(ceil(words × 1.3), ceil(chars / 4))` (see
//! [`estimate_tokens`]); close to BPE tokenizers for English and French,
//! conservative (over-counting) for text with long words or numbers, and it
//! needs no tokenizer files.

use serde::{Deserialize, Serialize};

use crate::Document;

/// Sizes for [`chunk`], in estimated tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkConfig {
    /// Preferred chunk size (a chunk is closed once it reaches this).
    pub target_tokens: usize,
    /// Hard upper bound for a chunk, overlap included.
    pub max_tokens: usize,
    /// How much of the previous chunk is repeated after a size cut.
    pub overlap_tokens: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            target_tokens: 300,
            max_tokens: 400,
            overlap_tokens: 50,
        }
    }
}

/// A retrieval unit with its citation data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// 0-based position of the chunk in the document.
    pub ordinal: u32,
    /// Page (slide, caption minute, ...) where the chunk's text starts.
    pub page: u32,
    /// Page where it ends (equal to `page` for most chunks).
    pub page_end: u32,
    /// Headings enclosing all of the chunk's text, outermost first.
    pub heading_path: Vec<String>,
    /// The text; paragraphs separated by blank lines.
    pub text: String,
    /// [`estimate_tokens`] of `text`.
    pub token_estimate: u32,
    /// For captions: start of the first cue in the chunk, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<u64>,
    /// For captions: end of the last cue in the chunk, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<u64>,
}

/// Estimated token count: `max(ceil(words × 1.3), ceil(chars / 4))`.
pub fn estimate_tokens(text: &str) -> usize {
    let (w, c) = counts(text);
    tokens(w, c)
}

fn tokens(words: usize, chars: usize) -> usize {
    (words * 13).div_ceil(10).max(chars.div_ceil(4))
}

fn counts(text: &str) -> (usize, usize) {
    (text.split_whitespace().count(), text.chars().count())
}

/// Splits `doc` into chunks (see the module docs for the rules).
pub fn chunk(doc: &Document, cfg: &ChunkConfig) -> Vec<Chunk> {
    let max = cfg.max_tokens.max(16);
    let target = cfg.target_tokens.clamp(8, max);
    let overlap = cfg.overlap_tokens.min(target / 2);
    let mut b = Builder {
        target,
        max,
        overlap,
        cur: Vec::new(),
        words: 0,
        chars: 0,
        new_words: 0,
        new_chars: 0,
        chunks: Vec::new(),
    };
    let mut last_page = None;
    for section in &doc.sections {
        // A chunk never spans two pages (slides, caption minutes): its
        // citation names one page, so that page must hold all of it. No
        // overlap is carried across, for the same reason.
        if last_page.is_some_and(|p| p != section.page) {
            b.flush(false);
        }
        last_page = Some(section.page);
        let meta = Meta {
            page: section.page,
            path: &section.heading_path,
            start_ms: section.start_ms,
            end_ms: section.end_ms,
            caption: section.start_ms.is_some(),
        };
        for para in section
            .text
            .split("\n\n")
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            b.paragraph(para, meta);
        }
    }
    b.flush(false);
    b.chunks
}

/// Where a piece of text comes from.
#[derive(Clone, Copy)]
struct Meta<'a> {
    page: u32,
    path: &'a [String],
    start_ms: Option<u64>,
    end_ms: Option<u64>,
    /// Caption cues flow on with a space, not a paragraph break.
    caption: bool,
}

/// A slice of the source text that is never split further.
#[derive(Clone, Copy)]
struct Piece<'a> {
    text: &'a str,
    words: usize,
    chars: usize,
    meta: Meta<'a>,
    /// Starts a paragraph (joined with a blank line rather than a space).
    para_start: bool,
    /// Repeated from the previous chunk.
    overlap: bool,
}

impl<'a> Piece<'a> {
    fn new(text: &'a str, meta: Meta<'a>, para_start: bool) -> Self {
        let (words, chars) = counts(text);
        Piece {
            text,
            words,
            chars,
            meta,
            para_start,
            overlap: false,
        }
    }

    fn separator(&self) -> &'static str {
        if self.para_start && !self.meta.caption {
            "\n\n"
        } else {
            " "
        }
    }
}

struct Builder<'a> {
    target: usize,
    max: usize,
    overlap: usize,
    cur: Vec<Piece<'a>>,
    /// Word and char counts of the joined current text (separators included).
    words: usize,
    chars: usize,
    /// The same, for the pieces that are not overlap.
    new_words: usize,
    new_chars: usize,
    chunks: Vec<Chunk>,
}

impl<'a> Builder<'a> {
    fn tokens(&self) -> usize {
        tokens(self.words, self.chars)
    }

    fn new_tokens(&self) -> usize {
        tokens(self.new_words, self.new_chars)
    }

    fn has_new(&self) -> bool {
        self.cur.iter().any(|p| !p.overlap)
    }

    fn tokens_with(&self, p: &Piece<'_>) -> usize {
        let sep = if self.cur.is_empty() {
            0
        } else {
            p.separator().len()
        };
        tokens(self.words + p.words, self.chars + sep + p.chars)
    }

    fn push(&mut self, p: Piece<'a>) {
        let sep = if self.cur.is_empty() {
            0
        } else {
            p.separator().len()
        };
        self.words += p.words;
        self.chars += sep + p.chars;
        if !p.overlap {
            self.new_words += p.words;
            self.new_chars += sep + p.chars;
        }
        self.cur.push(p);
    }

    fn clear(&mut self) {
        self.cur.clear();
        self.words = 0;
        self.chars = 0;
        self.new_words = 0;
        self.new_chars = 0;
    }

    /// Adds new content, dropping a carried-over overlap if both don't fit.
    fn add(&mut self, p: Piece<'a>) {
        if !self.has_new() && self.tokens_with(&p) > self.max {
            self.clear();
        }
        self.push(p);
    }

    fn paragraph(&mut self, text: &'a str, meta: Meta<'a>) {
        if let (Some(first), Some(last)) = (self.cur.first(), self.cur.last()) {
            // Never across a top-level heading; across a lower one only
            // while the chunk is still small.
            let top_changed = first.meta.path.first() != meta.path.first();
            let sub_changed = last.meta.path != meta.path;
            if top_changed || (sub_changed && self.new_tokens() >= self.target / 2) {
                self.flush(false);
            }
        }
        let whole = Piece::new(text, meta, true);
        if tokens(whole.words, whole.chars) <= self.max {
            if self.has_new() && self.tokens() >= self.target {
                self.flush(true);
            }
            if self.tokens_with(&whole) <= self.max {
                self.add(whole);
                return;
            }
            if self.new_tokens() >= self.target / 2 {
                // Enough already: end at the paragraph boundary.
                self.flush(true);
                self.add(whole);
                return;
            }
        }
        // Too long for what is left: continue sentence by sentence.
        let mut first = true;
        for s in split_sentences(text) {
            for part in split_long(s, self.target, self.max) {
                let p = Piece::new(part, meta, first);
                first = false;
                if self.has_new()
                    && (self.tokens() >= self.target || self.tokens_with(&p) > self.max)
                {
                    self.flush(true);
                }
                self.add(p);
            }
        }
    }

    /// Emits the current chunk; with `carry`, starts the next one with the
    /// overlap. A chunk made only of carried overlap is discarded.
    fn flush(&mut self, carry: bool) {
        if !self.has_new() {
            self.clear();
            return;
        }
        let mut text = String::new();
        for (i, p) in self.cur.iter().enumerate() {
            if i > 0 {
                text.push_str(p.separator());
            }
            text.push_str(p.text);
        }
        let page = self.cur.iter().map(|p| p.meta.page).next().unwrap_or(1);
        let page_end = self
            .cur
            .iter()
            .map(|p| p.meta.page)
            .max()
            .unwrap_or(page)
            .max(page);
        let mut heading_path: Vec<String> = self.cur[0].meta.path.to_vec();
        for p in &self.cur[1..] {
            let common = heading_path
                .iter()
                .zip(p.meta.path)
                .take_while(|(a, b)| a == b)
                .count();
            heading_path.truncate(common);
        }
        let token_estimate = u32::try_from(estimate_tokens(&text)).unwrap_or(u32::MAX);
        self.chunks.push(Chunk {
            ordinal: u32::try_from(self.chunks.len()).unwrap_or(u32::MAX),
            page,
            page_end,
            heading_path,
            text,
            token_estimate,
            start_ms: self.cur.iter().find_map(|p| p.meta.start_ms),
            end_ms: self.cur.iter().rev().find_map(|p| p.meta.end_ms),
        });
        let carried = if carry && self.overlap > 0 {
            self.overlap_pieces()
        } else {
            Vec::new()
        };
        self.clear();
        for p in carried {
            self.push(p);
        }
    }

    /// The trailing sentences of the current chunk that fit in the overlap
    /// budget; if even the last sentence is too long, its last words.
    fn overlap_pieces(&self) -> Vec<Piece<'a>> {
        let mut out: Vec<Piece<'a>> = Vec::new();
        let (mut w, mut c) = (0usize, 0usize);
        'outer: for piece in self.cur.iter().rev() {
            for s in split_sentences(piece.text).into_iter().rev() {
                let (sw, sc) = counts(s);
                if tokens(w + sw, c + sc + 1) > self.overlap {
                    break 'outer;
                }
                w += sw;
                c += sc + 1;
                let starts_piece = s.as_ptr() == piece.text.as_ptr();
                let mut p = Piece::new(s, piece.meta, starts_piece && piece.para_start);
                p.overlap = true;
                out.push(p);
            }
        }
        if out.is_empty()
            && let Some(last) = self.cur.last()
        {
            let tail = word_tail(last.text, self.overlap);
            if !tail.is_empty() {
                let mut p = Piece::new(tail, last.meta, false);
                p.overlap = true;
                out.push(p);
            }
        }
        out.reverse();
        out
    }
}

/// The longest suffix of `text`, starting at a word, within `budget` tokens.
fn word_tail(text: &str, budget: usize) -> &str {
    let base = text.as_ptr() as usize;
    let starts: Vec<usize> = text
        .split_whitespace()
        .map(|w| w.as_ptr() as usize - base)
        .collect();
    let mut best = text.len();
    for &start in starts.iter().rev() {
        if estimate_tokens(&text[start..]) > budget {
            break;
        }
        best = start;
    }
    &text[best..]
}

/// Sentence slices of a paragraph. A sentence ends at `.`, `!`, `?` or `…`
/// (plus closing quotes/brackets) followed by whitespace and a character
/// that is not lower-case (so "e.g. the" and "2.3 Hz" stay whole), or right
/// after the CJK full stops `。！？`.
pub(crate) fn split_sentences(text: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut i = 0usize;
    while i < chars.len() {
        let c = chars[i].1;
        if matches!(c, '。' | '！' | '？') {
            let end = chars.get(i + 1).map_or(text.len(), |x| x.0);
            push_trimmed(&mut out, &text[start..end]);
            start = end;
        } else if matches!(c, '.' | '!' | '?' | '…') {
            let mut j = i + 1;
            while j < chars.len() && matches!(chars[j].1, '"' | '\'' | ')' | ']' | '”' | '’' | '»')
            {
                j += 1;
            }
            if j < chars.len() && chars[j].1.is_whitespace() {
                let mut k = j;
                while k < chars.len() && chars[k].1.is_whitespace() {
                    k += 1;
                }
                if k < chars.len() && !chars[k].1.is_lowercase() {
                    push_trimmed(&mut out, &text[start..chars[j].0]);
                    start = chars[k].0;
                    i = k;
                    continue;
                }
            }
        }
        i += 1;
    }
    push_trimmed(&mut out, &text[start..]);
    out
}

fn push_trimmed<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    let t = s.trim();
    if !t.is_empty() {
        out.push(t);
    }
}

/// Splits a sentence longer than `max` tokens: first at line breaks (PDF
/// lists and tables often lack punctuation), then at words, then (for
/// space-less blobs) at characters. Parts aim at `target` tokens.
fn split_long(s: &str, target: usize, max: usize) -> Vec<&str> {
    if estimate_tokens(s) <= max {
        return vec![s];
    }
    let mut out = Vec::new();
    let mut group_start: Option<usize> = None;
    let mut group_end = 0usize;
    let base = s.as_ptr() as usize;
    for line in s.split('\n') {
        let off = line.as_ptr() as usize - base;
        let end = off + line.len();
        if line.trim().is_empty() {
            continue;
        }
        match group_start {
            Some(gs) if estimate_tokens(&s[gs..end]) <= target => group_end = end,
            Some(gs) => {
                out.push(&s[gs..group_end]);
                group_start = Some(off);
                group_end = end;
            }
            None => {
                group_start = Some(off);
                group_end = end;
            }
        }
    }
    if let Some(gs) = group_start {
        out.push(&s[gs..group_end]);
    }
    out.into_iter()
        .flat_map(|part| split_words(part.trim(), target, max))
        .collect()
}

fn split_words(s: &str, target: usize, max: usize) -> Vec<&str> {
    if estimate_tokens(s) <= max {
        return vec![s];
    }
    let base = s.as_ptr() as usize;
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0usize;
    let (mut w, mut c) = (0usize, 0usize);
    for word in s.split_whitespace() {
        let off = word.as_ptr() as usize - base;
        let wend = off + word.len();
        let wc = word.chars().count();
        if tokens(1, wc) > target {
            // A space-less blob: flush, then cut it by characters.
            if let Some(st) = start.take() {
                out.push(&s[st..end]);
            }
            out.extend(split_chars(word, target * 4));
            (w, c) = (0, 0);
            continue;
        }
        match start {
            Some(st) => {
                let gap = s[end..off].chars().count();
                if tokens(w + 1, c + gap + wc) > target {
                    out.push(&s[st..end]);
                    start = Some(off);
                    (w, c) = (1, wc);
                } else {
                    w += 1;
                    c += gap + wc;
                }
            }
            None => {
                start = Some(off);
                (w, c) = (1, wc);
            }
        }
        end = wend;
    }
    if let Some(st) = start {
        out.push(&s[st..end]);
    }
    out
}

fn split_chars(s: &str, max_chars: usize) -> Vec<&str> {
    let max_chars = max_chars.max(1);
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut n = 0usize;
    for (i, _) in s.char_indices() {
        if n == max_chars {
            out.push(&s[start..i]);
            start = i;
            n = 0;
        }
        n += 1;
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Section;

    fn section(page: u32, path: &[&str], text: &str) -> Section {
        Section {
            page,
            heading_path: path.iter().map(|s| s.to_string()).collect(),
            text: text.into(),
            start_ms: None,
            end_ms: None,
        }
    }

    #[test]
    fn estimates() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(
            estimate_tokens("one two three four five six seven eight nine ten"),
            13
        );
        assert_eq!(estimate_tokens(&"x".repeat(400)), 100);
    }

    #[test]
    fn sentences() {
        assert_eq!(
            split_sentences("It swings at 2.3 Hz. Why? See e.g. the book.\n“Yes.” Next"),
            [
                "It swings at 2.3 Hz.",
                "Why?",
                "See e.g. the book.",
                "“Yes.”",
                "Next"
            ]
        );
        assert_eq!(split_sentences("一。二。"), ["一。", "二。"]);
    }

    #[test]
    fn long_blobs_are_bounded() {
        let blob = "y".repeat(10_000);
        let doc = Document {
            sections: vec![section(1, &[], &blob)],
            page_count: 1,
            title: None,
        };
        let chunks = chunk(&doc, &ChunkConfig::default());
        assert!(chunks.iter().all(|c| c.token_estimate <= 400));
        assert!(chunks.iter().map(|c| c.text.len()).sum::<usize>() >= 10_000);
    }

    #[test]
    fn small_subsections_merge_but_top_level_splits() {
        let doc = Document {
            sections: vec![
                section(1, &["Ch 1", "A"], "Alpha text."),
                section(1, &["Ch 1", "B"], "Beta text."),
                section(2, &["Ch 2"], "Gamma text."),
            ],
            page_count: 2,
            title: None,
        };
        let chunks = chunk(&doc, &ChunkConfig::default());
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].text, "Alpha text.\n\nBeta text.");
        assert_eq!(chunks[0].heading_path, ["Ch 1"]);
        assert_eq!(chunks[1].heading_path, ["Ch 2"]);
        assert_eq!(chunks[1].page, 2);
        assert_eq!(chunks[1].ordinal, 1);
    }
}
