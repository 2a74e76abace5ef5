//! Max pooling in `f32` for any geometry, apart from the layer that uses it.
//!
//! The kernels take the shape at run time, as a [`PoolGeometry`] that
//! [`crate::MaxPool2d`] builds as a `const` from its const parameters, so every pooling
//! layer of a program runs the same compiled copies of each kernel (one per instruction set
//! of [`crate::simd`], picked at run time by [`simd::dispatch`]).
//!
//! The semantics are PyTorch's, and bit for bit those of
//! [`crate::MaxPool2d::forward_reference`] and [`crate::MaxPool2d::backward_reference`]:
//! padded and past-the-end taps never win; among taps that tie, the first in the window's
//! row-major scan order wins; a NaN ranks above every number (see [`crate::simd::beats`]);
//! the gradient of a window goes entirely to its winner, and the gradients of overlapping
//! windows add up, in output order.
//!
//! One scheme serves every window, stride and padding:
//!
//! * the lanes of a vector are neighbouring **output pixels of one row**, up to 128 per pass
//!   (whole vectors: the pixels past the row's end are computed and dropped);
//! * for each input row a window row reads, the input columns the pass needs are copied into
//!   a row buffer on the stack, −∞ in the padding and past the map (0 for gradients); a tap
//!   is then one vector load at stride 1, two loads split by a shuffle at stride 2, and one
//!   load from a buffer split by column phase at larger strides;
//! * the forward pass keeps a running maximum and winner per output over the window rows in
//!   order, which is the reference's scan order; the backward pass adds each window row's
//!   gradients to its input row taps last to first, so that each input adds the gradients
//!   of its windows in output order, as the reference loops do.
//!
//! No scratch is asked of the caller and nothing grows with the layer: each kernel keeps
//! under 3 KB of fixed-size buffers on its stack.
//!
//! ```
//! use constnet::pool_kernel::{self, PoolGeometry};
//! // 3×3 windows, stride 2, padding 1 over one 4×4 map: 2×2 outputs.
//! const GEO: PoolGeometry = PoolGeometry {
//!     c: 1, h: 4, w: 4, k: 3, stride: 2, pad: 1, ceil: false, oh: 2, ow: 2,
//! }
//! .checked();
//! let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
//! let (mut y, mut at) = ([0.0f32; 4], [0u32; 4]);
//! pool_kernel::forward(&GEO, &x, &mut y, &mut at);
//! assert_eq!(y, [5.0, 7.0, 13.0, 15.0]);
//! assert_eq!(at[0], 8); // tap (2, 2) of the first window: the padding is row and column 0
//! ```

use core::ops::Range;

use crate::shape::pool_out;
use crate::simd::{self, Kernel, Simd};

/// Output pixels of a row per pass: a multiple of every vector width.
const COLS: usize = 128;
/// The widest window the vector passes take; wider ones run plain loops.
const MAX_K: usize = 32;
/// Floats of a row buffer: the input columns of [`COLS`] outputs at stride 2, windows up to
/// [`MAX_K`] wide (at larger strides a pass takes fewer outputs).
const ROW: usize = 2 * COLS + MAX_K;
/// 2²³: for an integer `0 ≤ i < 2²³`, the bits of `i + 2²³` are those of 2²³ plus `i`, so
/// winners kept as floats convert to integers with an integer subtraction the compiler
/// vectorises (`as u32` saturates, and stays scalar).
const MAGIC: f32 = 8_388_608.0;

/// The shape of a max pooling, as numbers: what the kernels of this module need to know.
///
/// Tensors are flat and row-major, as the layer stores them: the input `[c][h][w]`, the
/// output and the winners `[c][oh][ow]`. Output `(y, x)`, tap `(i, j)` reads input pixel
/// `(y·stride + i − pad, x·stride + j − pad)`, or nothing (−∞) in the padding and past the
/// map; its winner is recorded as the tap number `i·k + j`.
///
/// ```
/// use constnet::pool_kernel::PoolGeometry;
/// // ResNet-18's max-pool: 3×3, stride 2, padding 1, 112 → 56.
/// const STEM: PoolGeometry = PoolGeometry {
///     c: 64, h: 112, w: 112, k: 3, stride: 2, pad: 1, ceil: false, oh: 56, ow: 56,
/// }
/// .checked();
/// assert!(STEM.vectorised());
/// assert_eq!(STEM.output_len(), 64 * 56 * 56);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolGeometry {
    /// Channels (maps).
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window size (square).
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Padding on each side (−∞), at most `k / 2`.
    pub pad: usize,
    /// PyTorch's ceil mode (it only changes the output size).
    pub ceil: bool,
    /// Output height, [`pool_out`]`(h, k, stride, pad, ceil)`.
    pub oh: usize,
    /// Output width, [`pool_out`]`(w, k, stride, pad, ceil)`.
    pub ow: usize,
}

impl PoolGeometry {
    /// `self`, after checking PyTorch's rules: every count at least 1, the padding at most
    /// half the window, the window within the padded map, and the output size. Panics
    /// otherwise, which in a `const` is a compile error.
    ///
    /// ```should_panic
    /// use constnet::pool_kernel::PoolGeometry;
    /// // 3×3 windows at stride 2 over 10 columns give 4 outputs, or 5 in ceil mode.
    /// PoolGeometry { c: 1, h: 10, w: 10, k: 3, stride: 2, pad: 0, ceil: false, oh: 5, ow: 5 }
    ///     .checked();
    /// ```
    pub const fn checked(self) -> Self {
        assert!(
            self.c > 0 && self.k > 0 && self.stride > 0,
            "PoolGeometry: c, k and stride must be at least 1"
        );
        assert!(
            2 * self.pad <= self.k,
            "PoolGeometry: the padding must be at most half the window"
        );
        assert!(
            self.k <= self.h + 2 * self.pad && self.k <= self.w + 2 * self.pad,
            "PoolGeometry: the window is larger than the padded map"
        );
        assert!(
            self.oh == pool_out(self.h, self.k, self.stride, self.pad, self.ceil)
                && self.ow == pool_out(self.w, self.k, self.stride, self.pad, self.ceil),
            "PoolGeometry: oh and ow must equal pool_out(h, k, stride, pad, ceil) (and for w)"
        );
        self
    }

    /// Floats in the input, `c·h·w`.
    pub const fn input_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Floats in the output (and winners in the workspace), `c·oh·ow`.
    pub const fn output_len(&self) -> usize {
        self.c * self.oh * self.ow
    }

    /// Outputs of a row per vector pass (a multiple of 16; 0 if the window is too wide or
    /// the stride too large for the row buffer).
    const fn cols(&self) -> usize {
        if self.k > MAX_K {
            return 0;
        }
        let cols = (ROW - self.k) / self.stride / 16 * 16;
        if cols < COLS { cols } else { COLS }
    }

    /// Whether the single-sample passes ([`forward`], [`max`], [`backward`]) run SIMD
    /// kernels for this geometry: windows up to 32 wide at strides up to 8 (beyond, plain
    /// loops). The lane passes ([`forward_lanes`], [`backward_lanes`]) always do.
    pub const fn vectorised(&self) -> bool {
        self.cols() >= 16
    }

    /// Whether the windows tile the map: stride equal to the window, no padding, and every
    /// input row and column in a window (each input has exactly one window).
    pub const fn tiles(&self) -> bool {
        self.stride == self.k
            && self.pad == 0
            && self.oh * self.k == self.h
            && self.ow * self.k == self.w
    }

    /// Window rows `i` of output row `oy` whose input row `oy·stride + i − pad` is on the map.
    #[inline(always)]
    fn rows(&self, oy: usize) -> Range<usize> {
        on_map(oy * self.stride, self.k, self.pad, self.h)
    }

    /// Window columns `j` of output column `ox` on the map.
    #[inline(always)]
    fn columns(&self, ox: usize) -> Range<usize> {
        on_map(ox * self.stride, self.k, self.pad, self.w)
    }

    /// The first output column whose window starts on the map (no left padding).
    #[inline(always)]
    fn first_inside(&self) -> usize {
        self.pad.div_ceil(self.stride).min(self.ow)
    }

    /// Panics unless the geometry holds and the slices have its lengths.
    #[track_caller]
    fn check(&self, lens: &[(usize, usize, &str)]) {
        let _ = self.checked();
        for &(got, want, what) in lens {
            assert_eq!(
                got, want,
                "pool_kernel: {what} has the wrong length for {self:?}"
            );
        }
    }
}

/// Taps `i` of a window starting at padded index `start` (`k` taps) whose index
/// `start + i − pad` lies in `0..n`.
#[inline(always)]
fn on_map(start: usize, k: usize, pad: usize, n: usize) -> Range<usize> {
    let hi = (n + pad).saturating_sub(start).min(k);
    pad.saturating_sub(start).min(hi)..hi
}

/// Copies the input columns that outputs `ox0..ox0 + np` of a row read from input row `row`
/// into `buf`, `pad` where they fall in the padding or past the map; returns the length of
/// a phase. At strides 1 and 2, `buf[t]` is padded column `ox0·stride + t` (one phase of
/// `stride·np + k`); at larger strides, `buf[q·len + t]` is padded column
/// `ox0·stride + q + stride·t` (`min(stride, k)` phases of `len = np + (k − 1) / stride`).
#[inline(always)]
fn fill(row: &[f32], geo: &PoolGeometry, ox0: usize, np: usize, pad: f32, buf: &mut [f32]) -> usize {
    let (st, k, p, w) = (geo.stride, geo.k, geo.pad, geo.w);
    let first = ox0 * st;
    if st <= 2 {
        let len = st * np + k;
        let on = on_map(first, len, p, w);
        buf[..on.start].fill(pad);
        buf[on.clone()].copy_from_slice(&row[first + on.start - p..first + on.end - p]);
        buf[on.end..len].fill(pad);
        return len;
    }
    let len = np + (k - 1) / st;
    for (q, phase) in buf.chunks_exact_mut(len).take(st.min(k)).enumerate() {
        for (t, v) in phase.iter_mut().enumerate() {
            let col = first + q + st * t;
            *v = if col >= p && col - p < w {
                row[col - p]
            } else {
                pad
            };
        }
    }
    len
}

/// The reverse of [`fill`]: writes the columns of `buf` that are on the map back to `row`.
#[inline(always)]
fn spill(buf: &[f32], geo: &PoolGeometry, ox0: usize, len: usize, row: &mut [f32]) {
    let (st, k, p, w) = (geo.stride, geo.k, geo.pad, geo.w);
    let first = ox0 * st;
    if st <= 2 {
        let on = on_map(first, len, p, w);
        row[first + on.start - p..first + on.end - p].copy_from_slice(&buf[on]);
        return;
    }
    for (q, phase) in buf.chunks_exact(len).take(st.min(k)).enumerate() {
        for (t, &v) in phase.iter().enumerate() {
            let col = first + q + st * t;
            if col >= p && col - p < w {
                row[col - p] = v;
            }
        }
    }
}

/// Tap `t` (as `t + 2²³` if `ARG`) replaces the running maximum `b` and winner `a` where
/// `v` beats `b`.
#[inline(always)]
fn update<S: Simd, const ARG: bool>(s: S, v: S::F, t: S::F, b: &mut S::F, a: &mut S::F) {
    if ARG {
        *a = s.select_gt_nan(v, *b, t, *a);
    }
    *b = s.select_gt_nan(v, *b, v, *b);
}

/// One window row of a forward pass: for outputs `0..np` of the pass, the taps `t0 + j` read
/// from the row buffer `buf` (see [`fill`]) update `best` and (if `ARG`) `arg`.
#[inline(always)]
fn max_row<S: Simd, const ARG: bool>(
    s: S,
    (k, st, len): (usize, usize, usize),
    buf: &[f32],
    (np, t0): (usize, usize),
    best: &mut [f32],
    arg: &mut [f32],
) {
    let l = S::LANES;
    let tap = |j: usize| s.splat((t0 + j) as f32 + MAGIC);
    for u in (0..np).step_by(l) {
        let mut b = s.load(best, u);
        let mut a = if ARG { s.load(arg, u) } else { b };
        if st == 1 {
            for j in 0..k {
                update::<S, ARG>(s, s.load(buf, u + j), tap(j), &mut b, &mut a);
            }
        } else if st == 2 {
            // Columns 2·(u + lane) + j and the next one: taps j and j + 1.
            for j in (0..k).step_by(2) {
                let (even, odd) = s.deinterleave(s.load(buf, 2 * u + j), s.load(buf, 2 * u + j + l));
                update::<S, ARG>(s, even, tap(j), &mut b, &mut a);
                if j + 1 < k {
                    update::<S, ARG>(s, odd, tap(j + 1), &mut b, &mut a);
                }
            }
        } else {
            for j in 0..k {
                let v = s.load(buf, (j % st) * len + j / st + u);
                update::<S, ARG>(s, v, tap(j), &mut b, &mut a);
            }
        }
        s.store(best, u, b);
        if ARG {
            s.store(arg, u, a);
        }
    }
}

/// The forward pass: maxima `y`, and if `ARG` the winners `at` (see [`forward`]).
struct Forward<'a, const ARG: bool> {
    geo: &'a PoolGeometry,
    x: &'a [f32],
    y: &'a mut [f32],
    at: &'a mut [u32],
}

impl<const ARG: bool> Kernel for Forward<'_, ARG> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let Forward { geo, x, y, at } = self;
        let (h, w, oh, ow, k, st) = (geo.h, geo.w, geo.oh, geo.ow, geo.k, geo.stride);
        let cols = geo.cols();
        let mut buf = [0.0f32; ROW];
        let mut best = [0.0f32; COLS];
        let mut arg = [0.0f32; COLS];
        for (x, (y, at)) in x.chunks_exact(h * w).zip(y.chunks_exact_mut(oh * ow).zip(
            at.chunks_mut(oh * ow)
                .chain(core::iter::repeat_with(|| &mut [][..])),
        )) {
            for oy in 0..oh {
                let rows = geo.rows(oy);
                for ox0 in (0..ow).step_by(cols) {
                    let n = cols.min(ow - ox0);
                    let np = n.div_ceil(S::LANES) * S::LANES;
                    best[..np].fill(f32::NEG_INFINITY);
                    // The first tap of the first row on the map: the winner of a window whose
                    // taps are all −∞ (outputs in the left padding are set below).
                    arg[..np].fill((rows.start * k) as f32 + MAGIC);
                    for i in rows.clone() {
                        let r = oy * st + i - geo.pad;
                        let len = fill(&x[r * w..][..w], geo, ox0, np, f32::NEG_INFINITY, &mut buf);
                        max_row::<S, ARG>(s, (k, st, len), &buf, (np, i * k), &mut best, &mut arg);
                    }
                    let out = oy * ow + ox0;
                    y[out..out + n].copy_from_slice(&best[..n]);
                    if ARG {
                        let at = &mut at[out..out + n];
                        for (o, &a) in at.iter_mut().zip(&arg[..n]) {
                            *o = a.to_bits().wrapping_sub(MAGIC.to_bits());
                        }
                        // A window starting in the left padding whose taps on the map are
                        // all −∞ went to a padding tap: the reference keeps its first tap.
                        for ox in ox0..geo.first_inside().max(ox0).min(ox0 + n) {
                            if y[oy * ow + ox] == f32::NEG_INFINITY {
                                at[ox - ox0] = (rows.start * k + geo.columns(ox).start) as u32;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `buf[at..at + LANES] += v`.
#[inline(always)]
fn add_to<S: Simd>(s: S, buf: &mut [f32], at: usize, v: S::F) {
    let sum = s.add(s.load(buf, at), v);
    s.store(buf, at, sum);
}

/// The backward pass (see [`backward`]).
struct Backward<'a> {
    geo: &'a PoolGeometry,
    at: &'a [u32],
    g: &'a [f32],
    gi: &'a mut [f32],
}

impl Kernel for Backward<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let Backward { geo, at, g, gi } = self;
        let (h, w, oh, ow, k, st) = (geo.h, geo.w, geo.oh, geo.ow, geo.k, geo.stride);
        let (l, cols, zero) = (S::LANES, geo.cols(), s.splat(0.0));
        gi.fill(0.0);
        let mut buf = [0.0f32; ROW];
        // A pass's output gradients and winners (as floats), zero past the row's end.
        let mut gv = [0.0f32; COLS];
        let mut av = [0.0f32; COLS];
        let maps = at.chunks_exact(oh * ow).zip(g.chunks_exact(oh * ow));
        for ((at, g), gi) in maps.zip(gi.chunks_exact_mut(h * w)) {
            for oy in 0..oh {
                for ox0 in (0..ow).step_by(cols) {
                    let n = cols.min(ow - ox0);
                    let np = n.div_ceil(l) * l;
                    let out = oy * ow + ox0;
                    gv[..n].copy_from_slice(&g[out..out + n]);
                    gv[n..np].fill(0.0);
                    for (v, &a) in av.iter_mut().zip(&at[out..out + n]) {
                        *v = f32::from_bits(MAGIC.to_bits().wrapping_add(a)) - MAGIC;
                    }
                    for i in geo.rows(oy) {
                        let r = oy * st + i - geo.pad;
                        let row = &mut gi[r * w..][..w];
                        let len = fill(row, geo, ox0, np, 0.0, &mut buf);
                        // Last tap first: an input then adds the gradients of its windows in
                        // output order (a window further right reads it with an earlier tap).
                        for j in (0..k).rev() {
                            let t = (i * k + j) as f32;
                            let (lo, hi) = (s.splat(t - 0.5), s.splat(t + 0.5));
                            for u in (0..np).step_by(l) {
                                let a = s.load(&av, u);
                                let mine =
                                    s.select_gt(a, lo, s.select_gt(hi, a, s.load(&gv, u), zero), zero);
                                // Adding 0 changes nothing: no gradient here is −0 (sums
                                // start at +0, and +0 + −0 = +0).
                                if st == 1 {
                                    add_to(s, &mut buf, u + j, mine);
                                } else if st == 2 {
                                    let (first, second) = s.interleave(mine, zero);
                                    let at = 2 * u + j;
                                    add_to(s, &mut buf, at, first);
                                    add_to(s, &mut buf, at + l, second);
                                } else {
                                    let at = (j % st) * len + j / st + u;
                                    add_to(s, &mut buf, at, mine);
                                }
                            }
                        }
                        spill(&buf, geo, ox0, len, row);
                    }
                }
            }
        }
    }
}

/// The maxima `y` and winners `at` of every window of the maps `x`: each window's first
/// maximum in row-major order, NaN above every number, padding never. Bit for bit
/// [`crate::MaxPool2d::forward_reference`]'s.
///
/// Panics if the geometry does not hold ([`PoolGeometry::checked`]) or a slice's length is
/// not the geometry's.
pub fn forward(geo: &PoolGeometry, x: &[f32], y: &mut [f32], at: &mut [u32]) {
    geo.check(&[
        (x.len(), geo.input_len(), "the input"),
        (y.len(), geo.output_len(), "the output"),
        (at.len(), geo.output_len(), "the winners"),
    ]);
    if geo.vectorised() {
        simd::dispatch(Forward::<true> { geo, x, y, at });
    } else {
        plain::forward(geo, x, y, Some(at));
    }
}

/// The maxima `y` of every window of the maps `x`, without the winners (inference): the
/// values of [`forward`], bit for bit.
///
/// ```
/// use constnet::pool_kernel::{self, PoolGeometry};
/// // Ceil mode: 2×2 windows at stride 2 over 2×3 maps, the last one clipped to a column.
/// const GEO: PoolGeometry = PoolGeometry {
///     c: 1, h: 2, w: 3, k: 2, stride: 2, pad: 0, ceil: true, oh: 1, ow: 2,
/// }
/// .checked();
/// let mut y = [0.0f32; 2];
/// pool_kernel::max(&GEO, &[1.0, 9.0, 3.0, 4.0, 0.0, 8.0], &mut y);
/// assert_eq!(y, [9.0, 8.0]);
/// ```
///
/// Panics as [`forward`] does.
pub fn max(geo: &PoolGeometry, x: &[f32], y: &mut [f32]) {
    geo.check(&[
        (x.len(), geo.input_len(), "the input"),
        (y.len(), geo.output_len(), "the output"),
    ]);
    if geo.vectorised() {
        simd::dispatch(Forward::<false> {
            geo,
            x,
            y,
            at: &mut [],
        });
    } else {
        plain::forward(geo, x, y, None);
    }
}

/// The input gradient `gi` from the output gradient `g` and the winners `at` of a
/// [`forward`] pass: each output's gradient added to its winner, in output order (bit for
/// bit [`crate::MaxPool2d::backward_reference`]); zero where no window's winner is.
///
/// ```
/// use constnet::pool_kernel::{self, PoolGeometry};
/// // 2×2 windows at stride 1 over a 2×3 map: input (0, 1) wins both (taps 1 and 0).
/// const GEO: PoolGeometry = PoolGeometry {
///     c: 1, h: 2, w: 3, k: 2, stride: 1, pad: 0, ceil: false, oh: 1, ow: 2,
/// }
/// .checked();
/// let mut gi = [f32::NAN; 6];
/// pool_kernel::backward(&GEO, &[1, 0], &[1.0, 2.0], &mut gi);
/// assert_eq!(gi, [0.0, 3.0, 0.0, 0.0, 0.0, 0.0]);
/// ```
///
/// Panics as [`forward`] does.
pub fn backward(geo: &PoolGeometry, at: &[u32], g: &[f32], gi: &mut [f32]) {
    geo.check(&[
        (at.len(), geo.output_len(), "the winners"),
        (g.len(), geo.output_len(), "the output gradient"),
        (gi.len(), geo.input_len(), "the input gradient"),
    ]);
    if geo.vectorised() {
        simd::dispatch(Backward { geo, at, g, gi });
    } else {
        plain::backward(geo, at, g, gi);
    }
}

/// Samples per block of the lane passes ([`crate::LANES`]): element `e` of sample `l` of a
/// block is at `e·BLOCK + l`.
pub const BLOCK: usize = 16;

/// The maximum of each window, lane by lane (see [`forward_lanes`]).
struct ForwardLanes<'a> {
    geo: &'a PoolGeometry,
    x: &'a [f32],
    y: &'a mut [f32],
}

/// Each window's gradient added to its first maximum, lane by lane (see
/// [`backward_lanes`]).
struct BackwardLanes<'a> {
    geo: &'a PoolGeometry,
    x: &'a [f32],
    g: &'a [f32],
    gi: &'a mut [f32],
    relu: bool,
}

/// Where window `(oy, ox)` of map `c` lies in a block: the element offset of its first tap
/// on the map, and its rows and columns on the map.
#[inline(always)]
fn window(geo: &PoolGeometry, (c, oy, ox): (usize, usize, usize)) -> (usize, usize, usize) {
    let (rows, cols) = (geo.rows(oy), geo.columns(ox));
    let r = oy * geo.stride + rows.start - geo.pad;
    let col = ox * geo.stride + cols.start - geo.pad;
    (((c * geo.h + r) * geo.w + col) * BLOCK, rows.len(), cols.len())
}

/// The taps of a window of `rows`×`cols` taps on the map, in scan order, as element offsets
/// from its first (`w` the row length): for `K`×`K` windows with a constant `K` the loop
/// is unrolled.
#[inline(always)]
fn each_tap<const K: usize>(
    (rows, cols, w): (usize, usize, usize),
    mut f: impl FnMut(usize, usize),
) {
    if K != 0 && rows == K && cols == K {
        for t in 0..K * K {
            f(t, (t / K * w + t % K) * BLOCK);
        }
    } else {
        for i in 0..rows {
            for j in 0..cols {
                f(i * cols + j, (i * w + j) * BLOCK);
            }
        }
    }
}

impl ForwardLanes<'_> {
    #[inline(always)]
    fn pass<S: Simd, const K: usize>(self, s: S) {
        let ForwardLanes { geo, x, y } = self;
        for (o, y) in y.chunks_exact_mut(BLOCK).enumerate() {
            let (c, oy, ox) = (o / (geo.oh * geo.ow), o / geo.ow % geo.oh, o % geo.ow);
            let (first, rows, cols) = window(geo, (c, oy, ox));
            for v0 in (0..BLOCK).step_by(S::LANES) {
                let mut best = s.load(x, first + v0);
                each_tap::<K>((rows, cols, geo.w), |t, at| {
                    if t > 0 {
                        let v = s.load(x, first + at + v0);
                        best = s.select_gt_nan(v, best, v, best);
                    }
                });
                s.store(y, v0, best);
            }
        }
    }
}

impl Kernel for ForwardLanes<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        match self.geo.k {
            2 => self.pass::<S, 2>(s),
            3 => self.pass::<S, 3>(s),
            _ => self.pass::<S, 0>(s),
        }
    }
}

impl BackwardLanes<'_> {
    #[inline(always)]
    fn pass<S: Simd, const K: usize>(self, s: S) {
        let BackwardLanes {
            geo,
            x,
            g,
            gi,
            relu,
        } = self;
        // Tiling windows write each input once; others add, and leave inputs no window
        // reads at zero.
        let tiles = geo.tiles();
        if !tiles {
            gi.fill(0.0);
        }
        let zero = s.splat(0.0);
        for (o, g) in g.chunks_exact(BLOCK).enumerate() {
            let (c, oy, ox) = (o / (geo.oh * geo.ow), o / geo.ow % geo.oh, o % geo.ow);
            let (first, rows, cols) = window(geo, (c, oy, ox));
            for v0 in (0..BLOCK).step_by(S::LANES) {
                // the winning tap's number, as a float, lane by lane
                let (mut best, mut won) = (s.load(x, first + v0), zero);
                each_tap::<K>((rows, cols, geo.w), |t, at| {
                    if t > 0 {
                        let v = s.load(x, first + at + v0);
                        won = s.select_gt_nan(v, best, s.splat(t as f32), won);
                        best = s.select_gt_nan(v, best, v, best);
                    }
                });
                let mut gv = s.load(g, v0);
                if relu {
                    gv = s.select_gt(best, zero, gv, zero);
                }
                each_tap::<K>((rows, cols, geo.w), |t, at| {
                    let (lo, hi) = (s.splat(t as f32 - 0.5), s.splat(t as f32 + 0.5));
                    let mine = s.select_gt(won, lo, s.select_gt(hi, won, gv, zero), zero);
                    let at = first + at + v0;
                    let v = if tiles { mine } else { s.add(s.load(gi, at), mine) };
                    s.store(gi, at, v);
                });
            }
        }
    }
}

impl Kernel for BackwardLanes<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        match self.geo.k {
            2 => self.pass::<S, 2>(s),
            3 => self.pass::<S, 3>(s),
            _ => self.pass::<S, 0>(s),
        }
    }
}

/// The maxima `y` of every window of one block of [`BLOCK`] samples in lanes `x` (the
/// values of [`forward`], sample by sample, bit for bit).
///
/// Panics as [`forward`] does (`x` holds `BLOCK` inputs, `y` `BLOCK` outputs).
pub fn forward_lanes(geo: &PoolGeometry, x: &[f32], y: &mut [f32]) {
    geo.check(&[
        (x.len(), geo.input_len() * BLOCK, "the input block"),
        (y.len(), geo.output_len() * BLOCK, "the output block"),
    ]);
    simd::dispatch(ForwardLanes { geo, x, y });
}

/// The input gradients `gi` of one block of samples in lanes: each window's gradient in
/// `g` added to its first maximum in `x`, found again (the winners of [`forward`]), and
/// only where that maximum is positive if `relu` (a fused ReLU before the pooling). Bit for
/// bit [`backward`], sample by sample.
///
/// Panics as [`forward_lanes`] does.
pub fn backward_lanes(geo: &PoolGeometry, x: &[f32], g: &[f32], gi: &mut [f32], relu: bool) {
    geo.check(&[
        (x.len(), geo.input_len() * BLOCK, "the input block"),
        (g.len(), geo.output_len() * BLOCK, "the output gradient block"),
        (gi.len(), geo.input_len() * BLOCK, "the input gradient block"),
    ]);
    simd::dispatch(BackwardLanes {
        geo,
        x,
        g,
        gi,
        relu,
    });
}

/// The plain loops, for windows too wide or strides too large for the row buffer.
mod plain {
    use super::PoolGeometry;
    use crate::simd::beats;

    pub(super) fn forward(geo: &PoolGeometry, x: &[f32], y: &mut [f32], mut at: Option<&mut [u32]>) {
        let (h, w, oh, ow, k, st) = (geo.h, geo.w, geo.oh, geo.ow, geo.k, geo.stride);
        for c in 0..geo.c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (rows, cols) = (geo.rows(oy), geo.columns(ox));
                    let mut best = (f32::NEG_INFINITY, rows.start * k + cols.start);
                    for i in rows {
                        for j in cols.clone() {
                            let v = x[(c * h + oy * st + i - geo.pad) * w + ox * st + j - geo.pad];
                            if beats(v, best.0) {
                                best = (v, i * k + j);
                            }
                        }
                    }
                    let o = (c * oh + oy) * ow + ox;
                    y[o] = best.0;
                    if let Some(at) = at.as_deref_mut() {
                        at[o] = best.1 as u32;
                    }
                }
            }
        }
    }

    pub(super) fn backward(geo: &PoolGeometry, at: &[u32], g: &[f32], gi: &mut [f32]) {
        let (h, w, oh, ow, k, st) = (geo.h, geo.w, geo.oh, geo.ow, geo.k, geo.stride);
        gi.fill(0.0);
        for c in 0..geo.c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let o = (c * oh + oy) * ow + ox;
                    let (i, j) = (at[o] as usize / k, at[o] as usize % k);
                    if geo.rows(oy).contains(&i) && geo.columns(ox).contains(&j) {
                        let at = (c * h + oy * st + i - geo.pad) * w + ox * st + j - geo.pad;
                        gi[at] += g[o];
                    }
                }
            }
        }
    }
}
