//! OrgIndex: add / search / delete, scopes, persistence, embedder changes,
//! tombstone rebuilds, hostile queries and fusion.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;

use bwenge_search::{HashingEmbedder, Hit, IndexItem, OpenState, OrgIndex, ReindexReason};
use uuid::Uuid;

const DIM: usize = 384;
const EMB: &str = "hashing:384";

fn emb(text: &str) -> Vec<f32> {
    HashingEmbedder::new(DIM).embed_one(text)
}

/// Deterministic ids, so failures are reproducible.
fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0000 | n)
}

fn item(chunk: u128, source: u128, title: &str, text: &str, page: Option<u64>) -> IndexItem {
    IndexItem {
        chunk_id: id(chunk),
        source_id: id(1_000_000 + source),
        title: title.to_owned(),
        heading: String::new(),
        text: text.to_owned(),
        page,
        vector: jitter(emb(&format!("{title} {text}")), chunk),
    }
}

/// Adds a small fixed per-chunk perturbation (±0.001 a component) so that no
/// two chunks tie exactly in similarity: rankings are then unique and can be
/// compared across graphs.
fn jitter(mut v: Vec<f32>, seed: u128) -> Vec<f32> {
    let mut x = (seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for c in &mut v {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *c += ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.002;
    }
    v
}

const TOPICS: [&str; 6] = [
    "photosynthesis chlorophyll plants sunlight glucose leaves",
    "fractions numerator denominator division arithmetic",
    "volcano magma eruption lava tectonic plates",
    "french revolution bastille monarchy republic",
    "electric circuits voltage current resistance ohm",
    "wing lift airflow pressure supersonic aircraft",
];

const FILLER: [&str; 16] = [
    "river", "mountain", "yellow", "quickly", "table", "music", "orange", "window", "garden",
    "winter", "silver", "ocean", "pencil", "camera", "ladder", "rocket",
];

/// `per_source` chunks for each of `sources` sources. A chunk's text is its
/// topic's words, each repeated 1–3 times, three filler words and a
/// source-specific word, chosen by a fixed pseudo-random sequence: varied
/// enough that no two chunks tie in similarity to a query.
fn corpus(sources: u128, per_source: u128) -> Vec<IndexItem> {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut out = Vec::new();
    for s in 0..sources {
        for c in 0..per_source {
            let n = s * per_source + c;
            let topic = TOPICS[(n % TOPICS.len() as u128) as usize];
            let mut words = Vec::new();
            for w in topic.split(' ') {
                for _ in 0..=(next() % 3) {
                    words.push(w.to_owned());
                }
            }
            for _ in 0..3 {
                words.push(FILLER[(next() % 16) as usize].to_owned());
            }
            words.push(format!("source{s}"));
            out.push(item(
                n,
                s,
                &format!("Lesson {n}"),
                &words.join(" "),
                Some(c as u64),
            ));
        }
    }
    out
}

fn open(dir: &Path) -> (OrgIndex, OpenState) {
    OrgIndex::open_or_create(dir, EMB, DIM).unwrap()
}

fn ids(hits: &[Hit]) -> Vec<Uuid> {
    hits.iter().map(|h| h.chunk_id).collect()
}

#[test]
fn add_search_and_delete_source() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, state) = open(dir.path());
    assert_eq!(state, OpenState::Reindex(ReindexReason::Missing));
    assert!(index.is_empty());
    index.add(&corpus(3, 12)).unwrap();
    assert_eq!(index.len(), 36);

    let q = "how do plants use sunlight";
    let bm = index.search_bm25(q, 5, None).unwrap();
    assert_eq!(bm.len(), 5);
    // Stemming: "plants" matches "plants", "use" nothing; every hit is a photosynthesis chunk.
    for h in &bm {
        assert_eq!(h.chunk_id.as_u128() as u32 % 6, 0, "{h:?}");
        assert!(h.page.is_some());
    }
    let v = index
        .search_vector(&emb("photosynthesis chlorophyll plants sunlight"), 5, None)
        .unwrap();
    assert_eq!(v.len(), 5);
    assert!(v.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(v[0].score > 0.3 && v[0].score <= 1.0001);
    let hy = index.search_hybrid(q, &emb(q), 5, None).unwrap();
    assert_eq!(hy.len(), 5);

    // Delete source 0: gone from BM25, vectors and hybrid at once.
    let gone = id(1_000_000);
    assert_eq!(index.delete_source(gone).unwrap(), 12);
    assert_eq!(index.len(), 24);
    let searcher = index.searcher();
    for hits in [
        searcher.search_bm25(q, 50, None).unwrap(),
        searcher.search_vector(&emb(q), 50, None).unwrap(),
        searcher.search_hybrid(q, &emb(q), 50, None).unwrap(),
        searcher.search_bm25("source0", 50, None).unwrap(),
    ] {
        assert!(
            hits.iter().all(|h| h.source_id != gone),
            "deleted source still found"
        );
    }
    assert_eq!(searcher.search_vector(&emb(q), 50, None).unwrap().len(), 24);
    assert!(searcher.search_bm25("source0", 5, None).unwrap().is_empty());
    // Deleting an unknown source is a no-op.
    assert_eq!(index.delete_source(id(42)).unwrap(), 0);
}

#[test]
fn re_adding_a_chunk_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    index
        .add(&[item(1, 1, "Volcanoes", "magma and lava", Some(1))])
        .unwrap();
    index
        .add(&[item(1, 1, "Circuits", "voltage and current", Some(2))])
        .unwrap();
    assert_eq!(index.len(), 1);
    assert!(index.search_bm25("magma", 10, None).unwrap().is_empty());
    let hits = index.search_bm25("voltage", 10, None).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].page, Some(2));
    let v = index
        .search_vector(&emb("Volcanoes magma and lava"), 10, None)
        .unwrap();
    assert_eq!(v.len(), 1);
    assert!(v[0].score < 0.5, "old vector still indexed");
    // Duplicates within one batch: the last one wins.
    index
        .add(&[
            item(2, 1, "A", "first version", None),
            item(2, 1, "B", "second version", None),
        ])
        .unwrap();
    assert_eq!(index.len(), 2);
    assert_eq!(index.search_bm25("version", 10, None).unwrap().len(), 1);
}

#[test]
fn bad_vectors_are_rejected_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    let mut short = item(1, 1, "t", "x", None);
    short.vector.truncate(10);
    let ok = item(2, 1, "t", "y", None);
    assert!(index.add(&[ok.clone(), short]).is_err());
    let mut zero = item(3, 1, "t", "z", None);
    zero.vector = vec![0.0; DIM];
    assert!(index.add(&[ok.clone(), zero]).is_err());
    let mut nan = item(4, 1, "t", "z", None);
    nan.vector[0] = f32::NAN;
    assert!(index.add(&[nan]).is_err());
    assert_eq!(index.len(), 0);
    assert!(index.search_bm25("y", 5, None).unwrap().is_empty());
    assert!(index.search_vector(&[1.0; 3], 5, None).is_err());
    assert!(index.search_vector(&vec![0.0; DIM], 5, None).is_err());
    index.add(&[ok]).unwrap();
    assert_eq!(index.len(), 1);
}

#[test]
fn filter_by_source_set_still_returns_k() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    index.add(&corpus(10, 30)).unwrap();
    let scope: HashSet<Uuid> = [id(1_000_003), id(1_000_007)].into_iter().collect();
    let q = "voltage current in electric circuits";
    for hits in [
        index.search_bm25(q, 10, Some(&scope)).unwrap(),
        index.search_vector(&emb(q), 10, Some(&scope)).unwrap(),
        index.search_hybrid(q, &emb(q), 10, Some(&scope)).unwrap(),
    ] {
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| scope.contains(&h.source_id)));
    }
    // The BM25 matches in scope are the circuit chunks of those two sources: exactly 10.
    assert_eq!(index.search_bm25(q, 100, Some(&scope)).unwrap().len(), 10);
    // All 60 chunks of the scope have a vector.
    assert_eq!(
        index
            .search_vector(&emb(q), 100, Some(&scope))
            .unwrap()
            .len(),
        60
    );
    // A scope smaller than k gives everything it has; an empty scope nothing.
    let one: HashSet<Uuid> = [id(1_000_005)].into_iter().collect();
    assert_eq!(
        index.search_vector(&emb(q), 50, Some(&one)).unwrap().len(),
        30
    );
    let none = HashSet::new();
    assert!(
        index
            .search_hybrid(q, &emb(q), 10, Some(&none))
            .unwrap()
            .is_empty()
    );
    let unknown: HashSet<Uuid> = [id(77)].into_iter().collect();
    assert!(
        index
            .search_hybrid(q, &emb(q), 10, Some(&unknown))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn persist_and_reopen_give_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let queries = [
        "lava eruption",
        "the bastille and the monarchy",
        "ohm's law resistance",
        "glucose",
    ];
    let before: Vec<_> = {
        let (mut index, _) = open(dir.path());
        index.add(&corpus(4, 25)).unwrap();
        index.delete_source(id(1_000_001)).unwrap();
        index.persist().unwrap();
        queries
            .iter()
            .map(|q| {
                (
                    ids(&index.search_bm25(q, 10, None).unwrap()),
                    ids(&index.search_vector(&emb(q), 10, None).unwrap()),
                    index.search_bm25(q, 10, None).unwrap(),
                )
            })
            .collect()
    };
    let (mut index, state) = open(dir.path());
    assert_eq!(state, OpenState::Loaded { chunks: 75 });
    assert_eq!(index.len(), 75);
    // Loaded vectors are searched exactly until linked, then through the
    // graph (exact too at this size); mixed states in between.
    assert_eq!(index.unlinked(), 75);
    let mut remaining = vec![75, 45, 15, 0];
    remaining.reverse();
    loop {
        for (q, (bm, vec, bm_hits)) in queries.iter().zip(&before) {
            let again = index.search_bm25(q, 10, None).unwrap();
            assert_eq!(&ids(&again), bm, "{q}");
            assert_eq!(&again, bm_hits, "scores and pages survive");
            assert_eq!(
                &ids(&index.search_vector(&emb(q), 10, None).unwrap()),
                vec,
                "{q}"
            );
        }
        let expect = remaining.pop().unwrap();
        assert_eq!(index.unlinked(), expect);
        if expect == 0 {
            break;
        }
        index.link_pending(30);
    }
}

#[test]
fn unpersisted_changes_or_damage_ask_for_a_reindex() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut index, _) = open(dir.path());
        index.add(&corpus(1, 5)).unwrap();
        index.persist().unwrap();
        index.add(&corpus(2, 5)).unwrap(); // committed to BM25, vectors not persisted
    }
    let (mut index, state) = open(dir.path());
    assert!(
        matches!(state, OpenState::Reindex(ReindexReason::Corrupt(_))),
        "{state:?}"
    );
    assert!(index.is_empty() && index.search_bm25("lesson", 10, None).unwrap().is_empty());
    index.add(&corpus(1, 5)).unwrap();
    index.persist().unwrap();
    drop(index);
    std::fs::write(dir.path().join("vectors.bin"), b"garbage").unwrap();
    let (_, state) = open(dir.path());
    assert!(
        matches!(state, OpenState::Reindex(ReindexReason::Corrupt(_))),
        "{state:?}"
    );
    std::fs::write(dir.path().join("manifest.json"), b"{").unwrap();
    let (_, state) = open(dir.path());
    assert!(
        matches!(state, OpenState::Reindex(ReindexReason::Corrupt(_))),
        "{state:?}"
    );
}

#[test]
fn another_embedder_asks_for_a_reindex() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut index, _) = open(dir.path());
        index.add(&corpus(1, 5)).unwrap();
        index.persist().unwrap();
    }
    let (index, state) =
        OrgIndex::open_or_create(dir.path(), "local:all-MiniLM-L6-v2", DIM).unwrap();
    assert_eq!(
        state,
        OpenState::Reindex(ReindexReason::EmbedderChanged {
            previous: EMB.into(),
            previous_dim: DIM
        })
    );
    assert!(index.is_empty());
    assert_eq!(index.embedder_id(), "local:all-MiniLM-L6-v2");
    drop(index);
    // Same id, other dimension: also a change.
    let (_, state) = OrgIndex::open_or_create(dir.path(), "local:all-MiniLM-L6-v2", 768).unwrap();
    assert!(matches!(
        state,
        OpenState::Reindex(ReindexReason::EmbedderChanged {
            previous_dim: DIM,
            ..
        })
    ));
    // The new index was persisted empty: opening it again loads it.
    let (_, state) = OrgIndex::open_or_create(dir.path(), "local:all-MiniLM-L6-v2", 768).unwrap();
    assert_eq!(state, OpenState::Loaded { chunks: 0 });
}

#[test]
fn a_second_writer_is_refused_while_the_first_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    // Opening holds no writer: an index that is only searched costs none.
    assert!(!index.writer_open());
    index.add(&corpus(1, 5)).unwrap();
    index.persist().unwrap();
    assert!(index.writer_open());
    // Another copy may read, but not write while the first holds the lock.
    let (mut other, _) = OrgIndex::open_or_create(dir.path(), EMB, DIM).unwrap();
    assert_eq!(other.len(), 5);
    assert!(other.delete_source(id(1_000_000)).is_err());
    index.close_writer();
    assert!(!index.writer_open());
    assert_eq!(
        index.searcher().len(),
        5,
        "closing the writer loses nothing"
    );
}

#[test]
fn tombstone_rebuild_keeps_results() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    index.add(&corpus(10, 20)).unwrap();
    assert!(!index.needs_rebuild());
    index.delete_source(id(1_000_000)).unwrap();
    assert!(
        !index.needs_rebuild(),
        "10% dead is under the 20% threshold"
    );
    index.delete_source(id(1_000_001)).unwrap();
    index.delete_source(id(1_000_002)).unwrap();
    assert_eq!(index.tombstones(), 60);
    assert!(index.needs_rebuild());
    let queries = [
        "magma",
        "division of fractions",
        "aircraft wing lift",
        "source5 lesson",
    ];
    let scope: HashSet<Uuid> = [id(1_000_004), id(1_000_009)].into_iter().collect();
    let snapshot = |index: &OrgIndex| -> Vec<Vec<Uuid>> {
        queries
            .iter()
            .flat_map(|q| {
                [
                    ids(&index.search_vector(&emb(q), 10, None).unwrap()),
                    ids(&index.search_hybrid(q, &emb(q), 10, None).unwrap()),
                    ids(&index.search_hybrid(q, &emb(q), 10, Some(&scope)).unwrap()),
                ]
            })
            .collect()
    };
    let before = snapshot(&index);
    // What an exact scan says (the graph must agree at this size).
    let s = index.searcher();
    for q in queries {
        assert_eq!(
            ids(&s.search_vector(&emb(q), 10, None).unwrap()),
            ids(&s.search_vector_exact(&emb(q), 10).unwrap())
        );
    }
    index.rebuild().unwrap();
    assert_eq!(index.tombstones(), 0);
    assert!(!index.needs_rebuild());
    assert_eq!(index.len(), 140);
    assert_eq!(snapshot(&index), before);
    // And it persists and reloads as usual.
    index.persist().unwrap();
    drop(index);
    drop(s);
    let (mut index, state) = open(dir.path());
    assert_eq!(state, OpenState::Loaded { chunks: 140 });
    assert_eq!(snapshot(&index), before);
    assert_eq!(index.link_pending(1000), 0);
    assert_eq!(snapshot(&index), before);
}

#[test]
fn hostile_queries_never_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    index.add(&corpus(2, 10)).unwrap();
    let long = "lava ".repeat(2_000); // 10k chars
    let noise: String = (0..10_000)
        .map(|i| char::from_u32(0x20 + (i * 7919) % 0x2fff).unwrap_or('x'))
        .collect();
    let queries = [
        "\"",
        "\"unbalanced phrase",
        "AND OR",
        "AND",
        "NOT",
        "title:",
        "title:lava",
        "source_id:*",
        "text:(lava OR",
        "lava^10",
        "*",
        "?",
        "[a TO z]",
        "{}",
        "a:b:c:",
        "+-!~",
        "\\",
        "",
        "   ",
        "Фотосинтез и хлорофилл",
        "光合作用",
        "🌋 lava 🔥",
        "e\u{301}ruption",
        "\u{0}\u{1}\u{7f}",
        long.as_str(),
        noise.as_str(),
    ];
    let scope: HashSet<Uuid> = [id(1_000_001)].into_iter().collect();
    for q in queries {
        let v = emb(q);
        index
            .search_bm25(q, 10, None)
            .unwrap_or_else(|e| panic!("{q:?}: {e}"));
        index.search_bm25(q, 10, Some(&scope)).unwrap();
        index.search_hybrid(q, &v, 10, None).unwrap();
        index.search_hybrid(q, &v, 10, Some(&scope)).unwrap();
    }
    // Query syntax is plain text: "title:lava" finds lava anywhere.
    assert!(
        !index
            .search_bm25("title:lava", 10, None)
            .unwrap()
            .is_empty()
    );
    assert!(!index.search_bm25(&long, 10, None).unwrap().is_empty());
}

#[test]
fn hybrid_prefers_a_chunk_ranked_well_in_both_lists() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    let q = "alpha beta";
    let qv = emb(q);
    let mut items = vec![
        // Good in both lists (2nd in each).
        IndexItem {
            vector: emb("alpha beta gamma"),
            ..item(1, 1, "", "alpha beta gamma", None)
        },
        // Best BM25 (alpha, beta twice each), worst vector.
        IndexItem {
            vector: qv.iter().map(|x| -x).collect(),
            ..item(2, 1, "", "alpha beta alpha beta", None)
        },
        // Best vector, no word in common.
        IndexItem {
            vector: qv.clone(),
            ..item(3, 1, "", "nothing in common", None)
        },
    ];
    for n in 0..20 {
        items.push(item(
            100 + n,
            2,
            "",
            &format!("filler text number {n} about other things"),
            None,
        ));
    }
    index.add(&items).unwrap();
    let bm = index.search_bm25(q, 10, None).unwrap();
    assert_eq!(ids(&bm)[..2], [id(2), id(1)]);
    let v = index.search_vector(&qv, 30, None).unwrap();
    assert_eq!(ids(&v)[..2], [id(3), id(1)]);
    assert_eq!(v.last().unwrap().chunk_id, id(2));
    let hy = index.search_hybrid(q, &qv, 5, None).unwrap();
    assert_eq!(hy[0].chunk_id, id(1), "{hy:?}");
    assert!((hy[0].score - 2.0 / 62.0).abs() < 1e-6);
    assert_eq!(hy.len(), 5);
}

#[test]
fn searchers_are_send_sync_and_see_later_changes() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    let searcher = index.searcher();
    assert_send_sync(&searcher);
    let reader = std::thread::spawn({
        let s = searcher.clone();
        move || {
            for _ in 0..200 {
                s.search_hybrid("lava", &emb("lava"), 5, None).unwrap();
            }
        }
    });
    for s in 0..5 {
        index.add(&corpus(5, 20)[s * 20..(s + 1) * 20]).unwrap();
    }
    reader.join().unwrap();
    assert_eq!(searcher.len(), 100);
    assert_eq!(
        searcher
            .search_vector(&emb("lava"), 100, None)
            .unwrap()
            .len(),
        100
    );
}

#[test]
fn stop_words_are_dropped_from_queries_unless_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    index
        .add(&[
            item(1, 1, "", "the lava of the volcano", None),
            item(2, 1, "", "to be or not to be", None),
            item(3, 1, "", "magma chamber", None),
        ])
        .unwrap();
    // "of the" add nothing: the same hits and scores as "lava".
    assert_eq!(
        index.search_bm25("the lava of", 10, None).unwrap(),
        index.search_bm25("lava", 10, None).unwrap()
    );
    // Only stop words: they are searched after all.
    let hits = index.search_bm25("to be or not to be", 10, None).unwrap();
    assert_eq!(hits[0].chunk_id, id(2));
}

#[test]
fn filtered_graph_search_returns_k_in_scope() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    index.set_exact_scan_max(0); // always the filtered graph search
    index.add(&corpus(20, 50)).unwrap();
    let s = index.searcher();
    for (sources, q) in [
        (1u128, "magma eruption"),
        (3, "glucose in leaves"),
        (10, "ohm resistance"),
    ] {
        let scope: HashSet<Uuid> = (0..sources).map(|i| id(1_000_000 + i * 2)).collect();
        let hits = s.search_vector(&emb(q), 10, Some(&scope)).unwrap();
        assert_eq!(hits.len(), 10, "{sources} sources");
        assert!(hits.iter().all(|h| scope.contains(&h.source_id)));
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        // As good as the exact answer within the scope, at this size.
        index.set_exact_scan_max(usize::MAX);
        let exact = index.search_vector(&emb(q), 10, Some(&scope)).unwrap();
        index.set_exact_scan_max(0);
        assert_eq!(ids(&hits), ids(&exact), "{sources} sources");
        // Deleted chunks never come back through the graph.
        assert_eq!(
            s.search_hybrid(q, &emb(q), 10, Some(&scope)).unwrap().len(),
            10
        );
    }
    index.delete_source(id(1_000_000)).unwrap();
    let scope: HashSet<Uuid> = [id(1_000_000), id(1_000_002)].into_iter().collect();
    let hits = s.search_vector(&emb("magma"), 100, Some(&scope)).unwrap();
    assert_eq!(hits.len(), 50);
    assert!(hits.iter().all(|h| h.source_id == id(1_000_002)));
}

/// In a library large enough for some words to be common (over 2% of the
/// chunks and over 2,000 of them), only chunks holding a rarer word are
/// candidates; every word still scores; a word no chunk holds changes
/// nothing; a query of common words alone still finds chunks.
#[test]
fn common_words_only_add_to_chunks_that_match_a_rarer_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = open(dir.path());
    let mut items: Vec<IndexItem> = (0..2_500u128)
        .map(|n| {
            let filler = FILLER[(n % 16) as usize];
            item(
                n,
                n / 100,
                "Notes",
                &format!("flow pressure {filler}"),
                Some(1),
            )
        })
        .collect();
    // Three chunks hold the rare word; one of them also the common ones.
    items.push(item(
        9_001,
        90,
        "Shock",
        "aeroelastic flutter flow pressure",
        Some(7),
    ));
    items.push(item(
        9_002,
        90,
        "Shock",
        "aeroelastic flutter of panels",
        Some(8),
    ));
    items.push(item(9_003, 90, "Shock", "aeroelastic divergence", Some(9)));
    index.add(&items).unwrap();

    let hits = index
        .search_bm25("aeroelastic flow pressure", 10, None)
        .unwrap();
    let ids: Vec<Uuid> = hits.iter().map(|h| h.chunk_id).collect();
    assert_eq!(
        ids.len(),
        3,
        "only the chunks holding the rare word: {ids:?}"
    );
    let pos = |n: u128| ids.iter().position(|i| *i == id(n)).unwrap();
    // 9_001 and 9_002 differ only in 9_001 holding the common words.
    assert!(
        pos(9_001) < pos(9_002) && hits[pos(9_001)].score > hits[pos(9_002)].score,
        "the common words still add to the score: {hits:?}"
    );
    assert_eq!(hits[pos(9_001)].page, Some(7));

    // A word that is nowhere does not become the required one.
    let hits = index
        .search_bm25("zyzzyvaword flow pressure", 10, None)
        .unwrap();
    assert_eq!(hits.len(), 10, "common words alone still find chunks");

    // Below the size where words become common, every word counts alike.
    let small = tempfile::tempdir().unwrap();
    let (mut small_index, _) = open(small.path());
    small_index.add(&items[..50]).unwrap();
    small_index.add(&items[2_500..]).unwrap();
    let hits = small_index
        .search_bm25("aeroelastic flow", 100, None)
        .unwrap();
    assert_eq!(hits.len(), 53, "a plain disjunction in a small library");
}
