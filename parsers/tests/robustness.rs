//! Hostile input never panics: truncations, bit flips and random bytes go
//! through sniffing, every in-process extractor and the chunker, and a
//! sample of them through the PDF child.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use bwenge_parsers::{
    ChunkConfig, ExtractLimits, MediaKind, PdfLimits, chunk, extract, extract_pdf_in_child, sniff,
};

const IN_PROCESS: [MediaKind; 7] = [
    MediaKind::Docx,
    MediaKind::Pptx,
    MediaKind::PlainText,
    MediaKind::Markdown,
    MediaKind::Html,
    MediaKind::Srt,
    MediaKind::Vtt,
];

/// Every in-process path on one file; any outcome but a panic is fine.
fn exercise(path: &Path) {
    let _ = sniff(path, Some("x.md")).unwrap();
    let limits = ExtractLimits::default();
    for kind in IN_PROCESS {
        if let Ok(doc) = extract(kind, path, &limits) {
            let chunks = chunk(&doc, &ChunkConfig::default());
            assert!(chunks.iter().all(|c| c.token_estimate <= 400), "{kind:?}");
        }
    }
}

/// `BWENGE_FUZZ_ITERATIONS=5000` for a longer local soak.
fn iterations(default: usize) -> usize {
    std::env::var("BWENGE_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn variants(original: &[u8], seed: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // Truncations at many lengths, including inside the zip directory.
    let steps = 24usize;
    for i in 0..steps {
        out.push(original[..original.len() * i / steps].to_vec());
    }
    out.push(original[..original.len().saturating_sub(1)].to_vec());
    // Flipped bytes at pseudo-random places.
    let flips = iterations(24);
    let noise = common::noise(seed, flips + 1);
    for (i, n) in noise.iter().enumerate().take(flips) {
        let mut v = original.to_vec();
        if !v.is_empty() {
            let at = (usize::from(*n) * 7919 + i * 104_729) % v.len();
            v[at] ^= 0x5a;
            let at2 = (at * 31 + 17) % v.len();
            v[at2] = noise[(i + 1) % noise.len()];
        }
        out.push(v);
    }
    out
}

#[test]
fn mangled_documents_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let docx = std::fs::read(common::docx(dir.path())).unwrap();
    let pptx = std::fs::read(common::pptx(dir.path())).unwrap();
    let texts: [&[u8]; 4] = [
        b"<html><h1>T</h1><p>x &amp; y</p><script>z</script></html>",
        b"1\n00:00:01,000 --> 00:00:02,000\nhi\n\n2\n00:00:03,000 --> 00:00:04,000\nho\n",
        b"WEBVTT\n\n00:01.000 --> 00:02.000\n<v A>hi &amp; bye\n",
        "# H\n\n## I\n\n```\ncode\n```\ntext \u{e9}\u{1F600}\n".as_bytes(),
    ];
    let path = dir.path().join("input");
    let originals = [docx.as_slice(), pptx.as_slice()].into_iter().chain(texts);
    for (seed, original) in (1..).zip(originals) {
        for v in variants(original, seed) {
            std::fs::write(&path, &v).unwrap();
            exercise(&path);
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random");
    for seed in 0..iterations(40) as u64 {
        let len = [0usize, 1, 2, 3, 4, 22, 30, 100, 1000, 70_000][(seed % 10) as usize];
        let mut bytes = common::noise(seed, len);
        // Some with a zip signature in front, some with text-like prefixes.
        match seed % 4 {
            0 => bytes = [b"PK\x03\x04".as_slice(), &bytes].concat(),
            1 => bytes = [b"WEBVTT\n\n".as_slice(), &bytes].concat(),
            2 => bytes.retain(|b| b.is_ascii_graphic() || *b == b'\n' || *b == b' '),
            _ => {}
        }
        std::fs::write(&path, &bytes).unwrap();
        exercise(&path);
    }
}

#[tokio::test]
async fn mangled_pdfs_through_the_child_never_hang() {
    let dir = tempfile::tempdir().unwrap();
    let pdf = common::pdf_bytes(&[Some(&["Alpha page."]), Some(&["Beta page."]), None]);
    let path = dir.path().join("x.pdf");
    let limits = PdfLimits {
        timeout: Duration::from_secs(30),
        ..Default::default()
    };
    // A sample (each one spawns a process).
    for (i, v) in variants(&pdf, 99)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 4 == 0)
    {
        std::fs::write(&path, &v).unwrap();
        match extract_pdf_in_child(&common::child_exe(), &path, &limits).await {
            Ok(doc) => assert!(doc.page_count >= 1),
            Err(e) => assert!(e.is_permanent(), "variant {i}: {e:?}"),
        }
    }
}
