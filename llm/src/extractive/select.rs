//! Choice: which ranked sentences make the answer. The best with the
//! sentence after it in its passage when that one goes on about the same
//! thing, then up to
//! [`MAX_SENTENCES`] in all — the second whenever one exists, the others
//! only if they score at least half the best — skipping near-duplicates and
//! staying within the token budget; a pronoun-led sentence brings its
//! predecessor along; reading order, with a defining sentence first.

use std::collections::{BTreeSet, HashSet};

use super::MAX_SENTENCES;
use super::score::{Scored, Sentence};
use crate::tokens::{EstimateCounter, TokenCounter};

const ANAPHORS: &[&str] = &[
    "it", "this", "these", "they", "its", "their", "such", "those", "il", "elle", "ils", "elles",
    "ce", "cela", "ceci", "hii", "huu", "hizi", "hiyo", "ibi", "ibyo", "iyi", "uwo",
];

fn jaccard(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let inter = a.intersection(b).count() as f64;
    let union = a.union(b).count() as f64;
    inter / union
}

/// Picks the sentences and returns them in reading order.
pub(super) fn choose(sentences: &[Sentence], ranked: &[Scored], max_tokens: u32) -> Vec<usize> {
    let counter = EstimateCounter;
    // Leave room for the lead-in and markers.
    let budget = max_tokens.saturating_sub(16).max(24);
    let best = &ranked[0];
    let mut chosen: Vec<usize> = vec![best.idx];
    let mut used = counter.count(&sentences[best.idx].text);
    // The best sentence brings the one after it when that one goes on about
    // the same thing (shares a content word): an answer often runs on ("The
    // positive input goes to SEN. The negative input is tied to 1.25 V.").
    let next = best.idx + 1;
    let first = &sentences[best.idx];
    if let Some(n) = sentences.get(next)
        && n.rank == first.rank
        && n.pos == first.pos + 1
        && !n.stem_set.is_disjoint(&first.stem_set)
    {
        let cost = counter.count(&n.text);
        if used + cost <= budget {
            chosen.push(next);
            used += cost;
        }
    }
    let is_dup = |chosen: &[usize], idx: usize| {
        chosen
            .iter()
            .any(|&c| jaccard(&sentences[c].stem_set, &sentences[idx].stem_set) >= 0.6)
    };
    for cand in &ranked[1..] {
        if chosen.len() >= MAX_SENTENCES {
            break;
        }
        if chosen.len() >= 2 && cand.score < 0.5 * best.score {
            break;
        }
        if is_dup(&chosen, cand.idx) {
            continue;
        }
        let cost = counter.count(&sentences[cand.idx].text);
        if used + cost > budget {
            continue;
        }
        chosen.push(cand.idx);
        used += cost;
    }
    // Pronoun-led sentences bring their predecessor along.
    let mut extra = Vec::new();
    for &idx in &chosen {
        let s = &sentences[idx];
        let starts_with_anaphor = s
            .words
            .first()
            .is_some_and(|w| ANAPHORS.contains(&w.as_str()));
        if !starts_with_anaphor || s.pos == 0 || idx == 0 {
            continue;
        }
        let prev = idx - 1;
        let same_passage = sentences[prev].rank == s.rank && sentences[prev].pos + 1 == s.pos;
        if !same_passage || chosen.contains(&prev) || extra.contains(&prev) {
            continue;
        }
        let cost = counter.count(&sentences[prev].text);
        if chosen.len() + extra.len() < MAX_SENTENCES && used + cost <= budget {
            extra.push(prev);
            used += cost;
        }
    }
    chosen.extend(extra);

    let lead = ranked
        .iter()
        .find(|r| r.definitional && chosen.contains(&r.idx))
        .map(|r| r.idx);
    let mut order: BTreeSet<(usize, usize, usize)> = BTreeSet::new();
    for &idx in &chosen {
        if Some(idx) != lead {
            order.insert((sentences[idx].rank, sentences[idx].pos, idx));
        }
    }
    lead.into_iter()
        .chain(order.into_iter().map(|(_, _, idx)| idx))
        .collect()
}
