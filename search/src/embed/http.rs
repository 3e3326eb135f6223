//! OpenAI-compatible embedding service client.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{EmbedError, Embedder, l2_normalize};

/// Where and how to reach an OpenAI-compatible embeddings endpoint.
#[derive(Clone)]
pub struct HttpEmbedderConfig {
    /// Base URL without the path, e.g. `http://127.0.0.1:8080` or
    /// `https://api.openai.com`; `/v1/embeddings` is appended.
    pub base_url: String,
    /// The `model` sent with every request; also part of [`Embedder::id`].
    pub model: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// Expected vector length; answers of another length are an error.
    pub dim: usize,
    /// Whole-request timeout (connect + send + answer).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Largest number of inputs sent in one request; longer lists are split.
    pub max_batch: usize,
}

impl std::fmt::Debug for HttpEmbedderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpEmbedderConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("dim", &self.dim)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

impl HttpEmbedderConfig {
    /// Defaults: no key, 30 s timeout, 5 s connect timeout, 64 inputs a request.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>, dim: usize) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            dim,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_batch: 64,
        }
    }
}

/// Client of `POST {base}/v1/embeddings` (`{"model", "input": [..]}` →
/// `{"data": [{"embedding": [..], "index": n}]}`). Answers are re-ordered by
/// `index`, checked (one per input, `dim` finite components) and
/// L2-normalised.
#[derive(Debug, Clone)]
pub struct HttpEmbedder {
    config: HttpEmbedderConfig,
    url: String,
    client: reqwest::Client,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Datum>,
}

#[derive(Deserialize)]
struct Datum {
    embedding: Vec<f32>,
    index: usize,
}

impl HttpEmbedder {
    pub fn new(config: HttpEmbedderConfig) -> Result<Self, EmbedError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| EmbedError::Transport(format!("cannot build HTTP client: {e}")))?;
        let url = format!("{}/v1/embeddings", config.base_url.trim_end_matches('/'));
        Ok(Self {
            config,
            url,
            client,
        })
    }

    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut req = self.client.post(&self.url).json(&Request {
            model: &self.config.model,
            input: texts,
        });
        if let Some(key) = &self.config.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| EmbedError::Transport(error_chain(&e)))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| EmbedError::Transport(error_chain(&e)))?;
        if !status.is_success() {
            let mut text = String::from_utf8_lossy(&body).into_owned();
            if text.len() > 512 {
                let mut cut = 512;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            return Err(EmbedError::Status {
                status: status.as_u16(),
                body: text,
            });
        }
        let parsed: Response =
            serde_json::from_slice(&body).map_err(|e| EmbedError::Protocol(e.to_string()))?;
        if parsed.data.len() != texts.len() {
            return Err(EmbedError::Protocol(format!(
                "{} embeddings for {} inputs",
                parsed.data.len(),
                texts.len()
            )));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for d in parsed.data {
            let slot = out
                .get_mut(d.index)
                .ok_or_else(|| EmbedError::Protocol(format!("index {} out of range", d.index)))?;
            if slot.is_some() {
                return Err(EmbedError::Protocol(format!("index {} repeated", d.index)));
            }
            if d.embedding.len() != self.config.dim {
                return Err(EmbedError::Dimension {
                    expected: self.config.dim,
                    got: d.embedding.len(),
                });
            }
            let mut v = d.embedding;
            if !l2_normalize(&mut v) {
                return Err(EmbedError::Protocol(format!(
                    "embedding {} is zero or not finite",
                    d.index
                )));
            }
            *slot = Some(v);
        }
        // All slots are filled: same count, no repeats, all in range.
        Ok(out.into_iter().flatten().collect())
    }
}

#[async_trait]
impl Embedder for HttpEmbedder {
    fn id(&self) -> String {
        format!("http:{}", self.config.model)
    }

    fn dim(&self) -> usize {
        self.config.dim
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.config.max_batch.max(1)) {
            out.extend(self.embed_batch(batch).await?);
        }
        Ok(out)
    }
}

/// An error with its sources, e.g. "error sending request: connection refused".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
