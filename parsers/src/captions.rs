//! SubRip (SRT) and WebVTT captions.
//!
//! Each cue becomes a [`Section`] with its `start_ms`/`end_ms`. Cues are
//! grouped into one-minute "pages" (`page = start minute + 1`) so that page
//! numbers stay meaningful for recordings ("page 12" = minute 11–12).
//! Styling tags are stripped; a WebVTT voice (`<v Amina>`) becomes
//! `Amina: `. A cue repeating the previous cue's text (rolling captions)
//! extends that cue instead of duplicating it.

use crate::html::decode_entities;
use crate::{Document, ParseError, Section};

/// One minute, the width of a caption "page".
const PAGE_MS: u64 = 60_000;

pub(crate) fn srt(src: &str) -> Result<Document, ParseError> {
    let mut cues = Vec::new();
    for block in blocks(src) {
        let timing = block.iter().take(2).position(|l| l.contains("-->"));
        match timing {
            Some(t) => {
                if let Some((start, end)) = parse_timing(block[t]) {
                    let text = block[t + 1..]
                        .iter()
                        .map(|l| strip_srt_tags(l))
                        .collect::<Vec<_>>()
                        .join(" ");
                    cues.push((start, end, text));
                }
            }
            // A blank line inside a cue's text: continue the previous cue.
            None => {
                if let Some(last) = cues.last_mut() {
                    for l in &block {
                        last.2.push(' ');
                        last.2.push_str(&strip_srt_tags(l));
                    }
                }
            }
        }
    }
    build(cues)
}

pub(crate) fn vtt(src: &str) -> Result<Document, ParseError> {
    let all = blocks(src);
    let mut iter = all.into_iter();
    match iter.next() {
        Some(header) if header.first().is_some_and(|l| l.starts_with("WEBVTT")) => {}
        _ => {
            return Err(ParseError::Malformed(
                "a WebVTT file must start with WEBVTT".into(),
            ));
        }
    }
    let mut cues = Vec::new();
    for block in iter {
        let first = block.first().copied().unwrap_or_default();
        if first == "NOTE" || first.starts_with("NOTE ") || first.starts_with("NOTE\t") {
            continue;
        }
        if first == "STYLE" || first == "REGION" {
            continue;
        }
        let Some(t) = block.iter().take(2).position(|l| l.contains("-->")) else {
            continue;
        };
        if let Some((start, end)) = parse_timing(block[t]) {
            let text = block[t + 1..]
                .iter()
                .map(|l| strip_vtt_tags(l))
                .collect::<Vec<_>>()
                .join(" ");
            cues.push((start, end, text));
        }
    }
    build(cues)
}

/// Lines grouped by blank lines.
fn blocks(src: &str) -> Vec<Vec<&str>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for line in src.lines() {
        let l = line.trim_end();
        if l.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(l.trim_start_matches('\u{feff}'));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn build(cues: Vec<(u64, u64, String)>) -> Result<Document, ParseError> {
    let mut sections: Vec<Section> = Vec::new();
    for (start, end, text) in cues {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            continue;
        }
        if let Some(last) = sections.last_mut()
            && last.text == text
        {
            last.end_ms = Some(end.max(last.end_ms.unwrap_or(0)));
            continue;
        }
        sections.push(Section {
            page: page_of(start),
            heading_path: Vec::new(),
            text,
            start_ms: Some(start),
            end_ms: Some(end.max(start)),
        });
    }
    if sections.is_empty() {
        return Err(ParseError::Malformed(
            "no captions with timestamps were found".into(),
        ));
    }
    let page_count = sections.iter().map(|s| s.page).max().unwrap_or(1);
    Ok(Document {
        sections,
        page_count,
        title: None,
    })
}

/// `page = minute index + 1`.
pub(crate) fn page_of(start_ms: u64) -> u32 {
    u32::try_from(start_ms / PAGE_MS).unwrap_or(u32::MAX - 1) + 1
}

/// `00:01:02,500 --> 00:01:04,000 align:start` → (62500, 64000).
fn parse_timing(line: &str) -> Option<(u64, u64)> {
    let (a, b) = line.split_once("-->")?;
    let start = parse_ts(a.trim())?;
    let end = parse_ts(b.split_whitespace().next()?)?;
    Some((start, end))
}

/// `HH:MM:SS,mmm`, `HH:MM:SS.mmm` or `MM:SS.mmm` (hours may exceed 99).
pub(crate) fn parse_ts(s: &str) -> Option<u64> {
    let (hms, frac) = s.split_once([',', '.']).unwrap_or((s, "0"));
    if frac.is_empty() || frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // "5" means 500 ms, "05" 50 ms.
    let ms: u64 = format!("{frac:0<3}").parse().ok()?;
    let parts: Vec<&str> = hms.split(':').collect();
    let nums: Option<Vec<u64>> = parts
        .iter()
        .map(|p| {
            if !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()) {
                p.parse().ok()
            } else {
                None
            }
        })
        .collect();
    let nums = nums?;
    let (h, m, sec) = match nums.as_slice() {
        [h, m, s] => (*h, *m, *s),
        [m, s] => (0, *m, *s),
        _ => return None,
    };
    if m >= 60 || sec >= 60 {
        return None;
    }
    Some(((h * 60 + m) * 60 + sec) * 1000 + ms)
}

/// Removes `<i>`-style HTML tags and `{\an8}`-style ASS overrides.
fn strip_srt_tags(l: &str) -> String {
    let mut out = String::with_capacity(l.len());
    let mut depth_angle = false;
    let mut depth_brace = false;
    for c in l.chars() {
        match c {
            '<' if !depth_brace => depth_angle = true,
            '>' if depth_angle => depth_angle = false,
            '{' if !depth_angle => depth_brace = true,
            '}' if depth_brace => depth_brace = false,
            _ if depth_angle || depth_brace => {}
            _ => out.push(c),
        }
    }
    decode_entities(&out)
}

/// Removes WebVTT cue tags (`<c.x>`, `<b>`, `<00:00:01.000>`), turning a
/// voice span `<v Amina>` into `Amina: `; then decodes character references.
fn strip_vtt_tags(l: &str) -> String {
    let mut out = String::with_capacity(l.len());
    let mut rest = l;
    while let Some(p) = rest.find('<') {
        out.push_str(&rest[..p]);
        let after = &rest[p + 1..];
        let Some(q) = after.find('>') else {
            rest = "";
            break;
        };
        let tag = &after[..q];
        if let Some(voice) = tag.strip_prefix("v ").or_else(|| {
            tag.strip_prefix("v.")
                .and_then(|t| t.split_once(' ').map(|x| x.1))
        }) {
            let voice = voice.trim();
            if !voice.is_empty() {
                out.push_str(voice);
                out.push_str(": ");
            }
        }
        rest = &after[q + 1..];
    }
    out.push_str(rest);
    decode_entities(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts("00:01:02,500"), Some(62_500));
        assert_eq!(parse_ts("01:02.5"), Some(62_500));
        assert_eq!(parse_ts("1:00:00.000"), Some(3_600_000));
        assert_eq!(parse_ts("00:61:00.000"), None);
        assert_eq!(parse_ts("aa:bb"), None);
        assert_eq!(parse_ts(""), None);
    }

    #[test]
    fn srt_cues_and_pages() {
        let s = "1\n00:00:01,000 --> 00:00:04,000\n<i>Hello</i> class,\n{\\an8}today: waves.\n\n2\n00:01:05,250 --> 00:01:07,000\nA wave carries energy.\n\n3\n00:01:07,000 --> 00:01:08,000\nA wave carries energy.\n";
        let d = srt(s).unwrap_or_default();
        assert_eq!(d.sections.len(), 2);
        assert_eq!(d.sections[0].text, "Hello class, today: waves.");
        assert_eq!(
            (d.sections[0].start_ms, d.sections[0].end_ms),
            (Some(1000), Some(4000))
        );
        assert_eq!(d.sections[1].page, 2);
        assert_eq!(d.sections[1].end_ms, Some(68_000));
        assert_eq!(d.page_count, 2);
    }

    #[test]
    fn vtt_voices_notes_and_settings() {
        let s = "WEBVTT - lesson\n\nNOTE a comment\nspanning lines\n\nSTYLE\n::cue { color: red }\n\nintro\n00:05.000 --> 00:07.500 align:start\n<v Amina>Good <b>morning</b> &amp; welcome\n\n02:00:00.000 --> 02:00:01.000\n<c.yellow>Late</c>\n";
        let d = vtt(s).unwrap_or_default();
        assert_eq!(d.sections.len(), 2, "{d:?}");
        assert_eq!(d.sections[0].text, "Amina: Good morning & welcome");
        assert_eq!(d.sections[0].start_ms, Some(5000));
        assert_eq!(d.sections[1].page, 121);
        assert!(vtt("no header\n").is_err());
    }
}
