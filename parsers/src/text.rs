//! Plain text and Markdown.
//!
//! Plain text pages are separated by form feeds (`\x0c`, what `pdftotext`
//! and many printers' text exports use); without them everything is page 1.
//! Markdown tracks ATX (`# x`) and setext (`x` over `===`) headings as the
//! heading path, ignores `#` lines inside fenced code, and takes the title
//! from YAML front matter or the first level-1 heading.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::{Document, ExtractLimits, ParseError, Section, tidy_text};

/// Reads a text file up to `limits.max_text_bytes`, strips a UTF-8 BOM,
/// replaces invalid UTF-8 (sniffing checked only the start) and normalises
/// line endings to `\n`.
pub(crate) fn read_text(path: &Path, limits: &ExtractLimits) -> Result<String, ParseError> {
    let file = File::open(path)?;
    let mut buf = Vec::new();
    file.take(limits.max_text_bytes.saturating_add(1))
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > limits.max_text_bytes {
        return Err(ParseError::TooLarge(format!(
            "text files may be at most {}",
            crate::human_size(limits.max_text_bytes)
        )));
    }
    let bytes = buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&buf);
    let s = String::from_utf8_lossy(bytes);
    Ok(s.replace("\r\n", "\n").replace('\r', "\n"))
}

/// Plain text: one section per form-feed page.
pub(crate) fn plain(s: &str) -> Document {
    let mut sections = Vec::new();
    let mut pages = 0u32;
    for (i, page) in s.split('\x0c').enumerate() {
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        pages = n;
        let text = tidy_text(page);
        if !text.is_empty() {
            sections.push(Section {
                page: n,
                heading_path: Vec::new(),
                text,
                start_ms: None,
                end_ms: None,
            });
        }
    }
    // A trailing form feed ends the last page rather than opening a new one.
    if s.trim_end_matches([' ', '\n', '\t', '\r'])
        .ends_with('\x0c')
    {
        pages = pages.saturating_sub(1).max(1);
    }
    Document {
        sections,
        page_count: pages.max(1),
        title: None,
    }
}

/// Markdown: sections split at headings, each carrying its heading path.
pub(crate) fn markdown(s: &str) -> Document {
    let mut lines: Vec<&str> = s.split('\n').collect();
    let mut title = None;
    // YAML front matter: `---` on the first line up to the next `---`/`...`.
    if lines.first().map(|l| l.trim_end()) == Some("---")
        && let Some(end) = lines
            .iter()
            .skip(1)
            .take(200)
            .position(|l| matches!(l.trim_end(), "---" | "..."))
    {
        for l in &lines[1..=end] {
            if let Some(v) = l.strip_prefix("title:") {
                let v = v.trim().trim_matches(|c| c == '"' || c == '\'').trim();
                if !v.is_empty() {
                    title = Some(v.to_string());
                }
            }
        }
        lines.drain(..=end + 1);
    }

    let mut b = Builder::default();
    let mut fence: Option<(char, usize)> = None;
    for line in lines {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some((ch, len)) = fence {
            b.line(line);
            let run = trimmed.chars().take_while(|c| *c == ch).count();
            if run >= len && trimmed[run * ch.len_utf8()..].trim().is_empty() {
                fence = None;
            }
            continue;
        }
        if indent <= 3 {
            let ch = trimmed.chars().next().unwrap_or(' ');
            if ch == '`' || ch == '~' {
                let run = trimmed.chars().take_while(|c| *c == ch).count();
                if run >= 3 {
                    fence = Some((ch, run));
                    b.line(line);
                    continue;
                }
            }
            if let Some((level, text)) = atx_heading(trimmed) {
                if level == 1 && title.is_none() && !text.is_empty() {
                    title = Some(text.clone());
                }
                b.heading(level, text);
                continue;
            }
            if let Some(level) = setext_underline(trimmed)
                && let Some(text) = b.take_setext_candidate()
            {
                if level == 1 && title.is_none() {
                    title = Some(text.clone());
                }
                b.heading(level, text);
                continue;
            }
        }
        b.line(line);
    }
    b.flush();
    Document {
        sections: b.sections,
        page_count: 1,
        title,
    }
}

/// `## Title ##` → (2, "Title").
fn atx_heading(line: &str) -> Option<(u8, String)> {
    let level = line.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &line[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None; // `#hashtag`, not a heading
    }
    let mut text = rest.trim();
    // Optional closing sequence: ` ##`.
    let without = text.trim_end_matches('#');
    if without.len() < text.len() && (without.is_empty() || without.ends_with([' ', '\t'])) {
        text = without.trim_end();
    }
    Some((u8::try_from(level).unwrap_or(6), text.to_string()))
}

/// `===` → 1, `---` → 2.
fn setext_underline(line: &str) -> Option<u8> {
    let t = line.trim_end();
    if t.len() >= 2 && t.chars().all(|c| c == '=') {
        Some(1)
    } else if t.len() >= 2 && t.chars().all(|c| c == '-') {
        Some(2)
    } else {
        None
    }
}

#[derive(Default)]
struct Builder {
    sections: Vec<Section>,
    headings: Vec<(u8, String)>,
    lines: Vec<String>,
}

impl Builder {
    fn line(&mut self, l: &str) {
        self.lines.push(l.trim_end().to_string());
    }

    /// A setext underline turns the paragraph's single preceding line into
    /// a heading (if that line opened a paragraph).
    fn take_setext_candidate(&mut self) -> Option<String> {
        let n = self.lines.len();
        let last = self.lines.last()?;
        if last.trim().is_empty() {
            return None;
        }
        if n >= 2 && !self.lines[n - 2].trim().is_empty() {
            return None;
        }
        let text = last.trim().to_string();
        self.lines.pop();
        Some(text)
    }

    fn heading(&mut self, level: u8, text: String) {
        self.flush();
        while self.headings.last().is_some_and(|(l, _)| *l >= level) {
            self.headings.pop();
        }
        if !text.is_empty() {
            self.headings.push((level, text.clone()));
            self.lines.push(text);
        }
    }

    fn flush(&mut self) {
        let text = squeeze_blank_lines(&self.lines);
        self.lines.clear();
        if text.is_empty() {
            return;
        }
        self.sections.push(Section {
            page: 1,
            heading_path: self.headings.iter().map(|(_, h)| h.clone()).collect(),
            text,
            start_ms: None,
            end_ms: None,
        });
    }
}

/// Keeps lines as written (code stays indented) but makes every paragraph
/// separator exactly one blank line and trims blank lines at both ends.
fn squeeze_blank_lines(lines: &[String]) -> String {
    let mut out = String::new();
    let mut pending_blank = false;
    for l in lines {
        if l.trim().is_empty() {
            pending_blank = true;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if pending_blank { "\n\n" } else { "\n" });
        }
        pending_blank = false;
        out.push_str(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_heading_path() {
        let md = "---\ntitle: \"Physics 2\"\n---\nIntro text.\n\n# Chapter 2\n\nSome words.\n\n## Pendulum ##\n\nA pendulum swings.\n```\n# not a heading\n```\n\nMore\n--\n\nText under More.\n";
        let d = markdown(md);
        assert_eq!(d.title.as_deref(), Some("Physics 2"));
        let paths: Vec<_> = d
            .sections
            .iter()
            .map(|s| s.heading_path.join(" > "))
            .collect();
        assert_eq!(
            paths,
            ["", "Chapter 2", "Chapter 2 > Pendulum", "Chapter 2 > More"]
        );
        assert!(d.sections[2].text.contains("# not a heading"));
        assert!(
            d.sections[2]
                .text
                .starts_with("Pendulum\n\nA pendulum swings.")
        );
        assert!(!d.sections[0].text.contains("title:"));
    }

    #[test]
    fn hashtag_is_not_heading() {
        assert_eq!(atx_heading("#hashtag"), None);
        assert_eq!(atx_heading("### x ###"), Some((3, "x".into())));
        assert_eq!(atx_heading("#"), Some((1, String::new())));
    }

    #[test]
    fn plain_pages_by_form_feed() {
        let d = plain("page one\x0cpage  two\n\n\nstill two\x0c");
        assert_eq!(d.page_count, 2);
        assert_eq!(d.sections[1].page, 2);
        assert_eq!(d.sections[1].text, "page two\n\nstill two");
    }
}
