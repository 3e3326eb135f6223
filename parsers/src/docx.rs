//! Word (DOCX) text: paragraphs, headings with their level, tables as
//! `cell | cell` rows, and a "page" counter.
//!
//! DOCX has no stored pages (layout happens in Word), so `page` counts the
//! sections between explicit page breaks (`w:br w:type="page"`,
//! `w:pageBreakBefore`) and Word's last-rendered page breaks
//! (`w:lastRenderedPageBreak`). Consecutive breaks with no text between them
//! count once: Word typically writes both kinds for the same break.

use std::collections::HashMap;
use std::path::Path;

use crate::ooxml::{Ev, Xml, clean_para, core_title, squash};
use crate::zipsafe::SafeZip;
use crate::{Document, ExtractLimits, ParseError, Section};

const MAIN_PART: &str = "word/document.xml";

pub(crate) fn extract(path: &Path, limits: &ExtractLimits) -> Result<Document, ParseError> {
    let mut zip = SafeZip::open(path, limits)?;
    if !zip.contains(MAIN_PART) {
        return Err(ParseError::Malformed(
            "it has no word/document.xml part".into(),
        ));
    }
    let styles = read_styles(&mut zip)?;
    let core = core_title(&mut zip)?;
    let body = zip
        .with_entry(MAIN_PART, |r| {
            let mut xml = Xml::new(r);
            parse_body(&mut xml, &styles)
        })?
        .ok_or_else(|| ParseError::Malformed("it has no word/document.xml part".into()))?;
    Ok(Document {
        page_count: body.page,
        title: core.or(body.title_style_text),
        sections: body.sections,
    })
}

/// Heading level (1-based) or title-ness of a paragraph style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StyleRole {
    Heading(u8),
    Title,
}

/// `styleId → role` from `word/styles.xml`. Style ids are localised
/// (`berschrift1` in German Word), but the built-in style *names* stay
/// `heading 1`..`heading 9`/`Title`, and custom heading styles carry
/// `w:outlineLvl`.
fn read_styles(zip: &mut SafeZip) -> Result<HashMap<String, StyleRole>, ParseError> {
    let map = zip.with_entry("word/styles.xml", |r| {
        let mut xml = Xml::new(r);
        let mut map = HashMap::new();
        let mut current: Option<String> = None;
        let mut role: Option<StyleRole> = None;
        while let Some(ev) = xml.next()? {
            match ev {
                Ev::Start(t) if t.name == "style" => {
                    current = t.attr("styleId").map(str::to_string);
                    role = None;
                }
                Ev::Start(t) | Ev::Empty(t) if current.is_some() => match t.name.as_str() {
                    "name" => {
                        if let Some(r) = t.attr("val").and_then(role_from_name) {
                            role = Some(r);
                        }
                    }
                    "outlineLvl" => {
                        if role.is_none()
                            && let Some(l) = t.attr("val").and_then(outline_level)
                        {
                            role = Some(StyleRole::Heading(l));
                        }
                    }
                    _ => {}
                },
                Ev::End(n) if n == "style" => {
                    if let (Some(id), Some(r)) = (current.take(), role.take()) {
                        map.insert(id, r);
                    }
                }
                _ => {}
            }
        }
        Ok(map)
    })?;
    Ok(map.unwrap_or_default())
}

/// `heading 2`, `Heading2`, `Title` → role.
fn role_from_name(name: &str) -> Option<StyleRole> {
    let compact: String = name
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if compact == "title" {
        return Some(StyleRole::Title);
    }
    let digits = compact.strip_prefix("heading")?;
    let level: u8 = digits.parse().ok()?;
    (1..=9)
        .contains(&level)
        .then_some(StyleRole::Heading(level))
}

/// `w:outlineLvl` is 0-based; 9 means body text.
fn outline_level(v: &str) -> Option<u8> {
    let l: u8 = v.parse().ok()?;
    (l < 9).then_some(l + 1)
}

/// A paragraph being collected.
#[derive(Default)]
struct Para {
    text: String,
    style: Option<String>,
    outline: Option<u8>,
}

/// A table being collected (tables nest inside cells).
#[derive(Default)]
struct Table {
    rows: Vec<String>,
    cells: Vec<String>,
    cell: String,
}

struct Body {
    sections: Vec<Section>,
    page: u32,
    title_style_text: Option<String>,
}

struct State<'s> {
    styles: &'s HashMap<String, StyleRole>,
    page: u32,
    text_since_break: bool,
    headings: Vec<(u8, String)>,
    sections: Vec<Section>,
    title_style_text: Option<String>,
}

impl State<'_> {
    /// Counts a page break unless nothing was written since the last one.
    fn page_break(&mut self) {
        if self.text_since_break {
            self.page += 1;
            self.text_since_break = false;
        }
    }

    fn role(&self, p: &Para) -> Option<StyleRole> {
        if let Some(style) = &p.style {
            if let Some(r) = self.styles.get(style) {
                return Some(*r);
            }
            // No styles.xml (minimal generators): the conventional ids.
            if let Some(r) = role_from_name(style) {
                return Some(r);
            }
        }
        p.outline.map(StyleRole::Heading)
    }

    /// Emits a finished top-level paragraph (or table) as a block.
    fn emit(&mut self, text: String, role: Option<StyleRole>) {
        if text.is_empty() {
            return;
        }
        match role {
            Some(StyleRole::Heading(level)) => {
                let heading = squash(&text);
                while self.headings.last().is_some_and(|(l, _)| *l >= level) {
                    self.headings.pop();
                }
                self.headings.push((level, heading.clone()));
                // The heading opens its own section so that its text sits
                // with the content it introduces.
                self.sections.push(Section {
                    page: self.page,
                    heading_path: self.path(),
                    text: heading,
                    start_ms: None,
                    end_ms: None,
                });
            }
            Some(StyleRole::Title) => {
                if self.title_style_text.is_none() {
                    self.title_style_text = Some(squash(&text));
                }
                self.append(text);
            }
            None => self.append(text),
        }
    }

    fn path(&self) -> Vec<String> {
        self.headings.iter().map(|(_, h)| h.clone()).collect()
    }

    fn append(&mut self, text: String) {
        let path = self.path();
        match self.sections.last_mut() {
            Some(s) if s.page == self.page && s.heading_path == path => {
                s.text.push_str("\n\n");
                s.text.push_str(&text);
            }
            _ => self.sections.push(Section {
                page: self.page,
                heading_path: path,
                text,
                start_ms: None,
                end_ms: None,
            }),
        }
    }
}

fn parse_body(xml: &mut Xml<'_>, styles: &HashMap<String, StyleRole>) -> Result<Body, ParseError> {
    let mut st = State {
        styles,
        page: 1,
        text_since_break: false,
        headings: Vec::new(),
        sections: Vec::new(),
        title_style_text: None,
    };
    let mut paras: Vec<Para> = Vec::new();
    let mut tables: Vec<Table> = Vec::new();
    let mut in_t = false;
    let mut run_depth = 0usize;
    // Depth inside a subtree we skip (`mc:Fallback` repeats the content of
    // `mc:Choice` for old readers; reading both would duplicate text).
    let mut skip_depth = 0usize;

    while let Some(ev) = xml.next()? {
        if skip_depth > 0 {
            match ev {
                Ev::Start(_) => skip_depth += 1,
                Ev::End(_) => skip_depth -= 1,
                _ => {}
            }
            continue;
        }
        match ev {
            Ev::Start(t) => match t.name.as_str() {
                "Fallback" => skip_depth = 1,
                "p" => paras.push(Para::default()),
                "r" => run_depth += 1,
                "t" if run_depth > 0 => in_t = true,
                "tbl" => tables.push(Table::default()),
                "tr" => {
                    if let Some(tb) = tables.last_mut() {
                        tb.cells.clear();
                    }
                }
                "tc" => {
                    if let Some(tb) = tables.last_mut() {
                        tb.cell.clear();
                    }
                }
                other => empty_like(
                    other,
                    &t,
                    &mut st,
                    &mut paras,
                    run_depth,
                    !tables.is_empty(),
                ),
            },
            Ev::Empty(t) => empty_like(
                &t.name,
                &t,
                &mut st,
                &mut paras,
                run_depth,
                !tables.is_empty(),
            ),
            Ev::Text(s) => {
                if in_t && let Some(p) = paras.last_mut() {
                    p.text.push_str(&s);
                    if !s.trim().is_empty() {
                        st.text_since_break = true;
                    }
                }
            }
            Ev::End(name) => match name.as_str() {
                "t" => in_t = false,
                "r" => run_depth = run_depth.saturating_sub(1),
                "p" => {
                    let Some(p) = paras.pop() else { continue };
                    let text = clean_para(&p.text);
                    if let Some(tb) = tables.last_mut() {
                        // Inside a table cell: cell paragraphs join with a space.
                        if !text.is_empty() {
                            if !tb.cell.is_empty() {
                                tb.cell.push(' ');
                            }
                            tb.cell.push_str(&squash(&text));
                        }
                    } else if let Some(outer) = paras.last_mut() {
                        // A text box inside a paragraph: keep its text with the
                        // paragraph that anchors it.
                        if !text.is_empty() {
                            outer.text.push('\n');
                            outer.text.push_str(&text);
                        }
                    } else {
                        let role = st.role(&p);
                        st.emit(text, role);
                    }
                }
                "tc" => {
                    if let Some(tb) = tables.last_mut() {
                        let cell = std::mem::take(&mut tb.cell);
                        tb.cells.push(cell);
                    }
                }
                "tr" => {
                    if let Some(tb) = tables.last_mut() {
                        let cells = std::mem::take(&mut tb.cells);
                        if cells.iter().any(|c| !c.is_empty()) {
                            tb.rows.push(cells.join(" | "));
                        }
                    }
                }
                "tbl" => {
                    let Some(tb) = tables.pop() else { continue };
                    let text = tb.rows.join("\n");
                    if let Some(outer) = tables.last_mut() {
                        if !text.is_empty() {
                            if !outer.cell.is_empty() {
                                outer.cell.push(' ');
                            }
                            outer.cell.push_str(&squash(&text));
                        }
                    } else {
                        st.emit(text, None);
                    }
                }
                _ => {}
            },
        }
    }
    // A truncated-but-parseable document: keep whatever was open.
    while let Some(p) = paras.pop() {
        let text = clean_para(&p.text);
        st.emit(text, None);
    }
    Ok(Body {
        sections: st.sections,
        page: st.page,
        title_style_text: st.title_style_text,
    })
}

/// Elements that matter whether written `<x/>` or `<x>..</x>`.
fn empty_like(
    name: &str,
    t: &crate::ooxml::Tag,
    st: &mut State<'_>,
    paras: &mut [Para],
    run_depth: usize,
    in_table: bool,
) {
    match name {
        "pStyle" => {
            if let (Some(p), Some(v)) = (paras.last_mut(), t.attr("val")) {
                p.style = Some(v.to_string());
            }
        }
        "outlineLvl" => {
            if let Some(p) = paras.last_mut() {
                p.outline = t.attr("val").and_then(outline_level);
            }
        }
        "pageBreakBefore" if !matches!(t.attr("val"), Some("0" | "false" | "off")) => {
            page_break_in_para(st, paras, in_table);
        }
        "lastRenderedPageBreak" => page_break_in_para(st, paras, in_table),
        // Tabs and breaks only count inside runs: `w:tabs/w:tab` in the
        // paragraph properties define tab stops, not characters.
        "br" if run_depth > 0 => {
            if t.attr("type") == Some("page") {
                page_break_in_para(st, paras, in_table);
            } else if let Some(p) = paras.last_mut() {
                p.text.push('\n');
            }
        }
        "cr" if run_depth > 0 => {
            if let Some(p) = paras.last_mut() {
                p.text.push('\n');
            }
        }
        "tab" | "ptab" if run_depth > 0 => {
            if let Some(p) = paras.last_mut() {
                p.text.push(' ');
            }
        }
        "noBreakHyphen" if run_depth > 0 => {
            if let Some(p) = paras.last_mut() {
                p.text.push('-');
            }
        }
        _ => {}
    }
}

/// A page break inside a paragraph: the text before it stays on the old
/// page (emitted now as its own block), the rest goes to the new page.
fn page_break_in_para(st: &mut State<'_>, paras: &mut [Para], in_table: bool) {
    if !in_table
        && paras.len() == 1
        && let Some(p) = paras.last_mut()
    {
        let before = clean_para(&p.text);
        if !before.is_empty() {
            p.text.clear();
            let role = st.role(p);
            st.emit(before, role);
        }
    }
    st.page_break();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn style_names() {
        assert_eq!(role_from_name("heading 2"), Some(StyleRole::Heading(2)));
        assert_eq!(role_from_name("Heading1"), Some(StyleRole::Heading(1)));
        assert_eq!(role_from_name("Title"), Some(StyleRole::Title));
        assert_eq!(role_from_name("Normal"), None);
        assert_eq!(role_from_name("heading 0"), None);
        assert_eq!(outline_level("0"), Some(1));
        assert_eq!(outline_level("9"), None);
    }
}
