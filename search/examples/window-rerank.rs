//! Tuning aid for issue 15: reranks the hybrid hits dumped by
//! `bench/answer-quality --dump FILE` (training split only) by the local
//! model's similarity of the question to *windows* of each passage (a few
//! sentences), instead of to the whole passage, and prints page hit@1 and
//! "the first passage holds every required term" for each ordering:
//! the hybrid order, the whole passage's cosine, the best window's cosine
//! (`max`), reciprocal-rank fusion of the hybrid rank with the window rank
//! (`rrf`), and the window cosine less 0.03 per hybrid rank (`mix`), for
//! windows of N sentences every M (`wN/M`).
//!
//! Windows are embedded one by one (a forward pass each), or with `LATE=1`
//! pooled from the token states of one pass over the whole passage
//! ("late chunking": no extra model cost at ingest). `OUT` (optional) gets
//! the dump again with the hits in the `w3/2 rrf` order, for
//! `llm/examples/extractive-replay`; with `WINDOW_SIM=1` each hit's
//! `similarity` there is its best window's.
//! The findings are in `bench/README.md` (answer-quality).
//!
//! cargo run --release -p bwenge-search --example window-rerank -- FILE MODEL_DIR [OUT]

use bwenge_search::{LocalEmbedder, LocalEmbedderConfig};
use serde_json::Value;

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        cur.push(c);
        let end = matches!(c, '.' | '?' | '!')
            && chars.get(i + 1).is_none_or(|n| n.is_whitespace())
            || c == '\n' && chars.get(i + 1) == Some(&'\n');
        if end && cur.trim().len() > 1 {
            out.push(cur.trim().to_owned());
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// Byte spans of sentences.
fn sentence_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    let b: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(i, c)) in b.iter().enumerate() {
        if start.is_none() && !c.is_whitespace() {
            start = Some(i);
        }
        let next = b.get(k + 1).map(|x| x.1);
        let end = matches!(c, '.' | '?' | '!') && next.is_none_or(|n| n.is_whitespace())
            || c == '\n' && next == Some('\n');
        if end && let Some(s0) = start {
            out.push((s0, i + c.len_utf8()));
            start = None;
        }
    }
    if let Some(s0) = start {
        out.push((s0, text.len()));
    }
    out
}

fn window_spans(text: &str, size: usize, stride: usize) -> Vec<(usize, usize)> {
    let s = sentence_spans(text);
    if s.len() <= size {
        return vec![(s.first().map_or(0, |x| x.0), text.len())];
    }
    let mut out: Vec<(usize, usize)> = (0..=s.len() - size)
        .step_by(stride)
        .map(|i| (s[i].0, s[i + size - 1].1))
        .collect();
    if !(s.len() - size).is_multiple_of(stride) {
        out.push((s[s.len() - size].0, s[s.len() - 1].1));
    }
    out
}

fn windows(text: &str, size: usize, stride: usize) -> Vec<String> {
    let s = sentences(text);
    if s.len() <= size {
        return vec![s.join(" ")];
    }
    let mut out: Vec<String> = (0..=s.len() - size)
        .step_by(stride)
        .map(|i| s[i..i + size].join(" "))
        .collect();
    if !(s.len() - size).is_multiple_of(stride) {
        out.push(s[s.len() - size..].join(" "));
    }
    out
}

/// A sentence of one of the first hits and its cosine to the question.
struct Scored {
    cosine: f32,
    /// The hit's rank and the sentence's place in it.
    hit: usize,
    pos: usize,
    text: String,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(model)) = (args.next(), args.next()) else {
        eprintln!("usage: window-rerank FILE MODEL_DIR");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(&path).expect("the dump");
    let embedder = LocalEmbedder::load_blocking(LocalEmbedderConfig::new(model)).expect("model");
    let out_path = args.next();
    let mut out_lines = Vec::new();
    let sizes = [(3usize, 2usize), (2, 1), (3, 1), (1, 1), (4, 2)];
    let late = std::env::var("LATE").is_ok();
    let (mut spans_all, mut spans_none) = (0usize, 0usize);
    let mut cache: std::collections::HashMap<(String, usize, usize), Vec<Vec<f32>>> =
        std::collections::HashMap::new();
    // orderings: hybrid, whole-passage cosine, window max cosine (per size),
    // and RRF of hybrid rank with window rank (per size).
    let mut names: Vec<String> = vec!["hybrid".into(), "passage cosine".into()];
    for (s, t) in sizes {
        names.push(format!("w{s}/{t} max"));
        names.push(format!("w{s}/{t} rrf"));
        names.push(format!("w{s}/{t} mix"));
    }
    let mut page1 = vec![0usize; names.len()];
    let mut terms1 = vec![0usize; names.len()];
    let mut n = 0;
    let mut sentence_hits = [0usize; 3];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let q: Value = serde_json::from_str(line).expect("a JSON line");
        if q["style"] == "offtopic" {
            continue;
        }
        let hits = q["hits"].as_array().cloned().unwrap_or_default();
        if hits.is_empty() {
            continue;
        }
        n += 1;
        let pages: Vec<i64> = q["pages"]
            .as_array()
            .map(|p| p.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        let must: Vec<String> = q["must_contain"]
            .as_array()
            .map(|t| {
                t.iter()
                    .map(|t| squash(t.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let right = |h: &Value| {
            h["doc"] == q["doc"] && h["page"].as_i64().is_some_and(|p| pages.contains(&p))
        };
        let holds = |h: &Value| {
            let s = squash(h["text"].as_str().unwrap_or_default());
            right(h) && must.iter().all(|t| s.contains(t))
        };
        let question = q["question"].as_str().unwrap_or_default().to_owned();
        let qv = embedder.embed_blocking(&[question]).expect("embed")[0].clone();
        let mut orders: Vec<Vec<usize>> = vec![(0..hits.len()).collect()];
        let sims: Vec<f32> = hits
            .iter()
            .map(|h| h["similarity"].as_f64().unwrap_or(0.0) as f32)
            .collect();
        let mut by_sim: Vec<usize> = (0..hits.len()).collect();
        by_sim.sort_by(|&a, &b| sims[b].total_cmp(&sims[a]));
        orders.push(by_sim);
        let mut best32 = Vec::new();
        for (size, stride) in sizes {
            let best: Vec<f32> = hits
                .iter()
                .map(|h| {
                    let text = h["text"].as_str().unwrap_or_default().to_owned();
                    let v = cache.entry((text, size, stride)).or_insert_with_key(|k| {
                        if late {
                            let spans = window_spans(&k.0, size, stride);
                            let (whole, w) =
                                embedder.embed_spans_blocking(&k.0, &spans).expect("embed");
                            spans_all += w.len();
                            spans_none += w.iter().filter(|x| x.is_none()).count();
                            let mut w: Vec<Vec<f32>> = w.into_iter().flatten().collect();
                            if w.is_empty() {
                                w.push(whole);
                            }
                            w
                        } else {
                            let w = windows(&k.0, size, stride);
                            embedder.embed_blocking(&w).expect("embed")
                        }
                    });
                    v.iter().map(|v| dot(&qv, v)).fold(f32::MIN, f32::max)
                })
                .collect();
            let mut by_best: Vec<usize> = (0..hits.len()).collect();
            by_best.sort_by(|&a, &b| best[b].total_cmp(&best[a]));
            let mut rank_best = vec![0usize; hits.len()];
            for (r, &i) in by_best.iter().enumerate() {
                rank_best[i] = r;
            }
            let mut rrf: Vec<usize> = (0..hits.len()).collect();
            let score = |i: usize| 1.0 / (60.0 + i as f32) + 1.0 / (60.0 + rank_best[i] as f32);
            rrf.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
            let mut mix: Vec<usize> = (0..hits.len()).collect();
            let m = |i: usize| best[i] - 0.03 * i as f32;
            mix.sort_by(|&a, &b| m(b).total_cmp(&m(a)));
            if (size, stride) == (3, 2) {
                best32 = best.clone();
            }
            orders.push(by_best);
            orders.push(rrf);
            orders.push(mix);
        }
        // The (3, 2) rrf order (index 2 + 3*0 + 1) written out for the replay.
        {
            let o = &orders[3];
            let mut q2 = q.clone();
            q2["hits"] = Value::Array(
                o.iter()
                    .map(|&i| {
                        let mut h = hits[i].clone();
                        if std::env::var("WINDOW_SIM").is_ok() {
                            h["similarity"] = serde_json::json!(best32[i]);
                        }
                        h
                    })
                    .collect(),
            );
            out_lines.push(q2.to_string());
        }
        for (k, o) in orders.iter().enumerate() {
            page1[k] += usize::from(right(&hits[o[0]]));
            terms1[k] += usize::from(holds(&hits[o[0]]));
        }
        // Sentences of the first six hits by their cosine to the question
        // (the one-sentence windows above: each embedded alone, or pooled
        // with LATE=1): does the best one (or two, or the best with the
        // sentence after it) stand on a right page and hold every required
        // term, as an answer must?
        let mut pool: Vec<Scored> = Vec::new();
        for (hit, h) in hits.iter().take(6).enumerate() {
            let text = h["text"].as_str().unwrap_or_default();
            let ss = sentences(text);
            let vs = &cache[&(text.to_owned(), 1, 1)];
            if vs.len() != ss.len() {
                continue; // LATE=1 dropped a sentence past the model's tokens.
            }
            for (pos, (text, v)) in ss.into_iter().zip(vs).enumerate() {
                let cosine = dot(&qv, v);
                pool.push(Scored {
                    cosine,
                    hit,
                    pos,
                    text,
                });
            }
        }
        let by_cos = {
            let mut o: Vec<usize> = (0..pool.len()).collect();
            o.sort_by(|&a, &b| pool[b].cosine.total_cmp(&pool[a].cosine));
            o
        };
        let answers = |picked: &[usize]| {
            let text: String = picked.iter().map(|&k| pool[k].text.as_str()).collect();
            let text = squash(&text);
            picked.iter().any(|&k| right(&hits[pool[k].hit]))
                && must.iter().all(|t| text.contains(t))
        };
        if let Some(&best) = by_cos.first() {
            let (hit, pos) = (pool[best].hit, pool[best].pos + 1);
            let next = pool.iter().position(|p| (p.hit, p.pos) == (hit, pos));
            let picks: [Vec<usize>; 3] = [
                vec![best],
                by_cos.iter().take(2).copied().collect(),
                std::iter::once(best).chain(next).collect(),
            ];
            for (k, p) in picks.iter().enumerate() {
                sentence_hits[k] += usize::from(answers(p));
            }
        }
    }
    if let Some(p) = out_path {
        std::fs::write(p, out_lines.join("\n")).expect("write");
    }
    println!("{n} questions; late {late}: {spans_none} of {spans_all} spans truncated away");
    for (k, name) in ["best sentence", "best two sentences", "best and the next"]
        .iter()
        .enumerate()
    {
        println!(
            "{name:>20} by cosine: right page and terms {:.3}",
            sentence_hits[k] as f64 / n as f64
        );
    }
    for (k, name) in names.iter().enumerate() {
        println!(
            "{name:>16}: page@1 {:.3}  page+terms@1 {:.3}",
            page1[k] as f64 / n as f64,
            terms1[k] as f64 / n as f64
        );
    }
}
