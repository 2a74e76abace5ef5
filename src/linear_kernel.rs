//! A fully connected layer's `f32` kernels for `n` samples at once (`n = 1` for one
//! sample's pass), generic over the instruction set. Forward is a block of dot products
//! (`RB` samples × `OB` outputs share every load); the two gradients are blocks of `axpy`s
//! along the contiguous input axis. The kernels of a batch in lanes are in `linear_lanes`.
//!
//! The weights are `[OUT][IN]` (PyTorch's layout), samples one after the other. The layer's
//! sizes `IN` and `OUT` are run-time values here (`in_`, `out`): one copy of each kernel per
//! instruction set serves every layer, instead of one per layer shape (the const-sized
//! kernels were 17% of the test binary's code); only the register blocks are constants.

use crate::pairs::Pairs;
use crate::simd::{self, Kernel, Simd, for_blocks, load_vectors, transpose_matrix};

/// `y[r] = b + w·x[r]` for each of the `x.len() / IN` samples (rows) of `x` and `y`.
#[inline]
pub(crate) fn forward<const IN: usize, const OUT: usize>(
    x: &[f32],
    (w, b): (&[f32], &[f32]),
    y: &mut [f32],
) {
    if x.len() == IN {
        // One sample: a row of dot products whose sizes stay constants, so that LLVM
        // unrolls the row and drops the tail branches (3.6% of LeNet-5's batch-1 inference
        // with run-time sizes). Three small copies per layer shape.
        #[cfg(feature = "std")]
        if IN * OUT >= SPLIT_MACS && crate::threads::layer_threads() > 1 {
            // Two threads, each a range of outputs starting on a block boundary of both
            // blockings below (multiples of 8 and of 3), so that every output is computed by
            // the same block as on one thread: the same bits.
            let mid = OUT / 48 * 24;
            let (y0, y1) = y.split_at_mut(mid);
            let pass = |rows, y| ForwardOne::<IN, OUT> { x, w, b, rows, y };
            return crate::threads::dispatch_both(pass((0, mid), y0), pass((mid, OUT), y1));
        }
        simd::dispatch(ForwardOne::<IN, OUT> {
            x,
            w,
            b,
            rows: (0, OUT),
            y,
        });
    } else {
        simd::dispatch(Forward {
            in_: IN,
            out: OUT,
            x,
            w,
            b,
            y,
        });
    }
}

/// [`forward`] with the samples in the vector lanes (`xt` and `yt` are room for the
/// transposed batch), when their number is a multiple of the lane count and the instruction
/// set has FMA. Returns `false`, doing nothing, otherwise.
#[inline]
pub(crate) fn forward_samples(
    (in_, out): (usize, usize),
    x: &[f32],
    (w, b): (&[f32], &[f32]),
    y: &mut [f32],
    (xt, yt): (&mut [f32], &mut [f32]),
) -> bool {
    simd::dispatch(ForwardSamples {
        in_,
        out,
        x,
        w,
        b,
        y,
        xt,
        yt,
    })
}

/// The gradients of the `x.len() / IN` samples of `x` with output gradients `g`: `gb += Σ g`
/// and `gw += Σ g·xᵀ` over the samples, and each sample's input gradient `gi = wᵀ·g` if asked.
#[inline]
pub(crate) fn backward(
    (in_, out): (usize, usize),
    (x, g): (&[f32], &[f32]),
    w: &[f32],
    (gw, gb): (&mut [f32], &mut [f32]),
    gi: Option<&mut [f32]>,
) {
    for g_row in g.chunks_exact(out) {
        for (gb, &v) in gb.iter_mut().zip(g_row) {
            *gb += v;
        }
    }
    simd::dispatch(WeightGrad { in_, out, x, g, gw });
    if let Some(gi) = gi {
        simd::dispatch(InputGrad { in_, out, w, g, gi });
    }
}

/// One sample's SGD step with no gradient buffer: the input gradient `gi = wᵀ·g` with the
/// weights from before the step (if asked), then `w ← w − lr·g·xᵀ` and `b ← b − lr·g`, in
/// one pass over the weights ([`SgdStep`]).
#[inline]
pub(crate) fn sgd_step(
    in_: usize,
    (w, b): (&mut [f32], &mut [f32]),
    (x, g): (&[f32], &[f32]),
    lr: f32,
    gi: Option<&mut [f32]>,
) {
    simd::dispatch(SgdStep {
        in_,
        w,
        x,
        g,
        lr,
        gi,
    });
    for (b, &g) in b.iter_mut().zip(g) {
        *b += -lr * g;
    }
}

/// Ones in the last `rem` lanes, zeros before (`0 < rem < LANES`): which lanes of a
/// vector ending at a row's end lie past the row's last whole vector.
#[inline(always)]
fn tail_mask<S: Simd>(s: S, rem: usize) -> S::F {
    const STEPS: [f32; 32] = {
        let mut steps = [0.0; 32];
        let mut i = 16;
        while i < 32 {
            steps[i] = 1.0;
            i += 1;
        }
        steps
    };
    s.load(&STEPS, 16 - S::LANES + rem)
}

/// `y[r][c] = b[c] + Σ_i x[r][i] · w[c][i]` for `RB` rows × `OB` columns.
#[inline(always)]
fn dot_block<S: Simd, const RB: usize, const OB: usize>(
    s: S,
    in_: usize,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut [f32],
    y_stride: usize,
) {
    let full = in_ / S::LANES * S::LANES;
    let mut acc = [[s.splat(0.0); OB]; RB];
    // Each row as a slice of exactly `full` values: the loads below are then in bounds by
    // the loop's own range, with no check per load.
    let (mut w_rows, mut x_rows) = ([&w[..0]; OB], [&x[..0]; RB]);
    for (c, row) in w_rows.iter_mut().enumerate() {
        *row = &w[c * in_..][..full];
    }
    for (r, row) in x_rows.iter_mut().enumerate() {
        *row = &x[r * in_..][..full];
    }
    for i in (0..full).step_by(S::LANES) {
        let mut wv = [s.splat(0.0); OB];
        for (wv, row) in wv.iter_mut().pairs(&w_rows) {
            *wv = s.load(row, i);
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let xv = s.load(x_rows[r], i);
            for (a, &wv) in acc.iter_mut().pairs(&wv) {
                *a = s.mul_add(xv, wv, *a);
            }
        }
    }
    let vector_tail = full < in_ && in_ >= S::LANES;
    if vector_tail {
        // The last vector ends at IN; its lanes already summed see x = 0.
        let (i, keep) = (in_ - S::LANES, tail_mask(s, in_ - full));
        let wv: [S::F; OB] = load_vectors(s, w, i, in_);
        for (r, acc) in acc.iter_mut().enumerate() {
            let xv = s.load(x, r * in_ + i);
            let xv = s.select_gt(keep, s.splat(0.5), xv, s.splat(0.0));
            for (a, &wv) in acc.iter_mut().pairs(&wv) {
                *a = s.mul_add(xv, wv, *a);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (c, &a) in acc.iter().enumerate() {
            let mut sum = s.sum(a);
            if !vector_tail {
                for i in full..in_ {
                    sum += x[r * in_ + i] * w[c * in_ + i];
                }
            }
            y[r * y_stride + c] = b[c] + sum;
        }
    }
}

/// Forward pass of `x.len() / IN` samples.
struct Forward<'a> {
    in_: usize,
    out: usize,
    x: &'a [f32],
    w: &'a [f32],
    b: &'a [f32],
    y: &'a mut [f32],
}

impl Kernel for Forward<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let (in_, out) = (self.in_, self.out);
        let n = self.x.len() / in_;
        macro_rules! columns {
            ($r0:ident, $RB:ident) => {
                // Three outputs, not four: with 4 × 4 sums LLVM kept one in memory,
                // and its store-to-load chain bound the loop (batch-64 inference −5%).
                for_blocks!(out, [3, 1], |c0, OB| {
                    dot_block::<S, $RB, OB>(
                        s,
                        in_,
                        &self.x[$r0 * in_..],
                        &self.w[c0 * in_..],
                        &self.b[c0..],
                        &mut self.y[$r0 * out + c0..],
                        out,
                    );
                });
            };
        }
        if const { S::LANES >= 16 } {
            for_blocks!(n, [4, 1], |r0, RB| {
                columns!(r0, RB);
            });
        } else {
            for_blocks!(n, [2, 1], |r0, RB| {
                columns!(r0, RB);
            });
        }
    }
}

/// Multiply-adds of a fully connected layer whose one-sample forward pass
/// [`crate::threads::within_layers`] splits between two threads (AlexNet's and VGG-16's
/// three, not LeNet-5's).
#[cfg(feature = "std")]
const SPLIT_MACS: usize = 1 << 20;

/// Forward pass of one sample, with the layer's sizes as constants: outputs
/// `rows.0..rows.1` into `y`, which holds those alone.
struct ForwardOne<'a, const IN: usize, const OUT: usize> {
    x: &'a [f32],
    w: &'a [f32],
    b: &'a [f32],
    rows: (usize, usize),
    y: &'a mut [f32],
}

impl<const IN: usize, const OUT: usize> Kernel for ForwardOne<'_, IN, OUT> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let (x, y, (lo, hi)) = (self.x, self.y, self.rows);
        let (w, b) = (&self.w[lo * IN..], &self.b[lo..]);
        // All outputs: their count a constant, as `forward` says; else (a thread's share) a
        // run-time count, blocked as the same outputs are on one thread.
        let n = if (lo, hi) == (0, OUT) { OUT } else { hi - lo };
        if const { S::LANES >= 16 && IN * OUT > 16 * 1024 } {
            // Weights bigger than L1 (fc1: 192 KB): the layer streams them from L2, and
            // eight rows at a time keep more loads in flight.
            for_blocks!(n, [8, 4, 1], |c0, OB| {
                dot_block::<S, 1, OB>(s, IN, x, &w[c0 * IN..], &b[c0..], &mut y[c0..], OUT);
            });
        } else {
            for_blocks!(n, [3, 1], |c0, OB| {
                dot_block::<S, 1, OB>(s, IN, x, &w[c0 * IN..], &b[c0..], &mut y[c0..], OUT);
            });
        }
    }
}

/// `yt[o][r] = b[o] + Σ_i w[o][i] · xt[i][r]` for `OB` outputs × `RV` vectors of samples
/// from vector `v0` (`xt` and `yt` have `n` samples per row).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
// Index loops on purpose (see the comment inside).
#[allow(clippy::needless_range_loop)]
fn samples_block<S: Simd, const OB: usize, const RV: usize>(
    s: S,
    in_: usize,
    xt: &[f32],
    n: usize,
    w: &[f32],
    b: &[f32],
    yt: &mut [f32],
    v0: usize,
) {
    // Constant trip counts only: LLVM then keeps the 24 sums in registers (iterating
    // over the bias slice made it store every sum back to the stack after each step).
    let mut acc = [[s.splat(0.0); RV]; OB];
    for o in 0..OB {
        acc[o] = [s.splat(b[o]); RV];
    }
    let w: &[f32] = &w[..OB * in_];
    for i in 0..in_ {
        let mut xv = [s.splat(0.0); RV];
        for v in 0..RV {
            xv[v] = s.load(xt, i * n + (v0 + v) * S::LANES);
        }
        for o in 0..OB {
            let wv = s.splat(w[o * in_ + i]);
            for v in 0..RV {
                acc[o][v] = s.mul_add(wv, xv[v], acc[o][v]);
            }
        }
    }
    for o in 0..OB {
        for v in 0..RV {
            s.store(yt, o * n + (v0 + v) * S::LANES, acc[o][v]);
        }
    }
}

/// Forward pass of `n` samples with the samples in the lanes, when `n` is a multiple of
/// the lane count (and the instruction set has FMA): `x` is transposed into `xt`, the
/// result `yt` back into `y`. Returns `false`, doing nothing, otherwise.
struct ForwardSamples<'a> {
    in_: usize,
    out: usize,
    x: &'a [f32],
    w: &'a [f32],
    b: &'a [f32],
    y: &'a mut [f32],
    xt: &'a mut [f32],
    yt: &'a mut [f32],
}

impl Kernel for ForwardSamples<'_> {
    type Output = bool;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> bool {
        let (in_, out) = (self.in_, self.out);
        let n = self.x.len() / in_;
        if const { S::LANES < 8 } || n == 0 || !n.is_multiple_of(S::LANES) {
            return false;
        }
        transpose_matrix(s, self.x, (n, in_), self.xt);
        let vectors = n / S::LANES;
        let (xt, w, b) = (&*self.xt, self.w, self.b);
        macro_rules! blocks {
            ([$($ob:literal),*], [$($rv:literal),*]) => {
                for_blocks!(out, [$($ob),*], |o0, OB| {
                    for_blocks!(vectors, [$($rv),*], |v0, RV| {
                        samples_block::<S, OB, RV>(
                            s,
                            in_,
                            xt,
                            n,
                            &w[o0 * in_..],
                            &b[o0..],
                            &mut self.yt[o0 * n..],
                            v0,
                        );
                    });
                });
            };
        }
        if const { S::LANES >= 16 } {
            // 32 registers: 6 outputs × 4 vectors of samples.
            blocks!([6, 4, 1], [4, 2, 1]);
        } else {
            blocks!([4, 1], [2, 1]);
        }
        transpose_matrix(s, self.yt, (out, n), self.y);
        true
    }
}

/// `out[r][i] (+)= Σ_k coef[r·cr + k·ck] · m[k][i]` for `RB` rows × `NV` vectors of `i`
/// starting at `i0`, over `k < K`; rows of `m` and `out` are `IN` long.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn axpy_block<S: Simd, const RB: usize, const NV: usize>(
    s: S,
    in_: usize,
    coef: &[f32],
    (cr, ck, k_count): (usize, usize, usize),
    m: &[f32],
    out: &mut [f32],
    (i0, keep): (usize, Option<S::F>),
    accumulate: bool,
) {
    let mut acc = [[s.splat(0.0); NV]; RB];
    if accumulate {
        for (r, acc) in acc.iter_mut().enumerate() {
            for (v, a) in acc.iter_mut().enumerate() {
                *a = s.load(out, r * in_ + i0 + v * S::LANES);
            }
        }
    }
    for k in 0..k_count {
        let mut mv: [S::F; NV] = load_vectors(s, m, k * in_ + i0, S::LANES);
        if let Some(keep) = keep {
            for mv in &mut mv {
                *mv = s.select_gt(keep, s.splat(0.5), *mv, s.splat(0.0));
            }
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let c = s.splat(coef[r * cr + k * ck]);
            for (a, &mv) in acc.iter_mut().pairs(&mv) {
                *a = s.mul_add(c, mv, *a);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (v, &a) in acc.iter().enumerate() {
            s.store(out, r * in_ + i0 + v * S::LANES, a);
        }
    }
}

/// Rows `0..rows` of `out` from [`axpy_block`]s: 4-vector then 1-vector blocks along `i`,
/// then plain scalars for the last `IN % LANES` columns.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn axpy_rows<S: Simd>(
    s: S,
    in_: usize,
    rows: usize,
    coef: &[f32],
    (cr, ck, k_count): (usize, usize, usize),
    m: &[f32],
    out: &mut [f32],
    accumulate: bool,
) {
    let full = in_ / S::LANES;
    let vector_tail = full * S::LANES < in_ && in_ >= S::LANES;
    macro_rules! along_i {
        ($r0:ident, $RB:ident) => {
            let (coef, out) = (&coef[$r0 * cr..], &mut out[$r0 * in_..]);
            for_blocks!(full, [4, 1], |v0, NV| {
                axpy_block::<S, $RB, NV>(
                    s,
                    in_,
                    coef,
                    (cr, ck, k_count),
                    m,
                    out,
                    (v0 * S::LANES, None),
                    accumulate,
                );
            });
            if vector_tail {
                // One vector ending at IN: written over, its first lanes get the same
                // values again; added to, they add zeros.
                let keep = if accumulate {
                    Some(tail_mask(s, in_ - full * S::LANES))
                } else {
                    None
                };
                axpy_block::<S, $RB, 1>(
                    s,
                    in_,
                    coef,
                    (cr, ck, k_count),
                    m,
                    out,
                    (in_ - S::LANES, keep),
                    accumulate,
                );
            }
            // Rows shorter than a vector: plain scalars.
            let scalar_tail = if vector_tail {
                in_..in_
            } else {
                full * S::LANES..in_
            };
            for r in 0..$RB {
                for i in scalar_tail.clone() {
                    let sum = (0..k_count)
                        .fold(0.0, |acc, k| acc + coef[r * cr + k * ck] * m[k * in_ + i]);
                    let o = &mut out[r * in_ + i];
                    *o = if accumulate { *o + sum } else { sum };
                }
            }
        };
    }
    if const { S::LANES >= 16 } {
        for_blocks!(rows, [4, 1], |r0, RB| {
            along_i!(r0, RB);
        });
    } else {
        for_blocks!(rows, [2, 1], |r0, RB| {
            along_i!(r0, RB);
        });
    }
}

/// `gw[o][i] += Σ_b g[b][o] · x[b][i]`.
struct WeightGrad<'a> {
    in_: usize,
    out: usize,
    x: &'a [f32],
    g: &'a [f32],
    gw: &'a mut [f32],
}

impl Kernel for WeightGrad<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let (in_, out) = (self.in_, self.out);
        let n = self.x.len() / in_;
        axpy_rows::<S>(s, in_, out, self.g, (1, out, n), self.x, self.gw, true);
    }
}

/// One sample's input gradient with the current weights, `gi[i] = Σ_o g[o] · w[o][i]`,
/// and the update `w[o][i] += scaled[o] · x[i]` (`scaled = −lr·g`) in one pass over the
/// weights: at batch 1 they stream from L2 (fc1: 192 KB), and two passes read them
/// twice. On whole vectors, the same arithmetic in the same order as [`InputGrad`] then
/// [`WeightGrad`]; the last `IN % LANES` columns as plain scalars (a vector ending at
/// `IN` would read weights its neighbour already updated).
struct SgdStep<'a> {
    in_: usize,
    w: &'a mut [f32],
    x: &'a [f32],
    g: &'a [f32],
    lr: f32,
    gi: Option<&'a mut [f32]>,
}

/// [`SgdStep`] for the `NV` vectors of columns from `i0`, every row.
#[inline(always)]
fn sgd_columns<S: Simd, const NV: usize>(
    s: S,
    in_: usize,
    w: &mut [f32],
    (x, g, lr): (&[f32], &[f32], f32),
    gi: Option<&mut [f32]>,
    i0: usize,
) {
    let xv: [S::F; NV] = load_vectors(s, x, i0, S::LANES);
    let mut acc = [s.splat(0.0); NV];
    for (o, &g) in g.iter().enumerate() {
        let (g, scaled) = (s.splat(g), s.splat(-lr * g));
        // `xv[v]` by index, not a second iterator: zipped, this loop ran the SGD step of
        // one sample 18% slower.
        for (v, a) in acc.iter_mut().enumerate() {
            let (at, xv) = (o * in_ + i0 + v * S::LANES, xv[v]);
            let wv = s.load(w, at);
            *a = s.mul_add(g, wv, *a);
            s.store(w, at, s.mul_add(scaled, xv, wv));
        }
    }
    if let Some(gi) = gi {
        for (v, &a) in acc.iter().enumerate() {
            s.store(gi, i0 + v * S::LANES, a);
        }
    }
}

impl Kernel for SgdStep<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let SgdStep {
            in_,
            w,
            x,
            g,
            lr,
            mut gi,
        } = self;
        let full = in_ / S::LANES;
        for_blocks!(full, [4, 1], |v0, NV| {
            sgd_columns::<S, NV>(s, in_, w, (x, g, lr), gi.as_deref_mut(), v0 * S::LANES);
        });
        // The last `IN % LANES` columns, one at a time.
        for i in full * S::LANES..in_ {
            let mut sum = 0.0;
            for (o, &g) in g.iter().enumerate() {
                let w = &mut w[o * in_ + i];
                sum += g * *w;
                *w += 0.0 + -lr * g * x[i];
            }
            if let Some(gi) = gi.as_deref_mut() {
                gi[i] = sum;
            }
        }
    }
}

/// `gi[b][i] = Σ_o g[b][o] · w[o][i]`.
struct InputGrad<'a> {
    in_: usize,
    out: usize,
    w: &'a [f32],
    g: &'a [f32],
    gi: &'a mut [f32],
}

impl Kernel for InputGrad<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let (in_, out) = (self.in_, self.out);
        let n = self.g.len() / out;
        axpy_rows::<S>(s, in_, n, self.g, (out, 1, out), self.w, self.gi, false);
    }
}
