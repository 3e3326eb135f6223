//! Text kinds from real files (sniffing by content, extraction) and
//! chunking as a teacher's search would see it.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use bwenge_parsers::{
    ChunkConfig, Document, ExtractLimits, MediaKind, ParseError, Section, chunk, estimate_tokens,
    extract, sniff,
};

fn file(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn sniff_and_extract(path: &std::path::Path, hint: Option<&str>) -> (MediaKind, Document) {
    let kind = sniff(path, hint).unwrap();
    (
        kind,
        extract(kind, path, &ExtractLimits::default()).unwrap(),
    )
}

#[test]
fn html_page_without_scripts_and_with_headings() {
    let dir = tempfile::tempdir().unwrap();
    let html = "<!doctype html>\n<html><head><title>Acids &amp; Bases</title><style>body{font:12px}</style>\
<script>alert('<h1>no</h1>')</script></head><body><h1>Acids</h1><p>Acids taste sour; pH &lt; 7.</p>\
<h2>Examples</h2><ul><li>Lemon juice</li><li>Vinegar</li></ul><noscript>Turn on JavaScript</noscript>\
<h1>Bases</h1><p>Bases feel slippery.</body></html>";
    // The name says Markdown; the bytes say HTML.
    let path = file(&dir, "chem.md", html);
    let (kind, doc) = sniff_and_extract(&path, Some("chem.md"));
    assert_eq!(kind, MediaKind::Html);
    assert_eq!(doc.title.as_deref(), Some("Acids & Bases"));
    let all = doc.full_text();
    assert!(
        !all.contains("font") && !all.contains("alert") && !all.contains("JavaScript"),
        "{all}"
    );
    assert!(all.contains("Acids taste sour; pH < 7."), "{all}");
    let vinegar = doc
        .sections
        .iter()
        .find(|s| s.text.contains("Vinegar"))
        .unwrap();
    assert_eq!(vinegar.heading_path, ["Acids", "Examples"]);
    let bases = doc
        .sections
        .iter()
        .find(|s| s.text.contains("slippery"))
        .unwrap();
    assert_eq!(bases.heading_path, ["Bases"]);
}

#[test]
fn srt_and_vtt_keep_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let srt = "1\r\n00:00:00,500 --> 00:00:03,000\r\nToday we study <b>light</b>.\r\n\r\n2\r\n00:01:30,000 --> 00:01:33,250\r\nLight travels in straight lines.\r\n";
    let path = file(&dir, "lesson.txt", srt);
    let (kind, doc) = sniff_and_extract(&path, Some("lesson.txt"));
    assert_eq!(kind, MediaKind::Srt);
    assert_eq!(doc.sections.len(), 2);
    assert_eq!(doc.sections[0].text, "Today we study light.");
    assert_eq!(
        (doc.sections[1].start_ms, doc.sections[1].end_ms),
        (Some(90_000), Some(93_250))
    );
    assert_eq!(doc.sections[1].page, 2, "minute index + 1");

    let vtt = "\u{feff}WEBVTT\n\n00:00:01.000 --> 00:00:02.000 line:0\n<v Teacher>Good morning!\n\n00:02:10.000 --> 00:02:12.000\nOpen your books.\n";
    let path = file(&dir, "lesson.vtt", vtt);
    let (kind, doc) = sniff_and_extract(&path, None);
    assert_eq!(kind, MediaKind::Vtt);
    assert_eq!(doc.sections[0].text, "Teacher: Good morning!");
    assert_eq!(doc.sections[1].start_ms, Some(130_000));
    assert_eq!(doc.sections[1].page, 3);
    assert_eq!(doc.page_count, 3);

    // A chunk never spans two pages (minutes here), so each cites its own.
    let chunks = chunk(&doc, &ChunkConfig::default());
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[0].text, "Teacher: Good morning!");
    assert_eq!((chunks[0].page, chunks[0].page_end), (1, 1));
    assert_eq!(chunks[1].text, "Open your books.");
    assert_eq!((chunks[1].page, chunks[1].page_end), (3, 3));
    assert_eq!(
        (chunks[1].start_ms, chunks[1].end_ms),
        (Some(130_000), Some(132_000))
    );
}

#[test]
fn markdown_heading_path_and_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let md = "# Chapter 2\n\nForces make things move.\n\n## Pendulum\n\nA pendulum has a **period**.\n\n- length\n- gravity\n";
    let path = file(&dir, "notes", md);
    let (kind, doc) = sniff_and_extract(&path, None);
    assert_eq!(kind, MediaKind::Markdown);
    assert_eq!(doc.title.as_deref(), Some("Chapter 2"));
    let chunks = chunk(&doc, &ChunkConfig::default());
    let pendulum = chunks.iter().find(|c| c.text.contains("period")).unwrap();
    assert!(
        pendulum.heading_path == ["Chapter 2", "Pendulum"]
            || pendulum.heading_path == ["Chapter 2"]
    );
    assert!(
        doc.sections
            .iter()
            .any(|s| s.heading_path == ["Chapter 2", "Pendulum"] && s.text.contains("period"))
    );

    // Prose: plain text, unless the name says Markdown (a tie).
    let prose = "Dear parents,\n\nThe trip is on Friday.\n";
    let path = file(&dir, "letter", prose);
    assert_eq!(sniff(&path, None).unwrap(), MediaKind::PlainText);
    assert_eq!(
        sniff(&path, Some("letter.md")).unwrap(),
        MediaKind::Markdown
    );
    let doc = extract(MediaKind::PlainText, &path, &ExtractLimits::default()).unwrap();
    assert_eq!(doc.full_text(), "Dear parents,\n\nThe trip is on Friday.");
}

#[test]
fn empty_binary_media_and_oversized_files() {
    let dir = tempfile::tempdir().unwrap();
    let blank = file(&dir, "blank.txt", "  \n\n\t\n");
    let err = extract(MediaKind::PlainText, &blank, &ExtractLimits::default()).unwrap_err();
    assert!(matches!(err, ParseError::Empty), "{err:?}");

    let big = file(&dir, "big.txt", &"word ".repeat(1000));
    let limits = ExtractLimits {
        max_text_bytes: 1000,
        ..Default::default()
    };
    assert!(matches!(
        extract(MediaKind::PlainText, &big, &limits),
        Err(ParseError::TooLarge(_))
    ));

    // A WAV header: audio, refused by extract with a sentence about transcription.
    let mut wav = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x44\xac\x00\x00\x88\x58\x01\x00\x02\x00\x10\x00data\x00\x00\x00\x00".to_vec();
    wav.extend([0u8; 64]);
    let wav_path = dir.path().join("talk.txt");
    std::fs::write(&wav_path, &wav).unwrap();
    assert_eq!(
        sniff(&wav_path, Some("talk.txt")).unwrap(),
        MediaKind::Audio
    );
    let err = extract(MediaKind::Audio, &wav_path, &ExtractLimits::default()).unwrap_err();
    assert!(err.to_string().contains("transcription"), "{err}");

    // An MP4 (ftyp box): video.
    let mut mp4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom".to_vec();
    mp4.extend([0u8; 64]);
    let mp4_path = dir.path().join("clip.bin");
    std::fs::write(&mp4_path, &mp4).unwrap();
    assert_eq!(sniff(&mp4_path, None).unwrap(), MediaKind::Video);

    // A PNG: unknown, and PDFs are refused by the in-process path.
    let png = dir.path().join("x.md");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR").unwrap();
    assert_eq!(sniff(&png, Some("x.md")).unwrap(), MediaKind::Unknown);
    assert!(matches!(
        extract(MediaKind::Pdf, &png, &ExtractLimits::default()),
        Err(ParseError::PdfNeedsChildProcess)
    ));
    // "BM..." and "MZ..." are magic numbers for BMP/EXE but also words.
    let bmx = file(&dir, "bmx.txt", "BMX bikes are light.\n");
    assert_eq!(sniff(&bmx, None).unwrap(), MediaKind::PlainText);
}

fn long_book() -> Document {
    let sentence = |ch: usize, sec: usize, i: usize| {
        format!(
            "In chapter {ch} section {sec} fact number {i} explains how energy moves between objects over time. "
        )
    };
    let mut sections = Vec::new();
    let mut page = 1;
    for ch in 1..=3 {
        for sec in 1..=3 {
            let mut paras = Vec::new();
            for p in 0..6 {
                let para: String = (0..(3 + p % 4))
                    .map(|i| sentence(ch, sec, p * 10 + i))
                    .collect();
                paras.push(para.trim().to_string());
            }
            sections.push(Section {
                page,
                heading_path: vec![format!("Chapter {ch}"), format!("Section {sec}")],
                text: paras.join("\n\n"),
                start_ms: None,
                end_ms: None,
            });
            page += 1;
        }
    }
    // One huge paragraph without breaks, to force sentence splitting.
    let huge: String = (0..120).map(|i| sentence(4, 1, i)).collect();
    sections.push(Section {
        page,
        heading_path: vec!["Chapter 4".into()],
        text: huge,
        start_ms: None,
        end_ms: None,
    });
    Document {
        sections,
        page_count: page,
        title: None,
    }
}

#[test]
fn chunks_are_sized_overlapping_and_cited() {
    let doc = long_book();
    let cfg = ChunkConfig::default();
    let chunks = chunk(&doc, &cfg);
    assert!(chunks.len() > 10);
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.ordinal as usize, i);
        assert_eq!(c.token_estimate as usize, estimate_tokens(&c.text));
        assert!(
            c.token_estimate <= 400,
            "chunk {i} has {} tokens",
            c.token_estimate
        );
        assert!(c.page <= c.page_end);
        // Chunks never mix chapters.
        let ch = c.heading_path.first().unwrap();
        assert!(
            c.text
                .contains(&format!("In chapter {}", &ch["Chapter ".len()..])),
            "{c:?}"
        );
        assert!(!c.heading_path.is_empty());
    }
    // Except for the last chunk of a chapter, chunks are not tiny.
    for pair in chunks.windows(2) {
        if pair[0].heading_path.first() == pair[1].heading_path.first() {
            assert!(pair[0].token_estimate >= 150, "{:?}", pair[0]);
        }
    }
    // Overlap: a size cut inside the long chapter repeats the previous
    // chunk's last sentence at the start of the next one.
    let ch4: Vec<_> = chunks
        .iter()
        .filter(|c| c.heading_path == ["Chapter 4"])
        .collect();
    assert!(ch4.len() >= 3);
    for pair in ch4.windows(2) {
        let (a, b) = (&pair[0].text, &pair[1].text);
        let shared = (1..=a.len().min(b.len()))
            .rev()
            .find(|&k| b.is_char_boundary(k) && a.ends_with(&b[..k]))
            .unwrap_or(0);
        assert!(shared > 0, "no overlap between\n{a}\n---\n{b}");
        assert!(
            estimate_tokens(&b[..shared]) <= 50,
            "overlap too long: {}",
            &b[..shared]
        );
    }
    // Page and heading path are kept.
    let c = chunks
        .iter()
        .find(|c| c.text.contains("chapter 2 section 3 fact number 0 "))
        .unwrap();
    assert_eq!(c.page, 6);
    assert_eq!(c.heading_path[0], "Chapter 2");
}

#[test]
fn pages_from_form_feeds_reach_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        "export.txt",
        "First page text.\x0cSecond page text.\x0cThird page text.",
    );
    let (kind, doc) = sniff_and_extract(&path, None);
    assert_eq!(kind, MediaKind::PlainText);
    assert_eq!(doc.page_count, 3);
    let chunks = chunk(&doc, &ChunkConfig::default());
    let pages: Vec<_> = chunks.iter().map(|c| (c.page, c.page_end)).collect();
    assert_eq!(pages, vec![(1, 1), (2, 2), (3, 3)]);
}
