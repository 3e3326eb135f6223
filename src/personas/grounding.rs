//! Is the material relevant enough to answer from? Retrieval always returns
//! *something*; this decides whether it is about the question.
//!
//! The measure is IDF-weighted coverage: the share of the question's
//! information (each distinct analysed term weighted by its inverse document
//! frequency in the organisation's index, as BM25 weighs it) that a passage
//! contains. Question words ("what", "explain", "tell me about") carry no
//! information about the topic and are dropped first. A word that occurs
//! nowhere in the material weighs the most, so "Who won the 2018 World Cup?"
//! against an aerodynamics course scores near 0, while "why do wings make
//! planes go up" scores on "wing" and "plane" even if worded badly.
//!
//! Coverage alone fails a student who words a question differently from the
//! manual ("how do i make the box beep" against "the buzzer is driven by
//! SQR1"): a paraphrase defeats it by construction. The second piece of
//! evidence is the cosine similarity of the question's and the passage's
//! vectors (the embedding model's, which is trained on paraphrase pairs).
//!
//! [`confidence`] puts the two on one scale: each is passed through a
//! logistic centred on its threshold (`personas.min_coverage`, 0.4, chosen
//! with `bench/grounding` on the Cranfield queries against off-topic
//! questions; `personas.min_similarity`, chosen with `bench/answer-quality`
//! on its training split), and the stronger one counts. With a model, the
//! words count only when the meaning is not far off
//! (`personas.similarity_floor`): chit-chat shares words with a manual's
//! asides, never its meaning. A passage is
//! *relevant* when its confidence reaches 0.5; an answer is grounded only if
//! at least one passage is.

use std::collections::HashSet;
use std::sync::OnceLock;

use bwenge_search::{TermStats, analyze_query};

/// Words of questions that say what kind of answer is wanted, not what it
/// is about (analysed like the query, so stemmed forms match).
const QUESTION_WORDS: &[&str] = &[
    "what",
    "which",
    "who",
    "whom",
    "whose",
    "why",
    "how",
    "when",
    "where",
    "do",
    "does",
    "did",
    "can",
    "could",
    "would",
    "should",
    "shall",
    "may",
    "might",
    "must",
    "please",
    "explain",
    "tell",
    "me",
    "about",
    "describe",
    "define",
    "definition",
    "mean",
    "meaning",
    "i",
    "you",
    "we",
    "my",
    "your",
    "our",
    "us",
    "know",
    "want",
    "help",
    "give",
    "some",
    "any",
    "example",
    "examples",
    "thing",
    "things",
    "get",
    "got",
    "make",
    "makes",
    "go",
    "goes",
    "have",
    "has",
    "had",
    "been",
    "being",
    "am",
    "were",
    "from",
    "so",
    "than",
    "too",
    "very",
    "just",
    "also",
    "many",
    "much",
    "more",
    "most",
    "other",
    "something",
    "anything",
    "one",
    "two",
    "use",
    "used",
    "using",
    "happen",
    "happens",
    "work",
    "works",
    "kind",
    "type",
    "types",
    "way",
    "ways",
    "called",
    "call",
];

fn question_words() -> &'static HashSet<String> {
    static SET: OnceLock<HashSet<String>> = OnceLock::new();
    SET.get_or_init(|| {
        QUESTION_WORDS
            .iter()
            .flat_map(|w| analyze_query(w))
            .collect()
    })
}

/// The question's topical terms with their weights.
#[derive(Debug, Clone)]
pub struct QuestionTerms {
    terms: Vec<(String, f64)>,
    total: f64,
}

impl QuestionTerms {
    /// Weighs the analysed question terms by BM25's IDF over the index.
    pub fn new(stats: &TermStats) -> Self {
        let skip = question_words();
        let n = stats.num_docs as f64;
        let mut terms: Vec<(String, f64)> = stats
            .terms
            .iter()
            .filter(|(t, _)| !skip.contains(t))
            .map(|(t, df)| {
                let df = *df as f64;
                (t.clone(), (1.0 + (n - df + 0.5) / (df + 0.5)).ln())
            })
            .collect();
        // A question made only of question words ("what is it?") keeps them,
        // so it is judged on something.
        if terms.is_empty() {
            terms = stats
                .terms
                .iter()
                .map(|(t, df)| {
                    let df = *df as f64;
                    (t.clone(), (1.0 + (n - df + 0.5) / (df + 0.5)).ln())
                })
                .collect();
        }
        let total = terms.iter().map(|(_, w)| w).sum();
        Self { terms, total }
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty() || self.total <= 0.0
    }

    /// The share (0–1) of the question's weight found in `passage`.
    pub fn coverage(&self, passage: &str) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        let present: HashSet<String> = analyze_passage(passage);
        let found: f64 = self
            .terms
            .iter()
            .filter(|(t, _)| present.contains(t))
            .map(|(_, w)| w)
            .sum();
        found / self.total
    }
}

/// The thresholds [`confidence`] weighs the evidence against
/// (`personas.*`).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Coverage at which the words alone make a passage relevant.
    pub min_coverage: f64,
    /// Similarity at which the meaning alone makes it relevant.
    pub min_similarity: f64,
    /// Below this similarity the shared words are no evidence at all: "i'm
    /// bored, what should i do?" shares its words with "I'm getting bored,
    /// why don't we get on with more exciting stuff" and nothing else.
    pub similarity_floor: f64,
}

/// How sure (0–1) the evidence makes us that a passage is about the
/// question: 0.5 exactly at either threshold, the stronger evidence wins.
/// `similarity` is `None` without a real embedding model; with one, the
/// words count only when the meaning is at least `similarity_floor` close.
pub fn confidence(coverage: f64, similarity: Option<f32>, t: Thresholds) -> f64 {
    let lexical = logistic((coverage - t.min_coverage) / 0.08);
    let Some(s) = similarity.map(f64::from) else {
        return lexical;
    };
    let dense = logistic((s - t.min_similarity) / 0.04);
    if s < t.similarity_floor {
        dense
    } else {
        lexical.max(dense)
    }
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Every analysed term of a passage (not capped like a query).
fn analyze_passage(text: &str) -> HashSet<String> {
    // `analyze_query` keeps at most a few dozen distinct terms; a passage has
    // more, so analyse it sentence by sentence.
    text.split_terminator(['.', '\n', '?', '!', ';'])
        .flat_map(analyze_query)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(terms: &[(&str, u64)], n: u64) -> TermStats {
        TermStats {
            num_docs: n,
            terms: terms.iter().map(|(t, d)| ((*t).to_owned(), *d)).collect(),
        }
    }

    #[test]
    fn rare_words_weigh_more_than_common_ones() {
        let q = QuestionTerms::new(&stats(&[("wing", 50), ("lift", 200), ("flow", 900)], 1000));
        let only_wing = q.coverage("The wing of an aircraft.");
        let only_flow = q.coverage("The flow was turbulent.");
        assert!(only_wing > only_flow, "{only_wing} vs {only_flow}");
        assert!((q.coverage("Lift on a wing in a flow.") - 1.0).abs() < 1e-9);
    }

    #[test]
    fn question_words_do_not_count() {
        let q = QuestionTerms::new(&stats(&[("what", 10), ("explain", 3), ("lift", 200)], 1000));
        assert!((q.coverage("Lift is the force that holds an aircraft up.") - 1.0).abs() < 1e-9);
    }

    #[test]
    fn either_piece_of_evidence_suffices() {
        // At a threshold, exactly one half.
        let t = Thresholds {
            min_coverage: 0.4,
            min_similarity: 0.45,
            similarity_floor: 0.3,
        };
        let confidence = |c, s| confidence(c, s, t);
        assert!((confidence(0.4, None) - 0.5).abs() < 1e-9);
        assert!((confidence(0.0, Some(0.45)) - 0.5).abs() < 1e-6);
        // A paraphrase: no shared words, close in meaning.
        assert!(confidence(0.05, Some(0.62)) > 0.9);
        // The right words without a model.
        assert!(confidence(0.8, None) > 0.9);
        // Neither.
        assert!(confidence(0.1, Some(0.2)) < 0.1);
        // Shared words with a meaning below the floor are no evidence; above
        // it, they are.
        assert!(confidence(0.9, Some(0.2)) < 0.1);
        assert!(confidence(0.9, Some(0.35)) > 0.9);
    }

    #[test]
    fn words_absent_from_the_material_sink_the_score() {
        let q = QuestionTerms::new(&stats(
            &[("won", 0), ("world", 3), ("cup", 0), ("2018", 0)],
            1000,
        ));
        assert!(q.coverage("The world of supersonic flow.") < 0.3);
    }
}
