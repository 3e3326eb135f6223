//! An embedder that remembers the vectors of the last questions it embedded.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;

use super::{EmbedError, Embedder};

/// Calls of at most this many texts are a question's (a document's chunks
/// come by the dozen): their vectors are remembered.
const QUESTION_CALL: usize = 4;

/// Texts longer than this are not remembered (no question is that long).
const MAX_TEXT: usize = 4096;

/// Wraps an embedder and remembers the vectors of the last `capacity`
/// texts embedded in small calls (questions), by their trimmed text. A text
/// asked for again while remembered costs a look-up instead of a pass of
/// the model: a question declined as not covered is embedded for its
/// search and again for the teacher's gaps report, moments later.
///
/// The vectors are the inner embedder's, unchanged, so remembering changes
/// no result; [`Embedder::id`] is the inner one's.
pub struct Remembering {
    inner: Arc<dyn Embedder>,
    capacity: usize,
    recent: parking_lot::Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    vectors: HashMap<String, Vec<f32>>,
    /// Oldest first.
    order: VecDeque<String>,
}

impl Remembering {
    pub fn new(inner: Arc<dyn Embedder>, capacity: usize) -> Self {
        Self {
            inner,
            capacity,
            recent: parking_lot::Mutex::default(),
        }
    }

    /// How many texts are remembered now.
    pub fn remembered(&self) -> usize {
        self.recent.lock().order.len()
    }
}

#[async_trait]
impl Embedder for Remembering {
    fn id(&self) -> String {
        self.inner.id()
    }

    fn dim(&self) -> usize {
        self.inner.dim()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out: Vec<Option<Vec<f32>>> = {
            let recent = self.recent.lock();
            texts
                .iter()
                .map(|t| recent.vectors.get(t.trim()).cloned())
                .collect()
        };
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let asked: Vec<String> = missing.iter().map(|&i| texts[i].clone()).collect();
            let vectors = self.inner.embed(&asked).await?;
            let remember = texts.len() <= QUESTION_CALL && self.capacity > 0;
            let mut recent = self.recent.lock();
            for (&i, v) in missing.iter().zip(vectors) {
                let key = texts[i].trim();
                if remember && key.len() <= MAX_TEXT && !recent.vectors.contains_key(key) {
                    recent.vectors.insert(key.to_owned(), v.clone());
                    recent.order.push_back(key.to_owned());
                    while recent.order.len() > self.capacity {
                        if let Some(old) = recent.order.pop_front() {
                            recent.vectors.remove(&old);
                        }
                    }
                }
                out[i] = Some(v);
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::HashingEmbedder;

    /// Counts the texts that reach the model.
    struct Counting {
        inner: HashingEmbedder,
        texts: AtomicUsize,
    }

    #[async_trait]
    impl Embedder for Counting {
        fn id(&self) -> String {
            self.inner.id()
        }
        fn dim(&self) -> usize {
            self.inner.dim()
        }
        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.texts.fetch_add(texts.len(), Ordering::SeqCst);
            self.inner.embed(texts).await
        }
    }

    fn s(t: &str) -> String {
        t.to_owned()
    }

    #[tokio::test]
    async fn a_question_embedded_again_costs_no_pass_and_gets_the_same_vector() {
        let counting = Arc::new(Counting {
            inner: HashingEmbedder::new(64),
            texts: AtomicUsize::new(0),
        });
        let e = Remembering::new(counting.clone(), 2);
        let first = e.embed(&[s("what is a capacitor?")]).await.unwrap();
        assert_eq!(counting.texts.load(Ordering::SeqCst), 1);

        // The gaps report asks for it (untrimmed) with another question.
        let again = e
            .embed(&[s("  what is a capacitor? "), s("why is the sky blue")])
            .await
            .unwrap();
        assert_eq!(again[0], first[0]);
        assert_eq!(
            again[1],
            counting
                .inner
                .embed(&[s("why is the sky blue")])
                .await
                .unwrap()[0]
        );
        assert_eq!(
            counting.texts.load(Ordering::SeqCst),
            2,
            "only the new text was embedded"
        );

        // The oldest is forgotten past the capacity.
        e.embed(&[s("q3")]).await.unwrap();
        e.embed(&[s("q4")]).await.unwrap();
        assert_eq!(e.remembered(), 2);
        e.embed(&[s("what is a capacitor?")]).await.unwrap();
        assert_eq!(counting.texts.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_document_is_not_remembered() {
        let e = Remembering::new(Arc::new(HashingEmbedder::new(64)), 100);
        let chunks: Vec<String> = (0..10).map(|i| format!("passage {i}")).collect();
        assert_eq!(e.embed(&chunks).await.unwrap().len(), 10);
        assert_eq!(e.remembered(), 0);
        assert!(e.embed(&[]).await.unwrap().is_empty());
    }
}
