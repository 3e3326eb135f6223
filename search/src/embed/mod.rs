//! Text embedders: one async trait, three implementations.
//!
//! * [`LocalEmbedder`]: all-MiniLM-L6-v2 in-process (candle + tokenizers).
//! * [`HttpEmbedder`]: an OpenAI-compatible `POST {base}/v1/embeddings` service.
//! * [`HashingEmbedder`]: a deterministic fallback that needs nothing.
//!
//! Every vector an embedder returns is L2-normalised, and has [`Embedder::dim`]
//! components. Vectors from different embedders (different [`Embedder::id`])
//! are not comparable: an index records the id of the embedder that built it
//! (see [`crate::OrgIndex::open_or_create`]).

mod hashing;
mod http;
mod local;
mod remembering;
mod small;

use async_trait::async_trait;

pub use hashing::HashingEmbedder;
pub use http::{HttpEmbedder, HttpEmbedderConfig};
pub use local::{LocalEmbedder, LocalEmbedderConfig, MINILM_FILES, MINILM_HUB_BASE_URL};
pub use remembering::Remembering;

/// Turns texts into L2-normalised vectors.
///
/// `embed` returns exactly one vector per input text, in input order. The
/// model work of [`LocalEmbedder`] runs on tokio's blocking pool (behind a
/// semaphore), so callers can `await` it from async code directly.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// Which embedder this is, e.g. `local:all-MiniLM-L6-v2`, `hashing:384`,
    /// `http:text-embedding-3-small`. Two embedders with the same id produce
    /// comparable vectors; an index built by one id must be rebuilt for another.
    fn id(&self) -> String;
    /// Number of components of every vector.
    fn dim(&self) -> usize;
    /// Embeds `texts` (one vector each, same order).
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Why embedding (or loading an embedder) failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The local model's files are not there and could not be (or may not be)
    /// downloaded. The server turns this into a warning and a fallback.
    #[error("embedding model unavailable in {dir}: {reason}")]
    ModelUnavailable { dir: String, reason: String },
    /// Loading or running the local model failed: `context` says at what
    /// step (and in which directory), `source` why.
    #[error("embedding model error: {context}: {source}")]
    Model {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The embedding service answered with an error status.
    #[error("embedding service answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// The embedding service could not be reached, or timed out.
    #[error("embedding service unreachable: {0}")]
    Transport(String),
    /// The embedding service answered something that is not a valid answer.
    #[error("embedding service gave a malformed answer: {0}")]
    Protocol(String),
    /// A vector had the wrong number of components.
    #[error("embedding has {got} dimensions, expected {expected}")]
    Dimension { expected: usize, got: usize },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The blocking task running the model was cancelled or panicked.
    #[error("embedding task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The embedder's permits were closed (it is shutting down) while a call
    /// waited for one.
    #[error("embedder closed: {0}")]
    Closed(#[from] tokio::sync::AcquireError),
}

/// Scales `v` to unit L2 norm in place. Returns `false` (and leaves `v`
/// unchanged) when `v` is all zeros or not finite.
pub fn l2_normalize(v: &mut [f32]) -> bool {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return false;
    }
    let inv = (1.0 / norm) as f32;
    v.iter_mut().for_each(|x| *x *= inv);
    true
}

/// Cosine similarity of two vectors (they need not be normalised; 0 if
/// either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na.sqrt() * nb.sqrt())) as f32
    }
}
