//! Local response normalisation in `f32`, apart from the layer that uses it
//! ([`crate::LocalResponseNorm`]).
//!
//! The kernels take the shape at run time, as an [`LrnGeometry`] the layer builds as a
//! `const`, so every LRN layer of a program runs the same compiled copies (one per instruction
//! set of [`crate::simd`]). The lanes of a vector are neighbouring pixels of a map; the
//! channel window is a sum over the window's maps at the same pixels.
//!
//! Every sum and product is formed in the reference loops' order, with the same roundings
//! (no fused multiply-add), so the window sums `s`, and the input gradients given the same
//! `s` and factors, are bit for bit those of [`crate::LocalResponseNorm::forward_reference`]
//! and [`crate::LocalResponseNorm::backward_reference`], on every instruction set. The
//! factor `s^−beta`:
//! * `beta = 0.75` (AlexNet's, ZF Net's, PyTorch's default) is `1 / (√s · √√s)`, in vectors:
//!   within 8 ulp of `powf` (4 measured), the same bits on every instruction set;
//! * `beta = 0` is 1 (a zeroed layer: the identity), as `powf` gives;
//! * any other `beta` is `powf` lane by lane, the reference's bits.
//!
//! The backward pass computes each channel's term `g·a·s^−beta / s` once, in a ring of
//! the last `size` channels, not once per window that holds the channel.
//!
//! ```
//! use constnet::lrn_kernel::{self, LrnGeometry};
//! const GEO: LrnGeometry = LrnGeometry { c: 3, h: 1, w: 1, size: 5 }.checked();
//! let x = [10.0f32, 20.0, 30.0];
//! let (mut y, mut s, mut f) = ([0.0f32; 3], [0.0f32; 3], [0.0f32; 3]);
//! lrn_kernel::forward(&GEO, (1e-4, 0.75, 2.0), &x, &mut y, (&mut s, &mut f));
//! assert_eq!(s[1], 2.0 + 1e-4 / 5.0 * 1400.0); // every window holds all 3 channels
//! assert!((y[1] - 20.0 / s[1].powf(0.75)).abs() < 1e-5);
//! ```

use core::ops::Range;

use crate::simd::{self, Kernel, Simd, spans};

/// Pixels per pass: the channels' rows of a pass stay in the L1 cache.
const CHUNK: usize = 64;
/// Channels of the backward pass's ring of terms; wider windows compute each term per
/// window.
const RING: usize = 16;

/// The shape of a local response normalisation: `c` maps of `h`×`w`, windows of `size`
/// channels (PyTorch's: `c − ⌊size/2⌋ ..= c + ⌊(size − 1)/2⌋`). Tensors are flat and
/// row-major, `[c][h][w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LrnGeometry {
    /// Channels.
    pub c: usize,
    /// Map height.
    pub h: usize,
    /// Map width.
    pub w: usize,
    /// Channels in a window.
    pub size: usize,
}

impl LrnGeometry {
    /// `self`, after checking that every count is at least 1. Panics otherwise, which in a
    /// `const` is a compile error.
    pub const fn checked(self) -> Self {
        assert!(
            self.c > 0 && self.h > 0 && self.w > 0 && self.size > 0,
            "LrnGeometry: c, h, w and size must be at least 1"
        );
        self
    }

    /// Floats in a tensor, `c·h·w`.
    pub const fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Whether a tensor is empty (never, for a checked geometry).
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The channels whose squares add into channel `c`'s sum, clipped to `0..c`.
    #[inline(always)]
    pub fn window(&self, c: usize) -> Range<usize> {
        c.saturating_sub(self.size / 2)..(c + (self.size - 1) / 2 + 1).min(self.c)
    }

    /// The channels whose window holds channel `j`, clipped to `0..c`.
    #[inline(always)]
    pub fn reach(&self, j: usize) -> Range<usize> {
        j.saturating_sub((self.size - 1) / 2)..(j + self.size / 2 + 1).min(self.c)
    }

    /// Panics unless the geometry holds and the slices have its length.
    #[track_caller]
    #[inline]
    fn check(&self, lens: &[(usize, &str)]) {
        let _ = self.checked();
        for &(got, what) in lens {
            assert_eq!(
                got,
                self.len(),
                "lrn_kernel: {what} has the wrong length for {self:?}"
            );
        }
    }
}

/// The passes' pixel vectors: chunks of [`CHUNK`] pixels (the last moved back to end at the
/// map's end), each in whole vectors; a map narrower than a chunk is one chunk of its
/// width (at least a vector: [`simd::dispatch_within`] the map's size).
#[inline(always)]
fn chunks(pixels: usize) -> impl Iterator<Item = (usize, usize)> {
    let width = CHUNK.min(pixels);
    spans(pixels, width).map(move |p0| (p0, width))
}

/// `s^−beta` of the sums `s`, as the module documentation says.
#[inline(always)]
fn factor<S: Simd>(s: S, sum: S::F, beta: f32, lanes: &mut [f32; 16]) -> S::F {
    if beta == 0.75 {
        let root = s.sqrt(sum);
        let one = s.splat(1.0);
        s.div(one, s.mul(root, s.sqrt(root)))
    } else if beta == 0.0 {
        s.splat(1.0)
    } else {
        s.store(lanes, 0, sum);
        for v in &mut lanes[..S::LANES] {
            *v = num_traits::Float::powf(*v, -beta);
        }
        s.load(lanes, 0)
    }
}

/// The forward pass (see [`forward`]).
struct Forward<'a> {
    geo: &'a LrnGeometry,
    /// `(alpha, beta, k)`.
    constants: (f32, f32, f32),
    x: &'a [f32],
    y: &'a mut [f32],
    scale: &'a mut [f32],
    factor: &'a mut [f32],
}

impl Kernel for Forward<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let Forward {
            geo,
            constants: (alpha, beta, k),
            x,
            y,
            scale,
            factor: fac,
        } = self;
        let (pixels, l) = (geo.h * geo.w, S::LANES);
        // As the reference: alpha / size, rounded once.
        let (k, per) = (s.splat(k), s.splat(alpha / geo.size as f32));
        let mut lanes = [0.0f32; 16];
        for (p0, width) in chunks(pixels) {
            for c in 0..geo.c {
                let window = geo.window(c);
                for v in spans(width, l) {
                    let at = c * pixels + p0 + v;
                    // Σ a² over the window, in channel order from 0.
                    let mut sum = s.splat(0.0);
                    for near in window.clone() {
                        let a = s.load(x, near * pixels + p0 + v);
                        sum = s.add(sum, s.mul(a, a));
                    }
                    let sum = s.add(k, s.mul(per, sum));
                    let f = factor(s, sum, beta, &mut lanes);
                    s.store(scale, at, sum);
                    s.store(fac, at, f);
                    s.store(y, at, s.mul(s.load(x, at), f));
                }
            }
        }
    }
}

/// The backward pass (see [`backward`]).
struct Backward<'a> {
    geo: &'a LrnGeometry,
    /// `2·alpha·beta / size`, as the reference rounds it.
    coef: f32,
    x: &'a [f32],
    scale: &'a [f32],
    factor: &'a [f32],
    g: &'a [f32],
    gi: &'a mut [f32],
}

impl Backward<'_> {
    /// Channel `c`'s term `g·a·f / s` at pixels `at..at + LANES` (at channel 0's offsets).
    #[inline(always)]
    fn term<S: Simd>(&self, s: S, c: usize, at: usize) -> S::F {
        let at = c * self.geo.h * self.geo.w + at;
        let ga = s.mul(s.load(self.g, at), s.load(self.x, at));
        s.div(s.mul(ga, s.load(self.factor, at)), s.load(self.scale, at))
    }
}

impl Kernel for Backward<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(mut self, s: S) {
        let (geo, coef) = (self.geo, self.coef);
        let (pixels, l, zero, coefv) = (geo.h * geo.w, S::LANES, s.splat(0.0), s.splat(coef));
        let ring_fits = geo.size <= RING;
        // The terms of the last `size` channels computed, channel c in row c mod RING.
        let mut ring = [0.0f32; RING * CHUNK];
        let gi = core::mem::take(&mut self.gi);
        for (p0, width) in chunks(pixels) {
            // Channels whose terms are in the ring: 0..done.
            let mut done = 0;
            for j in 0..geo.c {
                let reach = geo.reach(j);
                // As the reference: no sum when its factor is 0 (a zeroed layer, whose s = 0
                // would make the terms 0·∞).
                if coef != 0.0 && ring_fits {
                    for c in done..reach.end {
                        let row = &mut ring[c % RING * CHUNK..][..CHUNK];
                        for v in spans(width, l) {
                            s.store(row, v, self.term(s, c, p0 + v));
                        }
                    }
                    done = done.max(reach.end);
                }
                for v in spans(width, l) {
                    // Σ terms over the channels whose window holds j, in order from 0.
                    let mut t = zero;
                    if coef != 0.0 {
                        for c in reach.clone() {
                            let term = if ring_fits {
                                s.load(&ring, c % RING * CHUNK + v)
                            } else {
                                self.term(s, c, p0 + v)
                            };
                            t = s.add(t, term);
                        }
                    }
                    let at = j * pixels + p0 + v;
                    let own = s.mul(s.load(self.g, at), s.load(self.factor, at));
                    let rest = s.mul(s.mul(coefv, s.load(self.x, at)), t);
                    s.store(gi, at, s.sub(own, rest));
                }
            }
        }
    }
}

/// The forward pass over the maps `x`: for every channel `c` and pixel, the sum
/// `s = k + (alpha / size) · Σ a²` over `c`'s window, the factor `s^−beta` and the output
/// `y = a · s^−beta`; `s` and the factor are kept in `(scale, factor)` for [`backward`].
/// `constants` is `(alpha, beta, k)`.
///
/// Panics if a slice's length is not the geometry's.
#[inline]
pub fn forward(
    geo: &LrnGeometry,
    constants: (f32, f32, f32),
    x: &[f32],
    y: &mut [f32],
    (scale, factor): (&mut [f32], &mut [f32]),
) {
    geo.check(&[
        (x.len(), "the input"),
        (y.len(), "the output"),
        (scale.len(), "the sums"),
        (factor.len(), "the factors"),
    ]);
    let kernel = Forward {
        geo,
        constants,
        x,
        y,
        scale,
        factor,
    };
    simd::dispatch_within(kernel, geo.h * geo.w);
}

/// The input gradient `gi` from the output gradient `g`, the input `x` and the sums and
/// factors of a [`forward`] pass: `gi[j] = g[j]·f[j] − coef·a[j]·Σ_c g[c]·a[c]·f[c] / s[c]`,
/// the sum over the channels `c` whose window holds `j`, left out when `coef` (`2·alpha·
/// beta / size`) is 0.
///
/// ```
/// use constnet::lrn_kernel::{self, LrnGeometry};
/// // One channel, alpha 2 (so alpha / size = 1), beta 1, k 1: s = 1 + a², y = a / s.
/// const GEO: LrnGeometry = LrnGeometry { c: 1, h: 1, w: 1, size: 2 }.checked();
/// let (x, mut y, mut s, mut f) = ([1.0f32], [0.0f32], [0.0f32], [0.0f32]);
/// lrn_kernel::forward(&GEO, (2.0, 1.0, 1.0), &x, &mut y, (&mut s, &mut f));
/// let mut gi = [0.0f32];
/// lrn_kernel::backward(&GEO, 2.0 * 2.0 * 1.0 / 2.0, &x, (&s, &f), &[1.0], &mut gi);
/// // dy/da = 1/s − 2·a²/s² = 1/2 − 2/4
/// assert_eq!(gi, [0.0]);
/// ```
///
/// Panics if a slice's length is not the geometry's.
#[inline]
pub fn backward(
    geo: &LrnGeometry,
    coef: f32,
    x: &[f32],
    (scale, factor): (&[f32], &[f32]),
    g: &[f32],
    gi: &mut [f32],
) {
    geo.check(&[
        (x.len(), "the input"),
        (scale.len(), "the sums"),
        (factor.len(), "the factors"),
        (g.len(), "the output gradient"),
        (gi.len(), "the input gradient"),
    ]);
    let kernel = Backward {
        geo,
        coef,
        x,
        scale,
        factor,
        g,
        gi,
    };
    simd::dispatch_within(kernel, geo.h * geo.w);
}
