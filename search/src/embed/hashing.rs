//! Feature-hashing embedder: the fallback that needs no model and no network.

use async_trait::async_trait;

use super::{EmbedError, Embedder, l2_normalize};

/// Deterministic bag-of-n-grams embedder.
///
/// Lower-cases the text, splits it into words (maximal runs of alphanumeric
/// characters), and hashes every word unigram and adjacent-word bigram into
/// `dim` buckets with a hash-derived sign (signed feature hashing, so
/// collisions cancel on average instead of piling up). A feature seen `tf`
/// times contributes `1 + ln(tf)` (sublinear tf). The result is
/// L2-normalised. Text without any word maps to a fixed unit vector.
///
/// The hash (FNV-1a, then a SplitMix64 finaliser) is fixed, so the same
/// text gives the same vector on every machine and in every version that
/// keeps the id `hashing:<dim>`. It only captures word overlap, not meaning:
/// it is a fallback, far below a neural model in quality.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dim: usize,
}

impl Default for HashingEmbedder {
    fn default() -> Self {
        Self::new(384)
    }
}

impl HashingEmbedder {
    /// An embedder of `dim` dimensions (384 matches MiniLM's shape; `dim` is
    /// clamped to at least 1).
    pub fn new(dim: usize) -> Self {
        Self { dim: dim.max(1) }
    }

    /// Embeds one text, synchronously (microseconds; no need for a thread).
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let mut features: Vec<u64> = Vec::with_capacity(words.len() * 2);
        for (i, w) in words.iter().enumerate() {
            features.push(hash_feature(b'u', w.as_bytes(), &[]));
            if let Some(next) = words.get(i + 1) {
                features.push(hash_feature(b'b', w.as_bytes(), next.as_bytes()));
            }
        }
        if features.is_empty() {
            features.push(hash_feature(b'e', b"", &[]));
        }
        features.sort_unstable();
        let mut v = vec![0f32; self.dim];
        let mut i = 0;
        while i < features.len() {
            let h = features[i];
            let mut tf = 1usize;
            while i + tf < features.len() && features[i + tf] == h {
                tf += 1;
            }
            i += tf;
            let weight = 1.0 + (tf as f32).ln();
            let bucket = (h % self.dim as u64) as usize;
            let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
            v[bucket] += sign * weight;
        }
        if !l2_normalize(&mut v) {
            // Every feature cancelled out (possible with signed hashing):
            // fall back to the fixed "no words" direction.
            v.iter_mut().for_each(|x| *x = 0.0);
            let h = hash_feature(b'e', b"", &[]);
            v[(h % self.dim as u64) as usize] = 1.0;
        }
        v
    }
}

#[async_trait]
impl Embedder for HashingEmbedder {
    fn id(&self) -> String {
        format!("hashing:{}", self.dim)
    }

    fn dim(&self) -> usize {
        self.dim
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

/// FNV-1a over `kind`, `a`, a separator and `b`, finalised with SplitMix64.
fn hash_feature(kind: u8, a: &[u8], b: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for byte in std::iter::once(kind)
        .chain(a.iter().copied())
        .chain(std::iter::once(0xff))
        .chain(b.iter().copied())
    {
        h ^= u64::from(byte);
        h = h.wrapping_mul(PRIME);
    }
    // SplitMix64 finaliser: spreads FNV's weak low bits over the word.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::cosine;

    #[test]
    fn deterministic_normalised_and_sensible() {
        let e = HashingEmbedder::default();
        let a = e.embed_one("The Wing lift at high Mach numbers");
        let a2 = e.embed_one("the wing lift at high mach numbers!");
        assert_eq!(a, a2, "case and punctuation do not matter");
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        let near = e.embed_one("lift of a wing at high mach number");
        let far = e.embed_one("photosynthesis in green plants");
        assert!(cosine(&a, &near) > cosine(&a, &far) + 0.2);
        // Fixed hash: a known value guards against accidental changes, which
        // would silently invalidate every index built with `hashing:384`.
        let v = e.embed_one("hello world");
        let nz: Vec<(usize, f32)> = v
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, x)| *x != 0.0)
            .collect();
        let s = 1.0 / 3f32.sqrt();
        assert_eq!(nz.len(), 3, "{nz:?}");
        for ((i, x), (ei, ex)) in nz.into_iter().zip([(221, -s), (328, -s), (352, s)]) {
            assert_eq!(i, ei);
            assert!((x - ex).abs() < 1e-6);
        }
        assert_eq!(e.id(), "hashing:384");
    }

    #[test]
    fn empty_text_is_a_unit_vector() {
        let e = HashingEmbedder::new(16);
        for t in ["", "   ", "?!"] {
            let v = e.embed_one(t);
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-6, "{t:?}");
        }
    }
}
