//! PDF text extraction in a sandboxed child process.
//!
//! `pdf-extract`/`lopdf` can panic, recurse deeply, loop or allocate without
//! bound on hostile files, so the server never parses a PDF in its own
//! process. Instead:
//!
//! - the server spawns itself as `bwenge __extract-pdf <path>`
//!   ([`PDF_CHILD_SUBCOMMAND`]) through [`extract_pdf_in_child`], which
//!   clears the environment (the child never sees the server's secrets),
//!   passes memory/CPU limits in [`ENV_PDF_MAX_MEMORY_BYTES`] /
//!   [`ENV_PDF_CPU_SECONDS`], enforces a wall-clock timeout (then kills)
//!   and caps the output it reads;
//! - the subcommand calls [`pdf_child_main`], which first lowers its own
//!   `RLIMIT_AS`, `RLIMIT_CPU` and `RLIMIT_CORE`, then extracts page by page
//!   and prints `{"pages": ["text of page 1", ...], "title": ..}` as JSON.
//!
//! Exit codes of the child: 0 success, 2 cannot read the input file,
//! 3 cannot set limits, 4 not a readable PDF (or the parser panicked),
//! 5 password-protected, 6 the file alone exceeds the memory limit. Deaths
//! by signal (CPU limit, allocation failure) are reported as
//! [`ParseError::TooLarge`].

use std::io::{self, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::{Document, ParseError, Section, tidy_text};

/// Hidden subcommand the server binary must route to [`pdf_child_main`]:
/// `<exe> __extract-pdf <path>`.
pub const PDF_CHILD_SUBCOMMAND: &str = "__extract-pdf";
/// Address-space limit for the child, in bytes (default 1 GiB).
pub const ENV_PDF_MAX_MEMORY_BYTES: &str = "BWENGE_PDF_MAX_MEMORY_BYTES";
/// CPU-time limit for the child, in seconds (default 60).
pub const ENV_PDF_CPU_SECONDS: &str = "BWENGE_PDF_CPU_SECONDS";

const DEFAULT_MEMORY: u64 = 1024 * 1024 * 1024;
const DEFAULT_CPU_SECONDS: u64 = 60;
/// Keep at most this much of the child's stderr (for the error message).
const STDERR_CAP: usize = 4096;

const EXIT_OK: i32 = 0;
const EXIT_IO: i32 = 2;
const EXIT_LIMITS: i32 = 3;
const EXIT_MALFORMED: i32 = 4;
const EXIT_ENCRYPTED: i32 = 5;
const EXIT_NO_MEMORY: i32 = 6;

/// Limits for one PDF extraction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdfLimits {
    /// Wall-clock budget; the child is killed when it runs out
    /// ([`ParseError::Timeout`]). The child's CPU limit is three quarters
    /// of it (at least 1 s); hitting that is [`ParseError::TooLarge`].
    pub timeout: Duration,
    /// Address-space limit of the child (`RLIMIT_AS`).
    pub max_memory_bytes: u64,
    /// Most bytes of JSON read from the child; more is [`ParseError::TooLarge`].
    pub max_output_bytes: usize,
}

impl Default for PdfLimits {
    fn default() -> Self {
        PdfLimits {
            timeout: Duration::from_secs(60),
            max_memory_bytes: DEFAULT_MEMORY,
            max_output_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What the child prints on success.
#[derive(Debug, Serialize, Deserialize)]
struct ChildOutput {
    /// Raw text per page, in page order (empty for pages without text).
    pages: Vec<String>,
    #[serde(default)]
    title: Option<String>,
    /// Pages the parser failed on (kept as empty strings so numbering holds).
    #[serde(default)]
    page_errors: u32,
}

enum ChildError {
    Encrypted,
    Malformed(String),
}

/// Entry point of the `__extract-pdf` subcommand; returns the exit code.
///
/// Call it before starting any async runtime or thread pool: the address
/// space limit it sets also counts thread stacks and malloc arenas. It
/// prints JSON to stdout and, on failure, one short line to stderr.
pub fn pdf_child_main(path: &Path) -> i32 {
    if let Err(e) = apply_limits() {
        eprintln!("cannot set resource limits: {e}");
        return EXIT_LIMITS;
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
            eprintln!("the file does not fit in the memory limit");
            return EXIT_NO_MEMORY;
        }
        Err(e) => {
            eprintln!("cannot read {}: {e}", path.display());
            return EXIT_IO;
        }
    };
    // One terse line instead of the default hook's multi-line report.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        eprintln!("the PDF parser crashed: {msg}");
    }));
    let result = {
        // The parser crates may print to stdout; keep our JSON channel clean.
        let _redirect = StdoutToStderr::new();
        std::panic::catch_unwind(|| extract_pages(&bytes))
    };
    let out = match result {
        Ok(Ok(out)) => out,
        Ok(Err(ChildError::Encrypted)) => {
            eprintln!("the PDF is encrypted");
            return EXIT_ENCRYPTED;
        }
        Ok(Err(ChildError::Malformed(m))) => {
            eprintln!("{m}");
            return EXIT_MALFORMED;
        }
        Err(_) => return EXIT_MALFORMED, // the hook already said why
    };
    let stdout = io::stdout();
    let mut lock = stdout.lock();
    let written = serde_json::to_writer(&mut lock, &out)
        .map_err(io::Error::from)
        .and_then(|()| lock.write_all(b"\n"))
        .and_then(|()| lock.flush());
    match written {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("cannot write the result: {e}");
            EXIT_IO
        }
    }
}

fn extract_pages(bytes: &[u8]) -> Result<ChildOutput, ChildError> {
    use pdf_extract::{Error as PdfError, PlainTextOutput};

    let is_password_error =
        |e: &PdfError| matches!(e, PdfError::Decryption(_) | PdfError::InvalidPassword);
    let mut doc = match pdf_extract::Document::load_mem(bytes) {
        Ok(d) => d,
        Err(e) if is_password_error(&e) => return Err(ChildError::Encrypted),
        Err(e) => return Err(ChildError::Malformed(format!("not a readable PDF: {e}"))),
    };
    // Many PDFs are "encrypted" with an empty user password (print/copy
    // restrictions only); those open fine.
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(ChildError::Encrypted);
    }
    let page_numbers: Vec<u32> = doc.get_pages().keys().copied().collect();
    if page_numbers.is_empty() {
        return Err(ChildError::Malformed("the PDF has no pages".into()));
    }
    let title = pdf_title(&doc);
    let mut pages = Vec::with_capacity(page_numbers.len());
    let mut page_errors = 0u32;
    for n in page_numbers {
        let mut text = String::new();
        let res = {
            let mut out = PlainTextOutput::new(&mut text);
            pdf_extract::output_doc_page(&doc, &mut out, n)
        };
        match res {
            Ok(()) => pages.push(text),
            // One broken page must not lose the rest of the book.
            Err(_) => {
                page_errors += 1;
                pages.push(String::new());
            }
        }
    }
    Ok(ChildOutput {
        pages,
        title,
        page_errors,
    })
}

/// `/Title` from the document information dictionary.
fn pdf_title(doc: &pdf_extract::Document) -> Option<String> {
    use pdf_extract::Object;
    let info = doc.trailer.get(b"Info").ok()?;
    let dict = match info {
        Object::Reference(id) => doc.get_dictionary(*id).ok()?,
        Object::Dictionary(d) => d,
        _ => return None,
    };
    let raw = dict.get(b"Title").ok()?.as_str().ok()?;
    let s = decode_pdf_string(raw);
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    (!s.is_empty()).then_some(s)
}

/// PDF text strings are UTF-16BE with a BOM, UTF-8 with a BOM (PDF 2.0),
/// or PDFDocEncoding (close enough to Latin-1 for titles).
fn decode_pdf_string(b: &[u8]) -> String {
    if let Some(rest) = b.strip_prefix(&[0xFE, 0xFF]) {
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16_lossy(&units);
    }
    if let Some(rest) = b.strip_prefix(b"\xEF\xBB\xBF") {
        return String::from_utf8_lossy(rest).into_owned();
    }
    b.iter().map(|&c| char::from(c)).collect()
}

/// Points fd 1 at stderr while alive, restoring it on drop.
struct StdoutToStderr {
    #[cfg(unix)]
    saved: Option<libc::c_int>,
}

impl StdoutToStderr {
    fn new() -> Self {
        #[cfg(unix)]
        {
            // SAFETY: plain fd syscalls on fds this process owns; a failed
            // dup leaves stdout untouched (saved = None).
            let saved = unsafe {
                let fd = libc::dup(1);
                if fd >= 0 && libc::dup2(2, 1) >= 0 {
                    Some(fd)
                } else {
                    None
                }
            };
            StdoutToStderr { saved }
        }
        #[cfg(not(unix))]
        StdoutToStderr {}
    }
}

impl Drop for StdoutToStderr {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(fd) = self.saved.take() {
            let _ = io::stdout().flush();
            // SAFETY: restores the descriptor saved in `new`, then closes the copy.
            unsafe {
                libc::dup2(fd, 1);
                libc::close(fd);
            }
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

#[cfg(unix)]
fn apply_limits() -> io::Result<()> {
    let mem = env_u64(ENV_PDF_MAX_MEMORY_BYTES).unwrap_or(DEFAULT_MEMORY);
    let cpu = env_u64(ENV_PDF_CPU_SECONDS)
        .unwrap_or(DEFAULT_CPU_SECONDS)
        .max(1);

    // A macro because the resource type differs between libcs.
    macro_rules! limit {
        ($res:expr, $soft:expr, $hard:expr) => {{
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
            if unsafe { libc::getrlimit($res, &mut cur) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // Never try to raise a hard limit (that needs privileges);
            // only lower.
            let hard = ($hard as libc::rlim_t).min(cur.rlim_max);
            let new = libc::rlimit {
                rlim_cur: ($soft as libc::rlim_t).min(hard),
                rlim_max: hard,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit($res, &new) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }};
    }
    // No core dumps of a process that just parsed hostile input.
    limit!(libc::RLIMIT_CORE, 0, 0);
    limit!(libc::RLIMIT_AS, mem, mem);
    // Soft limit → SIGXCPU, hard limit one second later → SIGKILL.
    limit!(libc::RLIMIT_CPU, cpu, cpu.saturating_add(1));
    Ok(())
}

#[cfg(not(unix))]
fn apply_limits() -> io::Result<()> {
    // No rlimits here; the parent's wall-clock timeout still applies.
    Ok(())
}

/// Extracts a PDF by running `exe __extract-pdf <path>` (see the module
/// docs) and turns its pages into a [`Document`] (one section per page with
/// text; `page_count` counts all pages).
///
/// Errors: [`ParseError::NoTextLayer`] when no page has text (a scan),
/// [`ParseError::Encrypted`], [`ParseError::Malformed`] for damaged files
/// or parser crashes, [`ParseError::TooLarge`] for memory/CPU/output limits,
/// [`ParseError::Timeout`] after `limits.timeout`, [`ParseError::Io`] when
/// the child cannot be run.
pub async fn extract_pdf_in_child(
    exe: &Path,
    path: &Path,
    limits: &PdfLimits,
) -> Result<Document, ParseError> {
    // Three quarters of the wall-clock budget (at least 1 s): a parse that
    // really burns that much CPU is too expensive for good (TooLarge,
    // permanent), while a wall-clock timeout on a busy server, where the
    // child got less CPU than wall time, stays Timeout (retryable).
    let cpu_seconds = (limits.timeout.as_millis() * 3 / 4).div_ceil(1000).max(1);
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg(PDF_CHILD_SUBCOMMAND)
        .arg(path)
        .env_clear()
        .env(
            ENV_PDF_MAX_MEMORY_BYTES,
            limits.max_memory_bytes.to_string(),
        )
        .env(ENV_PDF_CPU_SECONDS, cpu_seconds.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(ParseError::Io(io::Error::other(
            "child process pipes missing",
        )));
    };
    let deadline = tokio::time::Instant::now() + limits.timeout;

    let io_result = tokio::time::timeout_at(deadline, async {
        tokio::join!(
            read_capped(stdout, limits.max_output_bytes, true),
            read_capped(stderr, STDERR_CAP, false)
        )
    })
    .await;
    let (out, err) = match io_result {
        Ok(r) => r,
        Err(_) => {
            kill(&mut child).await;
            return Err(ParseError::Timeout);
        }
    };
    let (out, out_overflow) = match out {
        Ok(o) => o,
        Err(e) => {
            kill(&mut child).await;
            return Err(ParseError::Io(e));
        }
    };
    let stderr_text = err
        .map(|(e, _)| String::from_utf8_lossy(&e).into_owned())
        .unwrap_or_default();
    if out_overflow {
        kill(&mut child).await;
        return Err(ParseError::TooLarge(format!(
            "its text is larger than {}",
            crate::human_size(limits.max_output_bytes as u64)
        )));
    }
    let status = match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(s) => s?,
        Err(_) => {
            kill(&mut child).await;
            return Err(ParseError::Timeout);
        }
    };
    if !status.success() {
        return Err(child_failure(status, &stderr_text, limits));
    }
    let parsed: ChildOutput = serde_json::from_slice(&out).map_err(|e| {
        ParseError::Io(io::Error::other(format!(
            "PDF child printed invalid JSON: {e}"
        )))
    })?;
    document_from_pages(parsed)
}

async fn kill(child: &mut tokio::process::Child) {
    let _ = child.start_kill();
    let _ = child.wait().await; // reap, so no zombie is left behind
}

/// Reads to EOF keeping at most `cap` bytes; the flag says more was sent.
/// With `stop_at_cap` (stdout) it returns at the cap, dropping the pipe so
/// the child's next write fails and it exits; otherwise (stderr) it keeps
/// reading and discarding to EOF so a chatty child cannot block on a full
/// pipe.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(
    mut r: R,
    cap: usize,
    stop_at_cap: bool,
) -> io::Result<(Vec<u8>, bool)> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut overflow = false;
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok((buf, overflow));
        }
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..n.min(room)]);
        if n > room {
            overflow = true;
            if stop_at_cap {
                return Ok((buf, true));
            }
        }
    }
}

fn child_failure(status: std::process::ExitStatus, stderr: &str, limits: &PdfLimits) -> ParseError {
    let first_line = stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let short: String = first_line.chars().take(200).collect();
    let out_of_memory =
        stderr.contains("memory allocation of") || stderr.contains("capacity overflow");
    if out_of_memory {
        return ParseError::TooLarge(format!(
            "reading it needs more than {} of memory",
            crate::human_size(limits.max_memory_bytes)
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return match sig {
                libc::SIGXCPU | libc::SIGKILL => ParseError::TooLarge(
                    "reading it needs more computing time or memory than allowed".into(),
                ),
                _ => ParseError::Malformed("the PDF reader crashed on it".into()),
            };
        }
    }
    match status.code() {
        Some(EXIT_ENCRYPTED) => ParseError::Encrypted,
        Some(EXIT_MALFORMED) if short.is_empty() => {
            ParseError::Malformed("not a readable PDF".into())
        }
        Some(EXIT_MALFORMED) => ParseError::Malformed(short),
        Some(code) => ParseError::Io(io::Error::other(format!(
            "PDF child exited with code {code}: {short}"
        ))),
        None => ParseError::Malformed("the PDF reader stopped unexpectedly".into()),
    }
}

fn document_from_pages(out: ChildOutput) -> Result<Document, ParseError> {
    let page_count = u32::try_from(out.pages.len()).unwrap_or(u32::MAX);
    if page_count == 0 {
        return Err(ParseError::Malformed("the PDF has no pages".into()));
    }
    let mut sections = Vec::new();
    for (i, raw) in out.pages.iter().enumerate() {
        let text = normalize_pdf_text(raw);
        if text.is_empty() {
            continue;
        }
        sections.push(Section {
            page: u32::try_from(i + 1).unwrap_or(u32::MAX),
            heading_path: Vec::new(),
            text,
            start_ms: None,
            end_ms: None,
        });
    }
    if sections.is_empty() {
        return Err(if out.page_errors >= page_count {
            ParseError::Malformed("none of its pages could be read".into())
        } else {
            ParseError::NoTextLayer
        });
    }
    Ok(Document {
        sections,
        page_count,
        title: out.title,
    })
}

/// Cleans PDF text for search: typographic ligatures (`ﬁ`) become letters,
/// soft hyphens vanish, words hyphenated across a line break are joined
/// (`Ex-\nperiments` → `Experiments`; only lower-case on both sides, so
/// `X-\nRay` stays), whitespace is tidied.
pub(crate) fn normalize_pdf_text(raw: &str) -> String {
    let mut s = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            'ﬀ' => s.push_str("ff"),
            'ﬁ' => s.push_str("fi"),
            'ﬂ' => s.push_str("fl"),
            'ﬃ' => s.push_str("ffi"),
            'ﬄ' => s.push_str("ffl"),
            'ﬅ' | 'ﬆ' => s.push_str("st"),
            '\u{ad}' | '\u{0}' => {}
            _ => s.push(c),
        }
    }
    let chars: Vec<char> = s.chars().collect();
    let mut joined = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '-' && i > 0 && chars[i - 1].is_lowercase() {
            let mut j = i + 1;
            while j < chars.len() && (chars[j] == ' ' || chars[j] == '\t') {
                j += 1;
            }
            if j < chars.len() && chars[j] == '\n' {
                let mut k = j + 1;
                while k < chars.len() && (chars[k] == ' ' || chars[k] == '\t') {
                    k += 1;
                }
                if k < chars.len() && chars[k].is_lowercase() {
                    i = k;
                    continue;
                }
            }
        }
        joined.push(chars[i]);
        i += 1;
    }
    tidy_text(&joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_ligatures_and_hyphens() {
        assert_eq!(
            normalize_pdf_text("the ﬁrst ex-\nperiment, X-\nRay,  well-known"),
            "the first experiment, X-\nRay, well-known"
        );
    }

    #[test]
    fn pdf_strings() {
        assert_eq!(decode_pdf_string(b"\xFE\xFF\x00H\x00i"), "Hi");
        assert_eq!(decode_pdf_string(b"caf\xE9"), "café");
    }

    #[test]
    fn empty_pages_mean_scanned() {
        let out = ChildOutput {
            pages: vec![" \n".into(), String::new()],
            title: None,
            page_errors: 0,
        };
        assert!(matches!(
            document_from_pages(out),
            Err(ParseError::NoTextLayer)
        ));
        let out = ChildOutput {
            pages: vec![String::new()],
            title: None,
            page_errors: 1,
        };
        assert!(matches!(
            document_from_pages(out),
            Err(ParseError::Malformed(_))
        ));
    }
}
