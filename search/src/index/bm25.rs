//! The BM25 half of an [`OrgIndex`](super::OrgIndex), on Tantivy: the schema
//! and its fields, the document written for a chunk, opening and creating the
//! Tantivy index, and [`Bm25::search`] (the query from [`super::query`], an
//! optional source filter, hits read back from fast fields).
//!
//! Only the owning [`OrgIndex`](super::OrgIndex) holds the `IndexWriter` and
//! commits; [`Bm25`] is the read side every searcher shares.

use std::collections::HashSet;
use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermSetQuery};
use tantivy::schema::{
    FAST, Field, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term,
};
use uuid::Uuid;

use super::query::{TermStats, common_terms_query, query_analyzer, query_terms};
use super::{Hit, IndexError, IndexItem};

/// Tantivy indexing memory budget (one indexing thread).
const WRITER_MEMORY: usize = 20_000_000;

/// The BM25 index's fields.
///
/// One `body` field holds a chunk's title, heading and text: a query term
/// is one posting list to score, not three (the title and heading still
/// count, as words of the chunk). What a hit needs back (its chunk, source
/// and page) is read from fast fields, columns addressed by document
/// number, rather than by decompressing a document-store block per hit.
/// The ids are also indexed as strings, for deletes and source filters.
#[derive(Clone, Copy)]
pub(super) struct Fields {
    pub(super) chunk_id: Field,
    pub(super) source_id: Field,
    body: Field,
    /// [`FAST_FIELDS`], in that order.
    fast: [Field; 5],
}

/// Fast-field names: the two halves of each id, and the page plus one
/// (0 = no page).
const CHUNK_HI: &str = "chunk_hi";
const CHUNK_LO: &str = "chunk_lo";
const SOURCE_HI: &str = "source_hi";
const SOURCE_LO: &str = "source_lo";
const PAGE_PLUS_ONE: &str = "page_plus_one";
const FAST_FIELDS: [&str; 5] = [CHUNK_HI, CHUNK_LO, SOURCE_HI, SOURCE_LO, PAGE_PLUS_ONE];

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("en_stem")
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        chunk_id: b.add_text_field("chunk_id", STRING),
        source_id: b.add_text_field("source_id", STRING),
        body: b.add_text_field("body", words),
        fast: FAST_FIELDS.map(|name| b.add_u64_field(name, FAST)),
    };
    (b.build(), fields)
}

/// A UUID as two `u64` halves (high, low), and back.
fn split_uuid(id: Uuid) -> (u64, u64) {
    let v = id.as_u128();
    ((v >> 64) as u64, v as u64)
}

fn join_uuid(hi: u64, lo: u64) -> Uuid {
    Uuid::from_u128((u128::from(hi) << 64) | u128::from(lo))
}

/// A new, empty Tantivy index in `dir` (which must exist and be empty).
pub(super) fn create(dir: &Path) -> Result<(Index, Fields), IndexError> {
    let (schema, fields) = schema();
    let index = Index::create_in_dir(dir, schema)?;
    Ok((index, fields))
}

/// The Tantivy index in `dir` and its last commit's payload (the
/// generation it was committed at). `Err` says why it cannot be used.
pub(super) fn open(dir: &Path) -> Result<(Index, Fields, Option<String>), String> {
    let index = Index::open_in_dir(dir).map_err(|e| format!("bm25: {e}"))?;
    let (expected_schema, fields) = schema();
    if index.schema() != expected_schema {
        return Err("bm25: unexpected schema".into());
    }
    let payload = index
        .load_metas()
        .map_err(|e| format!("bm25: {e}"))?
        .payload;
    Ok((index, fields, payload))
}

/// The index's only writer (one indexing thread).
pub(super) fn writer(index: &Index) -> Result<IndexWriter, IndexError> {
    Ok(index.writer_with_num_threads(1, WRITER_MEMORY)?)
}

impl Fields {
    /// The document written for `item`.
    pub(super) fn document(&self, item: &IndexItem) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_text(self.chunk_id, item.chunk_id.to_string());
        doc.add_text(self.source_id, item.source_id.to_string());
        // Three values of one field: a phrase never spans them.
        for part in [&item.title, &item.heading, &item.text] {
            if !part.is_empty() {
                doc.add_text(self.body, part);
            }
        }
        let (hi, lo) = split_uuid(item.chunk_id);
        let (shi, slo) = split_uuid(item.source_id);
        let page = item.page.map_or(0, |p| p.saturating_add(1));
        for (field, value) in self.fast.into_iter().zip([hi, lo, shi, slo, page]) {
            doc.add_u64(field, value);
        }
        doc
    }
}

/// The read side of the BM25 index: its reader (reloaded by the owner after
/// each commit), fields and analyzers.
pub(super) struct Bm25 {
    pub(super) reader: IndexReader,
    pub(super) fields: Fields,
    /// The documents' analyzer (`en_stem`), and the same without stop words.
    full_analyzer: TextAnalyzer,
    query_analyzer: TextAnalyzer,
}

impl Bm25 {
    pub(super) fn new(index: &Index, fields: Fields) -> Result<Bm25, IndexError> {
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Bm25 {
            full_analyzer: index.tokenizer_for_field(fields.body)?,
            query_analyzer: query_analyzer(),
            reader,
            fields,
        })
    }

    /// See [`super::query::query_terms`].
    fn query_terms(&self, query: &str) -> Vec<String> {
        query_terms(&self.query_analyzer, &self.full_analyzer, query)
    }

    /// See [`crate::OrgSearcher::term_stats`].
    pub(super) fn term_stats(&self, query: &str) -> TermStats {
        let searcher = self.reader.searcher();
        let field = self.fields.body;
        let terms = self
            .query_terms(query)
            .into_iter()
            .map(|t| {
                let df = searcher
                    .doc_freq(&Term::from_field_text(field, &t))
                    .unwrap_or(0);
                (t, df)
            })
            .collect();
        TermStats {
            num_docs: searcher.num_docs(),
            terms,
        }
    }

    /// See [`crate::OrgSearcher::search_bm25`]; on `searcher`, so that a
    /// hybrid search reads one snapshot.
    pub(super) fn search(
        &self,
        searcher: &Searcher,
        query: &str,
        k: usize,
        filter: Option<&HashSet<Uuid>>,
    ) -> Result<Vec<Hit>, IndexError> {
        if k == 0 || filter.is_some_and(HashSet::is_empty) {
            return Ok(Vec::new());
        }
        let f = self.fields;
        let terms = self.query_terms(query);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let words = common_terms_query(searcher, f.body, &terms);
        let query: Box<dyn Query> = match filter {
            None => words,
            Some(sources) => {
                let set = TermSetQuery::new(
                    sources
                        .iter()
                        .map(|s| Term::from_field_text(f.source_id, &s.to_string())),
                );
                Box::new(BooleanQuery::new(vec![
                    (Occur::Must, words),
                    (
                        Occur::Must,
                        Box::new(ConstScoreQuery::new(Box::new(set), 0.0)),
                    ),
                ]))
            }
        };
        let top = searcher.search(&query, &TopDocs::with_limit(k).order_by_score())?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            if let Some(hit) = read_hit(searcher, addr, score)? {
                hits.push(hit);
            }
        }
        Ok(hits)
    }
}

/// The chunk, source and page of a BM25 hit, from its segment's fast
/// fields. `None` for a document without them (not written by this code).
fn read_hit(searcher: &Searcher, addr: DocAddress, score: f32) -> Result<Option<Hit>, IndexError> {
    let fast = searcher.segment_reader(addr.segment_ord).fast_fields();
    let mut values = [0u64; 5];
    for (value, name) in values.iter_mut().zip(FAST_FIELDS) {
        match fast.u64(name)?.first(addr.doc_id) {
            Some(v) => *value = v,
            None => return Ok(None),
        }
    }
    let [hi, lo, shi, slo, page] = values;
    Ok(Some(Hit {
        chunk_id: join_uuid(hi, lo),
        source_id: join_uuid(shi, slo),
        page: page.checked_sub(1),
        score,
        dense: None,
        lexical: Some(score),
    }))
}
