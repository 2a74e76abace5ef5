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
//! * the lanes of a vector are neighbouring **output pixels of one row** whose windows lie
//!   inside the map's columns; the few windows at the row's ends that reach into the
//!   padding or past the map (at most `⌈pad / stride⌉` on the left) go one at a time;
//! * a window tap is one vector load straight from the input at stride 1, two loads split
//!   by a shuffle at stride 2, and a gather of lanes at larger strides; the lanes of a last
//!   vector past the row read on (their results are written over or dropped), through a
//!   small copy only at the very end of the tensor;
//! * the forward pass keeps a running maximum and winner per output over the window rows
//!   and taps in order, which is the reference's scan order;
//! * the backward pass goes input row by input row and pulls: each input's gradient is the
//!   sum, in output order, of the gradients of the windows that read it and whose winner it
//!   is, in registers, written once. The reference's scattered adds do
//!   one add per output, so this gains most where windows do not overlap.
//!
//! No scratch is asked of the caller and nothing grows with the layer: the kernels keep a
//! few hundred bytes of buffers on the stack.
//!
//! Measured on ResNet's stem pool (64×112×112, 3×3, stride 2, padding 1, AVX-512, `cargo
//! bench --bench layers -- stem_pool`): forward about 15× as fast as the reference loops,
//! backward about as fast (it does 9 taps per output against their one add).
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

use crate::pairs::Pairs;
use core::ops::Range;

use crate::shape::pool_out;
use crate::simd::{self, Kernel, Simd, beats};

/// The widest window the vector passes take; wider ones run plain loops.
const MAX_K: usize = 32;
/// The largest stride the vector passes take; larger ones run plain loops.
const MAX_STRIDE: usize = 8;
/// Floats of the buffer for reads past the end of a tensor: what one vector of outputs
/// reads of one input row, `(16 − 1)·stride + k`, or `2·16 + k` at stride 2.
const TAIL: usize = 15 * MAX_STRIDE + MAX_K;
/// `0, 1, …, 15`: lane numbers.
const IOTA: [f32; 16] = {
    let mut v = [0.0f32; 16];
    let mut i = 0;
    while i < 16 {
        v[i] = i as f32;
        i += 1;
    }
    v
};

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
    /// `self`, after checking PyTorch's rules: every size at least 1, the padding at most
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
            self.c > 0 && self.h > 0 && self.w > 0 && self.k > 0 && self.stride > 0,
            "PoolGeometry: c, h, w, k and stride must be at least 1"
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

    /// Whether the single-sample passes ([`forward`], [`max`], [`backward`]) run SIMD
    /// kernels for this geometry: windows up to 32 wide at strides up to 8 (beyond, plain
    /// loops). The lane passes ([`forward_lanes`], [`backward_lanes`]) always do.
    pub const fn vectorised(&self) -> bool {
        self.k <= MAX_K && self.stride <= MAX_STRIDE
    }

    /// The output columns whose windows lie inside the map's columns (the vector passes' part
    /// of each row; the others, at most `⌈pad / stride⌉` on the left and a few on the right,
    /// go one at a time).
    #[inline(always)]
    fn inner(&self) -> Range<usize> {
        let lo = self.pad.div_ceil(self.stride).min(self.ow);
        let hi = if self.w + self.pad >= self.k {
            ((self.w + self.pad - self.k) / self.stride + 1).min(self.ow)
        } else {
            0
        };
        lo..hi.max(lo)
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

    /// Panics unless the geometry holds and the slices have its lengths.
    #[track_caller]
    #[inline]
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

/// Floats that one vector of `lanes` outputs reads from the start of its window row: its
/// taps' loads (pairs of vectors at stride 2).
#[inline(always)]
fn reach(lanes: usize, st: usize, k: usize) -> usize {
    match st {
        1 => lanes + k - 1,
        2 => 2 * lanes + k,
        _ => (lanes - 1) * st + k,
    }
}

/// `src[at..at + n]`, or a copy in `tail` where that runs past the end of `src` (past it,
/// what the copy holds is read only by lanes whose results are dropped).
#[inline(always)]
fn reads<'a>(src: &'a [f32], at: usize, n: usize, tail: &'a mut [f32; TAIL]) -> &'a [f32] {
    if at + n <= src.len() {
        return &src[at..at + n];
    }
    let have = src.len() - at;
    tail[..have].copy_from_slice(&src[at..]);
    tail[have..n].fill(0.0);
    &tail[..n]
}

/// Tap `t` (a float whose bits are `t`, see [`Simd::load_bits`], if `ARG`) replaces the
/// running maximum `b` and winner `a` where `v` beats `b`.
#[inline(always)]
fn update<S: Simd, const ARG: bool>(s: S, v: S::F, t: u32, b: &mut S::F, a: &mut S::F) {
    if ARG {
        *a = s.select_gt_nan(v, *b, s.splat(f32::from_bits(t)), *a);
    }
    *b = s.select_gt_nan(v, *b, v, *b);
}

/// One window row `i` of a vector of outputs: its taps `j`, read from `row` (which starts
/// at the window row's first column), update the running maxima `b` and winners `a`.
#[inline(always)]
fn max_row<S: Simd, const ARG: bool>(
    s: S,
    (k, st): (usize, usize),
    row: &[f32],
    t0: u32,
    b: &mut S::F,
    a: &mut S::F,
) {
    let l = S::LANES;
    // Loops, not closures: a closure is not compiled with the kernel's instruction set.
    if st == 1 {
        for j in 0..k {
            update::<S, ARG>(s, s.load(row, j), t0 + j as u32, b, a);
        }
    } else if st == 2 {
        // Columns 2·lane + j and the next one: taps j and j + 1.
        for j in (0..k).step_by(2) {
            let (even, odd) = s.deinterleave(s.load(row, j), s.load(row, j + l));
            update::<S, ARG>(s, even, t0 + j as u32, b, a);
            if j + 1 < k {
                update::<S, ARG>(s, odd, t0 + j as u32 + 1, b, a);
            }
        }
    } else {
        let mut taps = [0.0f32; 16];
        for j in 0..k {
            for (lane, v) in taps[..l].iter_mut().enumerate() {
                *v = row[lane * st + j];
            }
            update::<S, ARG>(s, s.load(&taps, 0), t0 + j as u32, b, a);
        }
    }
}

/// The maximum and winner of window `(oy, ox)` of the map `x`, one tap at a time: the
/// reference loops, for the windows at the edges and for geometries too large for vectors.
#[inline(always)]
fn window_max(geo: &PoolGeometry, x: &[f32], oy: usize, ox: usize) -> (f32, u32) {
    let (rows, cols) = (geo.rows(oy), geo.columns(ox));
    // −∞ and the first tap on the map: the winner if every tap is −∞.
    let mut best = (f32::NEG_INFINITY, rows.start * geo.k + cols.start);
    for i in rows {
        let r = oy * geo.stride + i - geo.pad;
        for j in cols.clone() {
            let v = x[r * geo.w + ox * geo.stride + j - geo.pad];
            if beats(v, best.0) {
                best = (v, i * geo.k + j);
            }
        }
    }
    (best.0, best.1 as u32)
}

/// Adds the gradient `g` of window `(oy, ox)` to its winner `at` in the map gradient `gi`,
/// if the winner is a tap on the map.
#[inline(always)]
fn window_grad(geo: &PoolGeometry, (oy, ox): (usize, usize), at: u32, g: f32, gi: &mut [f32]) {
    let (i, j) = (at as usize / geo.k, at as usize % geo.k);
    if geo.rows(oy).contains(&i) && geo.columns(ox).contains(&j) {
        gi[(oy * geo.stride + i - geo.pad) * geo.w + ox * geo.stride + j - geo.pad] += g;
    }
}

/// The forward pass: maxima `y`, and if `ARG` the winners `at` (see [`forward`]).
struct Forward<'a, const ARG: bool> {
    geo: &'a PoolGeometry,
    x: &'a [f32],
    y: &'a mut [f32],
    at: &'a mut [u32],
}

/// Runs `$pass::<S, K, ST>` with the window `K` and stride `ST` as constants for the
/// common pools (2×2 at stride 2, 3×3 at strides 2 and 1), `0, 0` (read from the geometry)
/// for the others: a few compiled copies, not one per shape.
macro_rules! specialised {
    ($self:ident, $s:ident, $pass:ident) => {
        match ($self.geo.k, $self.geo.stride) {
            (2, 2) => $self.$pass::<S, 2, 2>($s),
            (3, 2) => $self.$pass::<S, 3, 2>($s),
            (3, 1) => $self.$pass::<S, 3, 1>($s),
            _ => $self.$pass::<S, 0, 0>($s),
        }
    };
}

impl<const ARG: bool> Kernel for Forward<'_, ARG> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        specialised!(self, s, pass)
    }
}

impl<const ARG: bool> Forward<'_, ARG> {
    #[inline(always)]
    fn pass<S: Simd, const K: usize, const ST: usize>(self, s: S) {
        let Forward { geo, x, y, at } = self;
        let (k, st) = if K == 0 { (geo.k, geo.stride) } else { (K, ST) };
        let (h, w, oh, ow) = (geo.h, geo.w, geo.oh, geo.ow);
        let (l, inner) = (S::LANES, geo.inner());
        let span = reach(l, st, k);
        let mut tail = [0.0f32; TAIL];
        let (mut best, mut arg) = ([0.0f32; 16], [0u32; 16]);
        for c in 0..geo.c {
            let map = &x[c * h * w..(c + 1) * h * w];
            for oy in 0..oh {
                let rows = geo.rows(oy);
                let out = (c * oh + oy) * ow;
                // In output order, so that the lanes a last vector writes past the inner
                // windows are written again.
                for ox in 0..inner.start {
                    let (v, t) = window_max(geo, map, oy, ox);
                    y[out + ox] = v;
                    if ARG {
                        at[out + ox] = t;
                    }
                }
                for ox0 in inner.clone().step_by(l) {
                    // −∞, and the first tap of the first row on the map: the winner if every
                    // tap is −∞ (these windows lie inside the map's columns).
                    let mut b = s.splat(f32::NEG_INFINITY);
                    let mut a = s.splat(f32::from_bits((rows.start * k) as u32));
                    for i in rows.clone() {
                        let r = oy * st + i - geo.pad;
                        // Lanes past the inner windows read on, into the next rows or maps;
                        // their results are written over or dropped.
                        let from = (c * h + r) * w + ox0 * st - geo.pad;
                        let row = reads(x, from, span, &mut tail);
                        max_row::<S, ARG>(s, (k, st), row, (i * k) as u32, &mut b, &mut a);
                    }
                    let o = out + ox0;
                    if o + l <= y.len() {
                        s.store(y, o, b);
                        if ARG {
                            s.store_bits(at, o, a);
                        }
                    } else {
                        s.store(&mut best, 0, b);
                        s.store_bits(&mut arg, 0, a);
                        let n = inner.end - ox0;
                        y[o..o + n].copy_from_slice(&best[..n]);
                        if ARG {
                            at[o..o + n].copy_from_slice(&arg[..n]);
                        }
                    }
                }
                for ox in inner.end..ow {
                    let (v, t) = window_max(geo, map, oy, ox);
                    y[out + ox] = v;
                    if ARG {
                        at[out + ox] = t;
                    }
                }
            }
        }
    }
}

/// Tap `t` as the bounds `(t − 1, t + 1)` that [`mine`] compares winners with: winners are
/// small integers in the bits of non-negative floats, and below 0's bits are the smallest
/// negative float's.
#[inline(always)]
fn tap<S: Simd>(s: S, t: u32) -> (S::F, S::F) {
    let lo = f32::from_bits(if t == 0 { 0x8000_0001 } else { t - 1 });
    (s.splat(lo), s.splat(f32::from_bits(t + 1)))
}

/// The gradients `gv` where the winners `av` are the tap of `(lo, hi)` (see [`tap`]), else
/// 0. A winner whose bits are NaN is no tap.
#[inline(always)]
fn mine<S: Simd>(s: S, (gv, av): (S::F, S::F), (lo, hi): (S::F, S::F)) -> S::F {
    let zero = s.splat(0.0);
    s.select_gt(av, lo, s.select_gt(hi, av, gv, zero), zero)
}

/// Writes `v`, the input gradients of columns `c0..` of the row starting at `gi[row]`, only
/// on the row's `w` columns (where a vector store would reach out of `gi`, or back into the
/// row before).
#[inline(always)]
fn store_cols(gi: &mut [f32], row: usize, (c0, w): (isize, usize), v: &[f32]) {
    for (t, &v) in v.iter().enumerate() {
        let c = c0 + t as isize;
        if c >= 0 && (c as usize) < w {
            gi[row + c as usize] = v;
        }
    }
}

/// The backward pass (see [`backward`]), input row by input row: every input gradient is
/// summed in registers and written once (no clearing, no read-modify-write).
///
/// Input column `c` of phase `q = (c + pad) mod stride` is `stride·m + q − pad`; the taps
/// that read it are `j = q + stride·d` of the windows `m − d`. A vector holds the columns
/// of neighbouring `m` of every phase; for each output row whose windows read the input
/// row (in order), and each `d` from the largest (the windows in output order), it adds
/// the gradients of windows `m − d` whose winner is tap `j`, loaded from the output
/// gradients and winners shifted by `d`. At stride 2 the two phases then interleave into
/// the row's columns.
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
        specialised!(self, s, pass)
    }
}

impl Backward<'_> {
    #[inline(always)]
    fn pass<S: Simd, const K: usize, const ST: usize>(self, s: S) {
        let Backward { geo, at, g, gi } = self;
        let (k, st) = if K == 0 { (geo.k, geo.stride) } else { (K, ST) };
        let (h, w, oh, ow, p) = (geo.h, geo.w, geo.oh, geo.ow, geo.pad);
        let (l, phases, zero, dmax) = (S::LANES, st.min(k), s.splat(0.0), (k - 1) / st);
        // The phases' columns: m in first..end covers every column of the row.
        let (first, end) = (p / st, (w - 1 + p) / st + 1);
        // A phase's sums, and a vector's columns in row order.
        let mut sums = [0.0f32; 16];
        let mut cols = [0.0f32; 16 * MAX_STRIDE + MAX_K];
        let mut pad = ([0.0f32; 16], [0u32; 16]);
        for c in 0..geo.c {
            for r in 0..h {
                let row = (c * h + r) * w;
                // Output rows whose windows read input row r: i = r + p − oy·st < k.
                let oys = (r + p + 1).saturating_sub(k).div_ceil(st)..((r + p) / st + 1).min(oh);
                if oys.is_empty() {
                    gi[row..row + w].fill(0.0);
                    continue;
                }
                let count = end - first;
                let mut pending = None;
                for step in (0..count).step_by(l) {
                    // The last vector moved back to end at the row's end (the overlap is
                    // written twice, the same values), unless the row is narrower.
                    let m0 = first
                        + if count >= l {
                            step.min(count - l)
                        } else {
                            step
                        };
                    // Whether every lane's windows m − d are in the output rows.
                    let inside = m0 >= dmax && m0 + l <= ow;
                    let mut acc = [zero; MAX_STRIDE];
                    for oy in oys.clone() {
                        let t0 = (r + p - oy * st) * k;
                        let out = (c * oh + oy) * ow;
                        // Windows m − d from the last (output order), each for every phase
                        // whose tap q + st·d it has.
                        for d in (0..=dmax).rev() {
                            let v = if inside {
                                let from = out + m0 - d;
                                (s.load(g, from), s.load_bits(at, from))
                            } else {
                                edge(s, (g, at), (out, ow), m0 as isize - d as isize, &mut pad)
                            };
                            for (q, acc) in acc.iter_mut().enumerate().take(phases) {
                                if q + st * d < k {
                                    let t = tap(s, (t0 + q + st * d) as u32);
                                    *acc = s.add(*acc, mine(s, v, t));
                                }
                            }
                        }
                    }
                    if let Some(shift) = pending.take() {
                        // The left edge, from the last vector (by now its stores are in the
                        // cache: no stall on the shifted loads).
                        s.store(gi, row, s.load(&cols, shift));
                        s.store(gi, row + l, s.load(&cols, shift + l));
                    }
                    // Column of lane 0 of phase 0. Stores past the row's end land on the
                    // next rows, which are written after.
                    let c0 = (st * m0) as isize - p as isize;
                    let to = row.wrapping_add(c0 as usize);
                    let whole = c0 >= 0 && to + st * l <= gi.len();
                    if st == 1 && whole {
                        s.store(gi, to, acc[0]);
                        continue;
                    }
                    if st == 2 {
                        let (lo, hi) = s.interleave(acc[0], acc[1]);
                        if whole {
                            s.store(gi, to, lo);
                            s.store(gi, to + l, hi);
                            continue;
                        }
                        s.store(&mut cols, 0, lo);
                        s.store(&mut cols, l, hi);
                        if c0 < 0 && row + 2 * l <= gi.len() {
                            // In the left padding: the row's columns from the first on, and
                            // after them what the next vector writes again, once that is
                            // computed.
                            pending = Some(c0.unsigned_abs());
                            continue;
                        }
                    } else {
                        for (q, acc) in acc.iter().enumerate().take(st) {
                            s.store(&mut sums, 0, *acc);
                            for (lane, &sum) in sums[..l].iter().enumerate() {
                                cols[lane * st + q] = sum;
                            }
                        }
                    }
                    store_cols(gi, row, (c0, w), &cols[..l * st]);
                }
                if let Some(shift) = pending {
                    s.store(gi, row, s.load(&cols, shift));
                    s.store(gi, row + l, s.load(&cols, shift + l));
                }
            }
        }
    }
}

/// The gradients and winners of windows `m..m + LANES` of the output row at `out` (of `ow`
/// windows) in `(g, at)`, zero gradients for lanes outside the row (the ends of the rows).
#[inline(always)]
fn edge<S: Simd>(
    s: S,
    (g, at): (&[f32], &[u32]),
    (out, ow): (usize, usize),
    m: isize,
    (gp, ap): &mut ([f32; 16], [u32; 16]),
) -> (S::F, S::F) {
    let (l, zero) = (S::LANES as isize, s.splat(0.0));
    let from = out as isize + m;
    if from >= 0 && from + l <= g.len() as isize {
        // Lanes with 0 ≤ m + lane < ow.
        let (gv, av) = (s.load(g, from as usize), s.load_bits(at, from as usize));
        let lanes = s.load(&IOTA, 0);
        let (lo, hi) = (
            s.splat(-m as f32 - 0.5),
            s.splat((ow as isize - m) as f32 - 0.5),
        );
        return (
            s.select_gt(lanes, lo, s.select_gt(hi, lanes, gv, zero), zero),
            av,
        );
    }
    // At the ends of the tensor, where loads would leave it: a padded copy.
    for (lane, (gp, ap)) in gp
        .iter_mut()
        .pairs(ap.iter_mut())
        .enumerate()
        .take(S::LANES)
    {
        let ox = m + lane as isize;
        (*gp, *ap) = if ox >= 0 && ox < ow as isize {
            (g[out + ox as usize], at[out + ox as usize])
        } else {
            (0.0, 0)
        };
    }
    (s.load(gp, 0), s.load_bits(ap, 0))
}

/// The maxima `y` and winners `at` of every window of the maps `x`: each window's first
/// maximum in row-major order, NaN above every number, padding never. Bit for bit
/// [`crate::MaxPool2d::forward_reference`]'s.
///
/// Panics if the geometry does not hold ([`PoolGeometry::checked`]) or a slice's length is
/// not the geometry's.
#[inline]
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
#[inline]
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
#[inline]
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
    (
        ((c * geo.h + r) * geo.w + col) * BLOCK,
        rows.len(),
        cols.len(),
    )
}

/// Runs `$body` for each tap `$t` of a window of `$rows`×`$cols` taps on the map, in scan
/// order, with `$at` its element offset from the first (`$w` the row length): for `K`×`K`
/// windows with a constant `K` the loop is unrolled. A macro, not a function taking a
/// closure: a closure is not compiled with the kernel's instruction set.
macro_rules! for_taps {
    ($k:ident, ($rows:expr, $cols:expr, $w:expr), |$t:ident, $at:ident| $body:block) => {{
        let (rows, cols, w): (usize, usize, usize) = ($rows, $cols, $w);
        if $k != 0 && rows == $k && cols == $k {
            for $t in 0..$k * $k {
                let $at = ($t / $k * w + $t % $k) * BLOCK;
                $body
            }
        } else {
            for i in 0..rows {
                for j in 0..cols {
                    let ($t, $at) = (i * cols + j, (i * w + j) * BLOCK);
                    $body
                }
            }
        }
    }};
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
                for_taps!(K, (rows, cols, geo.w), |t, at| {
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
                for_taps!(K, (rows, cols, geo.w), |t, at| {
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
                for_taps!(K, (rows, cols, geo.w), |t, at| {
                    let (lo, hi) = (s.splat(t as f32 - 0.5), s.splat(t as f32 + 0.5));
                    let mine = s.select_gt(won, lo, s.select_gt(hi, won, gv, zero), zero);
                    let at = first + at + v0;
                    let v = if tiles {
                        mine
                    } else {
                        s.add(s.load(gi, at), mine)
                    };
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
#[inline]
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
#[inline]
pub fn backward_lanes(geo: &PoolGeometry, x: &[f32], g: &[f32], gi: &mut [f32], relu: bool) {
    geo.check(&[
        (x.len(), geo.input_len() * BLOCK, "the input block"),
        (
            g.len(),
            geo.output_len() * BLOCK,
            "the output gradient block",
        ),
        (
            gi.len(),
            geo.input_len() * BLOCK,
            "the input gradient block",
        ),
    ]);
    simd::dispatch(BackwardLanes {
        geo,
        x,
        g,
        gi,
        relu,
    });
}

/// The plain loops, for windows too wide or strides too large for the vector passes.
mod plain {
    use super::{PoolGeometry, window_grad, window_max};
    use crate::pairs::Pairs;

    pub(super) fn forward(
        geo: &PoolGeometry,
        x: &[f32],
        y: &mut [f32],
        mut at: Option<&mut [u32]>,
    ) {
        let (map, out) = (geo.h * geo.w, geo.oh * geo.ow);
        for (o, y) in y.iter_mut().enumerate() {
            let (c, oy, ox) = (o / out, o / geo.ow % geo.oh, o % geo.ow);
            let (v, t) = window_max(geo, &x[c * map..(c + 1) * map], oy, ox);
            *y = v;
            if let Some(at) = at.as_deref_mut() {
                at[o] = t;
            }
        }
    }

    pub(super) fn backward(geo: &PoolGeometry, at: &[u32], g: &[f32], gi: &mut [f32]) {
        let (map, out) = (geo.h * geo.w, geo.oh * geo.ow);
        gi.fill(0.0);
        for (o, (&at, &g)) in at.iter().pairs(g).enumerate() {
            let (c, oy, ox) = (o / out, o / geo.ow % geo.oh, o % geo.ow);
            window_grad(geo, (oy, ox), at, g, &mut gi[c * map..(c + 1) * map]);
        }
    }
}
