//! Bounded reading of OOXML zip containers.
//!
//! Zip headers are attacker-controlled, so the limits of [`ExtractLimits`] are
//! enforced on bytes *actually* decompressed while streaming, never on the
//! sizes a header claims. Declared sizes are only used to reject early.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

use zip::ZipArchive;
use zip::result::ZipError;

use crate::{ExtractLimits, ParseError};

/// An opened container plus the decompression budget shared by all its entries.
pub(crate) struct SafeZip {
    archive: ZipArchive<CountingFile>,
    /// Bytes the zip reader has pulled from the file so far.
    file_reads: Rc<Cell<u64>>,
    budget: Budget,
}

/// The container file, counting the bytes read from it: the compressed
/// bytes an entry really consumed are what its ratio is measured against.
struct CountingFile {
    inner: BufReader<File>,
    count: Rc<Cell<u64>>,
}

impl Read for CountingFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

impl Seek for CountingFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
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
                "its contents unpack to more than {}",
                crate::human_size(max)
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
            if m.to_ascii_lowercase().contains("encrypt")
                || m.to_ascii_lowercase().contains("password")
            {
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
        let mut file = File::open(path)?;
        // Check the entry count ourselves first: the zip crate sizes its
        // directory vector from the count the file declares.
        if let Some(n) = declared_entries(&mut file)?
            && n > limits.max_zip_entries as u64
        {
            return Err(ParseError::TooLarge(format!(
                "it contains {n} internal files (the limit is {})",
                limits.max_zip_entries
            )));
        }
        file.seek(SeekFrom::Start(0))?;
        let file_reads = Rc::new(Cell::new(0));
        let counting = CountingFile {
            inner: BufReader::new(file),
            count: Rc::clone(&file_reads),
        };
        let archive = ZipArchive::new(counting).map_err(zip_error)?;
        if archive.len() > limits.max_zip_entries {
            return Err(ParseError::TooLarge(format!(
                "it contains {} internal files (the limit is {})",
                archive.len(),
                limits.max_zip_entries
            )));
        }
        Ok(SafeZip {
            archive,
            file_reads,
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
            let declared_ratio = entry.size() / entry.compressed_size().max(1);
            return Err(if declared_ratio > self.budget.max_ratio {
                Violation::Ratio(self.budget.max_ratio)
            } else {
                Violation::Total(self.budget.max_total)
            }
            .into_error());
        }
        let mut reader = CountingReader {
            inner: entry,
            budget: &self.budget,
            produced: 0,
            file_reads: &self.file_reads,
            consumed_start: self.file_reads.get(),
        };
        let result = f(&mut reader);
        if let Some(v) = self.budget.violation.get() {
            return Err(v.into_error());
        }
        result.map(Some)
    }
}

/// The entry count from the end-of-central-directory record (zip64 aware),
/// `None` when there is no such record (the zip crate will then fail).
fn declared_entries(file: &mut File) -> io::Result<Option<u64>> {
    let len = file.seek(SeekFrom::End(0))?;
    // The record is 22 bytes plus a comment of at most 65535 bytes.
    let tail_len = len.min(22 + 65_535);
    file.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = Vec::new();
    file.by_ref().take(tail_len).read_to_end(&mut tail)?;
    let Some(eocd) = tail.windows(4).rposition(|w| w == b"PK\x05\x06") else {
        return Ok(None);
    };
    let Some(rec) = tail.get(eocd..eocd + 22) else {
        return Ok(None);
    };
    let this_disk = u16::from_le_bytes([rec[8], rec[9]]);
    let total = u16::from_le_bytes([rec[10], rec[11]]);
    let mut count = u64::from(this_disk.max(total));
    if this_disk == u16::MAX || total == u16::MAX {
        // Zip64: the locator sits right before the classic record.
        let eocd_pos = len - tail_len + eocd as u64;
        if eocd_pos >= 20 {
            let mut loc = [0u8; 20];
            file.seek(SeekFrom::Start(eocd_pos - 20))?;
            if file.read_exact(&mut loc).is_ok() && &loc[..4] == b"PK\x06\x07" {
                let mut off = [0u8; 8];
                off.copy_from_slice(&loc[8..16]);
                let mut rec64 = [0u8; 48];
                if file.seek(SeekFrom::Start(u64::from_le_bytes(off))).is_ok()
                    && file.read_exact(&mut rec64).is_ok()
                    && &rec64[..4] == b"PK\x06\x06"
                {
                    let mut a = [0u8; 8];
                    let mut b = [0u8; 8];
                    a.copy_from_slice(&rec64[24..32]);
                    b.copy_from_slice(&rec64[32..40]);
                    count = count.max(u64::from_le_bytes(a)).max(u64::from_le_bytes(b));
                }
            }
        }
    }
    Ok(Some(count))
}

/// Maps an I/O error met while decompressing an entry.
pub(crate) fn read_error(e: io::Error) -> ParseError {
    ParseError::Malformed(format!("a part of the file cannot be unpacked: {e}"))
}

struct CountingReader<'a, R> {
    inner: R,
    budget: &'a Budget,
    /// Bytes this entry has decompressed so far.
    produced: u64,
    file_reads: &'a Cell<u64>,
    /// `file_reads` when the entry was opened; the difference is what the
    /// decompressor consumed (plus its small read-ahead, which only makes
    /// the check more lenient).
    consumed_start: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.budget.violation.get().is_some() {
            return Err(io::Error::other("decompression limit exceeded"));
        }
        // Never ask for more than the remaining budget (+1 to detect
        // overflow), so a single huge read cannot overshoot much.
        let remaining = self.budget.max_total.saturating_sub(self.budget.used.get());
        let want = buf
            .len()
            .min(usize::try_from(remaining.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        let n64 = n as u64;
        self.produced += n64;
        self.budget.used.set(self.budget.used.get() + n64);
        if self.budget.used.get() > self.budget.max_total {
            self.budget
                .violation
                .set(Some(Violation::Total(self.budget.max_total)));
            return Err(io::Error::other("decompression limit exceeded"));
        }
        let consumed = self
            .file_reads
            .get()
            .saturating_sub(self.consumed_start)
            .max(1);
        if self.produced > self.budget.ratio_threshold
            && self.produced / consumed > self.budget.max_ratio
        {
            self.budget
                .violation
                .set(Some(Violation::Ratio(self.budget.max_ratio)));
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn budget(max_total: u64) -> Budget {
        Budget {
            used: Cell::new(0),
            max_total,
            max_ratio: 100,
            ratio_threshold: 1024 * 1024,
            violation: Cell::new(None),
        }
    }

    /// The counters themselves, independent of what the zip reader
    /// enforces from headers: output is counted as it is produced.
    #[test]
    fn counting_reader_stops_bombs() {
        let reads = Cell::new(0u64);
        // 10 KB "consumed", unlimited zeros produced: ratio trips after 1 MiB.
        reads.set(10_000);
        let b = budget(u64::MAX);
        let mut r = CountingReader {
            inner: io::repeat(0),
            budget: &b,
            produced: 0,
            file_reads: &reads,
            consumed_start: 0,
        };
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("ratio"));
        assert!(matches!(b.violation.get(), Some(Violation::Ratio(100))));
        assert!(r.produced < 2 * 1024 * 1024);

        // Plenty consumed, but the total budget is 64 KiB.
        reads.set(u64::MAX / 2);
        let b = budget(64 * 1024);
        let mut r = CountingReader {
            inner: io::repeat(1),
            budget: &b,
            produced: 0,
            file_reads: &reads,
            consumed_start: 0,
        };
        assert!(io::copy(&mut r, &mut io::sink()).is_err());
        assert!(matches!(b.violation.get(), Some(Violation::Total(_))));
        assert!(r.produced <= 64 * 1024 + 1);
    }

    #[test]
    fn targets_resolve() {
        assert_eq!(
            resolve_target("ppt/presentation.xml", "slides/slide1.xml"),
            "ppt/slides/slide1.xml"
        );
        assert_eq!(
            resolve_target("ppt/slides/slide1.xml", "../notesSlides/notesSlide1.xml"),
            "ppt/notesSlides/notesSlide1.xml"
        );
        assert_eq!(
            resolve_target("ppt/slides/slide1.xml", "/ppt/x.xml"),
            "ppt/x.xml"
        );
        assert_eq!(resolve_target("a.xml", "../../../x.xml"), "x.xml");
    }
}
