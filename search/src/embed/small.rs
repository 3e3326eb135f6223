//! The same BERT encoder as candle's, for short inputs (a student's
//! question): plain loops over the model's own weight tensors.
//!
//! Why: for a question of a dozen tokens, every matrix product is a dozen
//! rows against a weight matrix; candle's matrix product (the `gemm` crate)
//! first repacks the whole weight matrix, every call, so one question moved
//! ~3× the model's 42 MB of layer weights through memory (17 ms). Here each
//! output is a dot product of an input row with a weight row, read in place
//! as stored (`[out, in]`), split over the cores: the weights are read once
//! per question. Where the CPU has AVX-512 or AVX2 with FMA (panels,
//! below), documents' passages come here too: unpadded, and with attention
//! in vector lanes, the same encoder is several times faster than candle on
//! them; elsewhere long inputs and batches (ingest) stay with candle, whose
//! products are faster there than plain loops.
//!
//! Each task writes its columns of a layer's output in place, with the
//! bias, the residual or GELU applied as it stores them, into buffers kept
//! from one pass to the next: nothing is left for one thread to do while
//! the other cores wait, and nothing is allocated per layer. Where the CPU
//! has AVX-512 or AVX2 with FMA, the weights are also laid out once in
//! panels of sixteen output columns (`Panels`, a copy of the layer weights:
//! 42 MB for all-MiniLM-L6-v2), so every output is summed in its own
//! vector lane (sixteen lanes to a vector with AVX-512, eight with AVX2);
//! elsewhere the products read the weights as stored, in plain loops.
//! Tests hold the kernels to the same numbers. Where the CPU has a matrix
//! unit (Intel AMX) and the encoder is asked to use it, the weights are
//! laid out instead in bfloat16 tiles (`amx`, 21 MB) and the products run
//! there, summed in f32: not the same numbers (a test bounds the vectors'
//! drift), several times faster.
//!
//! The weights as stored are candle's tensors, shared (no copy): this
//! module borrows their storage for the duration of a call.

use std::collections::HashMap;

use candle_core::{CpuStorage, DType, Storage, StorageRef, Tensor};
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;

use super::l2_normalize;

/// Inputs of at most this many tokens (a few at once: a question) always go
/// through [`SmallEncoder`]; longer ones only where it has its panels.
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
    /// The same weights laid out for the panel kernels, where the CPU has
    /// one (a copy: candle keeps its own for long inputs).
    panels: Option<Panels>,
    /// The same weights in bfloat16 tiles for the CPU's matrix unit
    /// (AMX), where it has one and the encoder was asked to use it; then
    /// there are no panels.
    tiles: Option<Vec<u16>>,
    out: usize,
    inp: usize,
}

/// Sixteen consecutive output columns' weights for one input, a cache line.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Lane([f32; 16]);

/// A linear layer's weights in panels of 16 output columns: lane
/// `p × inp + k` holds the weights of columns `16p..16p + 16` for input `k`.
/// One aligned load gives an input's weight for sixteen outputs, so each
/// output is summed in its own vector lane, never across lanes: the kernel
/// does no horizontal sum and no unaligned load.
struct Panels(Vec<Lane>);

/// Output columns a task of the panel kernel takes at a time (two panels).
const PANEL_PAIR: usize = 32;

impl Panels {
    /// `None` unless the CPU has a panel kernel ([`panel_isa`]) and `out`
    /// is a multiple of [`PANEL_PAIR`]: then the other kernels read the
    /// weights as stored.
    fn new(w: &[f32], out: usize, inp: usize) -> Option<Self> {
        if !out.is_multiple_of(PANEL_PAIR) || w.len() != out * inp || panel_isa().is_none() {
            return None;
        }
        let mut lanes = vec![Lane([0.0; 16]); out / 16 * inp];
        for (j, row) in w.chunks_exact(inp).enumerate() {
            for (k, &v) in row.iter().enumerate() {
                lanes[(j / 16) * inp + k].0[j % 16] = v;
            }
        }
        Some(Self(lanes))
    }
}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The vector instructions the panel kernels, attention and GELU in lanes
/// run on: sixteen lanes where the CPU has AVX-512F, eight where it has
/// AVX2 and FMA (most x86 servers and laptops of the last decade).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PanelIsa {
    Avx512,
    Avx2,
}

fn panel_isa() -> Option<PanelIsa> {
    if has_avx512() {
        Some(PanelIsa::Avx512)
    } else if has_avx2_fma() {
        Some(PanelIsa::Avx2)
    } else {
        None
    }
}

/// What is done to each output of a linear layer before it is stored:
/// the bias is always added.
#[derive(Clone, Copy)]
enum Then<'a> {
    Nothing,
    /// Add the same place of this `rows × out` matrix (a residual).
    Add(&'a [f32]),
    /// Apply GELU.
    Gelu,
}

/// Where a linear layer's outputs go: `rows × ld`, row-major, written by
/// several tasks at once, each to its own columns.
#[derive(Clone, Copy)]
struct Sink<'a> {
    ptr: *mut f32,
    ld: usize,
    bias: &'a [f32],
    then: Then<'a>,
}

// SAFETY: a `Sink` is shared by the tasks of one `Linear::forward_into`
// call, each of which writes only its own columns (see `store`), and the
// output buffer outlives the call (it is borrowed mutably for its length).
unsafe impl Send for Sink<'_> {}
unsafe impl Sync for Sink<'_> {}

impl Sink<'_> {
    /// Stores `sum` (the dot product of input row `r` and weight row `j`)
    /// with the bias and `then` applied.
    ///
    /// # Safety
    /// `r < rows` and `j < ld` of the buffer the sink was made from, and no
    /// other task writes column `j` meanwhile.
    #[inline(always)]
    unsafe fn store(&self, r: usize, j: usize, sum: f32) {
        let at = r * self.ld + j;
        let mut v = sum + self.bias[j];
        match self.then {
            Then::Nothing => {}
            Then::Add(res) => v += res[at],
            Then::Gelu => v = gelu(v),
        }
        // SAFETY: in bounds and unshared (the caller's contract).
        unsafe { *self.ptr.add(at) = v };
    }
}

impl Linear {
    /// `tiles`: lay the weights out for the matrix unit where the CPU has
    /// one and the shapes fit ([`amx::fits`]).
    fn new(
        t: &HashMap<String, Tensor>,
        name: &str,
        out: usize,
        inp: usize,
        tiles: bool,
    ) -> Option<Self> {
        let weight = Param::new(t, &format!("{name}.weight"), &[out, inp])?;
        let w = weight.view();
        #[cfg(target_arch = "x86_64")]
        let tiles = (tiles && amx::fits(out, inp) && amx::available())
            .then(|| amx::pack(w.slice(), out, inp));
        #[cfg(not(target_arch = "x86_64"))]
        let tiles: Option<Vec<u16>> = None;
        let panels = match tiles {
            Some(_) => None,
            None => Panels::new(w.slice(), out, inp),
        };
        drop(w);
        Some(Self {
            weight,
            bias: Param::new(t, &format!("{name}.bias"), &[out])?,
            panels,
            tiles,
            out,
            inp,
        })
    }

    /// `y = x Wᵀ + b`, then `then`: `x` is `rows × inp`, `y` is
    /// `rows × out`, both row-major.
    fn forward_into(
        &self,
        x: &[f32],
        rows: usize,
        y: &mut [f32],
        then: Then<'_>,
        x16: &mut Vec<u16>,
    ) {
        Self::forward_many(&[(self, y)], x, rows, then, x16);
    }

    /// Several linear layers over the same input (attention's query, key
    /// and value), their column blocks split over the cores as one job, so
    /// the cores meet once instead of once per layer.
    /// `x16`: a buffer kept between calls for the input in bfloat16, where
    /// the layers have tiles.
    fn forward_many(
        layers: &[(&Linear, &mut [f32])],
        x: &[f32],
        rows: usize,
        then: Then<'_>,
        x16: &mut Vec<u16>,
    ) {
        // Column blocks of the output, one task each: every task reads its
        // block of weight rows once for all input rows and writes its
        // columns of every output row in place.
        const BLOCK: usize = 64;
        let views: Vec<(View<'_>, View<'_>)> = layers
            .iter()
            .map(|(l, _)| (l.weight.view(), l.bias.view()))
            .collect();
        // The input in bfloat16 once for every task, where a layer has
        // tiles (all of them share `x`, so the same width).
        #[cfg(target_arch = "x86_64")]
        let x16 = match layers.iter().find(|(l, _)| l.tiles.is_some()) {
            Some((l, _)) => {
                amx::rows_to_bf16(x, rows, l.inp, x16);
                Some(x16.as_slice())
            }
            None => None,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = x16;
        let mut tasks = Vec::new();
        for ((l, y), (w, b)) in layers.iter().zip(&views) {
            assert!(x.len() >= rows * l.inp && y.len() >= rows * l.out);
            if let Then::Add(res) = then {
                assert!(res.len() >= rows * l.out);
            }
            let sink = Sink {
                // Writes go through this pointer only; `y` stays borrowed
                // (mutably, by the caller) until every task has ended.
                ptr: y.as_ptr().cast_mut(),
                ld: l.out,
                bias: b.slice(),
                then,
            };
            let w = w.slice();
            for lo in (0..l.out).step_by(BLOCK) {
                let hi = (lo + BLOCK).min(l.out);
                let weights = match (&l.tiles, &l.panels) {
                    // `out` is a multiple of 16 and `inp` of 32 (`amx::fits`).
                    (Some(t), _) => Weights::Tiles(&t[lo / 16 * l.inp * 16..hi / 16 * l.inp * 16]),
                    // BLOCK and `out` are multiples of PANEL_PAIR.
                    (None, Some(p)) => Weights::Panels(&p.0[lo / 16 * l.inp..hi / 16 * l.inp]),
                    (None, None) => Weights::Rows(&w[lo * l.inp..hi * l.inp]),
                };
                tasks.push((sink, weights, lo, l.inp));
            }
        }
        tasks
            .into_par_iter()
            .for_each(|(sink, weights, lo, inp)| match weights {
                // SAFETY: this task alone writes columns lo..lo + the
                // block's width of its sink, each within the sink's rows and
                // width (asserted above).
                Weights::Rows(w) => unsafe { products(x, rows, inp, w, lo, &sink) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above; panels exist only where the CPU has a
                // panel kernel (`Panels::new`), in whole pairs.
                Weights::Panels(w) => unsafe {
                    if has_avx512() {
                        avx512::panel_products(x, rows, inp, w, lo, &sink)
                    } else {
                        avx2::panel_products(x, rows, inp, w, lo, &sink)
                    }
                },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above; tiles exist only where the matrix unit
                // is available (`Linear::new`), and `x16` was made from `x`
                // for the tiled layers' width.
                Weights::Tiles(t) => unsafe {
                    let x16 = x16.expect("made where a layer has tiles");
                    amx::tile_products(x16, rows, inp, t, lo, &sink)
                },
                #[cfg(not(target_arch = "x86_64"))]
                Weights::Panels(_) | Weights::Tiles(_) => {
                    unreachable!("panels and tiles are laid out only on x86-64")
                }
            });
    }
}

/// A task's block of a layer's weights, as stored or in panels.
#[derive(Clone, Copy)]
enum Weights<'a> {
    Rows(&'a [f32]),
    Panels(&'a [Lane]),
    Tiles(&'a [u16]),
}

/// For every weight row `j` of `w` (output column `first + j`) and input
/// row `r`: stores `x[r] · w[j]` through `sink`.
///
/// # Safety
/// The sink's buffer holds `rows` rows of at least `first + w.len() / inp`
/// columns, and no other task writes those columns meanwhile.
unsafe fn products(x: &[f32], rows: usize, inp: usize, w: &[f32], first: usize, sink: &Sink<'_>) {
    assert!(x.len() >= rows * inp && w.len().is_multiple_of(inp));
    #[cfg(target_arch = "x86_64")]
    {
        if inp.is_multiple_of(8) && has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above); as above.
            return unsafe { avx2::products(x, rows, inp, w, first, sink) };
        }
    }
    // SAFETY: the caller's contract.
    unsafe { loops(x, rows, inp, w, first, sink) }
}

/// [`products`] without vector instructions.
///
/// # Safety
/// As [`products`].
unsafe fn loops(x: &[f32], rows: usize, inp: usize, w: &[f32], first: usize, sink: &Sink<'_>) {
    for (j, wj) in w.chunks_exact(inp).enumerate() {
        for r in 0..rows {
            // SAFETY: the caller's contract.
            unsafe { sink.store(r, first + j, dot(&x[r * inp..(r + 1) * inp], wj)) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Lane, Sink};

    /// [`super::products`] with AVX2: four weight rows against two input
    /// rows at a time, eight running sums in registers, every weight and
    /// input chunk loaded once per tile.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `inp` a multiple of 8;
    /// `x.len() >= rows * inp`, `w.len()` a multiple of `inp`; the sink as
    /// [`super::products`] requires.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn products(
        x: &[f32],
        rows: usize,
        inp: usize,
        w: &[f32],
        first: usize,
        sink: &Sink<'_>,
    ) {
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
                    // SAFETY: rows r, r + 1 < rows, column first + j + t
                    // is this task's (see # Safety).
                    unsafe {
                        sink.store(r, first + j + t, sum(acc[t]));
                        if pair == 2 {
                            sink.store(r + 1, first + j + t, sum(acc[t + 4]));
                        }
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

    /// Input rows a tile of the panel kernel takes at most: 12 running sums
    /// of eight lanes (six rows by one panel's sixteen columns), two weight
    /// vectors and a broadcast input fit the 16 vector registers.
    const TILE_ROWS: usize = 6;

    /// [`super::products`] on weights laid out in panels
    /// ([`super::Panels`]), eight lanes at a time: for each panel (16
    /// output columns, two vectors), every tile of up to six input rows
    /// keeps its 12 sums in registers while it walks the inputs once: per
    /// input, two aligned weight loads and a broadcast of each row's value
    /// feed 12 fused multiply-adds.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `x.len() >= rows * inp`;
    /// `panels.len()` a multiple of `inp`; the sink's buffer holds `rows`
    /// rows of at least `first + panels.len() / inp × 16` columns, which no
    /// other task writes meanwhile.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn panel_products(
        x: &[f32],
        rows: usize,
        inp: usize,
        panels: &[Lane],
        first: usize,
        sink: &Sink<'_>,
    ) {
        assert!(x.len() >= rows * inp && panels.len().is_multiple_of(inp));
        for (panel, w) in panels.chunks_exact(inp).enumerate() {
            let col = first + panel * 16;
            let mut r = 0;
            while r < rows {
                let n = (rows - r).min(TILE_ROWS);
                let t = Tile {
                    x: x[r * inp..].as_ptr(),
                    inp,
                    w: w.as_ptr().cast(),
                    row: r,
                    col,
                };
                // SAFETY: rows r..r + n exist in x and the sink; the
                // panel's columns are this task's (see # Safety).
                unsafe {
                    match n {
                        1 => t.run::<1>(sink),
                        2 => t.run::<2>(sink),
                        3 => t.run::<3>(sink),
                        4 => t.run::<4>(sink),
                        5 => t.run::<5>(sink),
                        _ => t.run::<TILE_ROWS>(sink),
                    }
                }
                r += n;
            }
        }
    }

    /// Rows `row..row + N` of the input against one panel.
    struct Tile {
        /// The first row's inputs (`N` rows of `inp` follow).
        x: *const f32,
        inp: usize,
        /// The panel's first lane (`inp` lanes follow).
        w: *const f32,
        row: usize,
        col: usize,
    }

    impl Tile {
        /// # Safety
        /// As [`panel_products`], for the tile's rows and 16 columns.
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn run<const N: usize>(&self, sink: &Sink<'_>) {
            let (x, inp, w) = (self.x, self.inp, self.w);
            let mut lo = [_mm256_setzero_ps(); N];
            let mut hi = [_mm256_setzero_ps(); N];
            for k in 0..inp {
                // SAFETY: lane k of the panel and input k of each of the N
                // rows are in bounds (see # Safety); lanes are 64-byte
                // aligned, so both halves are 32-byte aligned.
                unsafe {
                    let w0 = _mm256_load_ps(w.add(k * 16));
                    let w1 = _mm256_load_ps(w.add(k * 16 + 8));
                    for i in 0..N {
                        let xv = _mm256_broadcast_ss(&*x.add(i * inp + k));
                        lo[i] = _mm256_fmadd_ps(xv, w0, lo[i]);
                        hi[i] = _mm256_fmadd_ps(xv, w1, hi[i]);
                    }
                }
            }
            for i in 0..N {
                // SAFETY: the tile's rows and columns (see # Safety).
                unsafe {
                    sink.store8(self.row + i, self.col, lo[i]);
                    sink.store8(self.row + i, self.col + 8, hi[i]);
                }
            }
        }
    }

    /// [`super::gelu`] in eight lanes, with the same error function as
    /// [`super::avx512::gelu16`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gelu8(x: __m256) -> __m256 {
        let half_x = _mm256_mul_ps(_mm256_set1_ps(0.5), x);
        let erf = erf8(_mm256_mul_ps(
            x,
            _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
        ));
        _mm256_mul_ps(half_x, _mm256_add_ps(_mm256_set1_ps(1.0), erf))
    }

    /// `a + x × (b + x × (c + …))`, highest coefficient last.
    #[target_feature(enable = "avx2,fma")]
    fn horner(x: __m256, coefficients: &[f32]) -> __m256 {
        let mut acc = _mm256_set1_ps(coefficients[coefficients.len() - 1]);
        for &c in coefficients.iter().rev().skip(1) {
            acc = _mm256_fmadd_ps(acc, x, _mm256_set1_ps(c));
        }
        acc
    }

    #[target_feature(enable = "avx2,fma")]
    fn erf8(z: __m256) -> __m256 {
        let sign_bit = _mm256_set1_ps(-0.0);
        let a = _mm256_andnot_ps(sign_bit, z);
        let zz = _mm256_mul_ps(z, z);
        let p = horner(zz, &super::ERF_NEAR_P);
        let q = horner(zz, &super::ERF_NEAR_Q);
        let near = _mm256_fmadd_ps(z, _mm256_div_ps(p, q), z);
        let one = _mm256_set1_ps(1.0);
        let t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.327_591_1), a, one));
        let poly = _mm256_mul_ps(t, horner(t, &super::ERF_FAR));
        let far = _mm256_fnmadd_ps(poly, exp8(_mm256_sub_ps(_mm256_setzero_ps(), zz)), one);
        let far = _mm256_blendv_ps(
            far,
            one,
            _mm256_cmp_ps::<_CMP_GE_OQ>(a, _mm256_set1_ps(4.0)),
        );
        let far = _mm256_or_ps(far, _mm256_and_ps(z, sign_bit));
        _mm256_blendv_ps(
            far,
            near,
            _mm256_cmp_ps::<_CMP_LT_OQ>(a, _mm256_set1_ps(0.843_75)),
        )
    }

    /// `e^y` for y ≤ 0, as [`super::avx512`]'s `exp16`; below -87 (where
    /// 2^n would leave the normal numbers) it gives e^-87, about 1.6e-38,
    /// and NaN gives e^-87 too (GELU and softmax never pass one on).
    #[target_feature(enable = "avx2,fma")]
    fn exp8(y: __m256) -> __m256 {
        let y = _mm256_max_ps(y, _mm256_set1_ps(-87.0));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(y, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), y);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let e = horner(r, &super::EXP_SERIES);
        let two_n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        )));
        _mm256_mul_ps(e, two_n)
    }

    /// The widest head [`attend`] takes, in numbers (eight vectors).
    pub(super) const MAX_HEAD_DIM: usize = 64;

    /// Key columns scored at once: four vectors of running sums.
    const KEY_BLOCK: usize = 32;

    /// [`super::Segment::attend`] in eight lanes, laid out as
    /// [`super::avx512::attend`]: keys transposed with the scale folded in,
    /// scores for eight keys per vector, softmax in lanes, the weighted
    /// values summed per dimension.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; the head width `h / heads` is a
    /// multiple of 8 and at most [`MAX_HEAD_DIM`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn attend(seg: &super::Segment<'_>, out: &mut [f32]) {
        let (n, h) = (seg.n, seg.h);
        let d = h / seg.heads;
        assert!(d.is_multiple_of(8) && d <= MAX_HEAD_DIM);
        assert!(seg.q.len() >= seg.rows * h && seg.k.len() >= n * h && seg.v.len() >= n * h);
        assert!(out.len() >= seg.rows * h);
        let width = n.next_multiple_of(KEY_BLOCK);
        let mut kt = vec![0f32; d * width];
        let mut scores = vec![0f32; width];
        for head in 0..seg.heads {
            let c0 = head * d;
            for j in 0..n {
                for e in 0..d {
                    kt[e * width + j] = seg.k[j * h + c0 + e] * seg.scale;
                }
            }
            for i in 0..seg.rows {
                let qi = &seg.q[i * h + c0..i * h + c0 + d];
                for b in (0..width).step_by(KEY_BLOCK) {
                    let mut acc = [_mm256_setzero_ps(); KEY_BLOCK / 8];
                    for (e, &qe) in qi.iter().enumerate() {
                        let qv = _mm256_set1_ps(qe);
                        let row = &kt[e * width + b..e * width + b + KEY_BLOCK];
                        for (u, a) in acc.iter_mut().enumerate() {
                            // SAFETY: 8 numbers of `row` from 8u.
                            let kv = unsafe { _mm256_loadu_ps(row.as_ptr().add(8 * u)) };
                            *a = _mm256_fmadd_ps(qv, kv, *a);
                        }
                    }
                    for (u, a) in acc.iter().enumerate() {
                        // SAFETY: 8 numbers of `scores` from b + 8u < width.
                        unsafe { _mm256_storeu_ps(scores.as_mut_ptr().add(b + 8 * u), *a) };
                    }
                }
                let total = softmax(&mut scores, n);
                let mut acc = [_mm256_setzero_ps(); MAX_HEAD_DIM / 8];
                for (j, &p) in scores[..n].iter().enumerate() {
                    let pv = _mm256_set1_ps(p);
                    let vj = &seg.v[j * h + c0..j * h + c0 + d];
                    for (u, a) in acc.iter_mut().take(d / 8).enumerate() {
                        // SAFETY: 8 numbers of `vj` from 8u < d.
                        let x = unsafe { _mm256_loadu_ps(vj.as_ptr().add(8 * u)) };
                        *a = _mm256_fmadd_ps(pv, x, *a);
                    }
                }
                let inv = _mm256_set1_ps(1.0 / total);
                let row = &mut out[i * h + c0..i * h + c0 + d];
                for (u, a) in acc.iter().take(d / 8).enumerate() {
                    // SAFETY: 8 numbers of `row` from 8u < d.
                    unsafe {
                        _mm256_storeu_ps(row.as_mut_ptr().add(8 * u), _mm256_mul_ps(*a, inv))
                    };
                }
            }
        }
    }

    /// Replaces the first `n` of `scores` (a whole number of vectors long)
    /// by `e^(s - max)`, the rest by 0, and returns their sum.
    #[target_feature(enable = "avx2,fma")]
    fn softmax(scores: &mut [f32], n: usize) -> f32 {
        assert!(scores.len().is_multiple_of(8) && n <= scores.len());
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        // All bits set in the lanes of `scores[b..b + 8]` below n.
        let live = |b: usize| -> __m256 {
            let left = n.saturating_sub(b).min(8) as i32;
            _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(left), lanes))
        };
        let lowest = _mm256_set1_ps(f32::MIN);
        let mut max = lowest;
        for b in (0..n).step_by(8) {
            // SAFETY: 8 numbers of `scores` from b (a whole vector).
            let s = unsafe { _mm256_loadu_ps(scores.as_ptr().add(b)) };
            max = _mm256_max_ps(max, _mm256_blendv_ps(lowest, s, live(b)));
        }
        let max = _mm256_set1_ps(reduce(max, f32::max));
        let mut total = _mm256_setzero_ps();
        for b in (0..scores.len()).step_by(8) {
            // SAFETY: as above.
            let s = unsafe { _mm256_loadu_ps(scores.as_ptr().add(b)) };
            let e = _mm256_and_ps(exp8(_mm256_sub_ps(s, max)), live(b));
            total = _mm256_add_ps(total, e);
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(scores.as_mut_ptr().add(b), e) };
        }
        reduce(total, |a, b| a + b)
    }

    /// The eight lanes of `v` folded by `f`.
    #[target_feature(enable = "avx2,fma")]
    fn reduce(v: __m256, f: impl Fn(f32, f32) -> f32) -> f32 {
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds 8 numbers.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        lanes.into_iter().reduce(f).unwrap_or(0.0)
    }

    impl Sink<'_> {
        /// [`Sink::store`] for eight consecutive columns from `j`.
        ///
        /// # Safety
        /// The CPU has AVX2 and FMA; as [`Sink::store`] for each column.
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        pub(super) unsafe fn store8(&self, r: usize, j: usize, sums: __m256) {
            let at = r * self.ld + j;
            let bias = &self.bias[j..j + 8];
            // SAFETY: 8 numbers of bias (sliced above) and of the residual.
            let v = unsafe { _mm256_add_ps(sums, _mm256_loadu_ps(bias.as_ptr())) };
            let v = match self.then {
                super::Then::Nothing => v,
                super::Then::Add(res) => {
                    let res = &res[at..at + 8];
                    // SAFETY: as above.
                    unsafe { _mm256_add_ps(v, _mm256_loadu_ps(res.as_ptr())) }
                }
                super::Then::Gelu => gelu8(v),
            };
            // SAFETY: columns j..j + 8 of row r are in the buffer and this
            // task's (the caller's contract).
            unsafe { _mm256_storeu_ps(self.ptr.add(at), v) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Lane, PANEL_PAIR, Sink};

    /// Input rows a tile takes at most: with two panels, 24 running sums of
    /// sixteen lanes, two weight vectors and a broadcast input fit the 32
    /// vector registers.
    const TILE_ROWS: usize = 12;

    /// [`super::products`] on weights laid out in panels ([`super::Panels`]):
    /// for each pair of panels (32 output columns), every tile of up to
    /// twelve input rows keeps its 24 sums in registers while it walks the
    /// inputs once: per input, two aligned weight loads and a broadcast of
    /// each row's value feed 24 fused multiply-adds.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `x.len() >= rows * inp`; `panels.len()`
    /// a multiple of `2 × inp`; the sink's buffer holds `rows` rows of at
    /// least `first + panels.len() / inp × 16` columns, which no other task
    /// writes meanwhile.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn panel_products(
        x: &[f32],
        rows: usize,
        inp: usize,
        panels: &[Lane],
        first: usize,
        sink: &Sink<'_>,
    ) {
        assert!(x.len() >= rows * inp && panels.len().is_multiple_of(2 * inp));
        for (pair, w) in panels.chunks_exact(2 * inp).enumerate() {
            let col = first + pair * PANEL_PAIR;
            let mut r = 0;
            while r < rows {
                let n = (rows - r).min(TILE_ROWS);
                let t = Tile {
                    x: x[r * inp..].as_ptr(),
                    inp,
                    w: w.as_ptr().cast(),
                    row: r,
                    col,
                };
                // SAFETY: rows r..r + n exist in x and the sink; the pair's
                // columns are this task's (see # Safety).
                unsafe {
                    match n {
                        1 => t.run::<1>(sink),
                        2 => t.run::<2>(sink),
                        3 => t.run::<3>(sink),
                        4 => t.run::<4>(sink),
                        5 => t.run::<5>(sink),
                        6 => t.run::<6>(sink),
                        7 => t.run::<7>(sink),
                        8 => t.run::<8>(sink),
                        9 => t.run::<9>(sink),
                        10 => t.run::<10>(sink),
                        11 => t.run::<11>(sink),
                        _ => t.run::<TILE_ROWS>(sink),
                    }
                }
                r += n;
            }
        }
    }

    /// Rows `row..row + N` of the input against one pair of panels.
    struct Tile {
        /// The first row's inputs (`N` rows of `inp` follow).
        x: *const f32,
        inp: usize,
        /// The pair's first panel (`inp` lanes), the second right after.
        w: *const f32,
        row: usize,
        col: usize,
    }

    impl Tile {
        /// # Safety
        /// As [`panel_products`], for the tile's rows and 32 columns.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn run<const N: usize>(&self, sink: &Sink<'_>) {
            let (x, inp, w) = (self.x, self.inp, self.w);
            let mut lo = [_mm512_setzero_ps(); N];
            let mut hi = [_mm512_setzero_ps(); N];
            for k in 0..inp {
                // SAFETY: lanes k and inp + k of the pair, and input k of
                // each of the N rows, are in bounds (see # Safety); lanes
                // are 64-byte aligned.
                unsafe {
                    let w0 = _mm512_load_ps(w.add(k * 16));
                    let w1 = _mm512_load_ps(w.add((inp + k) * 16));
                    for i in 0..N {
                        let xv = _mm512_set1_ps(*x.add(i * inp + k));
                        lo[i] = _mm512_fmadd_ps(xv, w0, lo[i]);
                        hi[i] = _mm512_fmadd_ps(xv, w1, hi[i]);
                    }
                }
            }
            for i in 0..N {
                // SAFETY: the tile's rows and columns (see # Safety).
                unsafe {
                    sink.store16(self.row + i, self.col, lo[i]);
                    sink.store16(self.row + i, self.col + 16, hi[i]);
                }
            }
        }
    }

    /// [`super::gelu`] in sixteen lanes at once, with the same error
    /// function: musl's rational function below 0.84375, Abramowitz and
    /// Stegun's 7.1.26 beyond (a test holds the two within 1e-6).
    #[target_feature(enable = "avx512f")]
    pub(super) fn gelu16(x: __m512) -> __m512 {
        let half_x = _mm512_mul_ps(_mm512_set1_ps(0.5), x);
        let erf = erf16(_mm512_mul_ps(
            x,
            _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
        ));
        _mm512_mul_ps(half_x, _mm512_add_ps(_mm512_set1_ps(1.0), erf))
    }

    /// `a + x × (b + x × (c + …))`, highest coefficient last.
    #[target_feature(enable = "avx512f")]
    fn horner(x: __m512, coefficients: &[f32]) -> __m512 {
        let mut acc = _mm512_set1_ps(coefficients[coefficients.len() - 1]);
        for &c in coefficients.iter().rev().skip(1) {
            acc = _mm512_fmadd_ps(acc, x, _mm512_set1_ps(c));
        }
        acc
    }

    #[target_feature(enable = "avx512f")]
    fn erf16(z: __m512) -> __m512 {
        let a = _mm512_abs_ps(z);
        // Near zero (musl's erff): z + z × P(z²) / Q(z²).
        let zz = _mm512_mul_ps(z, z);
        let p = horner(zz, &super::ERF_NEAR_P);
        let q = horner(zz, &super::ERF_NEAR_Q);
        let near = _mm512_fmadd_ps(z, _mm512_div_ps(p, q), z);
        // Beyond: 1 - t × P(t) × exp(-a²), t = 1 / (1 + 0.3275911 a),
        // with the sign of z; 1 from 4 on, as the scalar version.
        let one = _mm512_set1_ps(1.0);
        let t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.327_591_1), a, one));
        let poly = _mm512_mul_ps(t, horner(t, &super::ERF_FAR));
        let far = _mm512_fnmadd_ps(poly, exp16(_mm512_sub_ps(_mm512_setzero_ps(), zz)), one);
        let far = _mm512_mask_blend_ps(
            _mm512_cmp_ps_mask::<_CMP_GE_OQ>(a, _mm512_set1_ps(4.0)),
            far,
            one,
        );
        let sign = _mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32(i32::MIN));
        let far = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(far), sign));
        _mm512_mask_blend_ps(
            _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, _mm512_set1_ps(0.843_75)),
            far,
            near,
        )
    }

    /// `e^y` for y ≤ 0 (here -16..-0.71): y = n ln 2 + r, |r| ≤ ln 2 / 2,
    /// e^r by its series to the 7th power (relative error below 1e-7),
    /// times 2^n.
    #[target_feature(enable = "avx512f")]
    fn exp16(y: __m512) -> __m512 {
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(y, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), y);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        let e = horner(r, &super::EXP_SERIES);
        _mm512_scalef_ps(e, n)
    }

    /// The widest head [`attend`] takes, in numbers (four vectors).
    pub(super) const MAX_HEAD_DIM: usize = 64;

    /// Key columns scored at once: four vectors of running sums.
    const KEY_BLOCK: usize = 64;

    /// [`super::Segment::attend`] in vector lanes, without horizontal sums
    /// in the products: each head's keys are laid out transposed (one row
    /// per dimension, the scale folded in), so a query's scores for sixteen
    /// keys are one vector summed over the head's dimensions by broadcasts
    /// of the query; softmax in lanes (the same `exp` as GELU's); the
    /// weighted values summed per dimension, a broadcast weight per key.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the head width `h / heads` is a multiple
    /// of 16 and at most [`MAX_HEAD_DIM`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn attend(seg: &super::Segment<'_>, out: &mut [f32]) {
        let (n, h) = (seg.n, seg.h);
        let d = h / seg.heads;
        assert!(d.is_multiple_of(16) && d <= MAX_HEAD_DIM);
        assert!(seg.q.len() >= seg.rows * h && seg.k.len() >= n * h && seg.v.len() >= n * h);
        assert!(out.len() >= seg.rows * h);
        // Keys padded to whole blocks: padded keys score 0 and are masked
        // out of the softmax.
        let width = n.next_multiple_of(KEY_BLOCK);
        let mut kt = vec![0f32; d * width];
        let mut scores = vec![0f32; width];
        for head in 0..seg.heads {
            let c0 = head * d;
            for j in 0..n {
                for e in 0..d {
                    kt[e * width + j] = seg.k[j * h + c0 + e] * seg.scale;
                }
            }
            for i in 0..seg.rows {
                let qi = &seg.q[i * h + c0..i * h + c0 + d];
                for b in (0..width).step_by(KEY_BLOCK) {
                    let mut acc = [_mm512_setzero_ps(); KEY_BLOCK / 16];
                    for (e, &qe) in qi.iter().enumerate() {
                        let qv = _mm512_set1_ps(qe);
                        let row = &kt[e * width + b..e * width + b + KEY_BLOCK];
                        for (u, a) in acc.iter_mut().enumerate() {
                            // SAFETY: 16 numbers of `row` from 16u.
                            let kv = unsafe { _mm512_loadu_ps(row.as_ptr().add(16 * u)) };
                            *a = _mm512_fmadd_ps(qv, kv, *a);
                        }
                    }
                    for (u, a) in acc.iter().enumerate() {
                        // SAFETY: 16 numbers of `scores` from b + 16u < width.
                        unsafe { _mm512_storeu_ps(scores.as_mut_ptr().add(b + 16 * u), *a) };
                    }
                }
                let total = softmax(&mut scores, n);
                let mut acc = [_mm512_setzero_ps(); MAX_HEAD_DIM / 16];
                for (j, &p) in scores[..n].iter().enumerate() {
                    let pv = _mm512_set1_ps(p);
                    let vj = &seg.v[j * h + c0..j * h + c0 + d];
                    for (u, a) in acc.iter_mut().take(d / 16).enumerate() {
                        // SAFETY: 16 numbers of `vj` from 16u < d.
                        let x = unsafe { _mm512_loadu_ps(vj.as_ptr().add(16 * u)) };
                        *a = _mm512_fmadd_ps(pv, x, *a);
                    }
                }
                let inv = _mm512_set1_ps(1.0 / total);
                let row = &mut out[i * h + c0..i * h + c0 + d];
                for (u, a) in acc.iter().take(d / 16).enumerate() {
                    // SAFETY: 16 numbers of `row` from 16u < d.
                    unsafe {
                        _mm512_storeu_ps(row.as_mut_ptr().add(16 * u), _mm512_mul_ps(*a, inv))
                    };
                }
            }
        }
    }

    /// Replaces the first `n` of `scores` (a whole number of vectors long)
    /// by `e^(s - max)`, the rest by 0, and returns their sum.
    #[target_feature(enable = "avx512f")]
    fn softmax(scores: &mut [f32], n: usize) -> f32 {
        assert!(scores.len().is_multiple_of(16) && n <= scores.len());
        let live = |b: usize| -> __mmask16 {
            let left = n.saturating_sub(b).min(16);
            ((1u32 << left) - 1) as __mmask16
        };
        let mut max = _mm512_set1_ps(f32::MIN);
        for b in (0..n).step_by(16) {
            // SAFETY: 16 numbers of `scores` from b (a whole vector).
            let s = unsafe { _mm512_loadu_ps(scores.as_ptr().add(b)) };
            max = _mm512_mask_max_ps(max, live(b), max, s);
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
        // Far below the maximum a weight is 0 in f32 anyway; the floor
        // keeps `exp16` away from infinities.
        let floor = _mm512_set1_ps(-100.0);
        let mut total = _mm512_setzero_ps();
        for b in (0..scores.len()).step_by(16) {
            // SAFETY: as above.
            let s = unsafe { _mm512_loadu_ps(scores.as_ptr().add(b)) };
            let e = exp16(_mm512_max_ps(_mm512_sub_ps(s, max), floor));
            let e = _mm512_maskz_mov_ps(live(b), e);
            total = _mm512_add_ps(total, e);
            // SAFETY: as above.
            unsafe { _mm512_storeu_ps(scores.as_mut_ptr().add(b), e) };
        }
        _mm512_reduce_add_ps(total)
    }

    impl Sink<'_> {
        /// [`Sink::store`] for sixteen consecutive columns from `j`.
        ///
        /// # Safety
        /// The CPU has AVX-512F; as [`Sink::store`] for each column.
        #[target_feature(enable = "avx512f")]
        #[inline]
        pub(super) unsafe fn store16(&self, r: usize, j: usize, sums: __m512) {
            let at = r * self.ld + j;
            let bias = &self.bias[j..j + 16];
            // SAFETY: 16 numbers of bias (sliced above) and of the residual.
            let v = unsafe { _mm512_add_ps(sums, _mm512_loadu_ps(bias.as_ptr())) };
            let v = match self.then {
                super::Then::Nothing => v,
                super::Then::Add(res) => {
                    let res = &res[at..at + 16];
                    // SAFETY: as above.
                    unsafe { _mm512_add_ps(v, _mm512_loadu_ps(res.as_ptr())) }
                }
                super::Then::Gelu => gelu16(v),
            };
            // SAFETY: columns j..j + 16 of row r are in the buffer and this
            // task's (the caller's contract).
            unsafe { _mm512_storeu_ps(self.ptr.add(at), v) };
        }
    }
}

/// The linear layers' products on the CPU's matrix unit (Intel AMX, since
/// Sapphire Rapids): tiles of up to 16 rows × 64 bytes, and one instruction
/// (`tdpbf16ps`) that multiplies a 16 × 32 tile of inputs by a 32 × 16 tile
/// of weights, both in bfloat16, adding into 16 × 16 sums in f32. Inputs
/// and weights are rounded to bfloat16 (8 significant bits) and summed in
/// f32: the encoder's vectors move by a few thousandths, which a test
/// bounds, and the products take a fraction of the vector units' time.
///
/// Linux hands the tiles' register state to a process only on request
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM)`, kernel 5.16 on); [`available`] asks
/// once. The instructions are written with `asm!`: Rust's AMX intrinsics
/// are not stable.
#[cfg(target_arch = "x86_64")]
mod amx {
    use std::arch::asm;
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use rayon::prelude::*;

    use super::Sink;

    /// Inputs a tile of weights covers (16 pairs).
    const TILE_K: usize = 32;
    /// Rows of a tile of inputs or sums, and output columns of a tile.
    const TILE_ROWS: usize = 16;
    /// Numbers in a tile of weights: 16 rows of 16 columns × 2 inputs.
    const TILE: usize = TILE_K * 16;
    /// Tiles of sums one task keeps (its columns: [`super::Linear::forward_many`]'s
    /// blocks are 64 wide).
    const SUMS: usize = 4;

    /// Whether layers of `out` columns and `inp` inputs can be tiled.
    pub(super) fn fits(out: usize, inp: usize) -> bool {
        out > 0 && out.is_multiple_of(16) && inp > 0 && inp.is_multiple_of(TILE_K)
    }

    /// Whether the CPU has the matrix unit with bfloat16 (and AVX-512F, for
    /// storing the sums), and the kernel let this process use it.
    pub(super) fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            // CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
            let leaf = __cpuid_count(7, 0);
            let amx = leaf.edx & (1 << 22) != 0 && leaf.edx & (1 << 24) != 0;
            amx && super::has_avx512() && permitted()
        })
    }

    #[cfg(target_os = "linux")]
    fn permitted() -> bool {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: asks the kernel to let this process use the tiles' state;
        // no memory is passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        r == 0
    }

    #[cfg(not(target_os = "linux"))]
    fn permitted() -> bool {
        false
    }

    /// `v` rounded to the nearest bfloat16 (ties to even), as its bits.
    pub(super) fn bf16(v: f32) -> u16 {
        let b = v.to_bits();
        let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16;
        // A NaN stays a (quiet) NaN; no branch, so the loops vectorise.
        let quiet = (b >> 16) | 0x40;
        (if v.is_nan() { quiet } else { rounded }) as u16
    }

    /// A layer's weights (`out × inp`, row-major) in tiles: tile
    /// `p × inp / 32 + b` holds output columns `16p..16p + 16` for inputs
    /// `32b..32b + 32`, as the instruction reads them: row `i` holds, for
    /// each of the 16 columns, inputs `2i` and `2i + 1` side by side.
    pub(super) fn pack(w: &[f32], out: usize, inp: usize) -> Vec<u16> {
        assert!(fits(out, inp) && w.len() == out * inp);
        let blocks = inp / TILE_K;
        let mut t = vec![0u16; out * inp];
        for (j, row) in w.chunks_exact(inp).enumerate() {
            let (panel, col) = (j / 16, j % 16);
            for (k, &v) in row.iter().enumerate() {
                let (b, pair, half) = (k / TILE_K, (k % TILE_K) / 2, k % 2);
                t[(panel * blocks + b) * TILE + pair * 32 + col * 2 + half] = bf16(v);
            }
        }
        t
    }

    /// `rows × inp` inputs in bfloat16 into `out` (its buffer kept from
    /// call to call), padded with zero rows to a whole number of tiles.
    pub(super) fn rows_to_bf16(x: &[f32], rows: usize, inp: usize, out: &mut Vec<u16>) {
        out.clear();
        out.resize(rows.next_multiple_of(TILE_ROWS) * inp, 0);
        // A tile's rows a task: a long passage's input is megabytes.
        out.par_chunks_mut(TILE_ROWS * inp)
            .zip(x[..rows * inp].par_chunks(TILE_ROWS * inp))
            .for_each(|(o, x)| {
                for (o, &v) in o.iter_mut().zip(x) {
                    *o = bf16(v);
                }
            });
    }

    /// The tiles' shapes: 0–3 sums (16 rows × 16 f32), 4 inputs (16 rows ×
    /// 32 bf16), 5 and 6 weights (16 rows × 32 bf16); all 16 × 64 bytes.
    #[repr(C, align(64))]
    struct Palette([u8; 64]);

    impl Palette {
        fn new() -> Self {
            let mut p = [0u8; 64];
            p[0] = 1; // palette 1
            for t in 0..7 {
                p[16 + 2 * t] = 64; // bytes per row (u16, little-endian)
                p[48 + t] = TILE_ROWS as u8;
            }
            Self(p)
        }
    }

    /// One tile of sums as stored, 16 rows of 16.
    #[repr(C, align(64))]
    struct Sums([f32; TILE_ROWS * 16]);

    /// [`super::products`] on the matrix unit: for every 16 input rows and
    /// 32 inputs, one input tile against each of the task's (up to four)
    /// weight tiles, the sums kept in tiles until the inputs are done, then
    /// stored through the sink sixteen columns at a time.
    ///
    /// # Safety
    /// [`available`]; `x16` is [`rows_to_bf16`] of the layer's `rows × inp`
    /// input; `tiles` is a run of whole panels of [`pack`]'s output (at
    /// most [`SUMS`]); the sink's buffer holds `rows` rows of at least
    /// `first + 16 × panels` columns, which no other task writes meanwhile.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile_products(
        x16: &[u16],
        rows: usize,
        inp: usize,
        tiles: &[u16],
        first: usize,
        sink: &Sink<'_>,
    ) {
        let blocks = inp / TILE_K;
        let panels = tiles.len() / (blocks * TILE);
        assert!(
            inp.is_multiple_of(TILE_K)
                && tiles.len() == panels * blocks * TILE
                && panels <= SUMS
                && x16.len() >= rows.next_multiple_of(TILE_ROWS) * inp
        );
        let palette = Palette::new();
        let mut sums = [const { Sums([0.0; TILE_ROWS * 16]) }; SUMS];
        let stride = inp * 2;
        // SAFETY: the palette is 64 readable bytes; the CPU has AMX and this
        // process may use it (the caller's contract).
        unsafe { asm!("ldtilecfg [{}]", in(reg) palette.0.as_ptr(), options(nostack, readonly)) };
        for r0 in (0..rows).step_by(TILE_ROWS) {
            // SAFETY: registers only.
            unsafe {
                asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    options(nostack, nomem)
                )
            };
            for b in 0..blocks {
                // Rows r0..r0 + 16 (padded), inputs 32b..32b + 32.
                let a = x16[r0 * inp + b * TILE_K..].as_ptr();
                // SAFETY: 16 rows of 64 bytes at `stride` from `a` are in
                // `x16` (padded to whole tiles).
                unsafe {
                    asm!("tileloadd tmm4, [{} + {}*1]", in(reg) a, in(reg) stride, options(nostack, readonly))
                };
                for p in 0..panels {
                    let w = tiles[(p * blocks + b) * TILE..].as_ptr();
                    // SAFETY: a whole tile (1 KiB) at `w`; registers chosen
                    // by `p` (the asm names them literally).
                    unsafe {
                        match p {
                            0 => asm!(
                                "tileloadd tmm5, [{} + {}*1]",
                                "tdpbf16ps tmm0, tmm4, tmm5",
                                in(reg) w, in(reg) 64usize, options(nostack, readonly)
                            ),
                            1 => asm!(
                                "tileloadd tmm6, [{} + {}*1]",
                                "tdpbf16ps tmm1, tmm4, tmm6",
                                in(reg) w, in(reg) 64usize, options(nostack, readonly)
                            ),
                            2 => asm!(
                                "tileloadd tmm5, [{} + {}*1]",
                                "tdpbf16ps tmm2, tmm4, tmm5",
                                in(reg) w, in(reg) 64usize, options(nostack, readonly)
                            ),
                            _ => asm!(
                                "tileloadd tmm6, [{} + {}*1]",
                                "tdpbf16ps tmm3, tmm4, tmm6",
                                in(reg) w, in(reg) 64usize, options(nostack, readonly)
                            ),
                        }
                    }
                }
            }
            for (p, s) in sums.iter_mut().enumerate().take(panels) {
                let to = s.0.as_mut_ptr();
                // SAFETY: 16 rows of 64 bytes fit `Sums`.
                unsafe {
                    match p {
                        0 => {
                            asm!("tilestored [{} + {}*1], tmm0", in(reg) to, in(reg) 64usize, options(nostack))
                        }
                        1 => {
                            asm!("tilestored [{} + {}*1], tmm1", in(reg) to, in(reg) 64usize, options(nostack))
                        }
                        2 => {
                            asm!("tilestored [{} + {}*1], tmm2", in(reg) to, in(reg) 64usize, options(nostack))
                        }
                        _ => {
                            asm!("tilestored [{} + {}*1], tmm3", in(reg) to, in(reg) 64usize, options(nostack))
                        }
                    }
                }
            }
            for i in 0..(rows - r0).min(TILE_ROWS) {
                for (p, s) in sums.iter().enumerate().take(panels) {
                    // SAFETY: row r0 + i < rows and the task's columns
                    // (see # Safety); the sums' row is 16 aligned numbers.
                    unsafe {
                        let v = _mm512_load_ps(s.0[i * 16..].as_ptr());
                        sink.store16(r0 + i, first + 16 * p, v);
                    }
                }
            }
        }
        // Back to the initial state: a thread switch saves no tile data.
        // SAFETY: registers only.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
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
        // Rows in groups, side by side (a pass of many questions has
        // hundreds).
        x.par_chunks_mut(dim * 16).for_each(|rows| {
            for row in rows.chunks_exact_mut(dim) {
                Self::row(row, w, b, eps);
            }
        });
    }

    fn row(row: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
        let dim = row.len() as f32;
        let mean = row.iter().sum::<f32>() / dim;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(w).zip(b) {
            *v = (*v - mean) * inv * w + b;
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
    intermediate: usize,
    heads: usize,
    max_positions: usize,
    eps: f32,
    /// Buffers of earlier passes, for the next.
    scratch: parking_lot::Mutex<Vec<Scratch>>,
}

impl SmallEncoder {
    /// `None` when the model is not one this encoder computes exactly
    /// (another activation, other tensor names, non-f32 weights): then
    /// everything goes through candle. `tiles`: run the linear layers'
    /// products on the CPU's matrix unit in bfloat16 where it has one
    /// (AMX; see [`amx`]), not quite the same numbers (vectors within a
    /// few thousandths of the exact ones), several times faster.
    pub(super) fn new(t: &HashMap<String, Tensor>, c: &Config, tiles: bool) -> Option<Self> {
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
                    query: Linear::new(t, &n("attention.self.query"), h, h, tiles)?,
                    key: Linear::new(t, &n("attention.self.key"), h, h, tiles)?,
                    value: Linear::new(t, &n("attention.self.value"), h, h, tiles)?,
                    attn_out: Linear::new(t, &n("attention.output.dense"), h, h, tiles)?,
                    attn_norm: LayerNorm::new(t, &n("attention.output.LayerNorm"), h)?,
                    intermediate: Linear::new(t, &n("intermediate.dense"), i, h, tiles)?,
                    output: Linear::new(t, &n("output.dense"), h, i, tiles)?,
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
            intermediate: i,
            heads: c.num_attention_heads,
            max_positions: c.max_position_embeddings,
            eps: c.layer_norm_eps as f32,
            scratch: parking_lot::Mutex::default(),
        })
    }

    /// Whether the products run on panels (AVX-512, or AVX2 with FMA):
    /// then long inputs are faster here than in candle too.
    pub(super) fn has_panels(&self) -> bool {
        self.layers
            .iter()
            .all(|l| l.query.panels.is_some() || l.query.tiles.is_some())
    }

    /// What the linear layers' products run on, for the logs and benches:
    /// `amx-bf16`, `avx512`, `avx2` or `loops`.
    pub(super) fn kernel(&self) -> &'static str {
        match self.layers.first().map(|l| &l.query) {
            Some(q) if q.tiles.is_some() => "amx-bf16",
            Some(q) if q.panels.is_some() => match panel_isa() {
                Some(PanelIsa::Avx512) => "avx512",
                _ => "avx2",
            },
            _ => "loops",
        }
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
        let mut s = self.scratch.lock().pop().unwrap_or_default();
        s.size(rows, h, self.intermediate);
        {
            let word = self.word.view();
            let pos = self.position.view();
            let tt = self.token_type.view();
            let (word, pos, tt) = (word.slice(), pos.slice(), tt.slice());
            for (ids, &(first, n)) in inputs.iter().zip(&segs) {
                for (t, &id) in ids[..n].iter().enumerate() {
                    let id = (id as usize).min(word.len() / h - 1);
                    let row = &mut s.x[(first + t) * h..(first + t + 1) * h];
                    for (k, v) in row.iter_mut().enumerate() {
                        *v = word[id * h + k] + pos[t * h + k] + tt[k];
                    }
                }
            }
        }
        self.emb_norm.forward(&mut s.x, h, self.eps);
        for layer in &self.layers {
            self.layer(layer, &mut s, rows, &segs);
        }
        let out = segs
            .iter()
            .map(|&(first, n)| {
                let mut mean = vec![0f32; h];
                if n == 0 {
                    return mean;
                }
                for row in s.x[first * h..(first + n) * h].chunks_exact(h) {
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
            .collect();
        if rows <= Scratch::KEEP_ROWS {
            let mut pool = self.scratch.lock();
            if pool.len() < Scratch::KEEP {
                pool.push(s);
            }
        }
        out
    }

    /// One encoder layer over `rows` stacked rows (`s.x`, replaced by the
    /// layer's output); attention within each `(first row, rows)` segment.
    fn layer(&self, l: &Layer, s: &mut Scratch, rows: usize, segs: &[(usize, usize)]) {
        let h = self.hidden;
        let d = h / self.heads;
        Linear::forward_many(
            &[
                (&l.query, s.q.as_mut_slice()),
                (&l.key, s.k.as_mut_slice()),
                (&l.value, s.v.as_mut_slice()),
            ],
            &s.x,
            rows,
            Then::Nothing,
            &mut s.x16,
        );
        let (q, k, v) = (&s.q, &s.k, &s.v);
        let scale = 1.0 / (d as f32).sqrt();
        // Each input's rows of the context, in blocks of query rows
        // computed side by side (each block attends to all its input's
        // keys): a long passage is several tasks, not one core's while the
        // other waits.
        const QUERY_ROWS: usize = 32;
        let mut parts = Vec::with_capacity(segs.len());
        let mut rest = s.ctx.as_mut_slice();
        for &(first, n) in segs {
            let (mine, after) = rest.split_at_mut(n * h);
            for (b, block) in mine.chunks_mut(QUERY_ROWS * h).enumerate() {
                parts.push((first, n, b * QUERY_ROWS, block));
            }
            rest = after;
        }
        let heads = self.heads;
        parts.into_par_iter().for_each(|(first, n, q0, out)| {
            let rows = out.len() / h;
            let seg = Segment {
                q: &q[(first + q0) * h..(first + q0 + rows) * h],
                k: &k[first * h..(first + n) * h],
                v: &v[first * h..(first + n) * h],
                n,
                rows,
                h,
                heads,
                scale,
            };
            seg.attend(out);
        });
        l.attn_out
            .forward_into(&s.ctx, rows, &mut s.a, Then::Add(&s.x), &mut s.x16);
        l.attn_norm.forward(&mut s.a, h, self.eps);
        l.intermediate
            .forward_into(&s.a, rows, &mut s.inter, Then::Gelu, &mut s.x16);
        l.output
            .forward_into(&s.inter, rows, &mut s.x, Then::Add(&s.a), &mut s.x16);
        l.out_norm.forward(&mut s.x, h, self.eps);
    }
}

/// The buffers of one pass, kept for the next: a pass of many questions
/// needs megabytes, and allocating them afresh for every layer cost page
/// faults, and TLB flushes on the other core when they were given back.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    ctx: Vec<f32>,
    a: Vec<f32>,
    inter: Vec<f32>,
    /// A layer's input in bfloat16, for the matrix unit's tiles.
    x16: Vec<u16>,
}

impl Scratch {
    /// Passes of at most this many rows give their buffers back (about
    /// 15 MB at 384 + 1,536 wide); a larger one frees them.
    const KEEP_ROWS: usize = 1024;
    /// Buffers kept: one for the question line, one for a caller of its own.
    const KEEP: usize = 2;

    fn size(&mut self, rows: usize, hidden: usize, intermediate: usize) {
        for b in [
            &mut self.x,
            &mut self.q,
            &mut self.k,
            &mut self.v,
            &mut self.ctx,
            &mut self.a,
        ] {
            b.resize(rows * hidden, 0.0);
        }
        self.inter.resize(rows * intermediate, 0.0);
    }
}

/// One input's query, key and value rows (`n` rows of `h` numbers, heads
/// side by side), for its attention.
struct Segment<'a> {
    /// The query rows this task computes (`rows` of them).
    q: &'a [f32],
    /// All the input's keys and values (`n` rows).
    k: &'a [f32],
    v: &'a [f32],
    n: usize,
    rows: usize,
    h: usize,
    heads: usize,
    scale: f32,
}

impl Segment<'_> {
    /// Every head's softmax(q kᵀ × scale) v into `out` (`rows` rows of `h`).
    fn attend(&self, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            let d = self.h / self.heads;
            if d.is_multiple_of(16) && d <= avx512::MAX_HEAD_DIM && has_avx512() {
                // SAFETY: the CPU has AVX-512F; the head width is whole
                // vectors, at most the kernel's (checked just above).
                return unsafe { avx512::attend(self, out) };
            }
            if d.is_multiple_of(8) && d <= avx2::MAX_HEAD_DIM && has_avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA; the head width is whole
                // vectors, at most the kernel's (checked just above).
                return unsafe { avx2::attend(self, out) };
            }
        }
        self.attend_loops(out);
    }

    /// [`Self::attend`] in plain loops.
    fn attend_loops(&self, out: &mut [f32]) {
        let (h, n) = (self.h, self.n);
        let d = h / self.heads;
        out.fill(0.0);
        let mut scores = vec![0f32; n];
        for head in 0..self.heads {
            let cols = head * d..(head + 1) * d;
            for i in 0..self.rows {
                let qi = &self.q[i * h..][cols.clone()];
                let mut max = f32::NEG_INFINITY;
                for (j, s) in scores.iter_mut().enumerate() {
                    *s = dot(qi, &self.k[j * h..][cols.clone()]) * self.scale;
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
                    for (o, vv) in row.iter_mut().zip(&self.v[j * h..][cols.clone()]) {
                        *o += p * vv;
                    }
                }
            }
        }
    }
}

/// musl's `erff` near zero: erf(z) = z + z × P(z²) / Q(z²) below 0.84375
/// (coefficients lowest first, for the kernels in lanes).
#[cfg(target_arch = "x86_64")]
const ERF_NEAR_P: [f32; 5] = [
    1.283_791_7e-1,
    -3.250_421e-1,
    -2.848_175e-2,
    -5.770_270_2e-3,
    -2.376_301_7e-5,
];
#[cfg(target_arch = "x86_64")]
const ERF_NEAR_Q: [f32; 6] = [
    1.0,
    3.979_172e-1,
    6.502_225e-2,
    5.081_306e-3,
    1.324_947_4e-4,
    -3.960_228_2e-6,
];
/// Abramowitz and Stegun's 7.1.26 beyond: 1 - t × P(t) × e^(-z²), with
/// t = 1 / (1 + 0.3275911 |z|).
const ERF_FAR: [f32; 5] = [
    0.254_829_6,
    -0.284_496_74,
    1.421_413_7,
    -1.453_152,
    1.061_405_4,
];
/// e^r to the 7th power of r, for |r| ≤ ln 2 / 2.
#[cfg(target_arch = "x86_64")]
const EXP_SERIES: [f32; 8] = [
    1.0,
    1.0,
    0.5,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
];

/// GELU as BERT defines it (with the error function, not the tanh
/// approximation).
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The error function, within 3e-7 of `libm::erff` (a test holds it):
/// musl's polynomial near zero, where it is cheap; beyond, Abramowitz and
/// Stegun's 7.1.26 (|error| ≤ 1.5e-7) with one `exp`, where `erff` spends
/// two of its own and a rational function of degree 8 (a tenth of the
/// encoder's time under load went there: every intermediate activation of
/// every layer passes through here).
fn erf(z: f32) -> f32 {
    let a = z.abs();
    if a < 0.84375 {
        return libm::erff(z);
    }
    if a >= 4.0 {
        // 1 - erf(4) is 1.5e-8: 1 in f32.
        return 1.0f32.copysign(z);
    }
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * ERF_FAR.iter().rev().fold(0.0, |acc, &c| acc * t + c);
    (1.0 - poly * (-a * a).exp()).copysign(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers in -1..1 from a fixed seed.
    fn numbers(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The error function against musl's (`libm::erff`) over the range a
    /// GELU sees, and GELU itself against the definition in f64.
    #[test]
    fn erf_is_erff_within_3e_7() {
        let mut worst = (0.0f32, 0.0f32);
        for i in -120_000..=120_000 {
            let z = i as f32 / 20_000.0;
            let d = (erf(z) - libm::erff(z)).abs();
            if d > worst.1 {
                worst = (z, d);
            }
            let x = z * std::f32::consts::SQRT_2;
            let exact = 0.5 * f64::from(x) * (1.0 + libm::erf(f64::from(z)));
            let g = f64::from(gelu(x));
            assert!(
                (g - exact).abs() <= 1e-6 * exact.abs().max(1.0),
                "gelu({x})"
            );
        }
        assert!(worst.1 < 3e-7, "erf({}) is off by {}", worst.0, worst.1);
        assert_eq!(erf(9.0), 1.0);
        assert_eq!(erf(-9.0), -1.0);
        assert!(erf(f32::NAN).is_nan());
    }

    /// Every kernel this CPU has gives what the plain loops give, for
    /// shapes that leave short tiles of weight and input rows, with each
    /// way of finishing an output; columns outside the task's are left
    /// alone.
    #[test]
    fn every_kernel_computes_the_same_products() {
        let (inp, wrows, first, ld) = (48, 9, 3, 16);
        type Kernel = unsafe fn(&[f32], usize, usize, &[f32], usize, &Sink<'_>);
        let mut kernels: Vec<(&str, Kernel)> = vec![("loops", loops)];
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx2_fma() {
                kernels.push(("avx2", avx2::products));
            }
        }
        for rows in [1, 2, 3, 4, 5, 7] {
            let x = numbers(rows * inp, rows as u64);
            let w = numbers(wrows * inp, 99);
            let bias = numbers(ld, 7);
            let residual = numbers(rows * ld, 11);
            for then in [Then::Nothing, Then::Add(&residual), Then::Gelu] {
                let expect = |r: usize, j: usize| {
                    let s =
                        dot(&x[r * inp..(r + 1) * inp], &w[(j - first) * inp..][..inp]) + bias[j];
                    match then {
                        Then::Nothing => s,
                        Then::Add(res) => s + res[r * ld + j],
                        Then::Gelu => gelu(s),
                    }
                };
                for (name, kernel) in &kernels {
                    let mut y = vec![f32::NAN; rows * ld];
                    let sink = Sink {
                        ptr: y.as_mut_ptr(),
                        ld,
                        bias: &bias,
                        then,
                    };
                    // SAFETY: y holds rows × ld, columns first..first + wrows
                    // are within ld, and nothing else writes y meanwhile.
                    unsafe { kernel(&x, rows, inp, &w, first, &sink) };
                    for r in 0..rows {
                        for j in 0..ld {
                            let got = y[r * ld + j];
                            if (first..first + wrows).contains(&j) {
                                let want = expect(r, j);
                                assert!(
                                    (got - want).abs() < 1e-5,
                                    "{name}: rows {rows}, ({r}, {j}): {got} vs {want}"
                                );
                            } else {
                                assert!(got.is_nan(), "{name} wrote column {j}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// The vector instructions of the lane kernels this CPU has (AVX2
    /// where it has AVX-512 too); a test that finds none says it was
    /// skipped.
    #[cfg(target_arch = "x86_64")]
    fn lane_isas() -> Vec<PanelIsa> {
        let mut isas = Vec::new();
        if has_avx512() {
            isas.push(PanelIsa::Avx512);
        }
        if has_avx2_fma() {
            isas.push(PanelIsa::Avx2);
        }
        if isas.is_empty() {
            eprintln!("skipped: this CPU has neither AVX-512F nor AVX2 with FMA");
        }
        isas
    }

    /// GELU in vector lanes is the scalar GELU within 1e-6 over the range
    /// a layer's outputs take and beyond, NaN included, in sixteen lanes
    /// and in eight.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn gelu_in_lanes_is_the_scalar_gelu() {
        use std::arch::x86_64::*;
        let xs: Vec<f32> = (-160_000..=160_000)
            .map(|i| i as f32 / 10_000.0)
            .chain([f32::NAN, 1e-30, -1e-30, 0.0, -0.0, 40.0, -40.0])
            .collect();
        for isa in lane_isas() {
            for chunk in xs.chunks(16) {
                let mut lanes = [0f32; 16];
                lanes[..chunk.len()].copy_from_slice(chunk);
                // SAFETY: the CPU has the ISA's instructions (lane_isas);
                // lanes holds 16.
                unsafe {
                    match isa {
                        PanelIsa::Avx512 => {
                            let v = avx512::gelu16(_mm512_loadu_ps(lanes.as_ptr()));
                            _mm512_storeu_ps(lanes.as_mut_ptr(), v);
                        }
                        PanelIsa::Avx2 => {
                            for half in lanes.chunks_exact_mut(8) {
                                let v = avx2::gelu8(_mm256_loadu_ps(half.as_ptr()));
                                _mm256_storeu_ps(half.as_mut_ptr(), v);
                            }
                        }
                    }
                }
                for (&x, &got) in chunk.iter().zip(&lanes) {
                    let want = gelu(x);
                    if x.is_nan() {
                        assert!(got.is_nan(), "{isa:?}: gelu(NaN) = {got}");
                    } else {
                        assert!(
                            (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                            "{isa:?}: gelu({x}) = {got}, scalar {want}"
                        );
                    }
                }
            }
        }
    }

    /// Each panel kernel this CPU has gives what the plain loops give, for
    /// every tile height (one to twelve rows, and more than one tile), two
    /// pairs of panels, each way of finishing an output; columns outside
    /// the task's are left alone.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_panel_kernels_compute_the_same_products() {
        let (inp, wrows, first, ld) = (40, 2 * PANEL_PAIR, 16, 96);
        let w = numbers(wrows * inp, 5);
        let bias = numbers(ld, 8);
        for isa in lane_isas() {
            let panels = Panels::new(&w, wrows, inp).expect("a panel kernel and whole pairs");
            for rows in (1..=13).chain([25]) {
                let x = numbers(rows * inp, 100 + rows as u64);
                let residual = numbers(rows * ld, 12);
                for then in [Then::Nothing, Then::Add(&residual), Then::Gelu] {
                    let mut want = vec![f32::NAN; rows * ld];
                    let mut got = vec![f32::NAN; rows * ld];
                    for (y, panel) in [(&mut want, false), (&mut got, true)] {
                        let sink = Sink {
                            ptr: y.as_mut_ptr(),
                            ld,
                            bias: &bias,
                            then,
                        };
                        // SAFETY: y holds rows × ld, columns first..first +
                        // wrows are within ld, nothing else writes y
                        // meanwhile, and the CPU has the ISA (lane_isas).
                        unsafe {
                            match (panel, isa) {
                                (false, _) => loops(&x, rows, inp, &w, first, &sink),
                                (true, PanelIsa::Avx512) => {
                                    avx512::panel_products(&x, rows, inp, &panels.0, first, &sink)
                                }
                                (true, PanelIsa::Avx2) => {
                                    avx2::panel_products(&x, rows, inp, &panels.0, first, &sink)
                                }
                            }
                        }
                    }
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        let (r, j) = (i / ld, i % ld);
                        if (first..first + wrows).contains(&j) {
                            assert!(
                                (g - w).abs() < 1e-5,
                                "{isa:?}: rows {rows}, ({r}, {j}): {g} vs {w}"
                            );
                        } else {
                            assert!(g.is_nan(), "{isa:?} wrote column {j}");
                        }
                    }
                }
            }
        }
    }

    /// The matrix unit's products are the exact products of the inputs and
    /// weights rounded to bfloat16, summed in f32, for rows within a tile,
    /// at its edge and across several, and one to four panels a task, with
    /// each way of storing; columns outside the task's stay unwritten.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_matrix_unit_computes_the_products_of_bfloat16_inputs() {
        if !amx::available() {
            eprintln!(
                "note: skipping the matrix-unit test: this CPU has no AMX with \
                 bfloat16, or Linux did not let the process use it"
            );
            return;
        }
        let round = |v: f32| f32::from_bits(u32::from(amx::bf16(v)) << 16);
        let inp = 96;
        for panels in 1..=4 {
            let (wrows, first) = (16 * panels, 16);
            let ld = first + wrows + 16;
            let w = numbers(wrows * inp, 5 + panels as u64);
            let tiles = amx::pack(&w, wrows, inp);
            let bias = numbers(ld, 8);
            for rows in [1, 2, 15, 16, 17, 33] {
                let x = numbers(rows * inp, 100 + rows as u64);
                let mut x16 = Vec::new();
                amx::rows_to_bf16(&x, rows, inp, &mut x16);
                let residual = numbers(rows * ld, 12);
                for then in [Then::Nothing, Then::Add(&residual), Then::Gelu] {
                    let mut got = vec![f32::NAN; rows * ld];
                    let sink = Sink {
                        ptr: got.as_mut_ptr(),
                        ld,
                        bias: &bias,
                        then,
                    };
                    // SAFETY: the CPU has the unit (checked above); x16 is
                    // the input in bfloat16; `got` holds rows × ld and the
                    // task's columns are within ld; nothing else writes it.
                    unsafe { amx::tile_products(&x16, rows, inp, &tiles, first, &sink) };
                    for (i, g) in got.iter().enumerate() {
                        let (r, j) = (i / ld, i % ld);
                        if !(first..first + wrows).contains(&j) {
                            assert!(g.is_nan(), "{panels} panels wrote column {j}");
                            continue;
                        }
                        let wj = &w[(j - first) * inp..(j - first + 1) * inp];
                        let exact: f64 = x[r * inp..(r + 1) * inp]
                            .iter()
                            .zip(wj)
                            .map(|(&a, &b)| f64::from(round(a)) * f64::from(round(b)))
                            .sum();
                        let v = exact as f32 + bias[j];
                        let want = match then {
                            Then::Nothing => v,
                            Then::Add(res) => v + res[i],
                            Then::Gelu => gelu(v),
                        };
                        assert!(
                            (g - want).abs() < 1e-4,
                            "{panels} panels, rows {rows}, ({r}, {j}): {g} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// Attention in vector lanes gives what the plain loops give, in
    /// sixteen lanes and in eight, for inputs of one token, within one key
    /// block, at its edges and across several, with heads of one to eight
    /// vectors; scores spread wide enough that some weights vanish.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn attention_in_lanes_is_the_plain_attention() {
        for isa in lane_isas() {
            let shapes: &[(usize, usize)] = match isa {
                PanelIsa::Avx512 => &[(3, 16), (2, 32), (1, 64)],
                PanelIsa::Avx2 => &[(3, 8), (3, 16), (2, 32), (1, 64)],
            };
            for &(heads, d) in shapes {
                let h = heads * d;
                for n in [1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 130, 256] {
                    let big = |v: Vec<f32>| v.into_iter().map(|x| x * 6.0).collect::<Vec<_>>();
                    let q = big(numbers(n * h, 1 + n as u64));
                    let k = big(numbers(n * h, 2 + n as u64));
                    let v = numbers(n * h, 3 + n as u64);
                    let seg = Segment {
                        q: &q,
                        k: &k,
                        v: &v,
                        n,
                        rows: n,
                        h,
                        heads,
                        scale: 1.0 / (d as f32).sqrt(),
                    };
                    let mut want = vec![f32::NAN; n * h];
                    seg.attend_loops(&mut want);
                    let mut got = vec![f32::NAN; n * h];
                    // SAFETY: the CPU has the ISA (lane_isas); head widths
                    // are whole vectors, at most the kernel's MAX_HEAD_DIM.
                    unsafe {
                        match isa {
                            PanelIsa::Avx512 => avx512::attend(&seg, &mut got),
                            PanelIsa::Avx2 => avx2::attend(&seg, &mut got),
                        }
                    }
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() < 1e-5,
                            "{isa:?}: heads {heads} × {d}, n {n}, number {i}: {g} vs {w}"
                        );
                    }
                    // A block of query rows against all the keys gives
                    // those rows of the whole.
                    for q0 in (0..n).step_by(5) {
                        let rows = (n - q0).min(5);
                        let block = Segment {
                            q: &q[q0 * h..(q0 + rows) * h],
                            rows,
                            ..seg
                        };
                        let mut got = vec![f32::NAN; rows * h];
                        // SAFETY: as above.
                        unsafe {
                            match isa {
                                PanelIsa::Avx512 => avx512::attend(&block, &mut got),
                                PanelIsa::Avx2 => avx2::attend(&block, &mut got),
                            }
                        }
                        let mut plain = vec![f32::NAN; rows * h];
                        block.attend_loops(&mut plain);
                        for (i, ((g, p), w)) in
                            got.iter().zip(&plain).zip(&want[q0 * h..]).enumerate()
                        {
                            assert!(
                                (g - w).abs() < 1e-5 && (p - w).abs() < 1e-5,
                                "{isa:?}: rows {q0}.. of {n}, number {i}: {g}, {p} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }
}
