//! Bounded reading of OOXML zip containers.
//!
//! Zip headers are attacker-controlled, so the limits of [`ExtractLimits`] are
//! enforced on bytes *actually* decompressed while streaming, never on the
//! sizes a header claims. Declared sizes are only used to reject early.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use zip::ZipArchive;
use zip::result::ZipError;

use crate::{ExtractLimits, ParseError};

/// An opened container plus the decompression budget shared by all its entries.
pub(crate) struct SafeZip {
    archive: ZipArchive<BufReader<File>>,
    file_len: u64,
    budget: Budget,
}

/// Decompression accounting shared by every entry of one container.
struct Budget {
    used: Cell<u64>,
    max_total: u64,
    max_ratio: u64,
    ratio_threshold: u64,
    /// Set by the reader when a limit trips, so the error survives being
    /// wrapped by quick-xml / zip into their own error types.
    violation: Cell<Option<Violation>>,
}

#[derive(Debug, Clone, Copy)]
enum Violation {
    Total(u64),
    Ratio(u64),
}

impl Violation {
    fn into_error(self) -> ParseError {
        match self {
            Violation::Total(max) => ParseError::TooLarge(format!(
                "its contents unpack to more than {} MB",
                max / (1024 * 1024)
            )),
            Violation::Ratio(r) => ParseError::ZipBomb(format!(
                "one of its parts unpacks to more than {r} times its packed size"
            )),
        }
    }
}

/// Converts a zip crate error into a teacher-facing one.
pub(crate) fn zip_error(e: ZipError) -> ParseError {
    match e {
        ZipError::Io(e) => ParseError::Malformed(format!("the file is cut short or damaged: {e}")),
        ZipError::UnsupportedArchive(m) => {
            if m.to_ascii_lowercase().contains("encrypt") || m.to_ascii_lowercase().contains("password") {
                ParseError::Encrypted
            } else {
                ParseError::Malformed(format!("unsupported zip feature: {m}"))
            }
        }
        ZipError::InvalidPassword => ParseError::Encrypted,
        other => ParseError::Malformed(format!("damaged zip container: {other}")),
    }
}

impl SafeZip {
    /// Opens the container, reading only its central directory.
    pub(crate) fn open(path: &Path, limits: &ExtractLimits) -> Result<SafeZip, ParseError> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let archive = ZipArchive::new(BufReader::new(file)).map_err(zip_error)?;
        if archive.len() > limits.max_zip_entries {
            return Err(ParseError::TooLarge(format!(
                "it contains {} internal files (the limit is {})",
                archive.len(),
                limits.max_zip_entries
            )));
        }
        Ok(SafeZip {
            archive,
            file_len,
            budget: Budget {
                used: Cell::new(0),
                max_total: limits.max_uncompressed_bytes,
                max_ratio: limits.max_ratio.max(1),
                ratio_threshold: limits.ratio_threshold_bytes,
                violation: Cell::new(None),
            },
        })
    }

    /// True when the container has an entry with exactly this name.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.archive.index_for_name(name).is_some()
    }

    /// Streams one entry through `f`, enforcing the budget as bytes are
    /// produced. Returns `Ok(None)` when the entry does not exist.
    ///
    /// `f` gets a `Read` that fails once a limit trips; its own result is
    /// discarded in favour of the limit error in that case.
    pub(crate) fn with_entry<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut dyn Read) -> Result<T, ParseError>,
    ) -> Result<Option<T>, ParseError> {
        let Some(index) = self.archive.index_for_name(name) else {
            return Ok(None);
        };
        let entry = self.archive.by_index(index).map_err(zip_error)?;
        if entry.encrypted() {
            return Err(ParseError::Encrypted);
        }
        // Cheap early rejection from the declared size; the real check is
        // the counting reader below.
        let remaining = self.budget.max_total.saturating_sub(self.budget.used.get());
        if entry.size() > remaining {
            return Err(Violation::Total(self.budget.max_total).into_error());
        }
        // The zip reader never consumes more than the declared compressed
        // size, and never more than the file holds: that is what the ratio
        // is measured against.
        let compressed = entry.compressed_size().min(self.file_len).max(1);
        let mut reader = CountingReader {
            inner: entry,
            budget: &self.budget,
            produced: 0,
            compressed,
        };
        let result = f(&mut reader);
        if let Some(v) = self.budget.violation.get() {
            return Err(v.into_error());
        }
        result.map(Some)
    }

    /// Reads a whole (small) entry as UTF-8 text, lossily.
    pub(crate) fn read_string(&mut self, name: &str) -> Result<Option<String>, ParseError> {
        self.with_entry(name, |r| {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).map_err(read_error)?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        })
    }
}

/// Maps an I/O error met while decompressing an entry.
pub(crate) fn read_error(e: io::Error) -> ParseError {
    ParseError::Malformed(format!("a part of the file cannot be unpacked: {e}"))
}

struct CountingReader<'a, R> {
    inner: R,
    budget: &'a Budget,
    produced: u64,
    compressed: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.budget.violation.get().is_some() {
            return Err(io::Error::other("decompression limit exceeded"));
        }
        // Never ask for more than the remaining budget (+1 to detect
        // overflow), so a single huge read cannot overshoot much.
        let remaining = self.budget.max_total.saturating_sub(self.budget.used.get());
        let want = buf.len().min(usize::try_from(remaining.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        let n64 = n as u64;
        self.produced += n64;
        self.budget.used.set(self.budget.used.get() + n64);
        if self.budget.used.get() > self.budget.max_total {
            self.budget.violation.set(Some(Violation::Total(self.budget.max_total)));
            return Err(io::Error::other("decompression limit exceeded"));
        }
        if self.produced > self.budget.ratio_threshold
            && self.produced / self.compressed > self.budget.max_ratio
        {
            self.budget.violation.set(Some(Violation::Ratio(self.budget.max_ratio)));
            return Err(io::Error::other("compression ratio limit exceeded"));
        }
        Ok(n)
    }
}

/// Resolves a relationship target relative to the part that owns the
/// relationships (`ppt/slides/slide1.xml` + `../notesSlides/n1.xml`).
pub(crate) fn resolve_target(base_part: &str, target: &str) -> String {
    if let Some(abs) = target.strip_prefix('/') {
        return abs.to_string();
    }
    let mut parts: Vec<&str> = base_part.split('/').collect();
    parts.pop(); // the part's own file name
    for seg in target.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_resolve() {
        assert_eq!(resolve_target("ppt/presentation.xml", "slides/slide1.xml"), "ppt/slides/slide1.xml");
        assert_eq!(
            resolve_target("ppt/slides/slide1.xml", "../notesSlides/notesSlide1.xml"),
            "ppt/notesSlides/notesSlide1.xml"
        );
        assert_eq!(resolve_target("ppt/slides/slide1.xml", "/ppt/x.xml"), "ppt/x.xml");
        assert_eq!(resolve_target("a.xml", "../../../x.xml"), "x.xml");
    }
}
