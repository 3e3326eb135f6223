//! Fixture builders shared by the integration tests: minimal but valid
//! DOCX/PPTX written with the `zip` crate, and PDFs written with `lopdf`
//! (re-exported by `pdf-extract`).
#![allow(clippy::unwrap_used, dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use pdf_extract::content::{Content, Operation};
use pdf_extract::{Object, Stream, dictionary};
use zip::write::SimpleFileOptions;

pub fn write_zip(path: &Path, entries: &[(&str, &str)]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, body) in entries {
        z.start_file(*name, opts).unwrap();
        z.write_all(body.as_bytes()).unwrap();
    }
    z.finish().unwrap();
}

const W: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main""#;

fn p(style: Option<&str>, runs: &str) -> String {
    let ppr = style
        .map(|s| format!(r#"<w:pPr><w:pStyle w:val="{s}"/></w:pPr>"#))
        .unwrap_or_default();
    format!("<w:p>{ppr}{runs}</w:p>")
}

fn r(text: &str) -> String {
    format!(r#"<w:r><w:t xml:space="preserve">{text}</w:t></w:r>"#)
}

/// A lesson: title, two chapters with headings, a table, a page break
/// (explicit `w:br` followed by Word's `lastRenderedPageBreak`, which must
/// count once), a tab stop definition that must not become text.
pub fn docx(dir: &Path) -> PathBuf {
    let body = [
        p(Some("Title"), &r("Simple Machines")),
        p(Some("Heading1"), &r("Chapter 1: Levers")),
        p(None, &format!("{}{}", r("A lever is a rigid bar &amp; a "), r("pivot."))),
        // Heading via a localised style id resolved through styles.xml.
        p(Some("berschrift2"), &r("Classes of levers")),
        format!(
            r#"<w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>{}<w:r><w:tab/></w:r>{}</w:p>"#,
            r("First class:"),
            r("pivot in the middle.")
        ),
        r#"<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Class</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Example</w:t></w:r></w:p></w:tc></w:tr>
<w:tr><w:tc><w:p><w:r><w:t>First</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Seesaw</w:t></w:r></w:p><w:p><w:r><w:t>Scissors</w:t></w:r></w:p></w:tc></w:tr></w:tbl>"#
            .to_string(),
        format!(r#"<w:p>{}<w:r><w:br w:type="page"/></w:r></w:p>"#, r("End of page one.")),
        r#"<w:p><w:r><w:lastRenderedPageBreak/><w:t>Start of page two.</w:t></w:r></w:p>"#.to_string(),
        p(Some("Heading1"), &r("Chapter 2: Pulleys")),
        p(None, &r("A pulley changes the direction of a force.")),
        // Text box content duplicated in mc:Fallback must appear once.
        r#"<w:p><w:r><mc:AlternateContent xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"><mc:Choice Requires="wps"><w:drawing><w:txbxContent><w:p><w:r><w:t>Box note.</w:t></w:r></w:p></w:txbxContent></w:drawing></mc:Choice><mc:Fallback><w:pict><w:txbxContent><w:p><w:r><w:t>Box note.</w:t></w:r></w:p></w:txbxContent></w:pict></mc:Fallback></mc:AlternateContent></w:r></w:p>"#.to_string(),
    ]
    .concat();
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document {W}><w:body>{body}<w:sectPr/></w:body></w:document>"#
    );
    let styles = format!(
        r#"<?xml version="1.0"?><w:styles {W}><w:style w:type="paragraph" w:styleId="berschrift2"><w:name w:val="heading 2"/></w:style><w:style w:type="paragraph" w:styleId="Normal"><w:name w:val="Normal"/></w:style></w:styles>"#
    );
    let path = dir.join("lesson.docx");
    write_zip(
        &path,
        &[
            ("[Content_Types].xml", CONTENT_TYPES),
            ("_rels/.rels", ROOT_RELS_DOCX),
            ("word/document.xml", &document),
            ("word/styles.xml", &styles),
        ],
    );
    path
}

const CONTENT_TYPES: &str = r#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/></Types>"#;
const ROOT_RELS_DOCX: &str = r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;
const ROOT_RELS_PPTX: &str = r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="ppt/presentation.xml"/></Relationships>"#;

const PNS: &str = r#"xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main""#;

fn shape(ph: Option<&str>, paras: &[&str]) -> String {
    let ph = ph
        .map(|t| format!(r#"<p:ph type="{t}"/>"#))
        .unwrap_or_default();
    let paras: String = paras
        .iter()
        .map(|t| format!("<a:p><a:r><a:t>{t}</a:t></a:r></a:p>"))
        .collect();
    format!(
        r#"<p:sp><p:nvSpPr><p:cNvPr id="2" name="s"/><p:cNvSpPr/><p:nvPr>{ph}</p:nvPr></p:nvSpPr><p:spPr/><p:txBody><a:bodyPr/>{paras}</p:txBody></p:sp>"#
    )
}

fn slide_xml(shapes: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><p:sld {PNS}><p:cSld><p:spTree><p:nvGrpSpPr><p:cNvPr id="1" name=""/><p:cNvGrpSpPr/><p:nvPr/></p:nvGrpSpPr><p:grpSpPr/>{shapes}</p:spTree></p:cSld></p:sld>"#
    )
}

fn notes_xml(shapes: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><p:notes {PNS}><p:cSld><p:spTree>{shapes}</p:spTree></p:cSld></p:notes>"#
    )
}

/// Three slides whose file names are in the *reverse* of presentation
/// order (order must come from presentation.xml), slide 1 with notes and a
/// table, slide 3 with a title only.
pub fn pptx(dir: &Path) -> PathBuf {
    let presentation = format!(
        r#"<?xml version="1.0"?><p:presentation {PNS}><p:sldIdLst><p:sldId id="256" r:id="rId7"/><p:sldId id="257" r:id="rId8"/><p:sldId id="258" r:id="rId9"/></p:sldIdLst></p:presentation>"#
    );
    let pres_rels = r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/slideMaster" Target="slideMasters/slideMaster1.xml"/><Relationship Id="rId7" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/slide" Target="slides/slide3.xml"/><Relationship Id="rId8" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/slide" Target="slides/slide2.xml"/><Relationship Id="rId9" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/slide" Target="/ppt/slides/slide1.xml"/></Relationships>"#;
    let table = r#"<p:graphicFrame><a:graphic><a:graphicData><a:tbl><a:tr><a:tc><a:txBody><a:p><a:r><a:t>Planet</a:t></a:r></a:p></a:txBody></a:tc><a:tc><a:txBody><a:p><a:r><a:t>Moons</a:t></a:r></a:p></a:txBody></a:tc></a:tr><a:tr><a:tc><a:txBody><a:p><a:r><a:t>Mars</a:t></a:r></a:p></a:txBody></a:tc><a:tc><a:txBody><a:p><a:r><a:t>2</a:t></a:r></a:p></a:txBody></a:tc></a:tr></a:tbl></a:graphicData></a:graphic></p:graphicFrame>"#;
    let s_first = slide_xml(&format!(
        "{}{}{}",
        shape(Some("ctrTitle"), &["The Solar System"]),
        shape(None, &["The Sun is a star.", "Eight planets orbit it."]),
        table
    ));
    let s_second = slide_xml(&format!(
        "{}{}",
        shape(Some("title"), &["Inner planets"]),
        shape(None, &["Mercury, Venus, Earth &amp; Mars are rocky."])
    ));
    let s_third = slide_xml(&shape(Some("title"), &["Questions?"]));
    let rels_with_notes = r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/slideLayout" Target="../slideLayouts/slideLayout1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/notesSlide" Target="../notesSlides/notesSlide9.xml"/></Relationships>"#;
    let notes = notes_xml(&format!(
        "{}{}{}",
        shape(Some("sldImg"), &[]),
        shape(Some("body"), &["Ask who has seen Mars at night."]),
        shape(Some("sldNum"), &["1"])
    ));
    let path = dir.join("solar.pptx");
    write_zip(
        &path,
        &[
            ("[Content_Types].xml", CONTENT_TYPES),
            ("_rels/.rels", ROOT_RELS_PPTX),
            ("ppt/presentation.xml", &presentation),
            ("ppt/_rels/presentation.xml.rels", pres_rels),
            ("ppt/slides/slide3.xml", &s_first),
            ("ppt/slides/_rels/slide3.xml.rels", rels_with_notes),
            ("ppt/notesSlides/notesSlide9.xml", &notes),
            ("ppt/slides/slide2.xml", &s_second),
            ("ppt/slides/slide1.xml", &s_third),
        ],
    );
    path
}

/// Builds a PDF with one page per entry; each page shows its lines of text
/// in Helvetica, or, for `None`, only a stroked rectangle (no text at all).
pub fn pdf_bytes(pages: &[Option<&[&str]>]) -> Vec<u8> {
    let mut doc = pdf_extract::Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
        "Encoding" => "WinAnsiEncoding",
    });
    let resources_id = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => font_id },
    });
    let mut kids: Vec<Object> = Vec::new();
    for page in pages {
        let operations = match page {
            Some(lines) => {
                let mut ops = vec![
                    Operation::new("BT", vec![]),
                    Operation::new("Tf", vec!["F1".into(), 12.into()]),
                    Operation::new("TL", vec![16.into()]),
                    Operation::new("Td", vec![72.into(), 760.into()]),
                ];
                for line in *lines {
                    ops.push(Operation::new("Tj", vec![Object::string_literal(*line)]));
                    ops.push(Operation::new("T*", vec![]));
                }
                ops.push(Operation::new("ET", vec![]));
                ops
            }
            None => vec![
                Operation::new("RG", vec![0.into(), 0.into(), 1.into()]),
                Operation::new("re", vec![100.into(), 100.into(), 300.into(), 200.into()]),
                Operation::new("S", vec![]),
            ],
        };
        let content = Content { operations };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
        });
        kids.push(page_id.into());
    }
    let count = i64::try_from(kids.len()).unwrap();
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    let info_id = doc.add_object(dictionary! { "Title" => Object::string_literal("Test lesson") });
    doc.trailer.set("Root", catalog_id);
    doc.trailer.set("Info", info_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// The stand-in for `bwenge __extract-pdf` built from this crate.
pub fn child_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bwenge-pdf-child"))
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
