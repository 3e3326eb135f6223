//! Which embedder this node uses, from `[embeddings]`: the local MiniLM
//! model when its files are there (or may be fetched), an OpenAI-compatible
//! HTTP service, or the built-in hashing embedder — with a clear warning
//! when the fallback is taken.

use std::sync::Arc;

use bwenge_search::{
    Embedder, HashingEmbedder, HttpEmbedder, HttpEmbedderConfig, LocalEmbedder,
    LocalEmbedderConfig, Remembering,
};

use crate::config::{EmbeddingProvider, Settings};

const DIM: usize = 384;

/// The node's embedder; a model's (local or over HTTP) remembers the
/// vectors of the last `embeddings.remembered_questions` questions it
/// embedded (see [`Remembering`]): a question declined as not covered is
/// embedded again for the gaps report moments after its search, which then
/// costs a look-up instead of the model.
pub async fn build(settings: &Settings) -> Arc<dyn Embedder> {
    let embedder = choose(settings).await;
    let remembered = settings.embeddings.remembered_questions;
    if remembered == 0 || embedder.id().starts_with("hashing:") {
        // Off, or cheaper to compute than to look up.
        return embedder;
    }
    Arc::new(Remembering::new(embedder, remembered))
}

async fn choose(settings: &Settings) -> Arc<dyn Embedder> {
    let e = &settings.embeddings;
    match e.provider {
        EmbeddingProvider::Hashing => Arc::new(HashingEmbedder::new(DIM)),
        EmbeddingProvider::Http => {
            let mut cfg =
                HttpEmbedderConfig::new(e.http_base_url.clone(), e.http_model.clone(), DIM);
            if !e.http_api_key.is_empty() {
                cfg.api_key = Some(e.http_api_key.expose().to_owned());
            }
            match HttpEmbedder::new(cfg) {
                Ok(h) => Arc::new(h),
                Err(err) => {
                    tracing::warn!(error = %err, "the HTTP embedder could not be set up; using the built-in hashing embedder");
                    Arc::new(HashingEmbedder::new(DIM))
                }
            }
        }
        EmbeddingProvider::Local | EmbeddingProvider::Auto => {
            let mut cfg = LocalEmbedderConfig::new(e.model_dir(&settings.data_dir));
            cfg.allow_download = e.allow_download;
            cfg.matrix_tiles = e.matrix_tiles;
            match LocalEmbedder::load(cfg).await {
                Ok(local) => Arc::new(local),
                Err(err) => {
                    tracing::warn!(
                        error = %err,
                        "the local embedding model is not available; using the built-in hashing \
                         embedder (search quality is lower). Put all-MiniLM-L6-v2 in \
                         embeddings.model_dir (scripts/fetch-model.sh) and run `bwenge reindex`."
                    );
                    Arc::new(HashingEmbedder::new(DIM))
                }
            }
        }
    }
}
