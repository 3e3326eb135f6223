//! Reciprocal-rank fusion.

use std::collections::HashMap;
use std::hash::Hash;

/// The `k` constant of reciprocal-rank fusion (Cormack et al., 2009).
pub const RRF_K: f32 = 60.0;

/// Fuses ranked lists: an item's score is `Σ 1 / (RRF_K + rank)` over the
/// lists it appears in (rank from 1). Returns the items best first; ties keep
/// the order in which items were first seen (earlier list, higher rank).
pub fn reciprocal_rank_fusion<T: Clone + Eq + Hash>(lists: &[Vec<T>]) -> Vec<(T, f32)> {
    let mut scores: HashMap<T, (f32, usize)> = HashMap::new();
    let mut seen = 0usize;
    for list in lists {
        for (rank, item) in list.iter().enumerate() {
            let add = 1.0 / (RRF_K + rank as f32 + 1.0);
            scores
                .entry(item.clone())
                .and_modify(|e| e.0 += add)
                .or_insert_with(|| {
                    seen += 1;
                    (add, seen)
                });
        }
    }
    let mut out: Vec<(T, f32, usize)> = scores.into_iter().map(|(t, (s, o))| (t, s, o)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    out.into_iter().map(|(t, s, _)| (t, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_lists_beat_one_list() {
        // "b" is 2nd in both lists; "a" is 1st in one only; "x" is 1st in the other only.
        let fused = reciprocal_rank_fusion(&[vec!["a", "b", "c"], vec!["x", "b", "y"]]);
        assert_eq!(fused[0].0, "b");
        assert!((fused[0].1 - 2.0 / 62.0).abs() < 1e-6);
        assert_eq!(
            fused[1].0, "a",
            "tie between a and x keeps first-seen order"
        );
        assert_eq!(fused[2].0, "x");
        assert_eq!(fused.len(), 5);
        // Ranked 3rd in both still beats 1st in one only: 2/63 > 1/61.
        let fused = reciprocal_rank_fusion(&[vec!["a", "p", "d"], vec!["x", "q", "d"]]);
        assert_eq!(fused[0].0, "d");
    }

    #[test]
    fn empty_lists() {
        let fused = reciprocal_rank_fusion::<u32>(&[vec![], vec![]]);
        assert!(fused.is_empty());
    }
}
