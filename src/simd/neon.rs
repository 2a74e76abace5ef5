//! The aarch64 implementation of [`Simd`].
//!
//! aarch64's Advanced SIMD. It is part of the aarch64 baseline, so the build target has it
//! and nothing is detected at run time; every intrinsic below runs on any CPU this build
//! runs on.

use super::Simd;
use core::arch::aarch64::*;

/// NEON: 4 lanes with FMA. Every aarch64 CPU has it.
#[derive(Clone, Copy, Debug)]
pub struct Neon(pub(super) ());

impl Simd for Neon {
    const LANES: usize = 4;
    type F = float32x4_t;
    #[inline(always)]
    fn splat(self, x: f32) -> float32x4_t {
        // SAFETY (this and every intrinsic call below in this impl): NEON is enabled for
        // the whole build (the module's `cfg`), so the CPU running it has NEON.
        unsafe { vdupq_n_f32(x) }
    }
    #[inline(always)]
    fn load(self, s: &[f32], at: usize) -> float32x4_t {
        let s = &s[at..at + 4];
        // SAFETY: `s` holds 4 floats (checked by the slice above); ld1 needs no alignment.
        unsafe { vld1q_f32(s.as_ptr()) }
    }
    #[inline(always)]
    fn store(self, s: &mut [f32], at: usize, v: float32x4_t) {
        let s = &mut s[at..at + 4];
        // SAFETY: `s` holds 4 writable floats; st1 needs no alignment.
        unsafe { vst1q_f32(s.as_mut_ptr(), v) }
    }
    #[inline(always)]
    fn load_bits(self, s: &[u32], at: usize) -> float32x4_t {
        let s = &s[at..at + 4];
        // SAFETY: `s` holds 4 values of 4 bytes; the reinterpretation keeps every bit.
        unsafe { vreinterpretq_f32_u32(vld1q_u32(s.as_ptr())) }
    }
    #[inline(always)]
    fn store_bits(self, s: &mut [u32], at: usize, v: float32x4_t) {
        let s = &mut s[at..at + 4];
        // SAFETY: `s` holds 4 writable values of 4 bytes (any bits are a u32).
        unsafe { vst1q_u32(s.as_mut_ptr(), vreinterpretq_u32_f32(v)) }
    }
    #[inline(always)]
    fn add(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON (see `splat`).
        unsafe { vaddq_f32(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON (see `splat`).
        unsafe { vsubq_f32(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON (see `splat`).
        unsafe { vmulq_f32(a, b) }
    }
    #[inline(always)]
    fn div(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON (see `splat`); aarch64's fdiv is correctly rounded.
        unsafe { vdivq_f32(a, b) }
    }
    #[inline(always)]
    fn sqrt(self, a: float32x4_t) -> float32x4_t {
        // SAFETY: NEON (see `splat`); aarch64's fsqrt is correctly rounded.
        unsafe { vsqrtq_f32(a) }
    }
    #[inline(always)]
    fn mul_add(self, a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        // SAFETY: NEON (see `splat`). `vfmaq_f32(c, a, b)` is `c + a·b`, one rounding.
        unsafe { vfmaq_f32(c, a, b) }
    }
    #[inline(always)]
    fn sum(self, v: float32x4_t) -> f32 {
        // SAFETY: NEON (see `splat`).
        unsafe { vaddvq_f32(v) }
    }
    #[inline(always)]
    fn select_gt(
        self,
        a: float32x4_t,
        b: float32x4_t,
        x: float32x4_t,
        y: float32x4_t,
    ) -> float32x4_t {
        // SAFETY: NEON (see `splat`). fcmgt is false where either is NaN.
        unsafe { vbslq_f32(vcgtq_f32(a, b), x, y) }
    }
    #[inline(always)]
    fn select_gt_nan(
        self,
        a: float32x4_t,
        b: float32x4_t,
        x: float32x4_t,
        y: float32x4_t,
    ) -> float32x4_t {
        // SAFETY: NEON (see `splat`).
        unsafe {
            // not a ≤ b (true if either is NaN), and b is not NaN
            let m = vandq_u32(vmvnq_u32(vcleq_f32(a, b)), vceqq_f32(b, b));
            vbslq_f32(m, x, y)
        }
    }
    #[inline(always)]
    fn deinterleave(self, a: float32x4_t, b: float32x4_t) -> (float32x4_t, float32x4_t) {
        // SAFETY: NEON (see `splat`).
        unsafe { (vuzp1q_f32(a, b), vuzp2q_f32(a, b)) }
    }
    #[inline(always)]
    fn interleave(self, a: float32x4_t, b: float32x4_t) -> (float32x4_t, float32x4_t) {
        // SAFETY: NEON (see `splat`).
        unsafe { (vzip1q_f32(a, b), vzip2q_f32(a, b)) }
    }
}
