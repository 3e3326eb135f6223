//! Test stand-in for the server's hidden `bwenge __extract-pdf <path>`
//! subcommand: same argument contract, same entry point
//! ([`bwenge_parsers::pdf_child_main`]). The crate's integration tests run
//! it through `extract_pdf_in_child` via `CARGO_BIN_EXE_bwenge-pdf-child`.

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.as_slice() {
        [_, sub, path] if sub == bwenge_parsers::PDF_CHILD_SUBCOMMAND => {
            bwenge_parsers::pdf_child_main(Path::new(path))
        }
        _ => {
            eprintln!(
                "usage: bwenge-pdf-child {} <file.pdf>",
                bwenge_parsers::PDF_CHILD_SUBCOMMAND
            );
            64
        }
    };
    std::process::exit(code);
}
