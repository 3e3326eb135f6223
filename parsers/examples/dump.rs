//! Developer tool: sniff, extract and chunk one file, printing JSON.
//!
//! ```text
//! cargo build -p bwenge-parsers --bin bwenge-pdf-child
//! cargo run -p bwenge-parsers --example dump -- FILE [--chunks]
//! ```
//! PDFs go through the child process (`target/<profile>/bwenge-pdf-child`,
//! next to this example's directory), exactly as in the server.

use std::path::{Path, PathBuf};

use bwenge_parsers::{
    ChunkConfig, ExtractLimits, MediaKind, PdfLimits, chunk, extract, extract_pdf_in_child, sniff,
};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(file) = args.first() else {
        eprintln!("usage: dump FILE [--chunks]");
        std::process::exit(64);
    };
    let path = Path::new(file);
    let kind = match sniff(path, path.file_name().and_then(|n| n.to_str())) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("cannot read {file}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("kind: {kind} ({})", kind.mime());
    let doc = if kind == MediaKind::Pdf {
        extract_pdf_in_child(&child_exe(), path, &PdfLimits::default()).await
    } else {
        extract(kind, path, &ExtractLimits::default())
    };
    let doc = match doc {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let out = if args.iter().any(|a| a == "--chunks") {
        serde_json::to_string_pretty(&chunk(&doc, &ChunkConfig::default()))
    } else {
        serde_json::to_string_pretty(&doc)
    };
    match out {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: {e}"),
    }
}

/// `target/<profile>/examples/dump` → `target/<profile>/bwenge-pdf-child`.
fn child_exe() -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    let profile_dir = me
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    profile_dir.join("bwenge-pdf-child")
}
