//! What the loop of `conv_gemm`'s microkernel reaches alone, on AVX-512, with its operands in
//! cache: `c[r][v] += a(r, d) · b[d][v]` for an `MR × NV` block of 16-lane sums, the left
//! matrix either packed in the loop's order (one stream) or read in place as `MR` rows of a
//! weight matrix (as `conv_gemm` reads it). GFLOP/s, 2 per multiply-add; one core's FMA peak
//! is what `cargo bench --bench nets -- peak` prints.
//!
//! `cargo run --release` (in this directory; x86-64 with AVX-512 only).

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;
    use std::hint::black_box;
    use std::time::Instant;

    #[repr(C, align(64))]
    struct Aligned<T>(T);

    /// Depth of the widest panel (the forward pass's).
    const KMAX: usize = 192;
    /// Runs of each block.
    const ITERS: usize = 20_000;

    /// The block with the left matrix packed: `a[d·MR + r]`, `b[d·ldb + v·16 ..]`.
    ///
    /// # Safety
    /// avx512f must be present, `a.len() ≥ depth·MR` and `b.len() ≥ (depth − 1)·ldb + NV·16`.
    #[target_feature(enable = "avx512f")]
    unsafe fn packed<const MR: usize, const NV: usize>(
        a: &[f32],
        (b, ldb): (&[f32], usize),
        depth: usize,
        c: &mut [[__m512; NV]; MR],
    ) {
        let mut acc = *c;
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        for d in 0..depth {
            // SAFETY: d·ldb + v·16 + 16 ≤ (depth − 1)·ldb + NV·16 ≤ b.len() (the caller's promise).
            let bv: [__m512; NV] =
                core::array::from_fn(|v| unsafe { _mm512_loadu_ps(pb.add(d * ldb + v * 16)) });
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: d·MR + r < depth·MR ≤ a.len().
                let av = _mm512_set1_ps(unsafe { *pa.add(d * MR + r) });
                for (acc, &bv) in acc.iter_mut().zip(&bv) {
                    *acc = _mm512_fmadd_ps(av, bv, *acc);
                }
            }
        }
        *c = acc;
    }

    /// The block with `MR` rows of the left matrix read in place, as `conv_gemm` does.
    ///
    /// # Safety
    /// avx512f must be present.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const MR: usize, const NV: usize>(
        a: [&[f32]; MR],
        (b, ldb): (&[f32], usize),
        depth: usize,
        c: &mut [[__m512; NV]; MR],
    ) {
        let a = a.map(|row| &row[..depth]);
        let mut acc = *c;
        for (d, row) in b[..depth * ldb].chunks_exact(ldb).enumerate() {
            let row = &row[..NV * 16];
            // SAFETY: `row` holds NV·16 floats.
            let bv: [__m512; NV] =
                core::array::from_fn(|v| unsafe { _mm512_loadu_ps(row.as_ptr().add(v * 16)) });
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(a[r][d]);
                for (acc, &bv) in acc.iter_mut().zip(&bv) {
                    *acc = _mm512_fmadd_ps(av, bv, *acc);
                }
            }
        }
        *c = acc;
    }

    fn report<const MR: usize, const NV: usize>(how: &str, kb: usize, seconds: f64) {
        let flops = 2.0 * (MR * NV * 16 * kb * ITERS) as f64;
        println!(
            "{how:6} {MR:2} × {NV}, depth {kb:3}: {:6.1} GFLOP/s",
            flops / seconds / 1e9
        );
    }

    fn run_packed<const MR: usize, const NV: usize>(kb: usize) {
        let a = vec![1.0f32; kb * MR];
        let b = Aligned([0.5f32; (KMAX + 1) * 64]);
        // SAFETY: no vector is read yet; `setzero` needs only SSE.
        let mut c = [[unsafe { _mm512_setzero_ps() }; NV]; MR];
        let t = Instant::now();
        for _ in 0..ITERS {
            // SAFETY: main checked avx512f; a holds kb·MR, b (KMAX + 1)·64 ≥ kb·64 floats.
            unsafe { packed::<MR, NV>(black_box(&a), (&b.0, NV * 16), kb, &mut c) };
        }
        report::<MR, NV>("packed", kb, t.elapsed().as_secs_f64());
        black_box(c);
    }

    fn run_rows<const MR: usize, const NV: usize>(kb: usize) {
        // ResNet-18's 64 × 576 weight matrix: rows 2,304 bytes apart, walked 4 at a time.
        let (kdim, outs) = (576, 64);
        let w = vec![1.0f32; kdim * outs];
        let b = Aligned([0.5f32; (KMAX + 1) * 64]);
        // SAFETY: as in `run_packed`.
        let mut c = [[unsafe { _mm512_setzero_ps() }; NV]; MR];
        let t = Instant::now();
        for i in 0..ITERS {
            let o0 = (i * MR) % (outs - MR + 1);
            let a: [&[f32]; MR] = core::array::from_fn(|r| &w[(o0 + r) * kdim..][..kb]);
            // SAFETY: main checked avx512f.
            unsafe { rows::<MR, NV>(black_box(a), (&b.0, NV * 16), kb, &mut c) };
        }
        report::<MR, NV>("rows", kb, t.elapsed().as_secs_f64());
        black_box(c);
    }

    pub fn main() {
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("this machine has no AVX-512");
            return;
        }
        for kb in [64, KMAX] {
            run_rows::<4, 4>(kb);
            run_rows::<8, 2>(kb);
            run_packed::<4, 4>(kb);
            run_packed::<6, 4>(kb);
            run_packed::<8, 2>(kb);
            run_packed::<8, 3>(kb);
            run_packed::<12, 2>(kb);
            run_packed::<14, 2>(kb);
        }
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    x86::main();
    #[cfg(not(target_arch = "x86_64"))]
    eprintln!("x86-64 only");
}
