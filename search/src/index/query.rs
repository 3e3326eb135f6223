//! Query building: how a user's plain text becomes BM25 terms (the query
//! analyzer, its stop words and term limit) and the Tantivy query over them
//! (the common-terms query). Reads the index's term statistics through a
//! `tantivy::Searcher`; holds no state and writes nothing.

use std::collections::HashSet;

use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Searcher, Term};

/// Distinct query terms kept from user text (the rest are ignored).
pub const MAX_QUERY_TERMS: usize = 64;
/// Words dropped from BM25 queries (not from documents): Lucene's classic
/// English stop set. In a question they match nearly every chunk, add little
/// to the ranking (BM25 gives them a tiny IDF) and cost most of the time
/// (long posting lists). A query made only of them keeps them.
pub const QUERY_STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];
/// A query word found in more than this share of the chunks (and in more
/// than [`COMMON_TERM_MIN_DOCS`]) is *common*: see [`common_terms_query`].
pub const COMMON_TERM_SHARE: f64 = 0.02;
/// Below this many chunks holding it, no word counts as common, so small
/// libraries are searched with every word alike.
pub const COMMON_TERM_MIN_DOCS: u64 = 2_000;

/// Document frequencies of a query's terms (see
/// [`crate::OrgSearcher::term_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TermStats {
    /// Chunks in the index.
    pub num_docs: u64,
    /// Each analysed query term with the number of chunks containing it.
    pub terms: Vec<(String, u64)>,
}

/// The distinct terms of `text` as the BM25 query analyzer produces them
/// (lower-cased, English-stemmed, without the query stop words).
pub fn analyze_query(text: &str) -> Vec<String> {
    analyze(&mut query_analyzer(), text)
}

/// The documents' analyzer (`en_stem`) without [`QUERY_STOP_WORDS`].
pub(super) fn query_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(
            QUERY_STOP_WORDS.iter().map(|w| (*w).to_owned()),
        ))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// Distinct tokens of `text`, in order, at most [`MAX_QUERY_TERMS`].
fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut seen = HashSet::new();
    let mut terms = Vec::new();
    while terms.len() < MAX_QUERY_TERMS && stream.advance() {
        let t = &stream.token().text;
        if seen.insert(t.clone()) {
            terms.push(t.clone());
        }
    }
    terms
}

/// The analyzed, de-duplicated words of `query` (at most
/// [`MAX_QUERY_TERMS`]), without [`QUERY_STOP_WORDS`] unless the query has
/// nothing else: then `full` (the documents' analyzer) cuts it.
pub(super) fn query_terms(
    without_stop_words: &TextAnalyzer,
    full: &TextAnalyzer,
    query: &str,
) -> Vec<String> {
    let mut terms = analyze(&mut without_stop_words.clone(), query);
    if terms.is_empty() {
        terms = analyze(&mut full.clone(), query);
    }
    terms
}

/// The BM25 query for `terms`: every term scored, but, in a large library,
/// only chunks holding at least one of the *rarer* terms are candidates
/// (Lucene's common-terms query).
///
/// Words found in a large share of the chunks ("flow", "pressure" in an
/// aerodynamics library) have long posting lists, cost most of a search's
/// time and weigh little in BM25 (low IDF); a chunk that holds only such
/// words is a weak match. So terms above [`COMMON_TERM_SHARE`] of the
/// chunks (and above [`COMMON_TERM_MIN_DOCS`]) are only *added* to the
/// score of chunks that match a rarer term: the rarer terms are required
/// (any of them), the common ones optional. If every term is common, the
/// rarest is the required one. Libraries too small for any term to be
/// common get a plain disjunction of all terms, exactly as before.
pub(super) fn common_terms_query(
    searcher: &Searcher,
    field: Field,
    terms: &[String],
) -> Box<dyn Query> {
    let cutoff =
        ((searcher.num_docs() as f64 * COMMON_TERM_SHARE) as u64).max(COMMON_TERM_MIN_DOCS);
    // Words no chunk holds cannot match: leaving them out keeps them from
    // being the "rare" words every hit must hold.
    let mut weighed: Vec<(Term, u64)> = terms
        .iter()
        .map(|t| {
            let term = Term::from_field_text(field, t);
            let df = searcher.doc_freq(&term).unwrap_or(0);
            (term, df)
        })
        .filter(|(_, df)| *df > 0)
        .collect();
    let disjunction = |ts: Vec<Term>| -> Box<dyn Query> {
        Box::new(BooleanQuery::new(
            ts.into_iter()
                .map(|t| {
                    let q: Box<dyn Query> =
                        Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs));
                    (Occur::Should, q)
                })
                .collect(),
        ))
    };
    if weighed.iter().all(|(_, df)| *df <= cutoff) {
        return disjunction(weighed.into_iter().map(|(t, _)| t).collect());
    }
    weighed.sort_by_key(|(_, df)| *df);
    let split = weighed
        .iter()
        .position(|(_, df)| *df > cutoff)
        .unwrap_or(weighed.len())
        .max(1);
    let common = weighed.split_off(split);
    let rare = weighed;
    Box::new(BooleanQuery::new(vec![
        (
            Occur::Must,
            disjunction(rare.into_iter().map(|(t, _)| t).collect()),
        ),
        (
            Occur::Should,
            disjunction(common.into_iter().map(|(t, _)| t).collect()),
        ),
    ]))
}
