//! Calibrates `personas.min_coverage`, the grounding threshold: below it a
//! persona says its material does not cover the question.
//!
//! Material: the 1,400 Cranfield abstracts in one organisation's index
//! (BM25, as the server searches with the built-in embedder). Questions:
//! * on-topic: the 225 Cranfield queries, written by the researchers;
//! * badly worded on-topic: each query with a fixed-seed half of its words
//!   dropped and the rest shuffled (a student's terse, garbled version);
//! * off-topic: 40 fixed questions a student might ask an aeronautics tutor
//!   that the material does not cover (other subjects, daily life).
//!
//! For each question: the best IDF-weighted coverage (the server's own
//! `bwenge::personas::grounding`) among the top 6 BM25 passages. Printed:
//! for thresholds 0.1–0.8, the share of on-topic questions answered and of
//! off-topic questions declined. No tuning to individual queries: one
//! threshold for all.
//!
//! cargo run --release -p bwenge-bench --bin grounding

use std::path::PathBuf;
use std::process::ExitCode;

use bwenge::personas::grounding::QuestionTerms;
use bwenge_bench::cranfield::{Cranfield, parse_docs, parse_queries};
use bwenge_search::{HashingEmbedder, IndexItem, OrgIndex, OrgSearcher};
use clap::Parser;
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    /// The Cranfield collection's directory (cran.all.1400, cran.qry); not part of the
    /// repository (see `bench/README.md`).
    #[arg(long, alias = "data-dir", env = "BWENGE_CRANFIELD_DIR")]
    cranfield_dir: Option<PathBuf>,
    /// The threshold the server is configured with, to mark in the table.
    #[arg(long, default_value_t = 0.4)]
    configured: f64,
}

const OFF_TOPIC: [&str; 40] = [
    "Who won the football world cup in 2018?",
    "What is the capital city of Australia?",
    "How do I bake a chocolate cake?",
    "When did the French Revolution begin?",
    "What is photosynthesis in plants?",
    "How many legs does a spider have?",
    "Who wrote Romeo and Juliet?",
    "What is the Pythagorean theorem?",
    "How do I solve a quadratic equation?",
    "What is the biggest animal in the ocean?",
    "Who is the president of Rwanda?",
    "How do vaccines protect us from diseases?",
    "What language is spoken in Brazil?",
    "How do you play the guitar?",
    "What is the meaning of democracy?",
    "Why do cats purr?",
    "How do I make friends at a new school?",
    "What are the colours of the rainbow?",
    "What causes earthquakes and volcanoes?",
    "How does the stock market work?",
    "What is the best mobile phone to buy?",
    "How many players are on a basketball team?",
    "What did the dinosaurs eat?",
    "How do I write a good essay introduction?",
    "What is the chemical formula of table salt?",
    "Who painted the Mona Lisa?",
    "How do bees make honey?",
    "What is the difference between a noun and a verb?",
    "Which countries border Kenya?",
    "How do I cook rice without burning it?",
    "What is a prime number?",
    "How does the human heart pump blood?",
    "Why is the sky blue during the day?",
    "What is the longest river in Africa?",
    "How do computers store music files?",
    "What happened during the Second World War?",
    "How do I take care of a pet rabbit?",
    "What is the plot of the Lion King?",
    "How are mountains formed over millions of years?",
    "What should I eat for a healthy breakfast?",
];

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grounding: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Drops about half the words (fixed seed) and shuffles the rest.
fn garble(q: &str, seed: &mut u64) -> String {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let mut kept: Vec<&str> = q.split_whitespace().filter(|_| next() % 2 == 0).collect();
    for i in (1..kept.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        kept.swap(i, j);
    }
    kept.join(" ")
}

fn best_coverage(searcher: &OrgSearcher, docs: &[(String, String)], q: &str) -> f64 {
    let Ok(hits) = searcher.search_bm25(q, 6, None) else {
        return 0.0;
    };
    let terms = QuestionTerms::new(&searcher.term_stats(q));
    hits.iter()
        .map(|h| {
            let i = (h.chunk_id.as_u128() - 1) as usize;
            let (title, text) = &docs[i];
            terms.coverage(&format!("{title} {text}"))
        })
        .fold(0.0, f64::max)
}

fn run(args: Args) -> Result<(), String> {
    let cran = Cranfield::open(
        args.cranfield_dir.as_deref(),
        &["cran.all.1400", "cran.qry"],
    )?;
    let docs = parse_docs(&cran.read("cran.all.1400")?);
    let queries = parse_queries(&cran.read("cran.qry")?);
    let tmp = std::env::temp_dir().join(format!("bwenge-grounding-{}", std::process::id()));
    let embedder = HashingEmbedder::default();
    let (mut index, _) =
        OrgIndex::open_or_create(&tmp, "hashing:384", 384).map_err(|e| e.to_string())?;
    let items: Vec<IndexItem> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| IndexItem {
            chunk_id: Uuid::from_u128(i as u128 + 1),
            source_id: Uuid::from_u128(1 << 64),
            title: d.title.clone(),
            heading: String::new(),
            text: d.text.clone(),
            page: None,
            vector: embedder.embed_one(&d.text),
        })
        .collect();
    index.add(&items).map_err(|e| e.to_string())?;
    let searcher = index.searcher();
    let texts: Vec<(String, String)> = docs
        .iter()
        .map(|d| (d.title.clone(), d.text.clone()))
        .collect();

    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let on: Vec<f64> = queries
        .iter()
        .map(|q| best_coverage(&searcher, &texts, q))
        .collect();
    let garbled: Vec<f64> = queries
        .iter()
        .map(|q| best_coverage(&searcher, &texts, &garble(q, &mut seed)))
        .collect();
    let off: Vec<f64> = OFF_TOPIC
        .iter()
        .map(|q| best_coverage(&searcher, &texts, q))
        .collect();
    let _ = std::fs::remove_dir_all(&tmp);

    println!(
        "Cranfield: {} abstracts; {} on-topic queries, {} garbled variants, {} off-topic questions",
        docs.len(),
        on.len(),
        garbled.len(),
        off.len()
    );
    println!();
    println!("threshold | on-topic answered | garbled answered | off-topic declined");
    println!("---|---|---|---");
    let share = |v: &[f64], t: f64, above: bool| {
        let n = v.iter().filter(|c| (**c >= t) == above).count();
        100.0 * n as f64 / v.len().max(1) as f64
    };
    for step in 1..=8 {
        let t = f64::from(step) / 10.0;
        let mark = if (t - args.configured).abs() < 1e-9 {
            "  <- configured"
        } else {
            ""
        };
        println!(
            "{t:.1} | {:.1}% | {:.1}% | {:.1}%{mark}",
            share(&on, t, true),
            share(&garbled, t, true),
            share(&off, t, false)
        );
    }
    let mut sorted = off.clone();
    sorted.sort_by(f64::total_cmp);
    println!();
    println!(
        "off-topic coverage: median {:.2}, max {:.2}; on-topic coverage median {:.2}",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        {
            let mut o = on.clone();
            o.sort_by(f64::total_cmp);
            o[o.len() / 2]
        }
    );
    for (q, c) in OFF_TOPIC.iter().zip(&off) {
        if *c >= args.configured {
            println!("  answered although off-topic ({c:.2}): {q}");
        }
    }
    Ok(())
}
