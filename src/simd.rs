//! Explicit SIMD for the `f32` fast paths, chosen once at run time: the crate's only module
//! of `unsafe` besides [`crate::zeroed`].
//!
//! Default cargo builds target baseline x86-64 (SSE2, no FMA), and the compiler neither fuses
//! `a * b + c` nor vectorises a float sum. So each fast kernel (in the kernel modules apart
//! from the layers: `conv_fast.rs`, `linear_kernel.rs`, …) is written once, generically over
//! [`Simd`], and compiled several times: on x86-64 for AVX-512, for AVX2+FMA, for SSE2 and
//! for plain scalars; on aarch64 for NEON (its baseline) and for plain scalars. [`dispatch`]
//! runs the best version this CPU has (detected once with `is_x86_feature_detected!` on
//! x86-64);
//! [`with_isa`] forces a narrower one on the current thread (tests and benches use it).
//!
//! What is unsafe here, and why it is sound:
//! * the `core::arch` intrinsics. A value of `Avx2` or `Avx512` is only ever created
//!   inside a function compiled for, and entered only after detecting, its features; so every
//!   intrinsic behind such a value runs on a CPU that has it. `Sse2` and `Neon` are their
//!   architecture's baseline, which every build for it targets;
//! * unaligned vector loads and stores, each after a bounds check of the whole vector;
//! * entering a `#[target_feature]` function, done only after the features were detected.
//!
//! Benchmarks (see `BENCHMARKS.md`) show why: the AVX-512 kernels run LeNet-5 several times
//! faster than the same loops left to the compiler.

use core::fmt::Debug;

/// One SIMD instruction set, as a value: the vector type and its operations on `f32` lanes.
///
/// Implemented by [`Scalar`] (one lane, any CPU), on x86-64 by `Sse2`, `Avx2` and `Avx512`,
/// and on aarch64 by `Neon`. Kernels
/// take it as a type parameter and call only these safe methods. Every method is
/// `#[inline(always)]` so that it is compiled with the instruction set of the kernel it ends
/// up in.
pub trait Simd: Copy + Debug {
    /// Number of `f32` lanes in a vector.
    const LANES: usize;
    /// The vector type.
    type F: Copy;
    /// Every lane `x`.
    fn splat(self, x: f32) -> Self::F;
    /// `LANES` values from `s[at..]`. Panics if `at + LANES > s.len()`.
    fn load(self, s: &[f32], at: usize) -> Self::F;
    /// Writes the lanes to `s[at..at + LANES]`. Panics if `at + LANES > s.len()`.
    fn store(self, s: &mut [f32], at: usize, v: Self::F);
    /// `LANES` values whose bit patterns are `s[at..]`: an integer carried in a float's bits,
    /// which selects move unchanged (and comparisons order, for small non-negative
    /// integers, as the integers: they are subnormal). Panics if `at + LANES > s.len()`.
    fn load_bits(self, s: &[u32], at: usize) -> Self::F;
    /// Writes the lanes' bit patterns to `s[at..at + LANES]` (see [`Simd::load_bits`]).
    /// Panics if `at + LANES > s.len()`.
    fn store_bits(self, s: &mut [u32], at: usize, v: Self::F);
    /// Lane-wise `a + b`.
    fn add(self, a: Self::F, b: Self::F) -> Self::F;
    /// Lane-wise `a − b`.
    fn sub(self, a: Self::F, b: Self::F) -> Self::F;
    /// Lane-wise `a · b` (rounded, not fused with anything).
    fn mul(self, a: Self::F, b: Self::F) -> Self::F;
    /// Lane-wise `a / b`, correctly rounded.
    fn div(self, a: Self::F, b: Self::F) -> Self::F;
    /// Lane-wise `√a`, correctly rounded.
    fn sqrt(self, a: Self::F) -> Self::F;
    /// Lane-wise `a · b + c`, fused (one rounding) where the instruction set has FMA.
    fn mul_add(self, a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// Sum of the lanes.
    fn sum(self, v: Self::F) -> f32;
    /// Lane-wise `if a > b { x } else { y }` (ordered: `y` where `a` or `b` is NaN).
    fn select_gt(self, a: Self::F, b: Self::F, x: Self::F, y: Self::F) -> Self::F;
    /// Lane-wise `if beats(a, b) { x } else { y }` in max pooling's order, where a NaN is
    /// above every number: `a > b`, or `a` is NaN and `b` is not (see
    /// [`beats`]). A running maximum kept with it is NaN once any value
    /// was NaN, and its winner is the first NaN.
    fn select_gt_nan(self, a: Self::F, b: Self::F, x: Self::F, y: Self::F) -> Self::F;
    /// The even- and the odd-numbered lanes of `a` followed by `b`: for `a = [0, 1, 2, 3]`,
    /// `b = [4, 5, 6, 7]`, `([0, 2, 4, 6], [1, 3, 5, 7])`.
    fn deinterleave(self, a: Self::F, b: Self::F) -> (Self::F, Self::F);
    /// The inverse of [`Simd::deinterleave`]: the lanes of `a` and `b` taken in turns, as two
    /// vectors. For `a = [0, 2, 4, 6]`, `b = [1, 3, 5, 7]`, `([0, 1, 2, 3], [4, 5, 6, 7])`.
    fn interleave(self, a: Self::F, b: Self::F) -> (Self::F, Self::F);

    /// The first `n` lanes from `s[at..at + n]`, zeros in the others (`n` may exceed
    /// `LANES`: then a whole vector). Panics if `at + min(n, LANES) > s.len()`.
    /// AVX2 and AVX-512 load with a mask, touching no memory past the `n` values.
    #[inline(always)]
    fn load_partial(self, s: &[f32], at: usize, n: usize) -> Self::F {
        let n = n.min(Self::LANES);
        let mut lanes = [0.0f32; 16];
        lanes[..n].copy_from_slice(&s[at..at + n]);
        self.load(&lanes, 0)
    }
    /// Writes the first `n` lanes of `v` to `s[at..at + n]` and nothing else (all lanes if
    /// `n ≥ LANES`). Panics if `at + min(n, LANES) > s.len()`.
    #[inline(always)]
    fn store_partial(self, s: &mut [f32], at: usize, n: usize, v: Self::F) {
        let n = n.min(Self::LANES);
        let mut lanes = [0.0f32; 16];
        self.store(&mut lanes, 0, v);
        s[at..at + n].copy_from_slice(&lanes[..n]);
    }

    /// `max(y, 0)` as [`crate::Relu`] computes it: a NaN passes, −0 becomes +0 (`0 > y ? 0
    /// : y + 0`).
    #[inline(always)]
    fn relu(self, y: Self::F) -> Self::F {
        let zero = self.splat(0.0);
        self.select_gt(zero, y, zero, self.add(y, zero))
    }
}

/// Whether `v` replaces `best` as a pooling window's running maximum: `v > best`, or `v` is
/// NaN and `best` is not. NaN ranks above every number, so a window that holds a NaN pools
/// to NaN (PyTorch's rule), and among equals the first stays (ties go to the first maximum).
///
/// ```
/// use constnet::maxpool2d::beats;
/// assert!(beats(2.0, 1.0) && !beats(1.0, 1.0));
/// assert!(beats(f32::NAN, 1.0) && !beats(1.0, f32::NAN) && !beats(f32::NAN, f32::NAN));
/// ```
#[inline(always)]
pub fn beats<T: crate::scalar::Scalar>(v: T, best: T) -> bool {
    v > best || (v.is_nan() && !best.is_nan())
}

/// A computation to run with the best available [`Simd`]: the generic `run` is compiled
/// once per instruction set.
pub trait Kernel {
    /// What the computation returns.
    type Output;
    /// The computation, for instruction set `S`. Implement it `#[inline(always)]`.
    fn run<S: Simd>(self, s: S) -> Self::Output;
}

/// The instruction sets the fast paths can use: the scalar one, x86-64's narrowest first,
/// then aarch64's. Comparisons order them within one architecture ([`Isa::available`] says
/// which are this CPU's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain `f32` arithmetic, one lane (any CPU). On x86-64 and aarch64, whose CPUs all
    /// have SIMD, [`dispatch`] has this path only with the feature `scalar-path` (the tests
    /// turn it on); without it, limiting a thread to `Scalar` ([`with_isa`]) runs the
    /// baseline SIMD path, SSE2 or NEON. [`dispatch_within`] always has it.
    Scalar = 1,
    /// 4 lanes, no FMA (every x86-64 CPU).
    Sse2 = 2,
    /// 8 lanes with FMA.
    Avx2 = 3,
    /// 16 lanes with FMA.
    Avx512 = 4,
    /// aarch64's Advanced SIMD: 4 lanes with FMA (baseline on aarch64, so never detected).
    Neon = 5,
}

impl Isa {
    /// Every instruction set: the scalar one, then x86-64's narrowest first, then aarch64's.
    /// [`Isa::available`] picks this CPU's.
    pub const ALL: [Isa; 5] = [Isa::Scalar, Isa::Sse2, Isa::Avx2, Isa::Avx512, Isa::Neon];

    fn from_u8(v: u8) -> Option<Isa> {
        Isa::ALL.into_iter().find(|&i| i as u8 == v)
    }

    /// Whether this CPU can run `self`.
    pub fn available(self) -> bool {
        self.of_this_arch() && self <= detected()
    }

    /// Whether `self` belongs to the architecture this build targets (the scalar one belongs
    /// to every one).
    const fn of_this_arch(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Sse2 | Isa::Avx2 | Isa::Avx512 => cfg!(target_arch = "x86_64"),
            Isa::Neon => cfg!(target_arch = "aarch64"),
        }
    }

    /// `f32` values in one of its vectors: 1, 4, 8 or 16.
    pub const fn lanes(self) -> usize {
        match self {
            Isa::Scalar => 1,
            Isa::Sse2 | Isa::Neon => 4,
            Isa::Avx2 => 8,
            Isa::Avx512 => 16,
        }
    }
}

/// The widest instruction set this CPU has (detected on first use, then cached).
pub fn detected() -> Isa {
    use core::sync::atomic::{AtomicU8, Ordering};
    static DETECTED: AtomicU8 = AtomicU8::new(0);
    if let Some(isa) = Isa::from_u8(DETECTED.load(Ordering::Relaxed)) {
        return isa;
    }
    let isa = detect();
    DETECTED.store(isa as u8, Ordering::Relaxed);
    isa
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
fn detect() -> Isa {
    if std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
    {
        Isa::Avx512
    } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        Isa::Avx2
    } else {
        Isa::Sse2
    }
}

#[cfg(all(target_arch = "x86_64", not(feature = "std")))]
fn detect() -> Isa {
    // Without `std` there is no run-time detection: use what the build targets.
    if cfg!(all(
        target_feature = "avx512f",
        target_feature = "avx2",
        target_feature = "fma"
    )) {
        Isa::Avx512
    } else if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
        Isa::Avx2
    } else {
        Isa::Sse2
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
fn detect() -> Isa {
    // Advanced SIMD is part of the aarch64 baseline: the build target has it.
    Isa::Neon
}

#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon")
)))]
fn detect() -> Isa {
    Isa::Scalar
}

#[cfg(feature = "std")]
std::thread_local! {
    static FORCED: core::cell::Cell<u8> = const { core::cell::Cell::new(0) };
}

/// The instruction set [`dispatch`] uses on this thread.
pub fn current() -> Isa {
    #[cfg(feature = "std")]
    if let Some(isa) = Isa::from_u8(FORCED.with(|f| f.get())) {
        // An instruction set of another architecture (`Avx512` on aarch64) is not a limit.
        return if isa.of_this_arch() {
            isa.min(detected())
        } else {
            detected()
        };
    }
    detected()
}

/// Runs `f` with the fast paths on this thread limited to `isa` (or to what the CPU has, if
/// that is narrower). Used by the tests to check every path against the reference loops,
/// and by the benches to compare instruction sets.
#[cfg(feature = "std")]
pub fn with_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    let before = FORCED.with(|c| c.replace(isa as u8));
    let out = f();
    FORCED.with(|c| c.set(before));
    out
}

/// Runs `kernel` with the instruction set [`current`] names.
#[inline]
pub fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    run_on(current(), kernel)
}

/// Runs `kernel` with the widest instruction set, up to [`current`], whose vectors hold at
/// most `lanes` values: a kernel over rows narrower than a 16-lane vector (LeNet-5's 10-pixel
/// pooling rows) runs on 8 lanes instead of leaving the work to scalar loops.
#[inline]
pub fn dispatch_within<K: Kernel>(kernel: K, lanes: usize) -> K::Output {
    let isa = Isa::ALL
        .into_iter()
        .rev()
        .find(|&isa| {
            isa.of_this_arch() && isa <= current() && (isa.lanes() <= lanes || isa == Isa::Scalar)
        })
        .unwrap_or(Isa::Scalar);
    // Maps narrower than any vector take the one-lane path, compiled on every architecture.
    // Where `run_on` has a one-lane arm (tests, `scalar-path`, architectures without SIMD),
    // it takes them there: a second call here would inline every such kernel twice.
    #[cfg(all(
        not(any(test, feature = "scalar-path")),
        any(
            target_arch = "x86_64",
            all(target_arch = "aarch64", target_feature = "neon")
        )
    ))]
    if isa == Isa::Scalar {
        return kernel.run(Scalar);
    }
    run_on(isa, kernel)
}

/// Runs `kernel` with `isa`, which must not exceed [`detected`]. Each instruction set has
/// one arm (the kernel is inlined into each): the one-lane path is an arm of its own only
/// where it is compiled (see [`Isa::Scalar`]); elsewhere the baseline SIMD arm takes it.
#[inline(always)]
fn run_on<K: Kernel>(isa: Isa, kernel: K) -> K::Output {
    match isa.min(detected()) {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            // SAFETY: `detected()` returns `Avx512` only if the CPU (or, without std, the
            // build target) has avx512f, avx2 and fma.
            unsafe { x86::run_avx512(kernel) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: as above, `Avx2` only if the CPU has avx2 and fma.
            unsafe { x86::run_avx2(kernel) }
        }
        #[cfg(all(target_arch = "x86_64", any(test, feature = "scalar-path")))]
        Isa::Sse2 => kernel.run(x86::Sse2(())),
        #[cfg(all(target_arch = "x86_64", not(any(test, feature = "scalar-path"))))]
        _ => kernel.run(x86::Sse2(())),
        #[cfg(all(
            target_arch = "aarch64",
            target_feature = "neon",
            any(test, feature = "scalar-path")
        ))]
        Isa::Neon => kernel.run(neon::Neon(())),
        #[cfg(all(
            target_arch = "aarch64",
            target_feature = "neon",
            not(any(test, feature = "scalar-path"))
        ))]
        _ => kernel.run(neon::Neon(())),
        #[cfg(any(
            test,
            feature = "scalar-path",
            not(any(
                target_arch = "x86_64",
                all(target_arch = "aarch64", target_feature = "neon")
            ))
        ))]
        _ => kernel.run(Scalar),
    }
}

/// Runs `body` on register blocks of rows `a0..a0 + OB` that cover `0..n`, greedily with
/// the listed block sizes (largest first, ending in 1); `OB` is a constant inside `body`, so
/// a kernel's accumulators `[[S::F; NV]; OB]` stay in registers.
///
/// `for_blocks!(const N, …)` for an `N` known at compile time (a const parameter): the block
/// sizes the greedy cover of `N` does not use are then not compiled at all (an `if const`
/// around each size's loop, which monomorphisation skips), rather than compiled and left for
/// LLVM to remove.
macro_rules! for_blocks {
    (const $n:expr, [$($size:literal),*], |$a0:ident, $ob:ident| $body:block) => {{
        const SIZES: &[usize] = &[$($size),*];
        let n: usize = $n;
        let mut $a0 = 0usize;
        $(
            if const { $crate::simd::block_used($n, SIZES, $size) } {
                while n - $a0 >= $size {
                    const $ob: usize = $size;
                    $body
                    $a0 += $size;
                }
            }
        )*
        debug_assert_eq!($a0, n);
    }};
    ($n:expr, [$($size:literal),*], |$a0:ident, $ob:ident| $body:block) => {{
        let n: usize = $n;
        let mut $a0 = 0usize;
        $(
            while n - $a0 >= $size {
                const $ob: usize = $size;
                $body
                $a0 += $size;
            }
        )*
        debug_assert_eq!($a0, n);
    }};
}
pub(crate) use for_blocks;

/// Whether [`for_blocks`] covering `0..n` greedily with `sizes` (largest first) uses a block
/// of `size`.
pub(crate) const fn block_used(n: usize, sizes: &[usize], size: usize) -> bool {
    let mut rem = n;
    let mut i = 0;
    while i < sizes.len() {
        if rem >= sizes[i] {
            if sizes[i] == size {
                return true;
            }
            rem %= sizes[i];
        }
        i += 1;
    }
    false
}

/// Vector starts covering `0..n`, the last one moved back to end at `n` (so `n ≥ lanes`;
/// the overlap is computed twice, to the same values). An iterator, not a closure taking
/// the body: a closure would not be compiled with the kernel's instruction set.
#[inline(always)]
pub(crate) fn spans(n: usize, lanes: usize) -> impl Iterator<Item = usize> {
    (0..n).step_by(lanes).map(move |at| at.min(n - lanes))
}

/// `N` vectors from `src`, the `v`-th at `at + v·step`. A loop rather than `array::from_fn`:
/// each `from_fn` call site compiles its own copy of core's array builder, for every
/// instruction set and block size (4% of the `train` binary's copies, 10% of its LLVM IR),
/// and that builder has no target features to inline a vector load into.
#[inline(always)]
pub(crate) fn load_vectors<S: Simd, const N: usize>(
    s: S,
    src: &[f32],
    at: usize,
    step: usize,
) -> [S::F; N] {
    let mut v = [s.splat(0.0); N];
    for (i, v) in v.iter_mut().enumerate() {
        *v = s.load(src, at + i * step);
    }
    v
}

/// `dst[c·dst_stride + r] = src[r·src_stride + c]` for `r < rows`, `c < cols`: a matrix
/// transpose in `LANES × LANES` blocks (blocks at the far edges are moved back to end at the
/// edge, so `rows, cols ≥ LANES`). Each block is `log2(LANES)` rounds of deinterleaving its
/// `LANES` vectors: one round rotates the bits of an element's index `(r, c)` right by one,
/// so `log2(LANES)` rounds swap the row and column bits. Strided scalar copies cost several
/// times more (and need gathers or scatters to vectorise).
#[inline(always)]
pub(crate) fn transpose<S: Simd>(
    s: S,
    src: &[f32],
    (rows, cols, src_stride): (usize, usize, usize),
    dst: &mut [f32],
    dst_stride: usize,
) {
    let lanes = S::LANES;
    assert!(lanes <= 16 && rows >= lanes && cols >= lanes);
    for r0 in spans(rows, lanes) {
        for c0 in spans(cols, lanes) {
            let mut v = [s.splat(0.0); 16];
            for (r, v) in v[..lanes].iter_mut().enumerate() {
                *v = s.load(src, (r0 + r) * src_stride + c0);
            }
            let mut bit = 1;
            while bit < lanes {
                let mut next = v;
                for i in 0..lanes / 2 {
                    (next[i], next[lanes / 2 + i]) = s.deinterleave(v[2 * i], v[2 * i + 1]);
                }
                v = next;
                bit *= 2;
            }
            for (c, &v) in v[..lanes].iter().enumerate() {
                s.store(dst, (c0 + c) * dst_stride + r0, v);
            }
        }
    }
}

/// [`transpose`] of a whole `rows × cols` matrix into `cols × rows`, with one lane where
/// the matrix is smaller than a vector.
#[inline(always)]
pub(crate) fn transpose_matrix<S: Simd>(
    s: S,
    src: &[f32],
    (rows, cols): (usize, usize),
    dst: &mut [f32],
) {
    if rows >= S::LANES && cols >= S::LANES {
        transpose(s, src, (rows, cols, cols), dst, rows);
    } else {
        transpose(Scalar, src, (rows, cols, cols), dst, rows);
    }
}

/// [`transpose_matrix`] as a [`Kernel`], for callers outside a kernel.
pub(crate) struct Transposed<'a> {
    pub src: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub dst: &'a mut [f32],
}

impl Kernel for Transposed<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        transpose_matrix(s, self.src, (self.rows, self.cols), self.dst);
    }
}

/// One lane of plain `f32` arithmetic: the portable fallback (and a fully safe reference for
/// the kernels' indexing).
#[derive(Clone, Copy, Debug)]
pub struct Scalar;

impl Simd for Scalar {
    const LANES: usize = 1;
    type F = f32;
    #[inline(always)]
    fn splat(self, x: f32) -> f32 {
        x
    }
    #[inline(always)]
    fn load(self, s: &[f32], at: usize) -> f32 {
        s[at]
    }
    #[inline(always)]
    fn store(self, s: &mut [f32], at: usize, v: f32) {
        s[at] = v;
    }
    #[inline(always)]
    fn load_bits(self, s: &[u32], at: usize) -> f32 {
        f32::from_bits(s[at])
    }
    #[inline(always)]
    fn store_bits(self, s: &mut [u32], at: usize, v: f32) {
        s[at] = v.to_bits();
    }
    #[inline(always)]
    fn add(self, a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    fn sub(self, a: f32, b: f32) -> f32 {
        a - b
    }
    #[inline(always)]
    fn mul(self, a: f32, b: f32) -> f32 {
        a * b
    }
    #[inline(always)]
    fn div(self, a: f32, b: f32) -> f32 {
        a / b
    }
    #[inline(always)]
    fn sqrt(self, a: f32) -> f32 {
        num_traits::Float::sqrt(a)
    }
    #[inline(always)]
    fn mul_add(self, a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
    #[inline(always)]
    fn sum(self, v: f32) -> f32 {
        v
    }
    #[inline(always)]
    fn select_gt(self, a: f32, b: f32, x: f32, y: f32) -> f32 {
        if a > b { x } else { y }
    }
    #[inline(always)]
    fn select_gt_nan(self, a: f32, b: f32, x: f32, y: f32) -> f32 {
        if beats(a, b) { x } else { y }
    }
    #[inline(always)]
    fn deinterleave(self, a: f32, b: f32) -> (f32, f32) {
        (a, b)
    }
    #[inline(always)]
    fn interleave(self, a: f32, b: f32) -> (f32, f32) {
        (a, b)
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2, Avx512, Sse2};

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
pub use neon::Neon;

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon;

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    /// The blocks `for_blocks!(const …)` runs, as (start, size) pairs.
    fn const_blocks<const N: usize>() -> Vec<(usize, usize)> {
        let mut blocks = Vec::new();
        for_blocks!(const N, [6, 4, 2, 1], |a0, OB| {
            blocks.push((a0, OB));
        });
        blocks
    }

    /// The same with a run-time `n`.
    fn blocks(n: usize) -> Vec<(usize, usize)> {
        let mut blocks = Vec::new();
        for_blocks!(n, [6, 4, 2, 1], |a0, OB| {
            blocks.push((a0, OB));
        });
        blocks
    }

    #[test]
    fn const_blocks_skip_only_the_sizes_the_cover_does_not_use() {
        assert_eq!(const_blocks::<16>(), [(0, 6), (6, 6), (12, 4)]);
        assert_eq!(const_blocks::<16>(), blocks(16));
        assert_eq!(const_blocks::<7>(), [(0, 6), (6, 1)]);
        assert_eq!(const_blocks::<13>(), blocks(13));
        assert_eq!(const_blocks::<3>(), [(0, 2), (2, 1)]);
        assert_eq!(const_blocks::<0>(), []);
        for n in 0..40 {
            let used: Vec<usize> = [6, 4, 2, 1]
                .into_iter()
                .filter(|&size| block_used(n, &[6, 4, 2, 1], size))
                .collect();
            let mut sizes: Vec<usize> = blocks(n).into_iter().map(|(_, ob)| ob).collect();
            sizes.dedup();
            assert_eq!(used, sizes, "n = {n}");
        }
    }

    struct Dot<'a>(&'a [f32], &'a [f32]);
    impl Kernel for Dot<'_> {
        type Output = f32;
        #[inline(always)]
        fn run<S: Simd>(self, s: S) -> f32 {
            let mut acc = s.splat(0.0);
            for at in (0..self.0.len()).step_by(S::LANES) {
                acc = s.mul_add(s.load(self.0, at), s.load(self.1, at), acc);
            }
            s.sum(acc)
        }
    }

    #[test]
    fn every_available_isa_computes_the_same_dot_product() {
        let a: [f32; 32] = core::array::from_fn(|i| i as f32);
        let b = [2.0f32; 32];
        for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
            let got = with_isa(isa, || dispatch(Dot(&a, &b)));
            assert_eq!(got, 992.0, "{isa:?}");
        }
        assert!(Isa::Sse2.available() || cfg!(not(target_arch = "x86_64")));
        assert_eq!(Isa::Neon.available(), cfg!(target_arch = "aarch64"));
    }

    /// Lane `i` of the concatenation `a ‖ b` for `i < 2·LANES`: `(even, odd)` deinterleaved
    /// and `select_gt` and `relu` of the lanes, stored back to plain arrays.
    struct Lanes<'a>(&'a [f32], &'a mut [f32]);
    impl Kernel for Lanes<'_> {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            let n = S::LANES;
            let (a, b) = (s.load(self.0, 0), s.load(self.0, n));
            let (even, odd) = s.deinterleave(a, b);
            s.store(self.1, 0, even);
            s.store(self.1, n, odd);
            s.store(self.1, 2 * n, s.select_gt(a, b, a, b));
            s.store(self.1, 3 * n, s.relu(a));
            s.store(self.1, 4 * n, s.select_gt_nan(a, b, a, b));
            // interleaving the deinterleaved halves gives `a` and `b` back
            let (a2, b2) = s.interleave(even, odd);
            s.store(self.1, 5 * n, a2);
            s.store(self.1, 6 * n, b2);
            // bit patterns in and out, through a select
            let mut bits = [0u32; 16];
            let ints: [u32; 16] = core::array::from_fn(|i| i as u32 * 0x0101_0101);
            let v = s.select_gt(a, b, s.load_bits(&ints, 0), s.load_bits(&ints, 0));
            s.store_bits(&mut bits, 0, v);
            assert_eq!(bits[..n], ints[..n]);
        }
    }

    #[test]
    fn every_available_isa_deinterleaves_selects_and_rectifies_lane_by_lane() {
        for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
            let mut input = [0.0f32; 32];
            let mut out = [0.0f32; 112];
            let n = with_isa(isa, || {
                let n = dispatch(LaneCount);
                for (i, v) in input[..2 * n].iter_mut().enumerate() {
                    // a and b alternate which one is larger; one NaN (selects b).
                    *v = if (i % n).is_multiple_of(2) {
                        i as f32
                    } else {
                        100.0 - i as f32
                    };
                }
                input[n - 1] = f32::NAN;
                if n >= 4 {
                    // zeros of both signs, both ways round
                    (input[1], input[n + 1]) = (-0.0, 0.0);
                    (input[2], input[n + 2]) = (0.0, -0.0);
                }
                if n >= 8 {
                    // a NaN in b alone, and in both (with different payloads)
                    input[n + 4] = f32::NAN;
                    (input[5], input[n + 5]) = (f32::NAN, -f32::NAN);
                }
                dispatch(Lanes(&input, &mut out));
                n
            });
            let concat = &input[..2 * n];
            for i in 0..n {
                assert_eq!(
                    out[i].to_bits(),
                    concat[2 * i].to_bits(),
                    "{isa:?} even {i}"
                );
                assert_eq!(
                    out[n + i].to_bits(),
                    concat[2 * i + 1].to_bits(),
                    "{isa:?} odd {i}"
                );
                let (a, b) = (concat[i], concat[n + i]);
                let want = if a > b { a } else { b };
                assert_eq!(
                    out[2 * n + i].to_bits(),
                    want.to_bits(),
                    "{isa:?} select {i}"
                );
                let relu = if a <= 0.0 { 0.0 } else { a }; // `Relu`'s definition
                assert_eq!(out[3 * n + i].to_bits(), relu.to_bits(), "{isa:?} relu {i}");
                // NaN above every number; the first (`b`) wins among equals.
                let nan_first = if a > b || (a.is_nan() && !b.is_nan()) {
                    a
                } else {
                    b
                };
                assert_eq!(
                    out[4 * n + i].to_bits(),
                    nan_first.to_bits(),
                    "{isa:?} select_gt_nan {i}"
                );
                assert_eq!(
                    out[5 * n + i].to_bits(),
                    a.to_bits(),
                    "{isa:?} interleave {i}"
                );
                assert_eq!(
                    out[6 * n + i].to_bits(),
                    b.to_bits(),
                    "{isa:?} interleave {i}"
                );
            }
        }
    }

    #[test]
    fn every_available_isa_transposes_any_shape() {
        for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
            for (rows, cols) in [
                (16, 16),
                (100, 16),
                (16, 150),
                (37, 21),
                (4, 4),
                (1, 1),
                (3, 40),
                (40, 3),
            ] {
                let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
                let mut dst = vec![-1.0f32; rows * cols];
                let kernel = Transposed {
                    src: &src,
                    rows,
                    cols,
                    dst: &mut dst,
                };
                with_isa(isa, || dispatch(kernel));
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(
                            dst[c * rows + r],
                            src[r * cols + c],
                            "{isa:?} {rows}×{cols}"
                        );
                    }
                }
            }
        }
    }

    /// For every `n` up to `LANES + 1`: `load_partial` of a slice holding exactly
    /// `min(n, LANES)` values at its end, and `store_partial` of it back into a slice of that
    /// size and into a longer one whose other values must stay.
    struct Partial;
    impl Kernel for Partial {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            let lanes = S::LANES;
            for n in 0..=lanes + 1 {
                let m = n.min(lanes);
                let src: Vec<f32> = (0..3 + m).map(|i| i as f32 + 1.0).collect();
                let v = s.load_partial(&src, 3, n);
                let mut out = [f32::NAN; 16];
                s.store(&mut out, 0, v);
                for (i, &o) in out[..lanes].iter().enumerate() {
                    let want = if i < m { (i + 4) as f32 } else { 0.0 };
                    assert_eq!(o, want, "load_partial {n} lane {i}");
                }
                let mut exact = vec![-1.0f32; 2 + m];
                s.store_partial(&mut exact, 2, n, v);
                assert_eq!(exact[..2], [-1.0, -1.0]);
                assert_eq!(exact[2..], src[3..], "store_partial {n}");
                let mut long = [-1.0f32; 40];
                s.store_partial(&mut long, 5, n, v);
                for (i, &l) in long.iter().enumerate() {
                    let want = if (5..5 + m).contains(&i) {
                        (i - 1) as f32
                    } else {
                        -1.0
                    };
                    assert_eq!(l, want, "store_partial {n} into a long slice at {i}");
                }
            }
        }
    }

    #[test]
    fn every_available_isa_loads_and_stores_the_first_n_lanes_only() {
        for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
            with_isa(isa, || dispatch(Partial));
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    #[should_panic]
    fn partial_loads_are_bounds_checked() {
        struct Over;
        impl Kernel for Over {
            type Output = ();
            fn run<S: Simd>(self, s: S) {
                // 3 values asked for where 2 are (every x86-64 vector has at least 4 lanes)
                let _ = s.load_partial(&[1.0, 2.0], 0, 3);
            }
        }
        dispatch(Over);
    }

    struct LaneCount;
    impl Kernel for LaneCount {
        type Output = usize;
        fn run<S: Simd>(self, _s: S) -> usize {
            S::LANES
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    #[should_panic]
    fn loads_are_bounds_checked() {
        dispatch(Dot(&[1.0; 5], &[1.0; 5]));
    }
}
