//! [`crate::AvgPool2d`]'s `f32` passes, generic over the instruction set, in the reference loops' order.
//!
//! Forward, per output row: the column sums of its window rows, whole input rows at a time
//! (vectors across the columns); then each output's sum of its window's column sums, a
//! vector of outputs at a time where the windows lie inside the map and the stride is 1 or
//! 2 (stride 2 splits even and odd columns with a shuffle), one at a time elsewhere. The
//! backward pass adds each output row's per-column shares to its input rows, whole rows at
//! a time.
//!
//! The layer, its shape rule and its reference loops are in [`crate::avgpool2d`]; these
//! kernels still take the shape as const parameters.

use crate::avgpool2d::{AvgPool2d, Span, span};
use crate::scalar::Scalar;
use crate::simd::{self, Kernel, Simd, spans};

impl<
    T: Scalar,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
    const INC: bool,
> AvgPool2d<T, C, H, W, K, S, OH, OW, P, CEIL, INC>
{
    /// The `f32` forward pass from `from` (the input) to `to`, or with `backward` the
    /// backward pass from `from` (the output gradient) to `to` (the input gradient).
    pub(crate) fn pass_f32(from: &[f32], to: &mut [f32], backward: bool) {
        let kernel = Pass::<C, H, W, K, S, OH, OW, P, CEIL, INC> { from, to, backward };
        simd::dispatch_within(kernel, W.min(OW));
    }
}

/// One pass over all `C` maps: forward from the input `from` to the output `to`, or
/// backward from the output gradient `from` to the input gradient `to`.
pub(crate) struct Pass<
    'a,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
    const INC: bool,
> {
    pub from: &'a [f32],
    pub to: &'a mut [f32],
    pub backward: bool,
}

/// `col[c] = Σ_r x[r·w + c]` over `rows`, top to bottom from 0 (`w ≥ S::LANES`:
/// [`crate::simd::dispatch_within`] the row width picks no wider vectors).
#[inline(always)]
fn column_sums<S: Simd>(s: S, x: &[f32], w: usize, rows: Span, col: &mut [f32]) {
    for at in spans(w, S::LANES) {
        let mut acc = s.splat(0.0);
        for r in rows.first..rows.last {
            acc = s.add(acc, s.load(x, r * w + at));
        }
        s.store(col, at, acc);
    }
}

impl<
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
    const INC: bool,
> Kernel for Pass<'_, C, H, W, K, S, OH, OW, P, CEIL, INC>
{
    type Output = ();
    #[inline(always)]
    fn run<Sd: Simd>(self, s: Sd) {
        if self.backward {
            // Whole vectors; the last columns one at a time (an overlapping vector would add
            // twice).
            let whole = W - W % Sd::LANES;
            let maps = self
                .from
                .chunks_exact(OH * OW)
                .zip(self.to.chunks_exact_mut(H * W));
            for (g, gi) in maps {
                gi.fill(0.0);
                for (oy, g) in g.as_chunks::<OW>().0.iter().enumerate() {
                    let mut shares = [0.0f32; W];
                    let rows = AvgPool2d::<f32, C, H, W, K, S, OH, OW, P, CEIL, INC>::shares(
                        oy,
                        g,
                        &mut shares,
                    );
                    for r in rows.first..rows.last {
                        let row = &mut gi[r * W..(r + 1) * W];
                        for at in (0..whole).step_by(Sd::LANES) {
                            let v = s.add(s.load(row, at), s.load(&shares, at));
                            s.store(row, at, v);
                        }
                        for (v, &t) in row[whole..].iter_mut().zip(&shares[whole..]) {
                            *v += t;
                        }
                    }
                }
            }
            return;
        }
        let lanes = Sd::LANES;
        // Outputs whose window lies inside the map, and whose loads (2 vectors at stride
        // 2) stay inside the row: `ox·S ≥ P` and `ox·S + S + K − 1 ≤ W + P`.
        let first = P.div_ceil(S);
        let end = if S <= 2 && W + P + 1 >= K + S {
            OW.min((W + P + 1 - K - S) / S + 1)
        } else {
            0
        };
        let vector = end >= first + lanes;
        let mut col = [0.0f32; W];
        let maps = self
            .from
            .chunks_exact(H * W)
            .zip(self.to.chunks_exact_mut(OH * OW));
        for (x, y) in maps {
            for (oy, y) in y.chunks_exact_mut(OW).enumerate() {
                let rows = span(oy, H, K, S, P);
                column_sums(s, x, W, rows, &mut col);
                if vector {
                    // Inside the map every window has K columns.
                    let dy = if INC {
                        rows.padded
                    } else {
                        rows.last - rows.first
                    };
                    let d = s.splat((dy * K) as f32);
                    for ox in spans(end - first, lanes).map(|o| o + first) {
                        let mut acc = s.splat(0.0);
                        for j in 0..K {
                            let at = ox * S + j - P;
                            let taps = if S == 1 {
                                s.load(&col, at)
                            } else {
                                s.deinterleave(s.load(&col, at), s.load(&col, at + lanes)).0
                            };
                            acc = s.add(acc, taps);
                        }
                        s.store(y, ox, s.div(acc, d));
                    }
                }
                for (ox, y) in y.iter_mut().enumerate() {
                    if vector && (first..end).contains(&ox) {
                        continue;
                    }
                    let (_, cols, d) =
                        AvgPool2d::<f32, C, H, W, K, S, OH, OW, P, CEIL, INC>::window(oy, ox);
                    let sum = col[cols.first..cols.last].iter().fold(0.0, |a, &v| a + v);
                    *y = sum / d as f32;
                }
            }
        }
    }
}
