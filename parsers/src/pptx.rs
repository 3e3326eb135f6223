//! PowerPoint (PPTX) text: one slide = one page, in presentation order
//! (`p:sldIdLst` of `ppt/presentation.xml` resolved through its rels, not
//! the file names, which need not match the order), the slide's title as its
//! heading, text from `a:t` runs, tables as `cell | cell` rows, and the
//! speaker notes from the slide's `notesSlide` part.

use std::path::Path;

use crate::ooxml::{Ev, Xml, clean_para, core_title, read_rels, squash};
use crate::zipsafe::{SafeZip, resolve_target};
use crate::{Document, ExtractLimits, ParseError, Section};

const PRESENTATION: &str = "ppt/presentation.xml";
const SLIDE_REL: &str = "/slide";
const NOTES_REL: &str = "/notesSlide";

pub(crate) fn extract(path: &Path, limits: &ExtractLimits) -> Result<Document, ParseError> {
    let mut zip = SafeZip::open(path, limits)?;
    let slide_ids = zip
        .with_entry(PRESENTATION, |r| {
            let mut xml = Xml::new(r);
            let mut ids = Vec::new();
            let mut in_list = false;
            while let Some(ev) = xml.next()? {
                match ev {
                    Ev::Start(t) if t.name == "sldIdLst" => in_list = true,
                    Ev::End(n) if n == "sldIdLst" => in_list = false,
                    Ev::Start(t) | Ev::Empty(t) if in_list && t.name == "sldId" => {
                        if let Some(id) = t.prefixed_attr("id") {
                            ids.push(id.to_string());
                        }
                    }
                    _ => {}
                }
            }
            Ok(ids)
        })?
        .ok_or_else(|| ParseError::Malformed("it has no ppt/presentation.xml part".into()))?;
    if slide_ids.len() > limits.max_slides {
        return Err(ParseError::TooLarge(format!(
            "it has {} slides (the limit is {})",
            slide_ids.len(),
            limits.max_slides
        )));
    }
    let rels = read_rels(&mut zip, PRESENTATION)?;
    let core = core_title(&mut zip)?;

    let mut sections = Vec::new();
    let mut first_title = None;
    for (i, rid) in slide_ids.iter().enumerate() {
        let page = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let Some(rel) = rels
            .iter()
            .find(|r| &r.id == rid && !r.external && r.rel_type.ends_with(SLIDE_REL))
        else {
            continue; // dangling id: keep numbering, skip the slide
        };
        let part = resolve_target(PRESENTATION, &rel.target);
        let Some(slide) = zip.with_entry(&part, |r| read_shapes(&mut Xml::new(r)))? else {
            continue;
        };
        let heading_path: Vec<String> = slide.title.iter().cloned().collect();
        if first_title.is_none() {
            first_title = slide.title.clone();
        }
        let mut paras = Vec::new();
        if let Some(t) = &slide.title {
            paras.push(t.clone());
        }
        paras.extend(slide.body);
        sections.push(Section {
            page,
            heading_path: heading_path.clone(),
            text: paras.join("\n\n"),
            start_ms: None,
            end_ms: None,
        });

        let notes_part = read_rels(&mut zip, &part)?
            .into_iter()
            .find(|r| !r.external && r.rel_type.ends_with(NOTES_REL))
            .map(|r| resolve_target(&part, &r.target));
        if let Some(notes_part) = notes_part
            && let Some(notes) = zip.with_entry(&notes_part, |r| read_shapes(&mut Xml::new(r)))?
        {
            let mut body = notes.body;
            if let Some(first) = body.first_mut() {
                // Mark notes so a reader of the chunk knows the teacher said
                // this rather than showed it.
                *first = format!("Speaker notes: {first}");
                sections.push(Section {
                    page,
                    heading_path,
                    text: body.join("\n\n"),
                    start_ms: None,
                    end_ms: None,
                });
            }
        }
    }
    Ok(Document {
        sections,
        page_count: u32::try_from(slide_ids.len()).unwrap_or(u32::MAX),
        title: core.or(first_title),
    })
}

/// The text of one slide or notes part.
struct Shapes {
    title: Option<String>,
    body: Vec<String>,
}

#[derive(Default)]
struct Shape {
    is_title: bool,
    skip: bool,
    paras: Vec<String>,
}

#[derive(Default)]
struct Table {
    rows: Vec<String>,
    cells: Vec<String>,
    cell: Vec<String>,
}

/// Reads shapes (`p:sp`), tables (`a:tbl`) and their paragraphs (`a:p`).
/// Placeholders for the slide number, date, header, footer and slide image
/// are skipped: on notes pages they only repeat the page number.
fn read_shapes(xml: &mut Xml<'_>) -> Result<Shapes, ParseError> {
    let mut out = Shapes {
        title: None,
        body: Vec::new(),
    };
    let mut shape: Option<Shape> = None;
    let mut table: Option<Table> = None;
    let mut para: Option<String> = None;
    let mut in_t = false;
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
            Ev::Start(t) | Ev::Empty(t) if t.name == "ph" => {
                if let Some(s) = shape.as_mut() {
                    match t.attr("type") {
                        Some("title" | "ctrTitle") => s.is_title = true,
                        Some("sldNum" | "dt" | "ftr" | "hdr" | "sldImg") => s.skip = true,
                        _ => {}
                    }
                }
            }
            Ev::Start(t) => match t.name.as_str() {
                "Fallback" => skip_depth = 1,
                "sp" => shape = Some(Shape::default()),
                "tbl" => table = Some(Table::default()),
                "tr" => {
                    if let Some(tb) = table.as_mut() {
                        tb.cells.clear();
                    }
                }
                "tc" => {
                    if let Some(tb) = table.as_mut() {
                        tb.cell.clear();
                    }
                }
                "p" => para = Some(String::new()),
                "t" => in_t = true,
                _ => {}
            },
            Ev::Empty(t) => {
                if t.name == "br"
                    && let Some(p) = para.as_mut()
                {
                    p.push('\n');
                }
            }
            Ev::Text(s) => {
                if in_t && let Some(p) = para.as_mut() {
                    p.push_str(&s);
                }
            }
            Ev::End(name) => match name.as_str() {
                "t" => in_t = false,
                "p" => {
                    let text = para.take().map(|p| clean_para(&p)).unwrap_or_default();
                    if text.is_empty() {
                        continue;
                    }
                    if let Some(tb) = table.as_mut() {
                        tb.cell.push(squash(&text));
                    } else if let Some(s) = shape.as_mut() {
                        s.paras.push(text);
                    } else {
                        out.body.push(text);
                    }
                }
                "tc" => {
                    if let Some(tb) = table.as_mut() {
                        let cell = std::mem::take(&mut tb.cell).join(" ");
                        tb.cells.push(cell);
                    }
                }
                "tr" => {
                    if let Some(tb) = table.as_mut() {
                        let cells = std::mem::take(&mut tb.cells);
                        if cells.iter().any(|c| !c.is_empty()) {
                            tb.rows.push(cells.join(" | "));
                        }
                    }
                }
                "tbl" => {
                    if let Some(tb) = table.take()
                        && !tb.rows.is_empty()
                    {
                        out.body.push(tb.rows.join("\n"));
                    }
                }
                "sp" => {
                    if let Some(s) = shape.take() {
                        if s.skip {
                            continue;
                        }
                        if s.is_title && out.title.is_none() {
                            let t = squash(&s.paras.join(" "));
                            if !t.is_empty() {
                                out.title = Some(t);
                            }
                        } else {
                            out.body.extend(s.paras);
                        }
                    }
                }
                _ => {}
            },
        }
    }
    Ok(out)
}
