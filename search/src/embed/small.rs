//! The same BERT encoder as candle's, for short inputs (a student's
//! question): plain loops over the model's own weight tensors.
//!
//! Why: for a question of a dozen tokens, every matrix product is a dozen
//! rows against a weight matrix; candle's matrix product (the `gemm` crate)
//! first repacks the whole weight matrix, every call, so one question moved
//! ~3× the model's 42 MB of layer weights through memory (17 ms). Here each
//! output is a dot product of an input row with a weight row, read in place
//! as stored (`[out, in]`), split over the cores: the weights are read once
//! per question. Long inputs and batches (ingest) stay with candle, whose
//! products are faster there.
//!
//! The weights are candle's tensors, shared (no copy): this module borrows
//! their storage for the duration of a call.

use std::collections::HashMap;

use candle_core::{CpuStorage, DType, Storage, StorageRef, Tensor};
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;

use super::l2_normalize;

/// Inputs of at most this many tokens go through [`SmallEncoder`].
pub(super) const SMALL_MAX_TOKENS: usize = 64;

/// One weight or bias: a contiguous f32 CPU tensor (checked at load).
struct Param(Tensor);

/// A borrowed view of a [`Param`]'s numbers.
struct View<'a> {
    storage: StorageRef<'a>,
    start: usize,
    len: usize,
}

impl View<'_> {
    fn slice(&self) -> &[f32] {
        match &*self.storage {
            Storage::Cpu(CpuStorage::F32(v)) => &v[self.start..self.start + self.len],
            // `Param::new` accepts nothing else.
            _ => &[],
        }
    }
}

impl Param {
    fn new(tensors: &HashMap<String, Tensor>, name: &str, shape: &[usize]) -> Option<Self> {
        let t = tensors.get(name)?;
        if t.dtype() != DType::F32 || !t.is_contiguous() || t.dims() != shape {
            return None;
        }
        let (storage, layout) = t.storage_and_layout();
        let ok = matches!(&*storage, Storage::Cpu(CpuStorage::F32(v))
            if layout.start_offset() + t.elem_count() <= v.len());
        drop(storage);
        ok.then(|| Self(t.clone()))
    }

    fn view(&self) -> View<'_> {
        let (storage, layout) = self.0.storage_and_layout();
        View {
            storage,
            start: layout.start_offset(),
            len: self.0.elem_count(),
        }
    }
}

struct Linear {
    weight: Param,
    bias: Param,
    out: usize,
    inp: usize,
}

impl Linear {
    fn new(t: &HashMap<String, Tensor>, name: &str, out: usize, inp: usize) -> Option<Self> {
        Some(Self {
            weight: Param::new(t, &format!("{name}.weight"), &[out, inp])?,
            bias: Param::new(t, &format!("{name}.bias"), &[out])?,
            out,
            inp,
        })
    }

    /// `x` is `rows × inp`, row-major; returns `rows × out`.
    fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let w = self.weight.view();
        let b = self.bias.view();
        let (w, b) = (w.slice(), b.slice());
        // Column blocks of the output, one task each: every task reads its
        // block of weight rows once for all input rows.
        const BLOCK: usize = 64;
        let blocks: Vec<Vec<f32>> = (0..self.out.div_ceil(BLOCK))
            .into_par_iter()
            .map(|blk| {
                let lo = blk * BLOCK;
                let hi = (lo + BLOCK).min(self.out);
                let mut out = vec![0f32; (hi - lo) * rows];
                products(
                    x,
                    rows,
                    self.inp,
                    &w[lo * self.inp..hi * self.inp],
                    &mut out,
                );
                out
            })
            .collect();
        let mut y = vec![0f32; rows * self.out];
        for (blk, vals) in blocks.iter().enumerate() {
            let lo = blk * BLOCK;
            let width = vals.len() / rows.max(1);
            for j in 0..width {
                for r in 0..rows {
                    y[r * self.out + lo + j] = vals[j * rows + r] + b[lo + j];
                }
            }
        }
        y
    }
}

/// `out[j * rows + r] = x[r] · w[j]` for every weight row `j` of `w`.
fn products(x: &[f32], rows: usize, inp: usize, w: &[f32], out: &mut [f32]) {
    assert!(
        x.len() >= rows * inp && w.len().is_multiple_of(inp) && out.len() >= w.len() / inp * rows
    );
    #[cfg(target_arch = "x86_64")]
    if inp.is_multiple_of(8)
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: the CPU has AVX2 and FMA (checked just above); the
        // lengths were checked by the assertion.
        return unsafe { avx2::products(x, rows, inp, w, out) };
    }
    for (j, wj) in w.chunks_exact(inp).enumerate() {
        for r in 0..rows {
            out[j * rows + r] = dot(&x[r * inp..(r + 1) * inp], wj);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// [`super::products`] with AVX2: four weight rows against two input
    /// rows at a time, eight running sums in registers, every weight and
    /// input chunk loaded once per tile.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `inp` a multiple of 8;
    /// `x.len() >= rows * inp`, `w.len()` a multiple of `inp` and
    /// `out.len() >= w.len() / inp * rows`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn products(x: &[f32], rows: usize, inp: usize, w: &[f32], out: &mut [f32]) {
        let wrows = w.len() / inp;
        let mut j = 0;
        while j < wrows {
            let tile = (wrows - j).min(4);
            // A short last tile repeats its last row (computed, not stored).
            let wp: [*const f32; 4] =
                std::array::from_fn(|t| w[(j + t.min(tile - 1)) * inp..].as_ptr());
            let mut r = 0;
            while r < rows {
                let pair = (rows - r).min(2);
                let x0 = x[r * inp..].as_ptr();
                let x1 = x[(r + pair - 1) * inp..].as_ptr();
                let mut acc = [_mm256_setzero_ps(); 8];
                let mut c = 0;
                while c < inp {
                    // SAFETY: c + 8 <= inp, within each row (see # Safety).
                    unsafe {
                        let xa = _mm256_loadu_ps(x0.add(c));
                        let xb = _mm256_loadu_ps(x1.add(c));
                        for t in 0..4 {
                            let wv = _mm256_loadu_ps(wp[t].add(c));
                            acc[t] = _mm256_fmadd_ps(xa, wv, acc[t]);
                            acc[t + 4] = _mm256_fmadd_ps(xb, wv, acc[t + 4]);
                        }
                    }
                    c += 8;
                }
                for t in 0..tile {
                    out[(j + t) * rows + r] = sum(acc[t]);
                    if pair == 2 {
                        out[(j + t) * rows + r + 1] = sum(acc[t + 4]);
                    }
                }
                r += pair;
            }
            j += tile;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn sum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_hadd_ps(s, s);
        _mm_cvtss_f32(_mm_hadd_ps(s, s))
    }
}

/// A dot product with eight running sums (which the compiler vectorises).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, a_rest) = a.as_chunks::<8>();
    let (b8, b_rest) = b.as_chunks::<8>();
    for (x, y) in a8.iter().zip(b8) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += x * y;
    }
    sum
}

struct LayerNorm {
    weight: Param,
    bias: Param,
}

impl LayerNorm {
    fn new(t: &HashMap<String, Tensor>, name: &str, dim: usize) -> Option<Self> {
        Some(Self {
            weight: Param::new(t, &format!("{name}.weight"), &[dim])?,
            bias: Param::new(t, &format!("{name}.bias"), &[dim])?,
        })
    }

    fn forward(&self, x: &mut [f32], dim: usize, eps: f32) {
        let w = self.weight.view();
        let b = self.bias.view();
        let (w, b) = (w.slice(), b.slice());
        for row in x.chunks_exact_mut(dim) {
            let mean = row.iter().sum::<f32>() / dim as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(w).zip(b) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
}

/// BERT's encoder for one unpadded input, on the weights candle loaded.
pub(super) struct SmallEncoder {
    word: Param,
    position: Param,
    token_type: Param,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    max_positions: usize,
    eps: f32,
}

impl SmallEncoder {
    /// `None` when the model is not one this encoder computes exactly
    /// (another activation, other tensor names, non-f32 weights): then
    /// everything goes through candle.
    pub(super) fn new(t: &HashMap<String, Tensor>, c: &Config) -> Option<Self> {
        if !matches!(c.hidden_act, HiddenAct::Gelu)
            || c.num_attention_heads == 0
            || !c.hidden_size.is_multiple_of(c.num_attention_heads)
        {
            return None;
        }
        // Checkpoints exported from BertForX carry a `bert.` prefix.
        let prefix = if t.contains_key("embeddings.word_embeddings.weight") {
            ""
        } else {
            "bert."
        };
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let p = |n: &str| format!("{prefix}{n}");
        let layers = (0..c.num_hidden_layers)
            .map(|l| {
                let n = |s: &str| p(&format!("encoder.layer.{l}.{s}"));
                Some(Layer {
                    query: Linear::new(t, &n("attention.self.query"), h, h)?,
                    key: Linear::new(t, &n("attention.self.key"), h, h)?,
                    value: Linear::new(t, &n("attention.self.value"), h, h)?,
                    attn_out: Linear::new(t, &n("attention.output.dense"), h, h)?,
                    attn_norm: LayerNorm::new(t, &n("attention.output.LayerNorm"), h)?,
                    intermediate: Linear::new(t, &n("intermediate.dense"), i, h)?,
                    output: Linear::new(t, &n("output.dense"), h, i)?,
                    out_norm: LayerNorm::new(t, &n("output.LayerNorm"), h)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            word: Param::new(
                t,
                &p("embeddings.word_embeddings.weight"),
                &[c.vocab_size, h],
            )?,
            position: Param::new(
                t,
                &p("embeddings.position_embeddings.weight"),
                &[c.max_position_embeddings, h],
            )?,
            token_type: Param::new(
                t,
                &p("embeddings.token_type_embeddings.weight"),
                &[c.type_vocab_size, h],
            )?,
            emb_norm: LayerNorm::new(t, &p("embeddings.LayerNorm"), h)?,
            layers,
            hidden: h,
            heads: c.num_attention_heads,
            max_positions: c.max_position_embeddings,
            eps: c.layer_norm_eps as f32,
        })
    }

    /// The mean-pooled, normalised embeddings of tokenised inputs (each at
    /// most the model's positions long; an empty one gives zeros), computed
    /// together: their
    /// rows are stacked, so every linear layer reads its weights once for
    /// all of them (what a lone question pays for is that read); attention
    /// stays within each input. Each result is what the input gives alone.
    pub(super) fn embed_many(&self, inputs: &[&[u32]]) -> Vec<Vec<f32>> {
        let h = self.hidden;
        // (first row, rows) of each input; an empty input has no rows.
        let mut segs = Vec::with_capacity(inputs.len());
        let mut rows = 0;
        for ids in inputs {
            let n = ids.len().min(self.max_positions);
            segs.push((rows, n));
            rows += n;
        }
        if rows == 0 {
            return vec![vec![0.0; h]; inputs.len()];
        }
        let mut x = vec![0f32; rows * h];
        {
            let word = self.word.view();
            let pos = self.position.view();
            let tt = self.token_type.view();
            let (word, pos, tt) = (word.slice(), pos.slice(), tt.slice());
            for (ids, &(first, n)) in inputs.iter().zip(&segs) {
                for (t, &id) in ids[..n].iter().enumerate() {
                    let id = (id as usize).min(word.len() / h - 1);
                    let row = &mut x[(first + t) * h..(first + t + 1) * h];
                    for (k, v) in row.iter_mut().enumerate() {
                        *v = word[id * h + k] + pos[t * h + k] + tt[k];
                    }
                }
            }
        }
        self.emb_norm.forward(&mut x, h, self.eps);
        for layer in &self.layers {
            x = self.layer(layer, x, rows, &segs);
        }
        segs.iter()
            .map(|&(first, n)| {
                let mut mean = vec![0f32; h];
                if n == 0 {
                    return mean;
                }
                for row in x[first * h..(first + n) * h].chunks_exact(h) {
                    for (m, v) in mean.iter_mut().zip(row) {
                        *m += v;
                    }
                }
                for m in &mut mean {
                    *m /= n as f32;
                }
                l2_normalize(&mut mean);
                mean
            })
            .collect()
    }

    /// One encoder layer over `rows` stacked rows; attention within each
    /// `(first row, rows)` segment.
    fn layer(&self, l: &Layer, x: Vec<f32>, rows: usize, segs: &[(usize, usize)]) -> Vec<f32> {
        let h = self.hidden;
        let d = h / self.heads;
        let q = l.query.forward(&x, rows);
        let k = l.key.forward(&x, rows);
        let v = l.value.forward(&x, rows);
        let scale = 1.0 / (d as f32).sqrt();
        let mut ctx = vec![0f32; rows * h];
        // Each input's rows of the context, computed side by side.
        let mut parts = Vec::with_capacity(segs.len());
        let mut rest = ctx.as_mut_slice();
        for &(first, n) in segs {
            let (mine, after) = rest.split_at_mut(n * h);
            parts.push((first, n, mine));
            rest = after;
        }
        parts.into_par_iter().for_each(|(first, n, out)| {
            let mut scores = vec![0f32; n];
            for head in 0..self.heads {
                let cols = head * d..(head + 1) * d;
                for i in 0..n {
                    let qi = &q[(first + i) * h..][cols.clone()];
                    let mut max = f32::NEG_INFINITY;
                    for (j, s) in scores.iter_mut().enumerate() {
                        *s = dot(qi, &k[(first + j) * h..][cols.clone()]) * scale;
                        max = max.max(*s);
                    }
                    let mut total = 0.0;
                    for s in scores.iter_mut() {
                        *s = (*s - max).exp();
                        total += *s;
                    }
                    let row = &mut out[i * h..][cols.clone()];
                    for (j, s) in scores.iter().enumerate() {
                        let p = s / total;
                        for (o, vv) in row.iter_mut().zip(&v[(first + j) * h..][cols.clone()]) {
                            *o += p * vv;
                        }
                    }
                }
            }
        });
        let mut a = l.attn_out.forward(&ctx, rows);
        for (a, x) in a.iter_mut().zip(&x) {
            *a += x;
        }
        l.attn_norm.forward(&mut a, h, self.eps);
        let mut inter = l.intermediate.forward(&a, rows);
        inter.par_chunks_mut(4096).for_each(|c| {
            for v in c {
                *v = gelu(*v);
            }
        });
        let mut out = l.output.forward(&inter, rows);
        for (o, a) in out.iter_mut().zip(&a) {
            *o += a;
        }
        l.out_norm.forward(&mut out, h, self.eps);
        out
    }
}

/// GELU as BERT defines it (with the error function, not the tanh
/// approximation).
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}
