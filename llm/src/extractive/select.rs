//! Choice: which ranked sentences make the answer. The best with the
//! sentence after it in its passage when the answer runs on into it (it
//! goes on about the same thing, refers back to it, or holds the number or
//! name the question asks for), then up to [`MAX_SENTENCES`] in all — the
//! second whenever one exists, the others only if they score at least half
//! the best, each with the sentence after it when that one holds what the
//! question asks for and it does not — skipping near-duplicates and staying
//! within the token budget; a pronoun-led sentence brings its predecessor
//! along, and a line between two chosen sentences of a passage is kept;
//! reading order, with a defining sentence first.

use std::collections::{BTreeSet, HashSet};

use super::MAX_SENTENCES;
use super::score::{Asks, Scored, Sentence};
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

fn starts_with_anaphor(s: &Sentence) -> bool {
    s.words
        .first()
        .is_some_and(|w| ANAPHORS.contains(&w.as_str()))
}

/// Whether `next` is the sentence right after `first` in its passage.
fn follows(first: &Sentence, next: &Sentence) -> bool {
    next.rank == first.rank && next.pos == first.pos + 1
}

/// Whether `next`, the sentence after `first`, holds what the question asks
/// for where `first` does not ("These functions capture with higher
/// resolution (12 bits). In this case … the maximum value of NP is 900 for
/// capture hr, and 450 for capture2 hr.").
fn completes(first: &Sentence, next: &Sentence, asks: &Asks) -> bool {
    follows(first, next) && asks.supplied_by(next) && !asks.supplied_by(first)
}

/// Whether `next`, the sentence after `first`, carries its answer on: it
/// goes on about the same thing (shares a content word: "The positive
/// input goes to SEN. The negative input is tied to 1.25 V."), refers back
/// to it ("Microphone assembly: a condenser microphone … It should be fixed
/// to T16 & T15."), or [`completes`] it.
fn runs_on(first: &Sentence, next: &Sentence, asks: &Asks) -> bool {
    follows(first, next)
        && (!next.stem_set.is_disjoint(&first.stem_set) || starts_with_anaphor(next))
        || completes(first, next, asks)
}

/// The answer's token budget: what is left of it as sentences are taken.
struct Budget {
    left: u32,
}

impl Budget {
    /// Takes `text`'s tokens whether or not they fit (down to nothing).
    fn spend(&mut self, text: &str) {
        self.left = self.left.saturating_sub(EstimateCounter.count(text));
    }

    /// Takes `text`'s tokens when they fit; says whether they did.
    fn take(&mut self, text: &str) -> bool {
        let cost = EstimateCounter.count(text);
        let fits = cost <= self.left;
        if fits {
            self.left -= cost;
        }
        fits
    }
}

/// Picks the sentences and returns them in reading order.
pub(super) fn choose(
    sentences: &[Sentence],
    ranked: &[Scored],
    asks: &Asks,
    max_tokens: u32,
) -> Vec<usize> {
    // Leave room for the lead-in and markers.
    let mut budget = Budget {
        left: max_tokens.saturating_sub(16).max(24),
    };
    let best = &ranked[0];
    let mut chosen: Vec<usize> = vec![best.idx];
    // The best is always said, even past the budget.
    budget.spend(&sentences[best.idx].text);
    // The best sentence brings the one after it when the answer runs on.
    let next = best.idx + 1;
    if let Some(n) = sentences.get(next)
        && runs_on(&sentences[best.idx], n, asks)
        && budget.take(&n.text)
    {
        chosen.push(next);
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
        if is_dup(&chosen, cand.idx) || !budget.take(&sentences[cand.idx].text) {
            continue;
        }
        chosen.push(cand.idx);
        // Any chosen sentence brings the one after it when that one holds
        // what the question asks for and it does not.
        let next = cand.idx + 1;
        if let Some(n) = sentences.get(next)
            && chosen.len() < MAX_SENTENCES
            && !chosen.contains(&next)
            && completes(&sentences[cand.idx], n, asks)
            && budget.take(&n.text)
        {
            chosen.push(next);
        }
    }
    // Pronoun-led sentences bring their predecessor along.
    let mut extra = Vec::new();
    for &idx in &chosen {
        let s = &sentences[idx];
        if !starts_with_anaphor(s) || idx == 0 {
            continue;
        }
        let prev = idx - 1;
        if follows(&sentences[prev], s)
            && !chosen.contains(&prev)
            && !extra.contains(&prev)
            && chosen.len() + extra.len() < MAX_SENTENCES
            && budget.take(&sentences[prev].text)
        {
            extra.push(prev);
        }
    }
    chosen.extend(extra);
    // Two chosen sentences one apart in a passage bring the one between
    // them: an answer that skips a line of its passage ("… a rough
    // approximation of the error: | rr = round(rc, &e) | Again, e contains
    // the number of error bits …") reads as if the line were not there.
    let mut between = Vec::new();
    for &idx in &chosen {
        let gap = idx + 1;
        if let (Some(g), Some(after)) = (sentences.get(gap), sentences.get(idx + 2))
            && follows(&sentences[idx], g)
            && follows(g, after)
            && chosen.contains(&(idx + 2))
            && !chosen.contains(&gap)
            && !between.contains(&gap)
            && budget.take(&g.text)
        {
            between.push(gap);
        }
    }
    chosen.extend(between);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Passage;
    use crate::extractive::words::{Lexicon, words};

    #[test]
    fn a_line_between_two_chosen_sentences_is_kept() {
        let passage = Passage {
            n: 1,
            source_title: "Tutorial".into(),
            page: 23,
            text: "In fact, round itself already provides a rough approximation of the \
                   error:\n\nrr = round(rc, &e)\n\nAgain, e contains the number of error \
                   bits when rounding rc to rr.\n\nNow type pol = x^5 + x^4."
                .into(),
            relevance: None,
        };
        let sentences = Sentence::all(&[passage], &Lexicon::new());
        assert_eq!(sentences[1].text, "rr = round(rc, &e)");
        let q = words("can round tell me about the error bits?");
        let scored = |idx, score| Scored {
            idx,
            score,
            definitional: false,
        };
        // The third and first sentences ranked; the call between them not.
        let ranked = [scored(2, 1.0), scored(0, 0.9)];
        assert_eq!(
            choose(&sentences, &ranked, &Asks::of(&q), 500),
            vec![0, 1, 2]
        );
        // Sentences two lines apart are not bridged.
        let ranked = [scored(3, 1.0), scored(0, 0.9)];
        assert_eq!(choose(&sentences, &ranked, &Asks::of(&q), 500), vec![0, 3]);
    }
}
