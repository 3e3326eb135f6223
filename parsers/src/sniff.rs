//! What is this file? Decided from its bytes, never from its name.
//!
//! Order of checks:
//! 1. Zip family (`infer`): DOCX if the central directory has
//!    `word/document.xml`, PPTX if it has `ppt/presentation.xml` (only the
//!    directory is read), otherwise Unknown.
//! 2. `%PDF-` at the start.
//! 3. Text: the first 64 KiB must be valid UTF-8 (a sequence cut at the
//!    window's end is fine) without NULs or other binary control bytes.
//!    Among text kinds the content decides (WebVTT header, SRT timing line,
//!    HTML doctype/root, Markdown/HTML markup scores); the filename's
//!    extension only breaks ties when the markup signals are weak.
//! 4. `%PDF-` within the first KiB, then `infer` for audio and video;
//!    everything else is Unknown.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::{ExtractLimits, MediaKind};

/// How much of the file sniffing reads (beyond the zip directory).
const SNIFF_BYTES: usize = 64 * 1024;

/// The kind plus the most specific MIME type known for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    /// The kind, as returned by [`sniff`].
    pub kind: MediaKind,
    /// `infer`'s exact type for audio/video (`audio/mpeg`, `video/mp4`);
    /// [`MediaKind::mime`] otherwise.
    pub mime: &'static str,
}

/// Sniffs the file at `path`. `filename_hint` (the client's file name) only
/// breaks ties among text kinds. Reads at most 64 KiB plus, for zip files,
/// the central directory.
pub fn sniff(path: &Path, filename_hint: Option<&str>) -> io::Result<MediaKind> {
    Ok(sniff_with_mime(path, filename_hint)?.kind)
}

/// Like [`sniff`], also returning the exact MIME type for audio and video.
pub fn sniff_with_mime(path: &Path, filename_hint: Option<&str>) -> io::Result<Sniffed> {
    let mut file = File::open(path)?;
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut file)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    let complete = head.len() < SNIFF_BYTES;
    let kind = match infer::get(&head) {
        Some(t) if is_zip_family(&t) => Some(zip_kind(path, &head)),
        _ => None,
    };
    if let Some(kind) = kind {
        return Ok(Sniffed {
            kind,
            mime: kind.mime(),
        });
    }
    Ok(sniff_bytes_inner(&head, complete, filename_hint))
}

/// Sniffs an in-memory prefix of a file (`complete` = the whole file).
/// Zip containers are classified from the local headers visible in the
/// prefix only; prefer [`sniff`] for files on disk.
pub fn sniff_bytes(head: &[u8], complete: bool, filename_hint: Option<&str>) -> Sniffed {
    if let Some(t) = infer::get(head)
        && is_zip_family(&t)
    {
        let kind = zip_kind_from_local_headers(head);
        return Sniffed {
            kind,
            mime: kind.mime(),
        };
    }
    sniff_bytes_inner(head, complete, filename_hint)
}

fn sniff_bytes_inner(head: &[u8], complete: bool, filename_hint: Option<&str>) -> Sniffed {
    let plain = |kind: MediaKind| Sniffed {
        kind,
        mime: kind.mime(),
    };
    if head.starts_with(b"%PDF-") {
        return plain(MediaKind::Pdf);
    }
    // Text first: several of infer's magic numbers are two printable bytes
    // (`BM` = BMP, `MZ` = EXE), which would turn "BMX racing notes" into an
    // image. Real binaries fail the text test (NULs, invalid UTF-8) anyway.
    if let Some(text) = utf8_prefix(head, complete) {
        return plain(text_kind(text, filename_hint));
    }
    // PDF may legally have up to 1 KiB of junk before `%PDF-`.
    if find(&head[..head.len().min(1024)], b"%PDF-").is_some() {
        return plain(MediaKind::Pdf);
    }
    match infer::get(head) {
        Some(t) if t.matcher_type() == infer::MatcherType::Audio => Sniffed {
            kind: MediaKind::Audio,
            mime: t.mime_type(),
        },
        Some(t) if t.matcher_type() == infer::MatcherType::Video => Sniffed {
            kind: MediaKind::Video,
            mime: t.mime_type(),
        },
        _ => plain(MediaKind::Unknown),
    }
}

fn is_zip_family(t: &infer::Type) -> bool {
    matches!(
        t.mime_type(),
        "application/zip"
            | "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            | "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            | "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
}

/// DOCX vs PPTX vs other zip, from the central directory.
fn zip_kind(path: &Path, head: &[u8]) -> MediaKind {
    match crate::zipsafe::SafeZip::open(path, &ExtractLimits::default()) {
        Ok(zip) => {
            if zip.contains("word/document.xml") {
                MediaKind::Docx
            } else if zip.contains("ppt/presentation.xml") {
                MediaKind::Pptx
            } else {
                MediaKind::Unknown
            }
        }
        // Truncated, damaged or over the entry limit: fall back to the names
        // in the local headers we have, so extraction reports the real
        // problem (a clear message) rather than "unsupported type".
        Err(_) => zip_kind_from_local_headers(head),
    }
}

/// Scans local file headers (`PK\x03\x04`) in `head` for the marker parts.
fn zip_kind_from_local_headers(head: &[u8]) -> MediaKind {
    let mut i = 0;
    let mut docx = false;
    let mut pptx = false;
    while let Some(p) = find(&head[i..], b"PK\x03\x04") {
        let h = i + p;
        let Some(hdr) = head.get(h..h + 30) else {
            break;
        };
        let name_len = usize::from(u16::from_le_bytes([hdr[26], hdr[27]]));
        if let Some(name) = head.get(h + 30..h + 30 + name_len) {
            docx |= name.starts_with(b"word/");
            pptx |= name.starts_with(b"ppt/");
        }
        i = h + 4;
    }
    match (docx, pptx) {
        (true, false) => MediaKind::Docx,
        (false, true) => MediaKind::Pptx,
        _ => MediaKind::Unknown,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The prefix as text if it is UTF-8 without binary control bytes. A
/// multi-byte sequence cut by the sniff window is tolerated.
fn utf8_prefix(head: &[u8], complete: bool) -> Option<&str> {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) if !complete && e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).ok()?
        }
        Err(_) => return None,
    };
    // Tab, LF, CR, FF and ESC occur in real text files; other C0 controls
    // (NUL above all) mean binary.
    let binary = text
        .bytes()
        .any(|b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b));
    (!binary && !text.trim().is_empty()).then_some(text)
}

/// Decides among the text kinds.
fn text_kind(text: &str, hint: Option<&str>) -> MediaKind {
    let t = text.trim_start();
    if t.starts_with("WEBVTT") {
        return MediaKind::Vtt;
    }
    if looks_like_srt(t) {
        return MediaKind::Srt;
    }
    let lower_start: String = t.chars().take(512).collect::<String>().to_ascii_lowercase();
    // Formats that are text but not course text.
    if lower_start.starts_with("{\\rtf") || lower_start.starts_with("%!ps") {
        return MediaKind::Unknown;
    }
    if lower_start.starts_with("<svg")
        || (lower_start.starts_with("<?xml") && lower_start.contains("<svg"))
    {
        return MediaKind::Unknown;
    }
    if starts_as_html(&lower_start) {
        return MediaKind::Html;
    }
    let html = html_score(text);
    let md = markdown_score(text);
    let hinted = hint.and_then(hint_kind);
    // Strong content signals win over any hint.
    if html >= 6 && html > md * 2 {
        return MediaKind::Html;
    }
    if md >= 4 && md >= html {
        return MediaKind::Markdown;
    }
    // Weak or no signals: the name breaks the tie among the kinds the content
    // is compatible with (SRT/VTT were ruled out by content above).
    match hinted {
        Some(MediaKind::Markdown) => MediaKind::Markdown,
        Some(MediaKind::Html) if html > 0 => MediaKind::Html,
        Some(MediaKind::PlainText) => MediaKind::PlainText,
        _ if md >= 2 && md >= html => MediaKind::Markdown,
        _ if html >= 3 => MediaKind::Html,
        _ => MediaKind::PlainText,
    }
}

fn hint_kind(name: &str) -> Option<MediaKind> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "md" | "markdown" | "mdown" | "mkd" => MediaKind::Markdown,
        "html" | "htm" | "xhtml" => MediaKind::Html,
        "txt" | "text" => MediaKind::PlainText,
        _ => return None,
    })
}

fn starts_as_html(lower: &str) -> bool {
    let mut s = lower;
    // Skip an XML declaration and comments before the root.
    loop {
        s = s.trim_start();
        if s.starts_with("<?xml") {
            match s.find("?>") {
                Some(p) => s = &s[p + 2..],
                None => return false,
            }
        } else if s.starts_with("<!--") {
            match s.find("-->") {
                Some(p) => s = &s[p + 3..],
                None => return false,
            }
        } else {
            break;
        }
    }
    s.starts_with("<!doctype html")
        || s.starts_with("<html")
        || s.starts_with("<head")
        || s.starts_with("<body")
}

/// An SRT file opens with an optional cue number and a timing line.
fn looks_like_srt(t: &str) -> bool {
    let mut lines = t.lines().map(str::trim).filter(|l| !l.is_empty());
    let Some(first) = lines.next() else {
        return false;
    };
    let timing = if first.bytes().all(|b| b.is_ascii_digit()) {
        lines.next()
    } else {
        Some(first)
    };
    timing.is_some_and(|l| {
        l.split_once("-->").is_some_and(|(a, b)| {
            crate::captions::parse_ts(a.trim()).is_some()
                && b.split_whitespace()
                    .next()
                    .and_then(crate::captions::parse_ts)
                    .is_some()
        })
    })
}

/// Counts HTML tags of common elements (`<p>`, `</div>`, `<br/>`, ...).
fn html_score(text: &str) -> u32 {
    const TAGS: &[&str] = &[
        "p", "div", "br", "span", "a", "ul", "ol", "li", "table", "tr", "td", "h1", "h2", "h3",
        "h4", "b", "i", "em", "strong", "img", "body", "head", "title", "section", "article",
        "script", "style",
    ];
    let lower = text.to_ascii_lowercase();
    let mut score = 0u32;
    let mut rest = lower.as_str();
    while let Some(p) = rest.find('<') {
        rest = &rest[p + 1..];
        let r = rest.strip_prefix('/').unwrap_or(rest);
        let name_len = r.bytes().take_while(|b| b.is_ascii_alphanumeric()).count();
        let name = &r[..name_len];
        let next = r.as_bytes().get(name_len).copied();
        if TAGS.contains(&name) && matches!(next, Some(b'>' | b' ' | b'/' | b'\n' | b'\t')) {
            score += 1;
            if score > 50 {
                break;
            }
        }
    }
    score
}

/// Markdown signals: headings and fences count double; links, lists,
/// emphasis, tables and quotes once (capped so prose with a few dashes is
/// not Markdown).
fn markdown_score(text: &str) -> u32 {
    let mut score = 0u32;
    let mut in_fence = false;
    for line in text.lines().take(2000) {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            score += 2;
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let hashes = t.bytes().take_while(|b| *b == b'#').count();
        if (1..=6).contains(&hashes) && t[hashes..].starts_with(' ') {
            score += 2;
        } else if ["- ", "* ", "+ ", "> "].iter().any(|p| t.starts_with(p)) {
            // List item or block quote.
            score += 1;
        } else if t.starts_with('|') && t.contains("---") {
            score += 2;
        } else if !t.is_empty()
            && (t.bytes().all(|b| b == b'=') || t.bytes().all(|b| b == b'-'))
            && t.len() >= 3
        {
            score += 1;
        }
        if t.contains("](") {
            score += 1;
        }
        if t.contains("**") || t.contains("__") || t.contains('`') {
            score += 1;
        }
        if score > 50 {
            break;
        }
    }
    score
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str, hint: Option<&str>) -> MediaKind {
        sniff_bytes(s.as_bytes(), true, hint).kind
    }

    #[test]
    fn text_kinds_by_content() {
        assert_eq!(
            kind("WEBVTT\n\n00:01.000 --> 00:02.000\nhi\n", None),
            MediaKind::Vtt
        );
        assert_eq!(
            kind("1\n00:00:01,000 --> 00:00:02,000\nhi\n", Some("notes.txt")),
            MediaKind::Srt
        );
        assert_eq!(
            kind("<!DOCTYPE html><p>x</p>", Some("a.md")),
            MediaKind::Html
        );
        assert_eq!(
            kind(
                "# Title\n\nSome *text* with a [link](http://x).\n\n## Part\n- a\n- b\n",
                None
            ),
            MediaKind::Markdown
        );
        assert_eq!(
            kind("Dear class,\n\nPlease read chapter 2.\n", None),
            MediaKind::PlainText
        );
        assert_eq!(
            kind(
                "<p>Hello</p><p>World</p><br><div>x</div><b>y</b><i>z</i>",
                None
            ),
            MediaKind::Html
        );
        assert_eq!(kind("%PDF-1.4\n...", Some("x.txt")), MediaKind::Pdf);
        assert_eq!(kind("{\\rtf1\\ansi hello}", None), MediaKind::Unknown);
    }

    #[test]
    fn hint_breaks_ties_only() {
        let prose = "Dear class,\n\nPlease read chapter 2.\n";
        assert_eq!(kind(prose, Some("reading.md")), MediaKind::Markdown);
        assert_eq!(kind(prose, Some("reading.srt")), MediaKind::PlainText);
        // Strong Markdown beats a .txt name.
        let md = "# A\n\n## B\n\n```\ncode\n```\n";
        assert_eq!(kind(md, Some("x.txt")), MediaKind::Markdown);
    }

    #[test]
    fn binary_is_not_text() {
        assert_eq!(kind("abc\0def", None), MediaKind::Unknown);
        assert_eq!(
            sniff_bytes(&[0xff, 0xfe, 0x41, 0x00], true, None).kind,
            MediaKind::Unknown
        );
        assert_eq!(sniff_bytes(b"", true, None).kind, MediaKind::Unknown);
        // A UTF-8 sequence cut by the sniff window is fine.
        let mut cut = "é".repeat(10).into_bytes();
        cut.pop();
        assert_eq!(sniff_bytes(&cut, false, None).kind, MediaKind::PlainText);
        assert_eq!(sniff_bytes(&cut, true, None).kind, MediaKind::Unknown);
    }
}
