//! Helpers shared by the DOCX and PPTX parsers: a tolerant streaming XML
//! reader over a budgeted zip entry, relationship parts and core properties.
//!
//! Elements and attributes are matched on their *local* names: OOXML fixes
//! the namespaces, not the prefixes, and generators do vary the prefixes.

use std::borrow::Cow;
use std::io::{BufReader, Read};

use quick_xml::Reader;
use quick_xml::events::{BytesRef, BytesStart, Event};

use crate::ParseError;
use crate::zipsafe::{SafeZip, read_error};

/// A streaming XML event source with a reused buffer.
pub(crate) struct Xml<'r> {
    reader: Reader<BufReader<&'r mut dyn Read>>,
    buf: Vec<u8>,
}

/// The events the OOXML parsers care about, already decoded.
pub(crate) enum Ev {
    Start(Tag),
    /// `<x/>`: there is no matching `End`.
    Empty(Tag),
    End(String),
    Text(String),
}

/// An element's local name and its attributes as (qualified key, value).
pub(crate) struct Tag {
    pub(crate) name: String,
    attrs: Vec<(String, String)>,
}

impl Tag {
    /// Value of the first attribute whose local name is `local`
    /// (`w:val` and `val` both match `"val"`).
    pub(crate) fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == local || k.rsplit(':').next() == Some(local))
            .map(|(_, v)| v.as_str())
    }

    /// Value of a namespaced attribute only (`r:id`, not `id`).
    pub(crate) fn prefixed_attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.contains(':') && k.rsplit(':').next() == Some(local))
            .map(|(_, v)| v.as_str())
    }
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

fn tag(e: &BytesStart<'_>) -> Tag {
    let name = local(e.name().as_ref()).to_string();
    let mut attrs = Vec::new();
    for a in e.attributes().with_checks(false).flatten() {
        let key = a.key.as_ref().to_string();
        let value = match a.normalized_value(quick_xml::XmlVersion::Implicit1_0) {
            Ok(v) => v.into_owned(),
            Err(_) => a.value.clone().into_owned(),
        };
        attrs.push((key, value));
    }
    Tag { name, attrs }
}

/// Resolves `&amp;`-style references that quick-xml reports separately.
fn general_ref(r: &BytesRef<'_>) -> String {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return c.to_string();
    }
    let name: Cow<'_, str> = r.xml10_content();
    match name.as_ref() {
        "amp" => "&".into(),
        "lt" => "<".into(),
        "gt" => ">".into(),
        "quot" => "\"".into(),
        "apos" => "'".into(),
        other => format!("&{other};"),
    }
}

impl<'r> Xml<'r> {
    pub(crate) fn new(r: &'r mut dyn Read) -> Xml<'r> {
        let mut reader = Reader::from_reader(BufReader::new(r));
        let cfg = reader.config_mut();
        // Tolerate sloppy generators: mismatched end tags are not our
        // problem as long as the text comes out.
        cfg.check_end_names = false;
        cfg.trim_text(false);
        Xml {
            reader,
            buf: Vec::with_capacity(8 * 1024),
        }
    }

    /// Next interesting event, `Ok(None)` at the end of the document.
    pub(crate) fn next(&mut self) -> Result<Option<Ev>, ParseError> {
        loop {
            self.buf.clear();
            let ev = match self.reader.read_event_into(&mut self.buf) {
                Ok(ev) => ev,
                Err(quick_xml::Error::Io(e)) => {
                    return Err(read_error(std::io::Error::new(e.kind(), e.to_string())));
                }
                Err(e) => {
                    return Err(ParseError::Malformed(format!(
                        "damaged XML inside the file: {e}"
                    )));
                }
            };
            return Ok(Some(match ev {
                Event::Start(e) => Ev::Start(tag(&e)),
                Event::Empty(e) => Ev::Empty(tag(&e)),
                Event::End(e) => Ev::End(local(e.name().as_ref()).to_string()),
                Event::Text(t) => Ev::Text(t.xml10_content().into_owned()),
                Event::CData(t) => Ev::Text(t.into_inner().into_owned()),
                Event::GeneralRef(r) => Ev::Text(general_ref(&r)),
                Event::Eof => return Ok(None),
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => continue,
            }));
        }
    }
}

/// One `<Relationship>` of a `.rels` part.
pub(crate) struct Rel {
    pub(crate) id: String,
    pub(crate) rel_type: String,
    pub(crate) target: String,
    pub(crate) external: bool,
}

/// The `.rels` part that belongs to `part` (`a/b.xml` → `a/_rels/b.xml.rels`).
pub(crate) fn rels_path(part: &str) -> String {
    match part.rsplit_once('/') {
        Some((dir, file)) => format!("{dir}/_rels/{file}.rels"),
        None => format!("_rels/{part}.rels"),
    }
}

/// Reads the relationships of `part`; a missing rels part is an empty list.
pub(crate) fn read_rels(zip: &mut SafeZip, part: &str) -> Result<Vec<Rel>, ParseError> {
    let rels = zip.with_entry(&rels_path(part), |r| {
        let mut xml = Xml::new(r);
        let mut out = Vec::new();
        while let Some(ev) = xml.next()? {
            if let Ev::Start(t) | Ev::Empty(t) = ev
                && t.name == "Relationship"
            {
                out.push(Rel {
                    id: t.attr("Id").unwrap_or_default().to_string(),
                    rel_type: t.attr("Type").unwrap_or_default().to_string(),
                    target: t.attr("Target").unwrap_or_default().to_string(),
                    external: t.attr("TargetMode") == Some("External"),
                });
            }
        }
        Ok(out)
    })?;
    Ok(rels.unwrap_or_default())
}

/// `dc:title` from `docProps/core.xml`, when present and non-blank.
pub(crate) fn core_title(zip: &mut SafeZip) -> Result<Option<String>, ParseError> {
    let title = zip.with_entry("docProps/core.xml", |r| {
        let mut xml = Xml::new(r);
        let mut in_title = false;
        let mut title = String::new();
        while let Some(ev) = xml.next()? {
            match ev {
                Ev::Start(t) if t.name == "title" => in_title = true,
                Ev::End(n) if n == "title" => in_title = false,
                Ev::Text(s) if in_title => title.push_str(&s),
                _ => {}
            }
        }
        Ok(title)
    })?;
    Ok(title
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|t| !t.is_empty()))
}

/// Joins words with single spaces (text nodes may carry layout whitespace).
pub(crate) fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Squashes each line of a paragraph and drops empty lines, keeping the
/// explicit line breaks (`w:br`, `a:br`) an author typed.
pub(crate) fn clean_para(s: &str) -> String {
    s.lines()
        .map(squash)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}
