//! HTML to text with a small, forgiving tag scanner (no DOM).
//!
//! Why hand-written: `html5ever`/`scraper` are heavy for "text plus
//! headings", and a scanner that never fails suits broken teacher-made
//! pages. It drops `script`, `style`, `noscript`, `template` (and `head`
//! content except `title`), turns block elements into paragraph breaks and
//! table cells into `cell | cell`, tracks `h1`–`h6` as the heading path, and
//! decodes character references (numeric and the common named ones).

use crate::{Document, Section, tidy_text};

/// Elements whose content is never text for a reader.
const DROPPED: &[&str] = &["script", "style", "noscript", "template"];

/// Elements that start/end a paragraph.
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "br",
    "caption",
    "center",
    "dd",
    "details",
    "dialog",
    "dir",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "header",
    "hgroup",
    "hr",
    "html",
    "li",
    "main",
    "menu",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "ul",
];

pub(crate) fn extract(src: &str) -> Document {
    let mut b = Builder::default();
    let mut i = 0usize;
    let bytes = src.as_bytes();
    while i < bytes.len() {
        if bytes[i] != b'<' {
            let end = src[i..].find('<').map_or(src.len(), |p| i + p);
            b.text(&src[i..end]);
            i = end;
            continue;
        }
        let rest = &src[i..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            i = comment.find("-->").map_or(src.len(), |p| i + 4 + p + 3);
            continue;
        }
        if rest.starts_with("<![CDATA[") {
            let end = rest.find("]]>").map_or(src.len(), |p| i + p);
            b.raw_text(&src[i + 9..end.max(i + 9)]);
            i = (end + 3).min(src.len());
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            i = rest.find('>').map_or(src.len(), |p| i + p + 1);
            continue;
        }
        let Some(tag) = parse_tag(rest) else {
            // A lone `<` (as in "a < b"): text.
            b.text("<");
            i += 1;
            continue;
        };
        i += tag.len;
        if tag.closing {
            b.close(&tag.name);
            continue;
        }
        if DROPPED.contains(&tag.name.as_str()) || tag.name == "title" || tag.name == "textarea" {
            // Raw text: skip to the matching end tag (to the end of the file
            // if there is none, as browsers do).
            let end_tag = format!("</{}", tag.name);
            let end = find_ci(&src[i..], &end_tag).map_or(src.len(), |p| i + p);
            if tag.name == "title" {
                b.title(&src[i..end]);
            } else if tag.name == "textarea" {
                b.text(&src[i..end]);
            }
            i = src[end..].find('>').map_or(src.len(), |p| end + p + 1);
            continue;
        }
        b.open(&tag.name, tag.self_closing);
    }
    b.finish()
}

struct Tag {
    name: String,
    closing: bool,
    self_closing: bool,
    /// Bytes consumed, including `<` and `>`.
    len: usize,
}

/// Parses `<name attr="x>y" ...>` or `</name>` at the start of `s`, honouring
/// quoted attribute values. `None` if this is not a tag.
fn parse_tag(s: &str) -> Option<Tag> {
    let b = s.as_bytes();
    let mut i = 1;
    let closing = b.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let name_start = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-' || b[i] == b':') {
        i += 1;
    }
    if i == name_start || !b[name_start].is_ascii_alphabetic() {
        return None;
    }
    let name = s[name_start..i].to_ascii_lowercase();
    let mut quote: Option<u8> = None;
    while i < b.len() {
        match (quote, b[i]) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b[i]),
            (None, b'>') => {
                let self_closing = i > 0 && b[i - 1] == b'/';
                return Some(Tag {
                    name,
                    closing,
                    self_closing,
                    len: i + 1,
                });
            }
            (None, _) => {}
        }
        i += 1;
    }
    // Unterminated tag at the end of the file: swallow it.
    Some(Tag {
        name,
        closing,
        self_closing: false,
        len: b.len(),
    })
}

/// Case-insensitive ASCII find.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

#[derive(Default)]
struct Builder {
    sections: Vec<Section>,
    headings: Vec<(u8, String)>,
    /// Text of the current section, paragraphs separated by blank lines.
    buf: String,
    /// Open heading: level and collected text.
    heading: Option<(u8, String)>,
    pre_depth: usize,
    title: Option<String>,
    in_cell: bool,
}

impl Builder {
    fn text(&mut self, raw: &str) {
        let decoded = decode_entities(raw);
        self.raw_text(&decoded);
    }

    fn raw_text(&mut self, s: &str) {
        if let Some((_, h)) = self.heading.as_mut() {
            h.push_str(s);
            return;
        }
        if self.pre_depth > 0 {
            self.buf.push_str(s);
        } else {
            // Whitespace collapses outside <pre>; newlines in the source are
            // not paragraph breaks.
            let mut first = true;
            for part in s.split(['\n', '\r']) {
                if !first {
                    self.buf.push(' ');
                }
                first = false;
                self.buf.push_str(part);
            }
        }
    }

    fn paragraph_break(&mut self) {
        self.buf.push_str("\n\n");
    }

    fn open(&mut self, name: &str, self_closing: bool) {
        if let Some(level) = heading_level(name) {
            self.heading = Some((level, String::new()));
            return;
        }
        match name {
            "pre" if !self_closing => {
                self.paragraph_break();
                self.pre_depth += 1;
            }
            "td" | "th" => {
                if self.in_cell {
                    self.buf.push_str(" | ");
                }
                self.in_cell = true;
            }
            "tr" => {
                self.in_cell = false;
                self.buf.push('\n');
            }
            "br" => self.buf.push('\n'),
            "img" => {}
            n if BLOCKS.contains(&n) => self.paragraph_break(),
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        if let Some(level) = heading_level(name) {
            if let Some((open_level, text)) = self.heading.take() {
                let _ = level; // `<h2>..</h3>` happens; trust the opening tag
                self.start_heading(open_level, &text);
            }
            return;
        }
        match name {
            "pre" => {
                self.pre_depth = self.pre_depth.saturating_sub(1);
                self.paragraph_break();
            }
            "tr" => self.in_cell = false,
            "table" => {
                self.in_cell = false;
                self.paragraph_break();
            }
            n if BLOCKS.contains(&n) => self.paragraph_break(),
            _ => {}
        }
    }

    fn start_heading(&mut self, level: u8, raw: &str) {
        let text = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            return;
        }
        self.flush();
        while self.headings.last().is_some_and(|(l, _)| *l >= level) {
            self.headings.pop();
        }
        self.headings.push((level, text.clone()));
        self.buf.push_str(&text);
        self.paragraph_break();
    }

    fn title(&mut self, raw: &str) {
        let t = decode_entities(raw)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if self.title.is_none() && !t.is_empty() {
            self.title = Some(t);
        }
    }

    fn flush(&mut self) {
        let text = tidy_text(&std::mem::take(&mut self.buf));
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

    fn finish(mut self) -> Document {
        if let Some((level, text)) = self.heading.take() {
            self.start_heading(level, &text);
        }
        self.flush();
        let title = self.title.or_else(|| {
            self.sections
                .iter()
                .find_map(|s| s.heading_path.first().cloned())
        });
        Document {
            sections: self.sections,
            page_count: 1,
            title,
        }
    }
}

fn heading_level(name: &str) -> Option<u8> {
    let b = name.as_bytes();
    if b.len() == 2 && b[0] == b'h' && (b'1'..=b'6').contains(&b[1]) {
        Some(b[1] - b'0')
    } else {
        None
    }
}

/// Decodes `&amp;`, `&#233;`, `&#xE9;` and the common named references;
/// unknown ones stay as written. Also used for WebVTT cue text.
pub(crate) fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        // Look for `;` within a short window; HTML also allows some legacy
        // references without it, which we leave alone.
        let window = rest
            .char_indices()
            .take(33)
            .find(|(_, c)| *c == ';')
            .map(|(i, _)| i);
        let decoded = window.and_then(|semi| {
            let name = &rest[1..semi];
            decode_one(name).map(|c| (c, semi + 1))
        });
        match decoded {
            Some((c, used)) => {
                out.push_str(&c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_one(name: &str) -> Option<String> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        // NUL and surrogates map to U+FFFD as in browsers.
        let c = char::from_u32(code)
            .filter(|c| *c != '\0')
            .unwrap_or('\u{FFFD}');
        return Some(c.to_string());
    }
    let c = match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        "nbsp" => " ",
        "ensp" | "emsp" | "thinsp" => " ",
        "shy" | "zwnj" | "zwj" => "",
        "ndash" => "–",
        "mdash" => "—",
        "hellip" => "…",
        "lsquo" => "‘",
        "rsquo" => "’",
        "sbquo" => "‚",
        "ldquo" => "“",
        "rdquo" => "”",
        "bdquo" => "„",
        "laquo" => "«",
        "raquo" => "»",
        "bull" => "•",
        "middot" => "·",
        "copy" => "©",
        "reg" => "®",
        "trade" => "™",
        "deg" => "°",
        "plusmn" => "±",
        "times" => "×",
        "divide" => "÷",
        "micro" => "µ",
        "para" => "¶",
        "sect" => "§",
        "euro" => "€",
        "pound" => "£",
        "yen" => "¥",
        "cent" => "¢",
        "frac12" => "½",
        "frac14" => "¼",
        "frac34" => "¾",
        "sup1" => "¹",
        "sup2" => "²",
        "sup3" => "³",
        "minus" => "−",
        "le" => "≤",
        "ge" => "≥",
        "ne" => "≠",
        "asymp" => "≈",
        "equiv" => "≡",
        "infin" => "∞",
        "radic" => "√",
        "sum" => "∑",
        "prod" => "∏",
        "part" => "∂",
        "int" => "∫",
        "larr" => "←",
        "rarr" => "→",
        "uarr" => "↑",
        "darr" => "↓",
        "harr" => "↔",
        "rArr" => "⇒",
        "hArr" => "⇔",
        "alpha" => "α",
        "beta" => "β",
        "gamma" => "γ",
        "delta" => "δ",
        "epsilon" => "ε",
        "theta" => "θ",
        "lambda" => "λ",
        "mu" => "μ",
        "pi" => "π",
        "rho" => "ρ",
        "sigma" => "σ",
        "tau" => "τ",
        "phi" => "φ",
        "omega" => "ω",
        "Delta" => "Δ",
        "Sigma" => "Σ",
        "Omega" => "Ω",
        "Pi" => "Π",
        "agrave" => "à",
        "aacute" => "á",
        "acirc" => "â",
        "auml" => "ä",
        "ccedil" => "ç",
        "egrave" => "è",
        "eacute" => "é",
        "ecirc" => "ê",
        "euml" => "ë",
        "icirc" => "î",
        "iuml" => "ï",
        "ntilde" => "ñ",
        "ocirc" => "ô",
        "ouml" => "ö",
        "ugrave" => "ù",
        "uacute" => "ú",
        "ucirc" => "û",
        "uuml" => "ü",
        "szlig" => "ß",
        "Agrave" => "À",
        "Eacute" => "É",
        "Ccedil" => "Ç",
        "Auml" => "Ä",
        "Ouml" => "Ö",
        "Uuml" => "Ü",
        _ => return None,
    };
    Some(c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_scripts_keeps_headings() {
        let html = r#"<!DOCTYPE html><html><head><title>Waves &amp; Sound</title>
<style>p { color: red }</style><script>var x = "<p>not text</p>";</script></head>
<body><h1>Waves</h1><p>A wave carries energy&nbsp;&mdash; not matter.</p>
<noscript>Enable JS</noscript><template><p>hidden</p></template>
<h2 class="x">Sound</h2><p>Sound is a <b>longitudinal</b> wave at 343&#160;m/s &#x2248; fast.</p>
<table><tr><th>Medium</th><th>Speed</th></tr><tr><td>Air</td><td>343</td></tr></table>
<p>1 < 2 and broken <a href="x>y">link</p>"#;
        let d = extract(html);
        assert_eq!(d.title.as_deref(), Some("Waves & Sound"));
        let all = d.full_text();
        for bad in ["color", "not text", "Enable JS", "hidden", "var x"] {
            assert!(!all.contains(bad), "{bad:?} leaked into {all:?}");
        }
        assert!(all.contains("A wave carries energy — not matter."), "{all}");
        assert!(
            all.contains("longitudinal wave at 343 m/s ≈ fast."),
            "{all}"
        );
        assert!(all.contains("Medium | Speed\nAir | 343"), "{all}");
        assert!(all.contains("1 < 2 and broken link"), "{all}");
        let sound = d
            .sections
            .iter()
            .find(|s| s.text.contains("longitudinal"))
            .map(|s| s.heading_path.clone());
        assert_eq!(sound, Some(vec!["Waves".to_string(), "Sound".to_string()]));
    }

    #[test]
    fn entities() {
        assert_eq!(
            decode_entities("a &amp;&lt; &#65;&#x42; &bogus; & x &#0;"),
            "a &< AB &bogus; & x \u{FFFD}"
        );
    }

    #[test]
    fn unterminated_things_do_not_panic() {
        for s in [
            "<",
            "<p",
            "<!--",
            "<script>x",
            "<![CDATA[x",
            "&",
            "&#x;",
            "<h1>x",
            "</",
            "<a href='",
        ] {
            let _ = extract(s);
        }
    }
}
