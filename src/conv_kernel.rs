//! Direct 2-D convolution in `f32` for any geometry, apart from the layers that use it.
//!
//! The kernels take the shape at run time, as a [`ConvGeometry`] that each layer builds as a
//! `const` from its own const parameters. So every convolution layer of a program, whatever
//! its shape, runs the same four compiled copies of each kernel (one per instruction set of
//! [`crate::simd`], picked at run time by [`simd::dispatch`]), instead of compiling its own.
//!
//! One scheme serves every stride, padding, kernel size and group count:
//!
//! * the lanes of a vector are neighbouring **output pixels of one row**, up to 64 of them per
//!   pass (whole vectors: the pixels past the row's end are computed and dropped, and their
//!   gradients masked to zero);
//! * for each input row a pass reads, the input columns its taps need are **gathered** into
//!   a small buffer on the stack, zeros where the taps fall in the padding, and split by
//!   stride into `S` phases: column `x·S + j` of tap `j` sits in phase `j mod S` at
//!   `x + j / S`, so every tap is one contiguous vector load at any stride;
//! * the gathered row serves up to 16 output channels of the group (the forward pass and
//!   the weight gradient), and the input gradient runs the same plan backwards: products
//!   added into a phased buffer, then added back to the input columns.
//!
//! No scratch is asked of the caller: each kernel keeps at most 12 KB of fixed-size buffers
//! on its stack, whatever the layer's size. Kernels wider than 16 taps run in several passes.
//!
//! ```
//! use constnet::conv_kernel::{self, ConvGeometry};
//! // 2 → 2 channels, 3×3, stride 2, padding 1, on a 5×5 map: 3×3 outputs.
//! const GEO: ConvGeometry = ConvGeometry {
//!     c_in: 2, c_out: 2, groups: 1, k: 3, stride: 2, pad: 1, h: 5, w: 5, oh: 3, ow: 3,
//! }
//! .checked();
//! let x = [1.0f32; 2 * 5 * 5];
//! let w = [1.0f32; 2 * 2 * 3 * 3];
//! let mut y = [0.0f32; 2 * 3 * 3];
//! conv_kernel::forward(&GEO, &x, &w, &[0.5, 0.0], &mut y);
//! assert_eq!(y[0], 0.5 + 2.0 * 4.0); // the corner window: 2 channels × 2×2 taps on the map
//! assert_eq!(y[9 + 4], 2.0 * 9.0); // the centre of channel 1: every tap
//! ```

use crate::pairs::Pairs;
use core::ops::Range;

use crate::shape::conv_out;
use crate::simd::{self, Kernel, Simd};

/// Output pixels of a row per pass: a multiple of every vector width.
const COLS: usize = 64;
/// Kernel taps of a row per pass.
const TAPS: usize = 16;
/// Floats of a gathered input row: `min(S, TAPS)` phases of `COLS + (TAPS − 1) / S` hold at
/// most `COLS·TAPS` (see [`Taps`]).
const ROW: usize = COLS * TAPS;
/// Output (or input) channels that share one gathered row.
const CHANNELS: usize = 16;
/// Floats of accumulators of the gradient passes (at least one [`ROW`]).
const ACC: usize = 2 * ROW;
/// `MASK[16 − n..]` starts with `n` ones then zeros: the real pixels of a last vector.
const MASK: [f32; 32] = {
    let mut m = [0.0f32; 32];
    let mut i = 0;
    while i < 16 {
        m[i] = 1.0;
        i += 1;
    }
    m
};

/// The shape of a convolution, as numbers: what the kernels of this module need to know.
///
/// Tensors are flat and row-major, as the layers store them: the input `[c_in][h][w]`, the
/// output `[c_out][oh][ow]`, the weights `[c_out][c_in / groups][k][k]` (PyTorch's layout)
/// and one bias per output channel. Output channel `o` belongs to group
/// `o / (c_out / groups)` and reads only that group's `c_in / groups` input channels.
/// Output pixel `(y, x)`, tap `(i, j)` reads input pixel `(y·stride + i − pad, x·stride + j −
/// pad)`, or zero in the padding.
///
/// A layer builds it as a constant with [`ConvGeometry::checked`]:
///
/// ```
/// use constnet::conv_kernel::ConvGeometry;
/// // MobileNet's first depthwise convolution: 32 groups of one channel, 3×3, padding 1.
/// const DW: ConvGeometry = ConvGeometry {
///     c_in: 32, c_out: 32, groups: 32, k: 3, stride: 1, pad: 1, h: 112, w: 112, oh: 112, ow: 112,
/// }
/// .checked();
/// assert_eq!((DW.in_per_group(), DW.weight_len()), (1, 32 * 9));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Groups: 1 for a plain convolution, `c_in` for a depthwise one.
    pub groups: usize,
    /// Kernel size (square).
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub pad: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height, [`conv_out`]`(h, k, stride, pad)`.
    pub oh: usize,
    /// Output width, [`conv_out`]`(w, k, stride, pad)`.
    pub ow: usize,
}

impl ConvGeometry {
    /// `self`, after checking its rules: every count at least 1, `groups` dividing both
    /// channel counts, the kernel within the padded map, and PyTorch's output size. Panics
    /// otherwise, which in a `const` is a compile error.
    ///
    /// ```should_panic
    /// use constnet::conv_kernel::ConvGeometry;
    /// // 3 groups do not divide 4 input channels.
    /// ConvGeometry { c_in: 4, c_out: 6, groups: 3, k: 1, stride: 1, pad: 0, h: 2, w: 2, oh: 2, ow: 2 }
    ///     .checked();
    /// ```
    pub const fn checked(self) -> Self {
        assert!(
            self.c_in > 0 && self.c_out > 0 && self.groups > 0,
            "ConvGeometry: c_in, c_out and groups must be at least 1"
        );
        assert!(
            self.c_in.is_multiple_of(self.groups) && self.c_out.is_multiple_of(self.groups),
            "ConvGeometry: groups must divide c_in and c_out"
        );
        assert!(
            self.k > 0 && self.stride > 0 && self.h > 0 && self.w > 0,
            "ConvGeometry: k, stride, h and w must be at least 1"
        );
        assert!(
            self.k <= self.h + 2 * self.pad && self.k <= self.w + 2 * self.pad,
            "ConvGeometry: the kernel is larger than the padded map"
        );
        assert!(
            self.oh == conv_out(self.h, self.k, self.stride, self.pad)
                && self.ow == conv_out(self.w, self.k, self.stride, self.pad),
            "ConvGeometry: oh and ow must equal ⌊(h + 2·pad − k) / stride⌋ + 1 (and for w)"
        );
        self
    }

    /// Input channels per group, `c_in / groups`.
    pub const fn in_per_group(&self) -> usize {
        self.c_in / self.groups
    }

    /// Output channels per group, `c_out / groups`.
    pub const fn out_per_group(&self) -> usize {
        self.c_out / self.groups
    }

    /// Floats in the input, `c_in·h·w`.
    pub const fn input_len(&self) -> usize {
        self.c_in * self.h * self.w
    }

    /// Floats in the output, `c_out·oh·ow`.
    pub const fn output_len(&self) -> usize {
        self.c_out * self.oh * self.ow
    }

    /// Floats in the weights, `c_out·(c_in / groups)·k·k`.
    pub const fn weight_len(&self) -> usize {
        self.c_out * self.in_per_group() * self.k * self.k
    }

    /// Kernel rows `i` whose input row `oy·stride + i − pad` is on the map.
    #[inline(always)]
    fn rows(&self, oy: usize) -> Range<usize> {
        let top = oy * self.stride;
        let hi = (self.h + self.pad).saturating_sub(top).min(self.k);
        self.pad.saturating_sub(top).min(hi)..hi
    }

    /// Input row `r` of channel `c`, for output row `oy` and kernel row `i` in
    /// [`ConvGeometry::rows`].
    #[inline(always)]
    fn input_row(&self, c: usize, oy: usize, i: usize) -> Range<usize> {
        let r = oy * self.stride + i - self.pad;
        (c * self.h + r) * self.w..(c * self.h + r + 1) * self.w
    }

    /// Panics unless the geometry holds and the slices have its lengths.
    #[track_caller]
    #[inline]
    pub(crate) fn check(&self, lens: &[(usize, usize, &str)]) {
        let _ = self.checked();
        for &(got, want, what) in lens {
            assert_eq!(
                got, want,
                "conv_kernel: {what} has the wrong length for {self:?}"
            );
        }
    }

    /// How many samples `len` values of inputs hold, one after the other (at least 1).
    #[inline]
    pub(crate) fn samples_of_inputs(&self, len: usize) -> usize {
        (len / self.input_len().max(1)).max(1)
    }

    /// How many samples `len` values of outputs (or output gradients) hold (at least 1).
    #[inline]
    pub(crate) fn samples_of_outputs(&self, len: usize) -> usize {
        (len / self.output_len().max(1)).max(1)
    }

    /// [`ConvGeometry::check`] for a forward pass's slices.
    #[track_caller]
    #[inline]
    pub(crate) fn check_forward(&self, x: &[f32], w: &[f32], b: &[f32], y: &[f32]) {
        // One sample or several, as many inputs as outputs.
        let samples = self.samples_of_inputs(x.len());
        self.check(&[
            (x.len(), samples * self.input_len(), "the input"),
            (w.len(), self.weight_len(), "the weight"),
            (b.len(), self.c_out, "the bias"),
            (y.len(), samples * self.output_len(), "the output"),
        ]);
    }

    /// [`ConvGeometry::check`] for a weight gradient's slices.
    #[track_caller]
    #[inline]
    pub(crate) fn check_weight_grad(&self, x: &[f32], g: &[f32], gw: &[f32], gb: &[f32]) {
        // One sample or several, as many inputs as output gradients.
        let samples = self.samples_of_inputs(x.len());
        self.check(&[
            (x.len(), samples * self.input_len(), "the input"),
            (g.len(), samples * self.output_len(), "the output gradient"),
            (gw.len(), self.weight_len(), "the weight gradient"),
            (gb.len(), self.c_out, "the bias gradient"),
        ]);
    }

    /// [`ConvGeometry::check`] for an input gradient's slices.
    #[track_caller]
    #[inline]
    pub(crate) fn check_input_grad(&self, w: &[f32], g: &[f32], gi: &[f32]) {
        // One sample or several, as many output gradients as input gradients.
        let samples = self.samples_of_outputs(g.len());
        self.check(&[
            (w.len(), self.weight_len(), "the weight"),
            (g.len(), samples * self.output_len(), "the output gradient"),
            (gi.len(), samples * self.input_len(), "the input gradient"),
        ]);
    }
}

/// Output pixels `ox0..ox0 + n` of a row, computed as `np` (`n` rounded up to whole vectors).
#[derive(Clone, Copy, Debug)]
struct Cols {
    ox0: usize,
    n: usize,
    np: usize,
}

/// Passes of at most [`COLS`] pixels covering an output row of `ow`.
#[inline(always)]
fn col_chunks(ow: usize, lanes: usize) -> impl Iterator<Item = Cols> {
    (0..ow).step_by(COLS).map(move |ox0| {
        let n = COLS.min(ow - ox0);
        Cols {
            ox0,
            n,
            np: n.div_ceil(lanes) * lanes,
        }
    })
}

/// Taps `j0..j0 + jn` of a kernel row over [`Cols`] `cols`, and the layout of the input
/// columns they read: `phases = min(S, jn)` runs of `len = np + (jn − 1) / S` floats, run
/// `q` holding padded column `ox0·S + j0 + q + S·t` at `t`. Tap `j0 + d` of pixel `ox0 + u`
/// reads padded column `(ox0 + u)·S + j0 + d`, which is at [`Taps::at`]`(d) + u`.
/// (`phases·len ≤ ROW`: `jn·np ≤ 16·64` if `S ≥ jn`, else `S·np + jn − 1 < 16·64`.)
#[derive(Clone, Copy, Debug)]
struct Taps {
    j0: usize,
    jn: usize,
    phases: usize,
    len: usize,
    stride: usize,
}

impl Taps {
    #[inline(always)]
    fn new(j0: usize, k: usize, stride: usize, cols: Cols) -> Taps {
        let jn = TAPS.min(k - j0);
        Taps {
            j0,
            jn,
            phases: stride.min(jn),
            len: cols.np + (jn - 1) / stride,
            stride,
        }
    }

    /// Where tap `j0 + d` of the first pixel is in the gathered row.
    #[inline(always)]
    fn at(&self, d: usize) -> usize {
        (d % self.stride) * self.len + d / self.stride
    }

    /// [`Taps::at`] of every tap of the pass.
    #[inline(always)]
    fn offsets(&self) -> [usize; TAPS] {
        core::array::from_fn(|d| self.at(d))
    }

    /// Floats of the gathered row.
    #[inline(always)]
    fn size(&self) -> usize {
        self.phases * self.len
    }

    /// For run `q`: the padded column `first` of its `t = 0` (`t` stands for input column
    /// `first + S·t − pad`), and the range of `t` whose column is on the map.
    #[inline(always)]
    fn on_map(&self, geo: &ConvGeometry, cols: Cols, q: usize) -> (usize, Range<usize>) {
        let first = cols.ox0 * self.stride + self.j0 + q;
        let hi = (geo.pad + geo.w)
            .saturating_sub(first)
            .div_ceil(self.stride)
            .min(self.len);
        let lo = geo.pad.saturating_sub(first).div_ceil(self.stride).min(hi);
        (first, lo..hi)
    }
}

/// The input columns of a pass, from one input row: `out[q·len + t]` = padded column
/// `ox0·S + j0 + q + S·t` of `row`, zero in the padding and past the map.
#[inline(always)]
fn gather(row: &[f32], geo: &ConvGeometry, cols: Cols, taps: Taps, out: &mut [f32]) {
    let s = taps.stride;
    for (q, run) in out.chunks_exact_mut(taps.len).take(taps.phases).enumerate() {
        let (first, on) = taps.on_map(geo, cols, q);
        run[..on.start].fill(0.0);
        run[on.end..].fill(0.0);
        if on.is_empty() {
            continue;
        }
        let from = first + s * on.start - geo.pad;
        if s == 1 {
            run[on.clone()].copy_from_slice(&row[from..from + on.len()]);
        } else {
            for (v, &x) in run[on].iter_mut().pairs(row[from..].iter().step_by(s)) {
                *v = x;
            }
        }
    }
}

/// The reverse of [`gather`]: adds `acc[q·len + t]` to the input column it stands for, for
/// the columns on the map.
#[inline(always)]
fn scatter_add(acc: &[f32], geo: &ConvGeometry, cols: Cols, taps: Taps, row: &mut [f32]) {
    let s = taps.stride;
    for (q, run) in acc.chunks_exact(taps.len).take(taps.phases).enumerate() {
        let (first, on) = taps.on_map(geo, cols, q);
        if on.is_empty() {
            continue;
        }
        let from = first + s * on.start - geo.pad;
        for (r, &a) in row[from..].iter_mut().step_by(s).pairs(&run[on]) {
            *r += a;
        }
    }
}

/// `Σ v`, in 4 vectors of partial sums.
#[inline(always)]
pub(crate) fn sum<S: Simd>(s: S, v: &[f32]) -> f32 {
    let mut acc = [s.splat(0.0); 4];
    let mut chunks = v.chunks_exact(4 * S::LANES);
    for chunk in &mut chunks {
        for (l, a) in acc.iter_mut().enumerate() {
            *a = s.add(*a, s.load(chunk, l * S::LANES));
        }
    }
    let total = s.add(s.add(acc[0], acc[1]), s.add(acc[2], acc[3]));
    chunks.remainder().iter().fold(s.sum(total), |t, &v| t + v)
}

/// `y = b + w ⋆ x` (see [`forward`]).
struct Forward<'a> {
    geo: &'a ConvGeometry,
    x: &'a [f32],
    w: &'a [f32],
    b: &'a [f32],
    y: &'a mut [f32],
}

impl Kernel for Forward<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let Forward { geo, x, w, b, y } = self;
        let (cig, cog, k) = (geo.in_per_group(), geo.out_per_group(), geo.k);
        let mut row = [0.0f32; ROW];
        // Up to CHANNELS output rows of one pass: the sums stay in L1 while the taps go by.
        let mut acc = [0.0f32; CHANNELS * COLS];
        for group in 0..geo.groups {
            for oy in 0..geo.oh {
                for cols in col_chunks(geo.ow, S::LANES) {
                    for o0 in (group * cog..(group + 1) * cog).step_by(CHANNELS) {
                        let ob = CHANNELS.min((group + 1) * cog - o0);
                        for (acc, &b) in acc.chunks_exact_mut(COLS).pairs(&b[o0..o0 + ob]) {
                            acc[..cols.np].fill(b);
                        }
                        for ci in 0..cig {
                            for i in geo.rows(oy) {
                                let x_row = &x[geo.input_row(group * cig + ci, oy, i)];
                                for j0 in (0..k).step_by(TAPS) {
                                    let taps = Taps::new(j0, k, geo.stride, cols);
                                    gather(x_row, geo, cols, taps, &mut row);
                                    let at = taps.offsets();
                                    for (a, acc) in acc.chunks_exact_mut(COLS).take(ob).enumerate()
                                    {
                                        let wt = &w[(((o0 + a) * cig + ci) * k + i) * k + j0..]
                                            [..taps.jn];
                                        for u in (0..cols.np).step_by(S::LANES) {
                                            let mut v = s.load(acc, u);
                                            for (&wt, &at) in wt.iter().pairs(&at) {
                                                let xv = s.load(&row, at + u);
                                                v = s.mul_add(s.splat(wt), xv, v);
                                            }
                                            s.store(acc, u, v);
                                        }
                                    }
                                }
                            }
                        }
                        for (a, acc) in acc.chunks_exact(COLS).take(ob).enumerate() {
                            let at = ((o0 + a) * geo.oh + oy) * geo.ow + cols.ox0;
                            y[at..at + cols.n].copy_from_slice(&acc[..cols.n]);
                        }
                    }
                }
            }
        }
    }
}

/// `gw += scale · ∂E/∂w`, `gb += scale · ∂E/∂b` (see [`weight_grad`]).
struct WeightGrad<'a> {
    geo: &'a ConvGeometry,
    x: &'a [f32],
    g: &'a [f32],
    gw: &'a mut [f32],
    gb: &'a mut [f32],
    scale: f32,
}

impl Kernel for WeightGrad<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let WeightGrad {
            geo,
            x,
            g,
            gw,
            gb,
            scale,
        } = self;
        let (cig, cog, k, lanes) = (geo.in_per_group(), geo.out_per_group(), geo.k, S::LANES);
        for (gb, g) in gb.iter_mut().pairs(g.chunks_exact(geo.oh * geo.ow)) {
            *gb += scale * sum(s, g);
        }
        let (zero, half) = (s.splat(0.0), s.splat(0.5));
        let mut row = [0.0f32; ROW];
        // One vector of partial sums per output channel and tap, over all the pixels.
        let mut acc = [0.0f32; ACC];
        // The last, partial vector of a pass's output gradient, zero past the row.
        let mut tail = [0.0f32; 16];
        for group in 0..geo.groups {
            for (ci, i, j0) in triples(cig, k, (0..k).step_by(TAPS)) {
                let jn = TAPS.min(k - j0);
                let block = CHANNELS.min(ACC / (jn * lanes));
                for o0 in (group * cog..(group + 1) * cog).step_by(block) {
                    let ob = block.min((group + 1) * cog - o0);
                    acc[..ob * jn * lanes].fill(0.0);
                    for oy in (0..geo.oh).filter(|&oy| geo.rows(oy).contains(&i)) {
                        let x_row = &x[geo.input_row(group * cig + ci, oy, i)];
                        for cols in col_chunks(geo.ow, lanes) {
                            let taps = Taps::new(j0, k, geo.stride, cols);
                            gather(x_row, geo, cols, taps, &mut row);
                            let at = taps.offsets();
                            for (a, acc) in acc.chunks_exact_mut(jn * lanes).take(ob).enumerate() {
                                let start = ((o0 + a) * geo.oh + oy) * geo.ow + cols.ox0;
                                let g_row = &g[start..start + cols.n];
                                for u in (0..cols.np).step_by(lanes) {
                                    let real = cols.n - u;
                                    if real >= lanes {
                                        let gv = s.load(g_row, u);
                                        for (d, &at) in at[..jn].iter().enumerate() {
                                            let xv = s.load(&row, at + u);
                                            let sum = s.mul_add(gv, xv, s.load(acc, d * lanes));
                                            s.store(acc, d * lanes, sum);
                                        }
                                    } else {
                                        // Past the row, the gradient is zero and the input
                                        // (which may be any number) is masked out.
                                        tail[..real].copy_from_slice(&g_row[u..]);
                                        tail[real..].fill(0.0);
                                        let gv = s.load(&tail, 0);
                                        let mask = s.load(&MASK, 16 - real);
                                        for (d, &at) in at[..jn].iter().enumerate() {
                                            let xv = s.load(&row, at + u);
                                            let xv = s.select_gt(mask, half, xv, zero);
                                            let sum = s.mul_add(gv, xv, s.load(acc, d * lanes));
                                            s.store(acc, d * lanes, sum);
                                        }
                                    }
                                }
                            }
                        }
                    }
                    for (a, acc) in acc.chunks_exact(jn * lanes).take(ob).enumerate() {
                        let at = (((o0 + a) * cig + ci) * k + i) * k + j0;
                        for (gw, sums) in gw[at..at + jn].iter_mut().pairs(acc.chunks_exact(lanes))
                        {
                            *gw += scale * s.sum(s.load(sums, 0));
                        }
                    }
                }
            }
        }
    }
}

/// Every `(c, i, j0)` for `c < cs`, `i < k`, `j0` in `j0s`, in that order.
#[inline(always)]
fn triples(
    cs: usize,
    k: usize,
    j0s: impl Iterator<Item = usize> + Clone,
) -> impl Iterator<Item = (usize, usize, usize)> {
    (0..cs).flat_map(move |c| {
        let j0s = j0s.clone();
        (0..k).flat_map(move |i| j0s.clone().map(move |j0| (c, i, j0)))
    })
}

/// `gi = ∂E/∂x` (see [`input_grad`]).
struct InputGrad<'a> {
    geo: &'a ConvGeometry,
    w: &'a [f32],
    g: &'a [f32],
    gi: &'a mut [f32],
}

impl Kernel for InputGrad<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let InputGrad { geo, w, g, gi } = self;
        let (cig, cog, k, lanes) = (geo.in_per_group(), geo.out_per_group(), geo.k, S::LANES);
        gi.fill(0.0);
        // The products of a pass for up to CHANNELS input channels, phased as a gathered row.
        let mut acc = [0.0f32; ACC];
        let mut tail = [0.0f32; 16];
        for group in 0..geo.groups {
            for oy in 0..geo.oh {
                for cols in col_chunks(geo.ow, lanes) {
                    // The last vector of the pass's output gradient, zero past the row: its
                    // products add nothing.
                    let last = cols.np - lanes;
                    for j0 in (0..k).step_by(TAPS) {
                        let taps = Taps::new(j0, k, geo.stride, cols);
                        let (size, at) = (taps.size(), taps.offsets());
                        let block = CHANNELS.min(ACC / size);
                        for c0 in (0..cig).step_by(block) {
                            let cb = block.min(cig - c0);
                            for i in geo.rows(oy) {
                                acc[..cb * size].fill(0.0);
                                for o in group * cog..(group + 1) * cog {
                                    let start = (o * geo.oh + oy) * geo.ow + cols.ox0;
                                    let g_row = &g[start..start + cols.n];
                                    tail[..cols.n - last].copy_from_slice(&g_row[last..]);
                                    tail[cols.n - last..].fill(0.0);
                                    for (c, acc) in acc.chunks_exact_mut(size).take(cb).enumerate()
                                    {
                                        let wt =
                                            &w[((o * cig + c0 + c) * k + i) * k + j0..][..taps.jn];
                                        for u in (0..cols.np).step_by(lanes) {
                                            let gv = if u < last {
                                                s.load(g_row, u)
                                            } else {
                                                s.load(&tail, 0)
                                            };
                                            for (&wt, &at) in wt.iter().pairs(&at) {
                                                let v = s.load(acc, at + u);
                                                s.store(acc, at + u, s.mul_add(s.splat(wt), gv, v));
                                            }
                                        }
                                    }
                                }
                                for (c, acc) in acc.chunks_exact(size).take(cb).enumerate() {
                                    let gi_row =
                                        &mut gi[geo.input_row(group * cig + c0 + c, oy, i)];
                                    scatter_add(acc, geo, cols, taps, gi_row);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The forward pass, on the best instruction set this CPU has: every output
/// `y[o][oy][ox] = b[o] + Σ w[o][c][i][j] · x[g·cig + c][oy·S + i − P][ox·S + j − P]`, the
/// sum over the input channels `c` of `o`'s group `g` and the taps on the map. `x` and `y`
/// may hold several samples one after the other (as many inputs as outputs).
///
/// Panics if the geometry does not hold ([`ConvGeometry::checked`]) or a slice's length is
/// not the geometry's (or a whole number of samples of it).
///
/// ```
/// use constnet::conv_kernel::{self, ConvGeometry};
/// // Depthwise: each of 2 channels has its own 1×1 filter.
/// const GEO: ConvGeometry = ConvGeometry {
///     c_in: 2, c_out: 2, groups: 2, k: 1, stride: 1, pad: 0, h: 1, w: 3, oh: 1, ow: 3,
/// }
/// .checked();
/// let mut y = [0.0f32; 6];
/// conv_kernel::forward(&GEO, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[10.0, -1.0], &[0.0, 0.5], &mut y);
/// assert_eq!(y, [10.0, 20.0, 30.0, -3.5, -4.5, -5.5]);
/// ```
#[inline]
pub fn forward(geo: &ConvGeometry, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    geo.check_forward(x, w, b, y);
    let samples = x.chunks_exact(geo.input_len());
    for (x, y) in samples.zip(y.chunks_exact_mut(geo.output_len())) {
        simd::dispatch(Forward { geo, x, w, b, y });
    }
}

/// The parameter gradients of one sample, scaled and added: `gw += scale · ∂E/∂w` and
/// `gb += scale · ∂E/∂b` for the output gradient `g` (`∂E/∂y`) and the input `x` of a
/// [`forward`] pass. `scale = 1` accumulates a gradient; `scale = −lr` is a plain SGD step
/// applied in place (`gw` the weights themselves). `x` and `g` may hold several samples one
/// after the other (as many inputs as output gradients): these kernels add them sample by
/// sample.
///
/// Panics as [`forward`] does.
///
/// ```
/// use constnet::conv_kernel::{self, ConvGeometry};
/// const GEO: ConvGeometry = ConvGeometry {
///     c_in: 1, c_out: 1, groups: 1, k: 2, stride: 1, pad: 0, h: 2, w: 3, oh: 1, ow: 2,
/// }
/// .checked();
/// let (mut gw, mut gb) = ([0.0f32; 4], [0.0f32; 1]);
/// let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
/// conv_kernel::weight_grad(&GEO, &x, &[1.0, 10.0], &mut gw, &mut gb, 1.0);
/// assert_eq!(gw, [21.0, 32.0, 54.0, 65.0]); // x[i][j] + 10·x[i][j + 1]
/// assert_eq!(gb, [11.0]);
/// ```
#[inline]
pub fn weight_grad(
    geo: &ConvGeometry,
    x: &[f32],
    g: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    scale: f32,
) {
    geo.check_weight_grad(x, g, gw, gb);
    let samples = x.chunks_exact(geo.input_len());
    for (x, g) in samples.zip(g.chunks_exact(geo.output_len())) {
        let (gw, gb) = (&mut *gw, &mut *gb);
        simd::dispatch(WeightGrad {
            geo,
            x,
            g,
            gw,
            gb,
            scale,
        });
    }
}

/// The input gradient: `gi = ∂E/∂x` for the output gradient `g` (`∂E/∂y`) and the weights
/// `w`. Every value of `gi` is written (zero where no tap reads the input). `g` and `gi`
/// may hold several samples one after the other.
///
/// Panics as [`forward`] does.
///
/// ```
/// use constnet::conv_kernel::{self, ConvGeometry};
/// // 2×2 taps at stride 2 over a 2×5 map: the last column is read by no window.
/// const GEO: ConvGeometry = ConvGeometry {
///     c_in: 1, c_out: 1, groups: 1, k: 2, stride: 2, pad: 0, h: 2, w: 5, oh: 1, ow: 2,
/// }
/// .checked();
/// let mut gi = [f32::NAN; 10];
/// conv_kernel::input_grad(&GEO, &[1.0, 2.0, 3.0, 4.0], &[1.0, -1.0], &mut gi);
/// assert_eq!(gi, [1.0, 2.0, -1.0, -2.0, 0.0, 3.0, 4.0, -3.0, -4.0, 0.0]);
/// ```
#[inline]
pub fn input_grad(geo: &ConvGeometry, w: &[f32], g: &[f32], gi: &mut [f32]) {
    geo.check_input_grad(w, g, gi);
    let samples = g.chunks_exact(geo.output_len());
    for (g, gi) in samples.zip(gi.chunks_exact_mut(geo.input_len())) {
        simd::dispatch(InputGrad { geo, w, g, gi });
    }
}
