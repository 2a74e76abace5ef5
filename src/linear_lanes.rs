//! A fully connected layer's `f32` kernels for one block of 16 samples in lanes (see
//! [`crate::lanes`]), generic over the instruction set: every multiply-add is a broadcast
//! weight times one element of 16 samples, `OB` outputs (or inputs) at a time sharing each
//! load. (The weight gradient, a sum over the samples, runs on the samples transposed back,
//! by `linear_kernel`.)

use crate::lane_layout::LANES;
use crate::simd::{self, Kernel, Simd, for_blocks};

/// `y[o] = b[o] + Σ_i w[o][i] · x[i]` for one block (`x` `[IN][16]`, `y` `[OUT][16]`), then
/// `max(y, 0)` if `relu`.
#[inline]
pub(crate) fn forward<const IN: usize, const OUT: usize>(
    x: &[f32],
    (w, b): (&[f32], &[f32]),
    y: &mut [f32],
    relu: bool,
) {
    simd::dispatch(Forward::<IN, OUT> { x, w, b, y, relu });
}

/// `gi[i] = Σ_o w[o][i] · g[o]` for one block (`g` `[OUT][16]`, `gi` `[IN][16]`).
#[inline]
pub(crate) fn input_grad<const IN: usize, const OUT: usize>(w: &[f32], g: &[f32], gi: &mut [f32]) {
    simd::dispatch(InputGrad::<IN, OUT> { w, g, gi });
}

/// `y[o] = b[o] + Σ_i w[o][i] · x[i]` (then `max(y, 0)` if `relu`), `x` `[in][16]`,
/// `y` `[out][16]`.
struct Forward<'a, const IN: usize, const OUT: usize> {
    x: &'a [f32],
    w: &'a [f32],
    b: &'a [f32],
    y: &'a mut [f32],
    /// Whether to store `max(y, 0)` (NaN passing, −0 made +0, as [`crate::Relu`]).
    relu: bool,
}

/// Outputs `0..OB` of `w`, `b` and `y` (which start at the block's first output), for
/// the lanes `v0..v0 + S::LANES`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // constant-trip index loops keep the sums in registers
fn forward_block<S: Simd, const OB: usize, const IN: usize>(
    s: S,
    (x, w, b): (&[f32], &[f32], &[f32]),
    y: &mut [f32],
    v0: usize,
    relu: bool,
) {
    let w = &w[..OB * IN];
    let mut acc = [s.splat(0.0); OB];
    for o in 0..OB {
        acc[o] = s.splat(b[o]);
    }
    for i in 0..IN {
        let xv = s.load(x, i * LANES + v0);
        for o in 0..OB {
            acc[o] = s.mul_add(s.splat(w[o * IN + i]), xv, acc[o]);
        }
    }
    for o in 0..OB {
        let v = acc[o];
        s.store(y, o * LANES + v0, if relu { s.relu(v) } else { v });
    }
}

impl<const IN: usize, const OUT: usize> Kernel for Forward<'_, IN, OUT> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let Forward { x, w, b, y, relu } = self;
        let x = &x[..IN * LANES];
        for v0 in (0..LANES).step_by(S::LANES) {
            macro_rules! outputs {
                ([$($ob:literal),*]) => {
                    for_blocks!(const OUT, [$($ob),*], |o0, OB| {
                        let at = (x, &w[o0 * IN..], &b[o0..]);
                        forward_block::<S, OB, IN>(s, at, &mut y[o0 * LANES..], v0, relu);
                    });
                };
            }
            if const { S::LANES >= 16 } {
                outputs!([24, 4, 1]);
            } else {
                outputs!([8, 1]);
            }
        }
    }
}

/// `gi[i] = Σ_o w[o][i] · g[o]`, `g` `[out][16]`, `gi` `[in][16]`.
struct InputGrad<'a, const IN: usize, const OUT: usize> {
    w: &'a [f32],
    g: &'a [f32],
    gi: &'a mut [f32],
}

/// Inputs `0..RB` of `w`'s rows and of `gi` (which start at the block's first input),
/// for the lanes `v0..v0 + S::LANES`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn input_grad_block<S: Simd, const RB: usize, const IN: usize, const OUT: usize>(
    s: S,
    (w, g): (&[f32], &[f32]),
    gi: &mut [f32],
    v0: usize,
) {
    let mut acc = [s.splat(0.0); RB];
    for o in 0..OUT {
        let gv = s.load(g, o * LANES + v0);
        let w: &[f32; RB] = w[o * IN..][..RB].try_into().expect("RB weights");
        for r in 0..RB {
            acc[r] = s.mul_add(s.splat(w[r]), gv, acc[r]);
        }
    }
    for r in 0..RB {
        s.store(gi, r * LANES + v0, acc[r]);
    }
}

impl<const IN: usize, const OUT: usize> Kernel for InputGrad<'_, IN, OUT> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let InputGrad { w, g, gi } = self;
        let g = &g[..OUT * LANES];
        for v0 in (0..LANES).step_by(S::LANES) {
            macro_rules! inputs {
                ([$($rb:literal),*]) => {
                    for_blocks!(const IN, [$($rb),*], |i0, RB| {
                        let at = (&w[i0..], g);
                        input_grad_block::<S, RB, IN, OUT>(s, at, &mut gi[i0 * LANES..], v0);
                    });
                };
            }
            if const { S::LANES >= 16 } {
                inputs!([24, 4, 1]);
            } else {
                inputs!([8, 1]);
            }
        }
    }
}
