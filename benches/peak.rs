//! One core's FMA peak, for scale: shared by the `conv_gemm` and `nets` benches
//! (`#[path = "peak.rs"] mod peak;`).

use constnet::simd::{Kernel, Simd};

/// Rounds of [`Peak`]'s chains.
pub const ROUNDS: usize = 1 << 16;
/// Independent chains: 12 cover 4 cycles' latency × 2 FMA ports, and more.
pub const CHAINS: usize = 12;

/// `ROUNDS` rounds of `CHAINS` independent chains of fused multiply-adds on the instruction
/// set it is dispatched to: `2 · lanes · ROUNDS · CHAINS` FLOPs.
pub struct Peak(pub f32);

impl Kernel for Peak {
    type Output = f32;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> f32 {
        let mut acc = [s.splat(self.0); CHAINS];
        let (a, b) = (s.splat(0.999_999), s.splat(1e-7));
        for _ in 0..ROUNDS {
            for acc in acc.iter_mut() {
                *acc = s.mul_add(*acc, a, b);
            }
        }
        acc.iter().map(|&v| s.sum(v)).sum()
    }
}
