//! all-MiniLM-L6-v2 in-process: candle (BERT) + tokenizers, on the CPU.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{
    PaddingParams, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, oneshot};

use super::http::error_chain;
use super::small::{SMALL_MAX_TOKENS, SmallEncoder};
use super::{EmbedError, Embedder, l2_normalize};

/// The files a model directory must hold.
pub const MINILM_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Where [`LocalEmbedder::load`] downloads missing files from (each file is
/// `<base>/<name>`).
pub const MINILM_HUB_BASE_URL: &str =
    "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/main";

/// How to load and run the local model.
#[derive(Debug, Clone)]
pub struct LocalEmbedderConfig {
    /// Directory with `config.json`, `tokenizer.json`, `model.safetensors`.
    pub model_dir: PathBuf,
    /// Name used in the id (`local:<name>`); vectors of different models are
    /// not comparable, so keep it tied to the weights.
    pub model_name: String,
    /// Download missing files from `download_base_url` (async [`LocalEmbedder::load`] only).
    pub allow_download: bool,
    pub download_base_url: String,
    pub download_timeout: Duration,
    /// Token limit per text (longer texts are truncated), at most the
    /// model's 512 positions. MiniLM was trained with 256.
    pub max_tokens: usize,
    /// Texts per forward pass.
    pub batch_size: usize,
    /// Batched forward passes (documents) allowed at once on the blocking
    /// pool. Each pass already uses every core for its matrix products, so
    /// 1 is right on small machines. Questions do not count.
    pub max_concurrency: usize,
    /// Run documents' passages through candle even where the short-input
    /// encoder has its panels (AVX-512, or AVX2 with FMA; by default they
    /// go through those panels, several times faster; tests compare the
    /// two).
    pub candle_for_documents: bool,
    /// Run the short-input encoder's products on the CPU's matrix unit
    /// where it has one (Intel AMX), in bfloat16 with f32 sums: several
    /// times faster, and the vectors move by a few thousandths (cosine to
    /// the exact ones above 0.999). Off: the exact f32 products.
    pub matrix_tiles: bool,
}

impl LocalEmbedderConfig {
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        Self {
            model_dir: model_dir.into(),
            model_name: "all-MiniLM-L6-v2".to_owned(),
            allow_download: true,
            download_base_url: MINILM_HUB_BASE_URL.to_owned(),
            download_timeout: Duration::from_secs(300),
            max_tokens: 256,
            batch_size: 32,
            max_concurrency: 1,
            candle_for_documents: false,
            matrix_tiles: true,
        }
    }
}

/// A text's vector and its spans' (`None`: the span was truncated away).
pub type SpanVectors = (Vec<f32>, Vec<Option<Vec<f32>>>);

/// At most this many inputs at once go through the short-input encoder.
const SMALL_MAX_INPUTS: usize = 4;

/// Tokens per pass when documents go through the short-input encoder: its
/// buffers for this many rows are kept for the next pass (about 8 MB), and
/// one layer's products take a few milliseconds, so a question's pass
/// interleaves soon.
const DOCUMENT_PASS_ROWS: usize = 512;
const _: () = assert!(SMALL_MAX_INPUTS * SMALL_MAX_TOKENS <= DOCUMENT_PASS_ROWS);

/// all-MiniLM-L6-v2 sentence embeddings (384-d): BERT forward pass, mean
/// pooling over the attention mask, L2 normalisation — what
/// sentence-transformers computes for this model.
///
/// Texts are tokenised, sorted by length and run in batches of
/// `batch_size` (less padding); a few short texts (a question) go through
/// the same encoder written for short inputs (`small.rs`), which reads the
/// weights in place instead of repacking them for every product, and so do
/// documents where that encoder has its panels (unpadded, passes of
/// at most `DOCUMENT_PASS_ROWS` tokens); [`Embedder::embed`] runs that on tokio's
/// blocking pool behind a semaphore of `max_concurrency` permits (a
/// question's texts take the short-input encoder without a permit, so a
/// student never waits for a document being ingested).
/// [`LocalEmbedder::embed_blocking`] is the same work on the calling thread.
#[derive(Clone)]
pub struct LocalEmbedder {
    inner: Arc<Model>,
    permits: Arc<Semaphore>,
    line: Arc<QuestionLine>,
}

struct Model {
    bert: BertModel,
    /// The same encoder for a few short inputs (questions), and for
    /// documents where `documents_in_small`.
    small: Option<SmallEncoder>,
    /// Documents' passages go through `small` too: it has its panels
    /// (AVX-512, or AVX2 with FMA), which are several times faster than
    /// candle's products on unpadded inputs.
    documents_in_small: bool,
    tokenizer: Tokenizer,
    device: Device,
    batch_size: usize,
    dim: usize,
    id: String,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("id", &self.inner.id)
            .finish()
    }
}

impl LocalEmbedder {
    /// Loads the model, first downloading missing files into `model_dir` when
    /// `allow_download` is set. The files are written to `*.part` and renamed,
    /// so an interrupted download leaves no truncated file behind. Without
    /// network this fails with [`EmbedError::ModelUnavailable`], naming the
    /// missing files, the URL tried and how to fetch them by hand.
    pub async fn load(config: LocalEmbedderConfig) -> Result<Self, EmbedError> {
        let missing = missing_files(&config.model_dir);
        if !missing.is_empty() {
            if !config.allow_download {
                return Err(unavailable(&config, &missing, "downloads are disabled"));
            }
            download(&config, &missing).await?;
        }
        let config2 = config.clone();
        tokio::task::spawn_blocking(move || Self::load_blocking(config2)).await?
    }

    /// Loads the model from `model_dir` on the calling thread; never downloads.
    pub fn load_blocking(config: LocalEmbedderConfig) -> Result<Self, EmbedError> {
        let missing = missing_files(&config.model_dir);
        if !missing.is_empty() {
            return Err(unavailable(&config, &missing, "not downloaded"));
        }
        let dir = &config.model_dir;
        let model_err =
            |what: &str, e: Box<dyn std::error::Error + Send + Sync>| EmbedError::Model {
                context: format!("{what} in {}", dir.display()),
                source: e,
            };
        let bert_config: Config = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)
            .map_err(|e| model_err("bad config.json", e.into()))?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| model_err("bad tokenizer.json", e))?;
        let max_tokens = config
            .max_tokens
            .clamp(8, bert_config.max_position_embeddings);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| model_err("tokenizer truncation", e))?;
        // The shipped tokenizer pads to a fixed 128: padding is done per batch here.
        tokenizer.with_padding(None::<PaddingParams>);
        let device = Device::Cpu;
        // Read once; candle's model and the short-input encoder share the
        // tensors.
        let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &device)
            .map_err(|e| model_err("bad model.safetensors", e.into()))?;
        let small = SmallEncoder::new(&tensors, &bert_config, config.matrix_tiles);
        match &small {
            None => {
                tracing::info!(dir = %dir.display(), "embedding model: every input goes through candle")
            }
            Some(s) => {
                tracing::info!(dir = %dir.display(), products = s.kernel(), "embedding model loaded")
            }
        }
        let documents_in_small =
            !config.candle_for_documents && small.as_ref().is_some_and(SmallEncoder::has_panels);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let bert = BertModel::load(vb, &bert_config)
            .map_err(|e| model_err("cannot build BERT", e.into()))?;
        Ok(Self {
            inner: Arc::new(Model {
                bert,
                small,
                documents_in_small,
                tokenizer,
                device,
                batch_size: config.batch_size.max(1),
                dim: bert_config.hidden_size,
                id: format!("local:{}", config.model_name),
            }),
            permits: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            line: Arc::default(),
        })
    }

    /// What the short-input encoder's products run on (`amx-bf16`,
    /// `avx512`, `avx2`, `loops`), or `candle` where every input goes
    /// through candle: for logs and benches.
    pub fn products(&self) -> &'static str {
        self.inner
            .small
            .as_ref()
            .map_or("candle", SmallEncoder::kernel)
    }

    /// Embeds on the calling thread (CPU-bound: call from a blocking context).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.inner.embed(texts)
    }

    /// One forward pass over `text`: its vector (as [`Self::embed_blocking`])
    /// and, for each byte span, the mean of the token states inside it,
    /// normalised (`None` where truncation left no token of the span).
    pub fn embed_spans_blocking(
        &self,
        text: &str,
        spans: &[(usize, usize)],
    ) -> Result<SpanVectors, EmbedError> {
        self.inner.embed_spans(text, spans)
    }
}

/// Questions waiting for the short-input encoder, embedded together.
///
/// A question's embedding is mostly the time to read the encoder's weights
/// once; questions that arrive while others are being embedded join the
/// next pass and share that read (`SmallEncoder::embed_many`). Nobody waits
/// for a batch to fill: a pass starts as soon as the previous one ends,
/// with whatever is queued (at most [`LINE_BATCH`] inputs).
#[derive(Default)]
struct QuestionLine {
    queue: parking_lot::Mutex<Vec<Waiting>>,
    /// A drainer is running on the blocking pool.
    running: std::sync::atomic::AtomicBool,
}

struct Waiting {
    ids: Vec<u32>,
    done: oneshot::Sender<Vec<f32>>,
}

/// After tokenising: a question's place in the line, or a document's
/// token ids for the batched forward passes.
enum Step {
    Queued(Vec<oneshot::Receiver<Vec<f32>>>),
    Batches(Vec<Vec<u32>>),
}

/// Inputs per pass of the question line.
const LINE_BATCH: usize = 32;

impl QuestionLine {
    /// Queues `encoded` (short inputs) for the next pass; each receiver
    /// gets its input's vector.
    fn enqueue(&self, encoded: Vec<Vec<u32>>) -> Vec<oneshot::Receiver<Vec<f32>>> {
        let mut queue = self.queue.lock();
        encoded
            .into_iter()
            .map(|ids| {
                let (done, result) = oneshot::channel();
                queue.push(Waiting { ids, done });
                result
            })
            .collect()
    }

    /// Runs the passes on the calling (blocking) thread, unless another
    /// thread already does.
    fn run_if_idle(&self, model: &Model) {
        if !self.running.swap(true, std::sync::atomic::Ordering::AcqRel) {
            self.drain(model);
        }
    }

    /// Runs passes until the queue is empty.
    fn drain(&self, model: &Model) {
        use std::sync::atomic::Ordering;
        let Some(small) = model.small.as_ref() else {
            return;
        };
        loop {
            let batch: Vec<Waiting> = {
                let mut queue = self.queue.lock();
                let n = queue.len().min(LINE_BATCH);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                self.running.store(false, Ordering::Release);
                // Something queued between the look and the store: go on
                // unless another drainer took it.
                if self.queue.lock().is_empty() || self.running.swap(true, Ordering::AcqRel) {
                    return;
                }
                continue;
            }
            let inputs: Vec<&[u32]> = batch.iter().map(|w| w.ids.as_slice()).collect();
            let vectors = small.embed_many(&inputs);
            for (w, v) in batch.into_iter().zip(vectors) {
                let _ = w.done.send(v);
            }
        }
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn id(&self) -> String {
        self.inner.id.clone()
    }

    fn dim(&self) -> usize {
        self.inner.dim
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (model, line) = (Arc::clone(&self.inner), Arc::clone(&self.line));
        let texts = texts.to_vec();
        // A question does not wait behind a document's batches: it takes
        // the short-input encoder (milliseconds, the cores shared through
        // rayon's pool, no permit), together with the questions that
        // arrive meanwhile; the task that tokenised it runs the passes
        // unless another already does.
        let step = tokio::task::spawn_blocking(move || -> Result<Step, EmbedError> {
            let encoded = model.tokenize(&texts)?;
            if !model.takes_small(&encoded) {
                return Ok(Step::Batches(encoded));
            }
            let results = line.enqueue(encoded);
            line.run_if_idle(&model);
            Ok(Step::Queued(results))
        })
        .await??;
        let encoded = match step {
            Step::Batches(encoded) => encoded,
            Step::Queued(results) => {
                let mut out = Vec::with_capacity(results.len());
                for r in results {
                    out.push(r.await.map_err(|_| EmbedError::Model {
                        context: "question line".into(),
                        source: "the embedding pass ended without a result".into(),
                    })?);
                }
                return Ok(out);
            }
        };
        let model = Arc::clone(&self.inner);
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || model.run(&encoded)).await?
    }
}

impl Model {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.run(&self.tokenize(texts)?)
    }

    fn embed_spans(&self, text: &str, spans: &[(usize, usize)]) -> Result<SpanVectors, EmbedError> {
        let model_err =
            |context: &str, e: Box<dyn std::error::Error + Send + Sync>| EmbedError::Model {
                context: context.into(),
                source: e,
            };
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| model_err("tokenizer", e))?;
        let ids = enc.get_ids();
        let n = ids.len().max(1);
        let forward = || -> candle_core::Result<Vec<Vec<f32>>> {
            let t = Tensor::from_vec(ids.to_vec(), (1, ids.len()), &self.device)?;
            let mask = t.ones_like()?;
            let hidden = self.bert.forward(&t, &t.zeros_like()?, Some(&mask))?;
            hidden.squeeze(0)?.to_vec2::<f32>()
        };
        let states = forward().map_err(|e| model_err("forward pass", e.into()))?;
        let mean = |rows: &mut dyn Iterator<Item = &Vec<f32>>| -> Option<Vec<f32>> {
            let mut acc = vec![0f32; self.dim];
            let mut k = 0usize;
            for r in rows {
                acc.iter_mut().zip(r).for_each(|(a, x)| *a += x);
                k += 1;
            }
            (k > 0).then(|| {
                acc.iter_mut().for_each(|a| *a /= k as f32);
                l2_normalize(&mut acc);
                acc
            })
        };
        let whole = mean(&mut states.iter().take(n)).unwrap_or_else(|| vec![0.0; self.dim]);
        let special = enc.get_special_tokens_mask();
        let offsets = enc.get_offsets();
        let windows = spans
            .iter()
            .map(|&(s, e)| {
                mean(
                    &mut states
                        .iter()
                        .enumerate()
                        .filter(|&(i, _)| special[i] == 0 && offsets[i].0 >= s && offsets[i].1 <= e)
                        .map(|(_, r)| r),
                )
            })
            .collect();
        Ok((whole, windows))
    }

    /// Token ids of each text (truncated to the model's limit).
    fn tokenize(&self, texts: &[String]) -> Result<Vec<Vec<u32>>, EmbedError> {
        texts
            .iter()
            .map(|t| {
                self.tokenizer
                    .encode(t.as_str(), true)
                    .map(|enc| enc.get_ids().to_vec())
                    .map_err(|e| EmbedError::Model {
                        context: "tokenizer".into(),
                        source: e,
                    })
            })
            .collect()
    }

    /// Whether these inputs go through the short-input encoder: a few
    /// short texts (a question).
    fn takes_small(&self, encoded: &[Vec<u32>]) -> bool {
        self.small.is_some()
            && encoded.len() <= SMALL_MAX_INPUTS
            && encoded.iter().all(|ids| ids.len() <= SMALL_MAX_TOKENS)
    }

    fn run(&self, encoded: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if let Some(small) = self
            .small
            .as_ref()
            .filter(|_| self.documents_in_small || self.takes_small(encoded))
        {
            // Passes of at most DOCUMENT_PASS_ROWS tokens (a question's
            // inputs fit in one): no padding, and a question's pass never
            // waits long behind a document's.
            let mut out = Vec::with_capacity(encoded.len());
            let mut pass: Vec<&[u32]> = Vec::new();
            let mut rows = 0;
            for ids in encoded {
                if rows + ids.len() > DOCUMENT_PASS_ROWS && !pass.is_empty() {
                    out.extend(small.embed_many(&pass));
                    pass.clear();
                    rows = 0;
                }
                pass.push(ids);
                rows += ids.len();
            }
            out.extend(small.embed_many(&pass));
            return Ok(out);
        }
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); encoded.len()];
        // Longest first, so each batch pads to similar lengths.
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].len()));
        for batch in order.chunks(self.batch_size) {
            let vectors = self
                .forward(batch.iter().map(|&i| encoded[i].as_slice()))
                .map_err(|e| EmbedError::Model {
                    context: "forward pass".into(),
                    source: e.into(),
                })?;
            for (&i, v) in batch.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// One padded batch → mean-pooled, normalised vectors.
    fn forward<'a>(
        &self,
        batch: impl Iterator<Item = &'a [u32]> + Clone,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let n = batch.clone().count();
        let len = batch.clone().map(<[u32]>::len).max().unwrap_or(0).max(1);
        let mut ids = vec![0u32; n * len];
        let mut mask = vec![0u32; n * len];
        for (row, seq) in batch.enumerate() {
            ids[row * len..row * len + seq.len()].copy_from_slice(seq);
            mask[row * len..row * len + seq.len()]
                .iter_mut()
                .for_each(|m| *m = 1);
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let type_ids = ids.zeros_like()?;
        let hidden = self.bert.forward(&ids, &type_ids, Some(&mask))?; // (n, len, dim)
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (n, dim)
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (n, 1)
        let mean = summed.broadcast_div(&counts)?;
        let mut rows = mean.to_vec2::<f32>()?;
        for r in &mut rows {
            l2_normalize(r);
        }
        Ok(rows)
    }
}

fn missing_files(dir: &Path) -> Vec<&'static str> {
    MINILM_FILES
        .iter()
        .copied()
        .filter(|f| !dir.join(f).is_file())
        .collect()
}

fn unavailable(config: &LocalEmbedderConfig, missing: &[&str], why: &str) -> EmbedError {
    EmbedError::ModelUnavailable {
        dir: config.model_dir.display().to_string(),
        reason: format!(
            "missing {} ({why}); put the files there, e.g. with scripts/fetch-model.sh {}",
            missing.join(", "),
            config.model_dir.display()
        ),
    }
}

async fn download(config: &LocalEmbedderConfig, missing: &[&str]) -> Result<(), EmbedError> {
    let fail = |url: &str, e: String| EmbedError::ModelUnavailable {
        dir: config.model_dir.display().to_string(),
        reason: format!(
            "missing {}; download of {url} failed: {e}; fetch the files by hand \
             (scripts/fetch-model.sh {}) or point the model directory at them",
            missing.join(", "),
            config.model_dir.display()
        ),
    };
    tokio::fs::create_dir_all(&config.model_dir).await?;
    let client = reqwest::Client::builder()
        .timeout(config.download_timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| fail(&config.download_base_url, e.to_string()))?;
    for file in missing {
        let url = format!("{}/{file}", config.download_base_url.trim_end_matches('/'));
        tracing::info!(%url, dir = %config.model_dir.display(), "downloading embedding model file");
        let mut resp = client
            .get(&url)
            .send()
            .await
            .map_err(|e| fail(&url, error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(fail(&url, format!("HTTP {}", resp.status())));
        }
        let part = config.model_dir.join(format!("{file}.part"));
        let mut out = tokio::fs::File::create(&part).await?;
        loop {
            match resp.chunk().await {
                Ok(Some(bytes)) => out.write_all(&bytes).await?,
                Ok(None) => break,
                Err(e) => {
                    drop(out);
                    let _ = tokio::fs::remove_file(&part).await;
                    return Err(fail(&url, error_chain(&e)));
                }
            }
        }
        out.sync_all().await?;
        drop(out);
        tokio::fs::rename(&part, config.model_dir.join(file)).await?;
    }
    Ok(())
}
