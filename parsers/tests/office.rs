//! DOCX and PPTX built in the test with the `zip` crate: sniffing by zip
//! entries, text, headings, tables, pages/slides, notes, and zip bombs.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::time::Instant;

use bwenge_parsers::{ExtractLimits, MediaKind, ParseError, extract, sniff};
use zip::write::SimpleFileOptions;

#[test]
fn docx_text_headings_table_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::docx(dir.path());
    // A misleading name does not matter: bytes decide.
    assert_eq!(sniff(&path, Some("slides.pptx")).unwrap(), MediaKind::Docx);

    let doc = extract(MediaKind::Docx, &path, &ExtractLimits::default()).unwrap();
    assert_eq!(doc.title.as_deref(), Some("Simple Machines"));
    let all = doc.full_text();
    assert!(all.contains("A lever is a rigid bar & a pivot."), "{all}");
    assert!(all.contains("First class: pivot in the middle."), "{all}");
    assert!(
        all.contains("Class | Example\nFirst | Seesaw Scissors"),
        "{all}"
    );
    assert_eq!(
        all.matches("Box note.").count(),
        1,
        "mc:Fallback duplicated text: {all}"
    );
    assert!(!all.contains("left"), "tab stop definition leaked: {all}");

    let find = |needle: &str| {
        doc.sections
            .iter()
            .find(|s| s.text.contains(needle))
            .unwrap()
    };
    let table = find("Seesaw");
    assert_eq!(
        table.heading_path,
        ["Chapter 1: Levers", "Classes of levers"]
    );
    assert_eq!(table.page, 1);
    assert_eq!(find("End of page one.").page, 1);
    // The explicit break and Word's rendered break are one page break.
    let p2 = find("Start of page two.");
    assert_eq!(p2.page, 2);
    assert_eq!(p2.heading_path, ["Chapter 1: Levers", "Classes of levers"]);
    let pulley = find("A pulley");
    assert_eq!(pulley.heading_path, ["Chapter 2: Pulleys"]);
    assert_eq!(pulley.page, 2);
    assert_eq!(doc.page_count, 2);
}

#[test]
fn pptx_slides_in_presentation_order_with_notes() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::pptx(dir.path());
    assert_eq!(sniff(&path, Some("notes.docx")).unwrap(), MediaKind::Pptx);

    let doc = extract(MediaKind::Pptx, &path, &ExtractLimits::default()).unwrap();
    assert_eq!(doc.page_count, 3);
    assert_eq!(doc.title.as_deref(), Some("The Solar System"));
    let pages: Vec<(u32, &str)> = doc
        .sections
        .iter()
        .map(|s| (s.page, s.text.as_str()))
        .collect();
    assert_eq!(
        pages,
        [
            (
                1,
                "The Solar System\n\nThe Sun is a star.\n\nEight planets orbit it.\n\nPlanet | Moons\nMars | 2"
            ),
            (1, "Speaker notes: Ask who has seen Mars at night."),
            (
                2,
                "Inner planets\n\nMercury, Venus, Earth & Mars are rocky."
            ),
            (3, "Questions?"),
        ]
    );
    assert_eq!(doc.sections[1].heading_path, ["The Solar System"]);
    assert_eq!(doc.sections[2].heading_path, ["Inner planets"]);
}

/// One entry of `mib` MiB of zeros (about 1 KB compressed per MiB),
/// streamed into the writer so the test never holds it in memory.
fn zip_bomb(path: &std::path::Path, entry: &str, mib: usize) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9));
    z.start_file("[Content_Types].xml", opts).unwrap();
    z.write_all(b"<Types/>").unwrap();
    z.start_file(entry, opts).unwrap();
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..mib {
        z.write_all(&zeros).unwrap();
    }
    z.finish().unwrap();
}

/// Rewrites the uncompressed size of `entry` in its local and central
/// headers, the way a hostile file would lie about it.
fn lie_about_size(path: &std::path::Path, entry: &str, size: u32) {
    let mut bytes = std::fs::read(path).unwrap();
    let name = entry.as_bytes();
    for (sig, size_at, name_at) in [(b"PK\x03\x04", 22usize, 30usize), (b"PK\x01\x02", 24, 46)] {
        let mut i = 0;
        while let Some(p) = bytes[i..].windows(4).position(|w| w == sig) {
            let h = i + p;
            if bytes.get(h + name_at..h + name_at + name.len()) == Some(name) {
                bytes[h + size_at..h + size_at + 4].copy_from_slice(&size.to_le_bytes());
            }
            i = h + 4;
        }
    }
    std::fs::write(path, bytes).unwrap();
}

fn assert_fast_error(path: &std::path::Path, limits: &ExtractLimits) -> ParseError {
    let started = Instant::now();
    let err = extract(MediaKind::Docx, path, limits).unwrap_err();
    // Stops after a few MiB of output at most, not hundreds.
    assert!(
        started.elapsed().as_secs() < 5,
        "took {:?}",
        started.elapsed()
    );
    err
}

#[test]
fn zip_bombs_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = ExtractLimits::default();

    // 300 MiB declared at ~1000:1: refused from the directory alone.
    let big = dir.path().join("big.docx");
    zip_bomb(&big, "word/document.xml", 300);
    let packed = std::fs::metadata(&big).unwrap().len();
    assert!(packed < 2 * 1024 * 1024, "{packed}");
    assert_eq!(sniff(&big, None).unwrap(), MediaKind::Docx);
    let err = assert_fast_error(&big, &defaults);
    assert!(matches!(err, ParseError::ZipBomb(_)), "{err:?}");
    assert!(err.is_permanent());
    assert!(err.to_string().contains("unsafe"), "{err}");

    // 150 MiB declared (under the 200 MiB budget): caught while streaming
    // by the ratio of bytes produced to bytes consumed.
    let mid = dir.path().join("mid.docx");
    zip_bomb(&mid, "word/document.xml", 150);
    let err = assert_fast_error(&mid, &defaults);
    assert!(matches!(err, ParseError::ZipBomb(_)), "{err:?}");

    // Headers that lie ("1000 bytes") do not let it through: the zip reader
    // stops at the declared size (damaged file) or our counters stop it.
    lie_about_size(&mid, "word/document.xml", 1000);
    let err = assert_fast_error(&mid, &defaults);
    assert!(
        matches!(err, ParseError::ZipBomb(_) | ParseError::Malformed(_)),
        "{err:?}"
    );

    // With the ratio check off, the size budget still refuses it.
    let no_ratio = ExtractLimits {
        max_ratio: u64::MAX,
        max_uncompressed_bytes: 8 * 1024 * 1024,
        ..Default::default()
    };
    let err = assert_fast_error(&big, &no_ratio);
    assert!(matches!(err, ParseError::TooLarge(_)), "{err:?}");
}

#[test]
fn too_many_entries_and_hidden_bombs_in_pptx() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.pptx");
    let names: Vec<String> = (0..50).map(|i| format!("ppt/media/x{i}.xml")).collect();
    let mut entries: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "<x/>")).collect();
    entries.push(("ppt/presentation.xml", "<p:presentation/>"));
    common::write_zip(&path, &entries);
    let limits = ExtractLimits {
        max_zip_entries: 10,
        ..Default::default()
    };
    let err = extract(MediaKind::Pptx, &path, &limits).unwrap_err();
    assert!(matches!(err, ParseError::TooLarge(_)), "{err:?}");

    let bomb = dir.path().join("bomb.pptx");
    zip_bomb(&bomb, "ppt/presentation.xml", 300);
    let err = extract(MediaKind::Pptx, &bomb, &ExtractLimits::default()).unwrap_err();
    assert!(matches!(err, ParseError::ZipBomb(_)), "{err:?}");
}

#[test]
fn other_zips_and_damaged_containers() {
    let dir = tempfile::tempdir().unwrap();
    let plain_zip = dir.path().join("photos.zip");
    common::write_zip(&plain_zip, &[("a.txt", "hello")]);
    assert_eq!(sniff(&plain_zip, None).unwrap(), MediaKind::Unknown);

    // A DOCX cut in half: still recognised from its local headers, and
    // extraction says it is damaged instead of panicking.
    let docx = common::docx(dir.path());
    let bytes = std::fs::read(&docx).unwrap();
    let cut = dir.path().join("cut.docx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(sniff(&cut, None).unwrap(), MediaKind::Docx);
    let err = extract(MediaKind::Docx, &cut, &ExtractLimits::default()).unwrap_err();
    assert!(matches!(err, ParseError::Malformed(_)), "{err:?}");

    // A directory that claims 65,534 entries is refused before the zip
    // reader sizes anything from that claim.
    let mut forged = bytes.clone();
    let eocd = forged.windows(4).rposition(|w| w == b"PK\x05\x06").unwrap();
    forged[eocd + 8..eocd + 12].copy_from_slice(&[0xFE, 0xFF, 0xFE, 0xFF]);
    let forged_path = dir.path().join("forged.docx");
    std::fs::write(&forged_path, &forged).unwrap();
    let err = extract(MediaKind::Docx, &forged_path, &ExtractLimits::default()).unwrap_err();
    assert!(
        matches!(&err, ParseError::TooLarge(m) if m.contains("65534")),
        "{err:?}"
    );

    // A zip without the main part.
    let empty = dir.path().join("empty.docx");
    common::write_zip(&empty, &[("word/styles.xml", "<w:styles/>")]);
    let err = extract(MediaKind::Docx, &empty, &ExtractLimits::default()).unwrap_err();
    assert!(matches!(err, ParseError::Malformed(_)), "{err:?}");
}
