//! The x86-64 implementations of [`Simd`]: SSE2 (the baseline), AVX2 with FMA and
//! AVX-512F, and the entry points that run a [`Kernel`] after detecting their features.

use super::{Kernel, Simd};
use core::arch::x86_64::*;

/// SSE2: 4 lanes, multiply then add. Every x86-64 CPU has it.
#[derive(Clone, Copy, Debug)]
pub struct Sse2(pub(super) ());

/// AVX2 with FMA: 8 lanes. Exists only inside code entered after detecting both.
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

/// AVX-512F (with AVX2 and FMA): 16 lanes. Exists only inside code entered after
/// detecting them.
#[derive(Clone, Copy, Debug)]
pub struct Avx512(());

/// # Safety
/// The CPU must have avx2 and fma.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn run_avx2<K: Kernel>(k: K) -> K::Output {
    k.run(Avx2(()))
}

/// # Safety
/// The CPU must have avx512f, avx2 and fma.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn run_avx512<K: Kernel>(k: K) -> K::Output {
    k.run(Avx512(()))
}

/// Lanes `0..n` of an AVX2 mask (`n ≤ 8`): all bits set in a lane `i < n`, none after.
#[inline(always)]
fn mask8(n: usize) -> __m256i {
    // SAFETY: called only from `Avx2`'s and `Avx512`'s methods, which run only where
    // avx2 is present (see `Avx2::splat`).
    unsafe {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}

impl Simd for Sse2 {
    const LANES: usize = 4;
    type F = __m128;
    #[inline(always)]
    fn splat(self, x: f32) -> __m128 {
        // SAFETY (this and every intrinsic call below in this impl): SSE and SSE2 are part
        // of the x86-64 baseline, so every x86-64 CPU has them.
        unsafe { _mm_set1_ps(x) }
    }
    #[inline(always)]
    fn load(self, s: &[f32], at: usize) -> __m128 {
        let s = &s[at..at + 4];
        // SAFETY: `s` holds 4 floats (checked by the slice above); loadu needs no alignment.
        unsafe { _mm_loadu_ps(s.as_ptr()) }
    }
    #[inline(always)]
    fn store(self, s: &mut [f32], at: usize, v: __m128) {
        let s = &mut s[at..at + 4];
        // SAFETY: `s` holds 4 writable floats; storeu needs no alignment.
        unsafe { _mm_storeu_ps(s.as_mut_ptr(), v) }
    }
    #[inline(always)]
    fn load_bits(self, s: &[u32], at: usize) -> __m128 {
        let s = &s[at..at + 4];
        // SAFETY: `s` holds 4 values of 4 bytes, read as floats of the same size (any
        // bits are a float); loadu/storeu need no alignment.
        unsafe { _mm_loadu_ps(s.as_ptr().cast::<f32>()) }
    }
    #[inline(always)]
    fn store_bits(self, s: &mut [u32], at: usize, v: __m128) {
        let s = &mut s[at..at + 4];
        // SAFETY: `s` holds 4 writable values of 4 bytes (any bits are a u32); loadu/storeu need no alignment.
        unsafe { _mm_storeu_ps(s.as_mut_ptr().cast::<f32>(), v) }
    }
    #[inline(always)]
    fn add(self, a: __m128, b: __m128) -> __m128 {
        // SAFETY: baseline SSE (see `splat`).
        unsafe { _mm_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m128, b: __m128) -> __m128 {
        // SAFETY: baseline SSE (see `splat`).
        unsafe { _mm_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m128, b: __m128) -> __m128 {
        // SAFETY: baseline SSE (see `splat`).
        unsafe { _mm_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m128, b: __m128) -> __m128 {
        // SAFETY: baseline SSE (see `splat`).
        unsafe { _mm_div_ps(a, b) }
    }
    #[inline(always)]
    fn sqrt(self, a: __m128) -> __m128 {
        // SAFETY: baseline SSE (see `splat`).
        unsafe { _mm_sqrt_ps(a) }
    }
    #[inline(always)]
    fn mul_add(self, a: __m128, b: __m128, c: __m128) -> __m128 {
        // SAFETY: baseline SSE (see `splat`).
        unsafe { _mm_add_ps(_mm_mul_ps(a, b), c) }
    }
    #[inline(always)]
    fn sum(self, v: __m128) -> f32 {
        // SAFETY: baseline SSE (see `splat`).
        unsafe {
            let s = _mm_add_ps(v, _mm_movehl_ps(v, v));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s)))
        }
    }
    #[inline(always)]
    fn select_gt(self, a: __m128, b: __m128, x: __m128, y: __m128) -> __m128 {
        // SAFETY: baseline SSE (see `splat`).
        unsafe {
            let m = _mm_cmpgt_ps(a, b);
            _mm_or_ps(_mm_and_ps(m, x), _mm_andnot_ps(m, y))
        }
    }
    #[inline(always)]
    fn select_gt_nan(self, a: __m128, b: __m128, x: __m128, y: __m128) -> __m128 {
        // SAFETY: baseline SSE (see `splat`).
        unsafe {
            // not a ≤ b (true if either is NaN), and b is not NaN
            let m = _mm_and_ps(_mm_cmpnle_ps(a, b), _mm_cmpord_ps(b, b));
            _mm_or_ps(_mm_and_ps(m, x), _mm_andnot_ps(m, y))
        }
    }
    #[inline(always)]
    fn deinterleave(self, a: __m128, b: __m128) -> (__m128, __m128) {
        // SAFETY: baseline SSE (see `splat`).
        unsafe {
            (
                _mm_shuffle_ps::<0b10_00_10_00>(a, b),
                _mm_shuffle_ps::<0b11_01_11_01>(a, b),
            )
        }
    }
    #[inline(always)]
    fn interleave(self, a: __m128, b: __m128) -> (__m128, __m128) {
        // SAFETY: baseline SSE (see `splat`).
        unsafe { (_mm_unpacklo_ps(a, b), _mm_unpackhi_ps(a, b)) }
    }
}

impl Simd for Avx2 {
    const LANES: usize = 8;
    type F = __m256;
    #[inline(always)]
    fn splat(self, x: f32) -> __m256 {
        // SAFETY (this and every intrinsic call below in this impl): an `Avx2` value is
        // created only by `run_avx2`, which runs only on CPUs with avx2 and fma.
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    fn load(self, s: &[f32], at: usize) -> __m256 {
        let s = &s[at..at + 8];
        // SAFETY: `s` holds 8 floats; avx is present (see `splat`); no alignment needed.
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    }
    #[inline(always)]
    fn store(self, s: &mut [f32], at: usize, v: __m256) {
        let s = &mut s[at..at + 8];
        // SAFETY: `s` holds 8 writable floats; avx is present; no alignment needed.
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
    }
    #[inline(always)]
    fn load_bits(self, s: &[u32], at: usize) -> __m256 {
        let s = &s[at..at + 8];
        // SAFETY: `s` holds 8 values of 4 bytes, read as floats of the same size (any
        // bits are a float); avx is present; no alignment needed.
        unsafe { _mm256_loadu_ps(s.as_ptr().cast::<f32>()) }
    }
    #[inline(always)]
    fn store_bits(self, s: &mut [u32], at: usize, v: __m256) {
        let s = &mut s[at..at + 8];
        // SAFETY: `s` holds 8 writable values of 4 bytes (any bits are a u32); avx is present; no alignment needed.
        unsafe { _mm256_storeu_ps(s.as_mut_ptr().cast::<f32>(), v) }
    }
    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: avx is present (see `splat`).
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: avx is present (see `splat`).
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: avx is present (see `splat`).
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: avx is present (see `splat`).
        unsafe { _mm256_div_ps(a, b) }
    }
    #[inline(always)]
    fn sqrt(self, a: __m256) -> __m256 {
        // SAFETY: avx is present (see `splat`).
        unsafe { _mm256_sqrt_ps(a) }
    }
    #[inline(always)]
    fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: fma is present (see `splat`).
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn sum(self, v: __m256) -> f32 {
        // SAFETY: avx is present (see `splat`).
        let half = unsafe { _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v)) };
        Sse2(()).sum(half)
    }
    #[inline(always)]
    fn select_gt(self, a: __m256, b: __m256, x: __m256, y: __m256) -> __m256 {
        // SAFETY: avx is present (see `splat`).
        unsafe { _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_GT_OQ>(a, b)) }
    }
    #[inline(always)]
    fn select_gt_nan(self, a: __m256, b: __m256, x: __m256, y: __m256) -> __m256 {
        // SAFETY: avx is present (see `splat`).
        unsafe {
            // not a ≤ b (true if either is NaN), and b is not NaN
            let m = _mm256_and_ps(
                _mm256_cmp_ps::<_CMP_NLE_UQ>(a, b),
                _mm256_cmp_ps::<_CMP_ORD_Q>(b, b),
            );
            _mm256_blendv_ps(y, x, m)
        }
    }
    #[inline(always)]
    fn deinterleave(self, a: __m256, b: __m256) -> (__m256, __m256) {
        // Per 128-bit half: [a0 a2 b0 b2 | a4 a6 b4 b6]; then the 64-bit pairs in the
        // order 0, 2, 1, 3.
        // SAFETY: avx and avx2 are present (see `splat`).
        unsafe {
            let even = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            let odd = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
            let order =
                |v| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
            (order(even), order(odd))
        }
    }
    #[inline(always)]
    fn interleave(self, a: __m256, b: __m256) -> (__m256, __m256) {
        // Per 128-bit half: [a0 b0 a1 b1 | a4 b4 a5 b5] and [a2 b2 a3 b3 | a6 b6 a7 b7];
        // then the low halves together and the high halves together.
        // SAFETY: avx is present (see `splat`).
        unsafe {
            let (lo, hi) = (_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
            (
                _mm256_permute2f128_ps::<0x20>(lo, hi),
                _mm256_permute2f128_ps::<0x31>(lo, hi),
            )
        }
    }
    #[inline(always)]
    fn load_partial(self, s: &[f32], at: usize, n: usize) -> __m256 {
        let n = n.min(8);
        let s = &s[at..at + n];
        // SAFETY: avx2 is present (see `splat`); the mask enables lanes `0..n` only, and
        // `s` holds those `n` floats: a masked-off lane is neither read nor faults.
        unsafe { _mm256_maskload_ps(s.as_ptr(), mask8(n)) }
    }
    #[inline(always)]
    fn store_partial(self, s: &mut [f32], at: usize, n: usize, v: __m256) {
        let n = n.min(8);
        let s = &mut s[at..at + n];
        // SAFETY: as in `load_partial`: lanes `0..n` are written, to the `n` floats of `s`.
        unsafe { _mm256_maskstore_ps(s.as_mut_ptr(), mask8(n), v) }
    }
}

impl Simd for Avx512 {
    const LANES: usize = 16;
    type F = __m512;
    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        // SAFETY (this and every intrinsic call below in this impl): an `Avx512` value is
        // created only by `run_avx512`, which runs only on CPUs with avx512f, avx2, fma.
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    fn load(self, s: &[f32], at: usize) -> __m512 {
        let s = &s[at..at + 16];
        // SAFETY: `s` holds 16 floats; avx512f is present; no alignment needed.
        unsafe { _mm512_loadu_ps(s.as_ptr()) }
    }
    #[inline(always)]
    fn store(self, s: &mut [f32], at: usize, v: __m512) {
        let s = &mut s[at..at + 16];
        // SAFETY: `s` holds 16 writable floats; avx512f is present; no alignment needed.
        unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
    }
    #[inline(always)]
    fn load_bits(self, s: &[u32], at: usize) -> __m512 {
        let s = &s[at..at + 16];
        // SAFETY: `s` holds 16 values of 4 bytes, read as floats of the same size (any
        // bits are a float); avx512f is present; no alignment needed.
        unsafe { _mm512_loadu_ps(s.as_ptr().cast::<f32>()) }
    }
    #[inline(always)]
    fn store_bits(self, s: &mut [u32], at: usize, v: __m512) {
        let s = &mut s[at..at + 16];
        // SAFETY: `s` holds 16 writable values of 4 bytes (any bits are a u32); avx512f is present; no alignment needed.
        unsafe { _mm512_storeu_ps(s.as_mut_ptr().cast::<f32>(), v) }
    }
    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: avx512f is present (see `splat`).
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: avx512f is present (see `splat`).
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: avx512f is present (see `splat`).
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: avx512f is present (see `splat`).
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    fn sqrt(self, a: __m512) -> __m512 {
        // SAFETY: avx512f is present (see `splat`).
        unsafe { _mm512_sqrt_ps(a) }
    }
    #[inline(always)]
    fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: avx512f is present (see `splat`).
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn sum(self, v: __m512) -> f32 {
        // SAFETY: avx512f is present (see `splat`).
        unsafe { _mm512_reduce_add_ps(v) }
    }
    #[inline(always)]
    fn select_gt(self, a: __m512, b: __m512, x: __m512, y: __m512) -> __m512 {
        // SAFETY: avx512f is present (see `splat`).
        unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b), y, x) }
    }
    #[inline(always)]
    fn select_gt_nan(self, a: __m512, b: __m512, x: __m512, y: __m512) -> __m512 {
        // SAFETY: avx512f is present (see `splat`).
        unsafe {
            // not a ≤ b (true if either is NaN), where b is not NaN
            let ordered = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(b, b);
            let m = _mm512_mask_cmp_ps_mask::<_CMP_NLE_UQ>(ordered, a, b);
            _mm512_mask_blend_ps(m, y, x)
        }
    }
    #[inline(always)]
    fn deinterleave(self, a: __m512, b: __m512) -> (__m512, __m512) {
        // SAFETY: avx512f is present (see `splat`).
        unsafe {
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            (
                _mm512_permutex2var_ps(a, even, b),
                _mm512_permutex2var_ps(a, odd, b),
            )
        }
    }
    #[inline(always)]
    fn interleave(self, a: __m512, b: __m512) -> (__m512, __m512) {
        // SAFETY: avx512f is present (see `splat`).
        unsafe {
            let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let high =
                _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            (
                _mm512_permutex2var_ps(a, low, b),
                _mm512_permutex2var_ps(a, high, b),
            )
        }
    }
    #[inline(always)]
    fn load_partial(self, s: &[f32], at: usize, n: usize) -> __m512 {
        let n = n.min(16);
        let s = &s[at..at + n];
        // SAFETY: avx512f is present (see `splat`); mask bit `i` is set for `i < n`
        // only, and `s` holds those `n` floats: masked-off lanes are not read (their
        // faults are suppressed) and come back zero.
        unsafe { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, s.as_ptr()) }
    }
    #[inline(always)]
    fn store_partial(self, s: &mut [f32], at: usize, n: usize, v: __m512) {
        let n = n.min(16);
        let s = &mut s[at..at + n];
        // SAFETY: as in `load_partial`: lanes `0..n` are written, to the `n` floats of `s`.
        unsafe { _mm512_mask_storeu_ps(s.as_mut_ptr(), ((1u32 << n) - 1) as u16, v) }
    }
}
