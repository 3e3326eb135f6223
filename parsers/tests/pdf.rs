//! The PDF path end to end: `extract_pdf_in_child` spawning the
//! `bwenge-pdf-child` binary of this crate (a stand-in for
//! `bwenge __extract-pdf`, same entry point `pdf_child_main`).
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bwenge_parsers::{
    ChunkConfig, MediaKind, ParseError, PdfLimits, chunk, extract_pdf_in_child, sniff,
};

fn limits() -> PdfLimits {
    PdfLimits {
        timeout: Duration::from_secs(60),
        ..Default::default()
    }
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn generated_pdf_pages_and_title() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lesson.pdf");
    let pdf = common::pdf_bytes(&[
        Some(&["Pendulums", "A pendulum swings back and forth."]),
        None,
        Some(&[
            "Photosynthesis happens in the leaf.",
            "Plants make sugar from light.",
        ]),
    ]);
    std::fs::write(&path, pdf).unwrap();
    assert_eq!(sniff(&path, Some("lesson.txt")).unwrap(), MediaKind::Pdf);

    let doc = extract_pdf_in_child(&common::child_exe(), &path, &limits())
        .await
        .unwrap();
    assert_eq!(doc.page_count, 3);
    assert_eq!(doc.title.as_deref(), Some("Test lesson"));
    let pages: Vec<u32> = doc.sections.iter().map(|s| s.page).collect();
    assert_eq!(
        pages,
        [1, 3],
        "the empty page keeps its number but has no section"
    );
    assert!(
        squash(&doc.sections[0].text).contains("A pendulum swings back and forth."),
        "{doc:?}"
    );
    assert!(
        squash(&doc.sections[1].text).contains("Photosynthesis happens in the leaf."),
        "{doc:?}"
    );

    let chunks = chunk(&doc, &ChunkConfig::default());
    let c = chunks
        .iter()
        .find(|c| c.text.contains("Photosynthesis"))
        .unwrap();
    assert_eq!(c.page_end, 3);
}

#[tokio::test]
async fn scanned_pdf_without_text_needs_ocr() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scan.pdf");
    std::fs::write(&path, common::pdf_bytes(&[None, None])).unwrap();
    let err = extract_pdf_in_child(&common::child_exe(), &path, &limits())
        .await
        .unwrap_err();
    assert!(matches!(err, ParseError::NoTextLayer), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("scanned") && msg.contains("OCR"), "{msg}");
    assert!(err.is_permanent());
}

#[tokio::test]
async fn truncated_and_random_pdfs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let exe = common::child_exe();
    let pdf = common::pdf_bytes(&[Some(&["Hello class."]), Some(&["Second page."])]);

    let cut = dir.path().join("cut.pdf");
    std::fs::write(&cut, &pdf[..pdf.len() / 3]).unwrap();
    assert_eq!(sniff(&cut, None).unwrap(), MediaKind::Pdf);
    match extract_pdf_in_child(&exe, &cut, &limits()).await {
        // lopdf may rebuild a damaged cross-reference table; if it does,
        // whatever it returns must be well-formed.
        Ok(doc) => assert!(doc.page_count >= 1),
        Err(e) => assert!(
            matches!(e, ParseError::Malformed(_) | ParseError::NoTextLayer),
            "{e:?}"
        ),
    }

    let random = dir.path().join("random.pdf");
    std::fs::write(&random, common::noise(7, 50_000)).unwrap();
    assert_eq!(
        sniff(&random, Some("random.pdf")).unwrap(),
        MediaKind::Unknown
    );
    let err = extract_pdf_in_child(&exe, &random, &limits())
        .await
        .unwrap_err();
    assert!(matches!(err, ParseError::Malformed(_)), "{err:?}");
    assert!(
        err.to_string().starts_with("This file could not be read"),
        "{err}"
    );

    let mut fake = b"%PDF-1.7\n".to_vec();
    fake.extend(common::noise(8, 20_000));
    let fake_path = dir.path().join("fake.pdf");
    std::fs::write(&fake_path, fake).unwrap();
    let err = extract_pdf_in_child(&exe, &fake_path, &limits())
        .await
        .unwrap_err();
    assert!(matches!(err, ParseError::Malformed(_)), "{err:?}");
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The parent's guards, with shell scripts standing in for a misbehaving child.
#[tokio::test]
async fn parent_enforces_timeout_output_cap_and_signals() {
    let dir = tempfile::tempdir().unwrap();
    let pdf = dir.path().join("x.pdf");
    std::fs::write(&pdf, b"%PDF-1.4").unwrap();

    let hang = script(dir.path(), "hang.sh", "exec /bin/sleep 30");
    let started = Instant::now();
    let tight = PdfLimits {
        timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let err = extract_pdf_in_child(&hang, &pdf, &tight).await.unwrap_err();
    assert!(matches!(err, ParseError::Timeout), "{err:?}");
    assert!(!err.is_permanent());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "child was not killed: {:?}",
        started.elapsed()
    );

    let flood = script(dir.path(), "flood.sh", "exec /usr/bin/yes '{\"pages\":[]}'");
    let small = PdfLimits {
        max_output_bytes: 1024 * 1024,
        ..limits()
    };
    let err = extract_pdf_in_child(&flood, &pdf, &small)
        .await
        .unwrap_err();
    assert!(matches!(err, ParseError::TooLarge(_)), "{err:?}");

    let cpu = script(dir.path(), "cpu.sh", "kill -XCPU $$");
    let err = extract_pdf_in_child(&cpu, &pdf, &limits())
        .await
        .unwrap_err();
    assert!(matches!(err, ParseError::TooLarge(_)), "{err:?}");

    let env = script(dir.path(), "env.sh", "echo \"$HOME\" >&2; exit 4");
    let err = extract_pdf_in_child(&env, &pdf, &limits())
        .await
        .unwrap_err();
    // The environment is cleared: the child does not even see $HOME.
    assert!(
        matches!(&err, ParseError::Malformed(m) if m == "not a readable PDF"),
        "{err:?}"
    );

    let missing = dir.path().join("no-such-binary");
    let err = extract_pdf_in_child(&missing, &pdf, &limits())
        .await
        .unwrap_err();
    assert!(matches!(err, ParseError::Io(_)), "{err:?}");
}

/// The expEYES user manual from Debian's `expeyes-doc-en`, or `None`
/// (with a note) when it is not installed. With
/// `BWENGE_TEST_REQUIRE_SERVICES=1` (CI) a missing package is a failure.
fn expeyes_manual() -> Option<&'static Path> {
    let path = Path::new("/usr/share/expeyes/doc/en-eyes.pdf");
    if path.exists() {
        return Some(path);
    }
    if std::env::var("BWENGE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!(
            "{} missing: apt-get install -y expeyes-doc-en",
            path.display()
        );
    }
    eprintln!(
        "SKIP: {} not installed (apt-get install -y expeyes-doc-en)",
        path.display()
    );
    None
}

/// A real teacher's PDF from Debian's `expeyes-doc-en`: the phrase about the
/// resonating pendulum is on page 110 of the 130-page expEYES user manual
/// (checked against `pdftotext -f 110 -l 110`).
#[tokio::test]
async fn expeyes_manual_phrase_on_the_right_page() {
    let Some(path) = expeyes_manual() else {
        return;
    };
    assert_eq!(sniff(path, None).unwrap(), MediaKind::Pdf);
    let doc = extract_pdf_in_child(&common::child_exe(), path, &limits())
        .await
        .unwrap();
    assert_eq!(doc.page_count, 130);
    let phrase = "long pendulum resonated at around 2.3 Hz";
    let pages: Vec<u32> = doc
        .sections
        .iter()
        .filter(|s| squash(&s.text).contains(phrase))
        .map(|s| s.page)
        .collect();
    assert_eq!(pages, [110]);
    // Ligatures are normalised for search ("ﬁgure" → "figure").
    assert!(!doc.full_text().contains('ﬁ'));

    let chunks = chunk(&doc, &ChunkConfig::default());
    let hits: Vec<_> = chunks
        .iter()
        .filter(|c| squash(&c.text).contains(phrase))
        .collect();
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|c| c.page <= 110 && c.page_end >= 110),
        "{hits:?}"
    );
    assert!(chunks.iter().all(|c| c.token_estimate <= 400));
}

/// The memory limit really applies in the child: the 3 MB manual needs
/// about 22 MiB resident, so it cannot be parsed in 12 MiB of address
/// space (whether reading the file or parsing fails first), and that is
/// reported as too large rather than as a damaged file or a server error.
#[tokio::test]
async fn memory_limit_is_enforced_in_the_child() {
    let Some(path) = expeyes_manual() else { return };
    let tiny = PdfLimits {
        max_memory_bytes: 12 * 1024 * 1024,
        ..limits()
    };
    let err = extract_pdf_in_child(&common::child_exe(), path, &tiny)
        .await
        .unwrap_err();
    assert!(matches!(err, ParseError::TooLarge(_)), "{err:?}");
}
