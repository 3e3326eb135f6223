//! The Cranfield collection's files: where they are, and their records parsed.
//!
//! The collection is not part of this repository. The benchmarks that read it
//! take its directory from `--cranfield-dir` or [`CRANFIELD_DIR_ENV`]; without
//! one, or when a file is missing, they stop with [`Cranfield::open`]'s
//! message, which says where to get it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The environment variable the benchmarks' `--cranfield-dir` falls back to.
pub const CRANFIELD_DIR_ENV: &str = "BWENGE_CRANFIELD_DIR";

/// Where to get the collection, for error messages.
pub const CRANFIELD_SOURCE: &str = "the collection is public: cran.tar.gz from \
     http://ir.dcs.gla.ac.uk/resources/test_collections/cran/ holds cran.all.1400, cran.qry and \
     cranqrel";

/// A directory holding the Cranfield files.
#[derive(Debug, Clone)]
pub struct Cranfield {
    dir: PathBuf,
}

impl Cranfield {
    /// The collection in `dir` (the benchmark's `--cranfield-dir`, which
    /// clap fills from [`CRANFIELD_DIR_ENV`] when the flag is absent),
    /// checked to hold every one of `files`. The error is a sentence for the
    /// person running the benchmark: what is missing and where to get it.
    pub fn open(dir: Option<&Path>, files: &[&str]) -> Result<Cranfield, String> {
        let Some(dir) = dir else {
            return Err(format!(
                "no Cranfield collection: pass --cranfield-dir DIR or set {CRANFIELD_DIR_ENV} to \
                 its directory ({CRANFIELD_SOURCE})"
            ));
        };
        let missing: Vec<&str> = files
            .iter()
            .copied()
            .filter(|f| !dir.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "no Cranfield collection in {}: {} missing; pass its directory with \
                 --cranfield-dir or {CRANFIELD_DIR_ENV} ({CRANFIELD_SOURCE})",
                dir.display(),
                missing.join(", ")
            ));
        }
        Ok(Cranfield {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The text of one of the collection's files.
    pub fn read(&self, file: &str) -> Result<String, String> {
        let path = self.dir.join(file);
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// One abstract.
pub struct Doc {
    pub id: u32,
    pub title: String,
    pub text: String,
}

/// `.I` records with `.T` title and `.W` abstract (`.A`, `.B` ignored).
pub fn parse_docs(raw: &str) -> Vec<Doc> {
    let mut docs = Vec::new();
    for rec in raw.split("\n.I ").map(|r| r.trim_start_matches(".I ")) {
        let mut lines = rec.lines();
        let Some(id) = lines.next().and_then(|l| l.trim().parse::<u32>().ok()) else {
            continue;
        };
        let (mut title, mut text, mut field) = (String::new(), String::new(), "");
        for line in lines {
            if line.starts_with('.') && line.len() == 2 {
                field = line;
                continue;
            }
            let target = match field {
                ".T" => &mut title,
                ".W" => &mut text,
                _ => continue,
            };
            target.push_str(line.trim());
            target.push(' ');
        }
        docs.push(Doc {
            id,
            title: title.trim().to_owned(),
            text: text.trim().to_owned(),
        });
    }
    docs
}

/// Query texts in file order: position i (from 1) is query number i of cranqrel.
pub fn parse_queries(raw: &str) -> Vec<String> {
    raw.split("\n.I ")
        .filter_map(|rec| {
            let (_, text) = rec.split_once("\n.W")?;
            Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}

/// query number → (doc id → gain): 5 - code for codes 1-4, 0 for -1.
pub fn parse_qrels(raw: &str) -> HashMap<u32, HashMap<u32, f64>> {
    let mut out: HashMap<u32, HashMap<u32, f64>> = HashMap::new();
    for line in raw.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [q, d, code] = f[..] else { continue };
        let (Ok(q), Ok(d), Ok(code)) = (q.parse::<u32>(), d.parse::<u32>(), code.parse::<i32>())
        else {
            continue;
        };
        let gain = if (1..=4).contains(&code) {
            f64::from(5 - code)
        } else {
            0.0
        };
        out.entry(q).or_default().insert(d, gain);
    }
    out
}
