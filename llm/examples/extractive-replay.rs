//! Replays the extractive responder on questions dumped by
//! `bench/answer-quality --dump FILE` (the training split only, with the
//! first six hybrid hits of each), so that sentence choice can be tuned in
//! seconds without a server. The figures it prints are a tuning aid; the
//! figures to quote come from `bench/answer-quality`, which asks the real
//! server (grounding decision included).
//!
//! cargo run --release -p bwenge-llm --example extractive-replay -- FILE [--verbose]

use bwenge_llm::{AnswerRequest, Extractive, Passage};
use serde_json::Value;

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: extractive-replay FILE [--verbose]");
        std::process::exit(2);
    };
    let verbose = args.next().as_deref() == Some("--verbose");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        eprintln!("reading {path}: {e}");
        std::process::exit(2);
    });
    let responder = Extractive::new();
    let (mut n, mut ok, mut page_ok, mut terms_ok) = (0, 0, 0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let q: Value = serde_json::from_str(line).expect("a JSON line");
        if q["style"] == "offtopic" {
            continue;
        }
        // The dump holds ten hits; the server gives the responder its first
        // `personas.top_k` (6).
        let mut hits = q["hits"].as_array().cloned().unwrap_or_default();
        hits.truncate(6);
        let passages: Vec<Passage> = hits
            .iter()
            .enumerate()
            .map(|(i, h)| Passage {
                n: i + 1,
                source_title: h["source_title"].as_str().unwrap_or_default().to_owned(),
                page: h["page"].as_i64().unwrap_or(0),
                text: h["text"].as_str().unwrap_or_default().to_owned(),
                relevance: h["similarity"].as_f64().map(|s| s as f32),
            })
            .collect();
        let req = AnswerRequest {
            persona_name: "Lab tutor".into(),
            subject: None,
            language: "en".into(),
            grade_level: None,
            instructions: None,
            rules: Vec::new(),
            passages,
            history: Vec::new(),
            question: q["question"].as_str().unwrap_or_default().to_owned(),
            max_answer_tokens: 600,
        };
        let a = responder.answer(&req);
        let pages: Vec<i64> = q["pages"]
            .as_array()
            .map(|p| p.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        let right_page = a.cited.iter().any(|&c| {
            let h = &hits[c - 1];
            h["doc"] == q["doc"] && h["page"].as_i64().is_some_and(|p| pages.contains(&p))
        });
        let squashed = squash(&a.text);
        let terms = q["must_contain"]
            .as_array()
            .map(|t| {
                t.iter()
                    .all(|t| squashed.contains(&squash(t.as_str().unwrap_or_default())))
            })
            .unwrap_or(true);
        n += 1;
        page_ok += usize::from(right_page);
        terms_ok += usize::from(terms);
        ok += usize::from(right_page && terms);
        if verbose && !(right_page && terms) {
            println!(
                "{} page={right_page} terms={terms} | {} | {}\n",
                q["id"].as_str().unwrap_or_default(),
                q["question"].as_str().unwrap_or_default(),
                a.text.replace('\n', " ")
            );
        }
    }
    let share = |k: usize| k as f64 / n.max(1) as f64;
    println!(
        "{n} in-scope questions: right page and terms {:.3}, right page {:.3}, terms {:.3}",
        share(ok),
        share(page_ok),
        share(terms_ok)
    );
}
