//! Course-material ingestion for Bwenge: everything between "a teacher's
//! upload sits in a temp file" and "searchable chunks that know their page".
//!
//! This crate owns:
//! - **Sniffing** ([`sniff`]): what a file *is*, from its bytes (magic numbers
//!   via `infer`, zip entries for DOCX vs PPTX, UTF-8 validity and content
//!   heuristics for the text kinds). The client's filename is only a
//!   tie-break among text kinds.
//! - **Extraction** ([`extract`], [`extract_pdf_in_child`]): text with its
//!   position (page, slide, caption timestamp) as a [`Document`]. PDF parsing
//!   runs in a resource-limited child process ([`pdf_child_main`]) because the
//!   PDF crates can panic, loop or abort on hostile files; everything else is
//!   parsed in-process with bounded memory and never panics on bad input.
//! - **Chunking** ([`chunk`]): structure-aware ~300-token pieces with overlap
//!   that keep page, heading path and timestamps for citations.
//!
//! It does not own storage, HTTP status codes, transcription or embedding:
//! the server maps [`ParseError`] and [`MediaKind`] onto those.

mod captions;
mod chunk;
mod docx;
mod html;
mod ooxml;
mod pdf;
mod pptx;
mod sniff;
mod text;
mod zipsafe;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use chunk::{Chunk, ChunkConfig, chunk, estimate_tokens};
pub use pdf::{
    ENV_PDF_CPU_SECONDS, ENV_PDF_MAX_MEMORY_BYTES, PDF_CHILD_SUBCOMMAND, PdfLimits,
    extract_pdf_in_child, pdf_child_main,
};
pub use sniff::{Sniffed, sniff, sniff_bytes, sniff_with_mime};

/// What kind of material a file is, decided from its bytes by [`sniff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// PDF document (text layer extracted in a child process).
    Pdf,
    /// Word document (Office Open XML, `.docx`).
    Docx,
    /// PowerPoint presentation (Office Open XML, `.pptx`).
    Pptx,
    /// UTF-8 text without recognisable markup.
    PlainText,
    /// UTF-8 Markdown.
    Markdown,
    /// UTF-8 HTML.
    Html,
    /// SubRip captions (`.srt`).
    Srt,
    /// WebVTT captions (`.vtt`).
    Vtt,
    /// Any audio container `infer` recognises (needs a transcription provider).
    Audio,
    /// Any video container `infer` recognises (needs a transcription provider).
    Video,
    /// Anything else (images, archives, legacy Office, executables, ...).
    Unknown,
}

impl MediaKind {
    /// A representative MIME type. Audio and video are reported as the media
    /// ranges `audio/*` / `video/*` because the kind does not keep the exact
    /// container; use [`sniff_with_mime`] when the precise type matters.
    pub fn mime(&self) -> &'static str {
        match self {
            MediaKind::Pdf => "application/pdf",
            MediaKind::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            MediaKind::Pptx => {
                "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            }
            MediaKind::PlainText => "text/plain",
            MediaKind::Markdown => "text/markdown",
            MediaKind::Html => "text/html",
            MediaKind::Srt => "application/x-subrip",
            MediaKind::Vtt => "text/vtt",
            MediaKind::Audio => "audio/*",
            MediaKind::Video => "video/*",
            MediaKind::Unknown => "application/octet-stream",
        }
    }

    /// True for the kinds that are UTF-8 text files (plain text, Markdown,
    /// HTML, SRT, VTT).
    pub fn is_text_document(&self) -> bool {
        matches!(
            self,
            MediaKind::PlainText
                | MediaKind::Markdown
                | MediaKind::Html
                | MediaKind::Srt
                | MediaKind::Vtt
        )
    }

    /// True for every kind this crate can turn into text ([`extract`] or, for
    /// PDF, [`extract_pdf_in_child`]).
    pub fn is_document(&self) -> bool {
        matches!(self, MediaKind::Pdf | MediaKind::Docx | MediaKind::Pptx)
            || self.is_text_document()
    }

    /// True for audio and video, which need a transcription provider first.
    pub fn is_media(&self) -> bool {
        matches!(self, MediaKind::Audio | MediaKind::Video)
    }

    /// Stable lower-case name (`"pdf"`, `"plain_text"`, ...), the same as serde's.
    pub fn as_str(&self) -> &'static str {
        match self {
            MediaKind::Pdf => "pdf",
            MediaKind::Docx => "docx",
            MediaKind::Pptx => "pptx",
            MediaKind::PlainText => "plain_text",
            MediaKind::Markdown => "markdown",
            MediaKind::Html => "html",
            MediaKind::Srt => "srt",
            MediaKind::Vtt => "vtt",
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Unknown => "unknown",
        }
    }

    /// How a teacher would name the kind in a sentence ("a Word document").
    fn human(&self) -> &'static str {
        match self {
            MediaKind::Pdf => "a PDF",
            MediaKind::Docx => "a Word document",
            MediaKind::Pptx => "a PowerPoint presentation",
            MediaKind::PlainText => "a text file",
            MediaKind::Markdown => "a Markdown file",
            MediaKind::Html => "a web page",
            MediaKind::Srt | MediaKind::Vtt => "a captions file",
            MediaKind::Audio => "an audio recording",
            MediaKind::Video => "a video",
            MediaKind::Unknown => "a file of unknown type",
        }
    }
}

impl std::fmt::Display for MediaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run of text at one position of the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// 1-based position for citations: the PDF page, the PPTX slide, the DOCX
    /// "section" between explicit page breaks, the caption minute (minute
    /// index + 1), the form-feed-separated page of a text file, otherwise 1.
    pub page: u32,
    /// Enclosing headings, outermost first (`["Chapter 2", "Pendulum"]`).
    pub heading_path: Vec<String>,
    /// The text. Paragraphs are separated by a blank line (`"\n\n"`).
    pub text: String,
    /// Caption cue start, milliseconds from the start of the recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<u64>,
    /// Caption cue end, milliseconds from the start of the recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<u64>,
}

/// The extracted text of one upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Document {
    /// Sections in reading order.
    pub sections: Vec<Section>,
    /// Number of pages / slides / caption minutes (at least the highest
    /// `Section::page`; for PDF and PPTX it includes empty pages and slides).
    pub page_count: u32,
    /// Title from the file's metadata or first title/heading, when there is one.
    pub title: Option<String>,
}

impl Document {
    /// All section text joined with blank lines (handy for previews and tests).
    pub fn full_text(&self) -> String {
        let mut out = String::new();
        for s in &self.sections {
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(&s.text);
        }
        out
    }
}

/// Why a file could not be turned into text. `Display` is a sentence a
/// teacher can act on; [`ParseError::is_permanent`] tells retrying apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The kind is recognised but this crate does not extract text from it.
    #[error("{} cannot be added as course material: {}", capitalize(.0.human()), unsupported_hint(*.0))]
    Unsupported(MediaKind),
    /// A PDF whose pages carry no text at all.
    #[error(
        "This PDF seems to be scanned (its pages contain only images, no text). Please run it through OCR (text recognition) first and upload the result."
    )]
    NoTextLayer,
    /// A file without any text (an empty document, a text file of blanks).
    #[error("No text was found in this file.")]
    Empty,
    /// Password-protected or encrypted file.
    #[error("This file is password-protected. Please upload a copy without a password.")]
    Encrypted,
    /// A compressed container that expands far more than its size suggests.
    #[error(
        "This file was rejected as unsafe: {0}. Please re-save it with your office program and upload it again."
    )]
    ZipBomb(String),
    /// Over a size, count or resource limit.
    #[error("This file is too large to process: {0}.")]
    TooLarge(String),
    /// Damaged, truncated, or not really the kind it claims to be.
    #[error(
        "This file could not be read; it seems damaged or is not really what it claims to be ({0})."
    )]
    Malformed(String),
    /// Extraction took longer than the allowed wall-clock time.
    #[error("Reading this file took too long. Please try again later.")]
    Timeout,
    /// PDF given to [`extract`]; a caller bug, PDFs go through [`extract_pdf_in_child`].
    #[error("Internal error: PDF files must be read in a separate process (extract_pdf_in_child).")]
    PdfNeedsChildProcess,
    /// A server-side I/O failure (temp file vanished, cannot spawn, ...).
    #[error("The server could not read the uploaded file. Please try again. ({0})")]
    Io(#[from] std::io::Error),
}

impl ParseError {
    /// True when retrying the same file cannot help (everything but I/O
    /// failures and timeouts, which depend on the server's state and load).
    pub fn is_permanent(&self) -> bool {
        !matches!(self, ParseError::Io(_) | ParseError::Timeout)
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn unsupported_hint(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio | MediaKind::Video => {
            "recordings need a transcription service, which is not configured on this server"
        }
        _ => {
            "please upload a PDF, Word (.docx), PowerPoint (.pptx), text, Markdown, HTML or captions (.srt/.vtt) file"
        }
    }
}

/// Resource limits for in-process extraction (DOCX/PPTX containers, text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Most entries a DOCX/PPTX zip may list in its central directory.
    pub max_zip_entries: usize,
    /// Most bytes decompressed from one container, counted as they are
    /// actually produced (headers are not trusted).
    pub max_uncompressed_bytes: u64,
    /// Largest allowed decompressed/compressed ratio of one entry ...
    pub max_ratio: u64,
    /// ... once that entry has produced more than this many bytes (small
    /// entries such as an all-blank XML part legitimately compress very well).
    pub ratio_threshold_bytes: u64,
    /// Largest text file (plain, Markdown, HTML, captions) read into memory.
    pub max_text_bytes: u64,
    /// Most slides read from a presentation.
    pub max_slides: usize,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_zip_entries: 10_000,
            max_uncompressed_bytes: 200 * 1024 * 1024,
            max_ratio: 100,
            ratio_threshold_bytes: 1024 * 1024,
            max_text_bytes: 64 * 1024 * 1024,
            max_slides: 2_000,
        }
    }
}

/// Extracts the text of a non-PDF document in-process.
///
/// PDF returns [`ParseError::PdfNeedsChildProcess`] (use
/// [`extract_pdf_in_child`]); audio, video and unknown kinds return
/// [`ParseError::Unsupported`]. Never panics on hostile input.
pub fn extract(
    kind: MediaKind,
    path: &Path,
    limits: &ExtractLimits,
) -> Result<Document, ParseError> {
    let doc = match kind {
        MediaKind::Pdf => return Err(ParseError::PdfNeedsChildProcess),
        MediaKind::Docx => docx::extract(path, limits)?,
        MediaKind::Pptx => pptx::extract(path, limits)?,
        MediaKind::PlainText => text::plain(&text::read_text(path, limits)?),
        MediaKind::Markdown => text::markdown(&text::read_text(path, limits)?),
        MediaKind::Html => html::extract(&text::read_text(path, limits)?),
        MediaKind::Srt => captions::srt(&text::read_text(path, limits)?)?,
        MediaKind::Vtt => captions::vtt(&text::read_text(path, limits)?)?,
        MediaKind::Audio | MediaKind::Video | MediaKind::Unknown => {
            return Err(ParseError::Unsupported(kind));
        }
    };
    finish(doc)
}

/// Shared post-processing: drop empty sections, fix `page_count`, refuse
/// documents without any text.
pub(crate) fn finish(mut doc: Document) -> Result<Document, ParseError> {
    doc.sections.retain(|s| !s.text.trim().is_empty());
    if doc.sections.is_empty() {
        return Err(ParseError::Empty);
    }
    let max_page = doc.sections.iter().map(|s| s.page).max().unwrap_or(1);
    doc.page_count = doc.page_count.max(max_page).max(1);
    if let Some(t) = &doc.title
        && t.trim().is_empty()
    {
        doc.title = None;
    }
    Ok(doc)
}

/// "200 MB" / "512 KB" for limits in messages (binary units, as teachers'
/// file managers mostly show them).
pub(crate) fn human_size(bytes: u64) -> String {
    const MB: u64 = 1024 * 1024;
    if bytes >= MB {
        format!("{} MB", bytes / MB)
    } else {
        format!("{} KB", bytes.div_ceil(1024))
    }
}

/// Collapses runs of spaces/tabs inside lines, trims lines, and squeezes
/// more than one blank line into one, so paragraph splitting downstream sees
/// `"\n\n"` as the only paragraph separator.
pub(crate) fn tidy_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank_run = 0usize;
    for line in s.lines() {
        let mut collapsed = String::with_capacity(line.len());
        for word in line.split_whitespace() {
            if !collapsed.is_empty() {
                collapsed.push(' ');
            }
            collapsed.push_str(word);
        }
        if collapsed.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(&collapsed);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_sentences() {
        let e = ParseError::NoTextLayer.to_string();
        assert!(e.contains("scanned") && e.contains("OCR"), "{e}");
        let e = ParseError::Unsupported(MediaKind::Audio).to_string();
        assert!(e.starts_with("An audio recording cannot"), "{e}");
        assert!(ParseError::NoTextLayer.is_permanent());
        assert!(!ParseError::Timeout.is_permanent());
        assert!(!ParseError::Io(std::io::Error::other("x")).is_permanent());
    }

    #[test]
    fn tidy_text_keeps_paragraphs() {
        assert_eq!(tidy_text("  a   b \n c\n\n\n\n d\t e  "), "a b\nc\n\nd e");
    }

    #[test]
    fn kinds() {
        assert!(MediaKind::Srt.is_text_document());
        assert!(!MediaKind::Pdf.is_text_document());
        assert!(MediaKind::Pdf.is_document());
        assert!(MediaKind::Video.is_media());
        assert_eq!(
            MediaKind::Docx.mime(),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        );
    }
}
