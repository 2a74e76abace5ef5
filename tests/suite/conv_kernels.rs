//! The `f32` direct-convolution kernels of `constnet::conv_kernel`, and the layers that run
//! them, against `f64` reference loops, on every instruction set this CPU has (each forced
//! in turn with `simd::with_isa`).
//!
//! # Tolerance
//! Inputs, weights and gradients are drawn as `f32` and widened exactly, so an `f32` result
//! differs from the `f64` reference by the rounding of its own products and sums only. In
//! any order of summation (and with or without fused multiply-adds), a sum of `n` products
//! is then within `n·u·Σ|term|` of the exact value (`u = 2⁻²⁴`, the standard bound
//! `γₙ = n·u / (1 − n·u)` to first order), and the final rounding to `f32` adds `u·|value|`.
//! So each value must satisfy `|fast − reference| ≤ (n + 2)·u·Σ|term|`, where `Σ|term|` is
//! the same reference computed on absolute values and `n` the most terms any value of the
//! tensor sums. The bound cannot fail for a correct kernel whatever its order of sums, and
//! an output with no terms must be exactly zero (or the bias). A wrong tap, a lost pixel or
//! a doubled one moves a value by a whole term: `Σ|term| / n` on average, far above `n·u·Σ|term|`
//! for the `n` these tests use (at most a few hundred).

use constnet::conv_gemm::{self, ConvKernels};
use constnet::conv_kernel::{self, ConvGeometry};
use constnet::simd::{Isa, with_isa};
use constnet::{conv_winograd, conv_winograd_grad, conv_winograd4};
use proptest::prelude::*;

/// `u`, the unit roundoff of `f32`.
const U: f64 = f32::EPSILON as f64 / 2.0;

fn available() -> impl Iterator<Item = Isa> {
    Isa::ALL.into_iter().filter(|isa| isa.available())
}

/// Checks `fast` against `reference` within `(terms + 2)·u·abs` (see the module).
#[track_caller]
fn assert_within(what: &str, isa: Isa, fast: &[f32], reference: &[f64], abs: &[f64], terms: usize) {
    assert_eq!(fast.len(), reference.len(), "{what}: length");
    for (i, ((&f, &r), &a)) in fast.iter().zip(reference).zip(abs).enumerate() {
        let bound = (terms + 2) as f64 * U * a;
        assert!(
            (f64::from(f) - r).abs() <= bound,
            "{what} on {isa:?}: [{i}] fast {f} vs reference {r} (bound {bound:e})"
        );
    }
}

/// The passes of a convolution in `f64` over flat slices, with every value's `Σ|term|`.
#[derive(Default)]
struct Reference {
    y: Vec<f64>,
    y_abs: Vec<f64>,
    gw: Vec<f64>,
    gw_abs: Vec<f64>,
    gb: Vec<f64>,
    gb_abs: Vec<f64>,
    gi: Vec<f64>,
    gi_abs: Vec<f64>,
}

/// The definition, written out: output `(o, oy, ox)` and tap `(c, i, j)` of `o`'s group
/// meet at input `(oy·S + i − P, ox·S + j − P)` when it is on the map.
fn reference(geo: &ConvGeometry, x: &[f32], w: &[f32], b: &[f32], g: &[f32]) -> Reference {
    let (cig, cog, k) = (geo.in_per_group(), geo.out_per_group(), geo.k);
    let mut r = Reference {
        y: vec![0.0; geo.output_len()],
        y_abs: vec![0.0; geo.output_len()],
        gw: vec![0.0; geo.weight_len()],
        gw_abs: vec![0.0; geo.weight_len()],
        gb: vec![0.0; geo.c_out],
        gb_abs: vec![0.0; geo.c_out],
        gi: vec![0.0; geo.input_len()],
        gi_abs: vec![0.0; geo.input_len()],
    };
    // The outputs whose window puts tap `t` at an input position `o·S + t − P` in 0..n
    // (found by search, not by formula, to stay the definition).
    let on_map = |t: usize, n: usize, outputs: usize| -> Vec<(usize, usize)> {
        (0..outputs)
            .filter_map(|o| (o * geo.stride + t).checked_sub(geo.pad).map(|at| (o, at)))
            .filter(|&(_, at)| at < n)
            .collect()
    };
    let rows: Vec<_> = (0..k).map(|i| on_map(i, geo.h, geo.oh)).collect();
    let cols: Vec<_> = (0..k).map(|j| on_map(j, geo.w, geo.ow)).collect();
    for (o, &bias) in b.iter().enumerate() {
        let group = o / cog;
        let out = o * geo.oh * geo.ow..(o + 1) * geo.oh * geo.ow;
        r.y[out.clone()].fill(f64::from(bias));
        r.y_abs[out.clone()].fill(f64::from(bias).abs());
        for &go in &g[out] {
            r.gb[o] += f64::from(go);
            r.gb_abs[o] += f64::from(go).abs();
        }
        // Tap by tap (each output still sums its taps in the order (c, i, j)).
        for ci in 0..cig {
            let c = group * cig + ci;
            for (i, rows) in rows.iter().enumerate() {
                for (j, cols) in cols.iter().enumerate() {
                    let wi = ((o * cig + ci) * k + i) * k + j;
                    let wv = f64::from(w[wi]);
                    let (mut gw, mut gw_abs) = (0.0, 0.0);
                    for &(oy, row) in rows {
                        for &(ox, col) in cols {
                            let at = (o * geo.oh + oy) * geo.ow + ox;
                            let xi = (c * geo.h + row) * geo.w + col;
                            let (xv, go) = (f64::from(x[xi]), f64::from(g[at]));
                            r.y[at] += wv * xv;
                            r.y_abs[at] += (wv * xv).abs();
                            gw += go * xv;
                            gw_abs += (go * xv).abs();
                            r.gi[xi] += go * wv;
                            r.gi_abs[xi] += (go * wv).abs();
                        }
                    }
                    r.gw[wi] = gw;
                    r.gw_abs[wi] = gw_abs;
                }
            }
        }
    }
    r
}

/// The direct kernels and the matrix-product ones: each must equal the reference alone.
const KERNELS: [ConvKernels; 2] = [conv_gemm::DIRECT, conv_gemm::GEMM];

/// `len` values cycled from `values`, starting at `from` and stepping 7 (so that buffers
/// drawn with different starts differ).
fn cycle(values: &[f32], len: usize, from: usize) -> Vec<f32> {
    (0..len)
        .map(|i| values[(from + 7 * i) % values.len()])
        .collect()
}

/// [`check_kernels_of`] for the direct kernels and the matrix-product ones.
fn check_kernels(geo: &ConvGeometry, values: &[f32]) {
    for kernels in &KERNELS {
        check_kernels_of(kernels, geo, values);
    }
}

/// Forward, weight and bias gradient (added to a prefilled buffer, and scaled) and input
/// gradient (written over NaN) of `kernels` on every instruction set, against [`reference`].
fn check_kernels_of(kernels: &ConvKernels, geo: &ConvGeometry, values: &[f32]) {
    let draw = |len, from| cycle(values, len, from);
    let x = draw(geo.input_len(), 0);
    let w = draw(geo.weight_len(), 1);
    let b = draw(geo.c_out, 2);
    let g = draw(geo.output_len(), 3);
    let r = reference(geo, &x, &w, &b, &g);
    let (cig, cog, k) = (geo.in_per_group(), geo.out_per_group(), geo.k);
    for isa in available() {
        with_isa(isa, || {
            let mut y = vec![f32::NAN; geo.output_len()];
            (kernels.forward)(geo, &x, &w, &b, &mut y);
            assert_within(
                &format!("{} forward", kernels.name),
                isa,
                &y,
                &r.y,
                &r.y_abs,
                cig * k * k + 1,
            );

            // Scaled by −2 (exact: a power of two), then unscaled.
            let (mut gw, mut gb) = (vec![0.0f32; w.len()], vec![0.0f32; b.len()]);
            (kernels.weight_grad)(geo, &x, &g, &mut gw, &mut gb, -2.0);
            let unscale = |v: &[f32]| -> Vec<f32> { v.iter().map(|v| v * -0.5).collect() };
            let pixels = geo.oh * geo.ow;
            assert_within(
                &format!("{} weight grad", kernels.name),
                isa,
                &unscale(&gw),
                &r.gw,
                &r.gw_abs,
                pixels,
            );
            assert_within(
                &format!("{} bias grad", kernels.name),
                isa,
                &unscale(&gb),
                &r.gb,
                &r.gb_abs,
                pixels,
            );
            // The gradients are added, once per value, to what the buffers hold.
            let (mut gw2, mut gb2) = (vec![0.25f32; w.len()], vec![0.25f32; b.len()]);
            (kernels.weight_grad)(geo, &x, &g, &mut gw2, &mut gb2, -2.0);
            let added = |v: &[f32]| -> Vec<f32> { v.iter().map(|v| 0.25 + v).collect() };
            assert_eq!(
                gw2,
                added(&gw),
                "{} weight grad added on {isa:?}",
                kernels.name
            );
            assert_eq!(
                gb2,
                added(&gb),
                "{} bias grad added on {isa:?}",
                kernels.name
            );

            let mut gi = vec![f32::NAN; geo.input_len()];
            (kernels.input_grad)(geo, &w, &g, &mut gi);
            assert_within(
                &format!("{} input grad", kernels.name),
                isa,
                &gi,
                &r.gi,
                &r.gi_abs,
                cog * k * k,
            );
        });
    }
}

/// A geometry with `groups` groups of `cig` → `cog` channels, a `k`×`k` kernel, stride
/// `stride`, padding `pad` (up to `k`: a border of padding alone) and a map from the
/// smallest the kernel fits in to `extra` rows and columns more.
fn geometry() -> impl Strategy<Value = ConvGeometry> {
    (
        (1usize..=3, 1usize..=3, 1usize..=3),
        (1usize..=18, 1usize..=5, 0usize..=18),
        (0usize..=12, 0usize..=90),
    )
        .prop_map(|((groups, cig, cog), (k, stride, pad), (eh, ew))| {
            let pad = pad.min(k);
            let least = k.saturating_sub(2 * pad).max(1);
            let (h, w) = (least + eh, least + ew);
            ConvGeometry {
                c_in: groups * cig,
                c_out: groups * cog,
                groups,
                k,
                stride,
                pad,
                h,
                w,
                oh: constnet::conv_out(h, k, stride, pad),
                ow: constnet::conv_out(w, k, stride, pad),
            }
            .checked()
        })
}

fn values() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-1.0f32..1.0, 997)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any geometry: kernels wider than one pass of taps (17, 18), rows longer than one pass
    /// of pixels (up to 98 columns), strides up to 5, padding up to the kernel size.
    #[test]
    fn kernels_equal_the_reference_for_any_geometry(geo in geometry(), v in values()) {
        check_kernels(&geo, &v);
    }
}

/// Kernel-level cases the random geometries above do not reach: more than 16 channels on
/// either side (several blocks of channels per gathered row), a group of 17, 1×1
/// convolutions read in place over several panels, and stride 4 on long rows.
#[test]
fn kernels_equal_the_reference_with_many_channels() {
    let values: Vec<f32> = (0..997)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    for (c_in, c_out, groups, k, stride, pad, h, w) in [
        (18, 20, 1, 3, 1, 1, 5, 7),
        (34, 34, 2, 2, 2, 0, 6, 5),
        (20, 20, 20, 3, 2, 1, 9, 9),
        (3, 40, 1, 1, 1, 0, 3, 70),
        // 1×1 at stride 1, whose whole panels of 64 pixels are read in place: more channels
        // than one block of taps (the last block's last row ends the input), and groups.
        (200, 8, 1, 1, 1, 0, 8, 17),
        (8, 8, 2, 1, 1, 0, 8, 9),
        // Stride 4 (AlexNet's first layer), rows of several vectors.
        (3, 8, 1, 5, 4, 2, 9, 150),
    ] {
        let geo = ConvGeometry {
            c_in,
            c_out,
            groups,
            k,
            stride,
            pad,
            h,
            w,
            oh: constnet::conv_out(h, k, stride, pad),
            ow: constnet::conv_out(w, k, stride, pad),
        }
        .checked();
        check_kernels(&geo, &values);
    }
}

/// The pixels of a vector past the end of an output row are computed and dropped; the
/// input they would read (here NaN, in the columns and rows that no window reads under the
/// floor rule) must reach neither the output nor the gradients.
#[test]
fn input_that_no_window_reads_reaches_nothing() {
    // 3×3 at stride 2 over 6×8: windows read rows 0..5 and columns 0..7, not row 5 or
    // column 7; 2×3 outputs, so every vector is mostly past the row.
    let geo = ConvGeometry {
        c_in: 2,
        c_out: 3,
        groups: 1,
        k: 3,
        stride: 2,
        pad: 0,
        h: 6,
        w: 8,
        oh: 2,
        ow: 3,
    }
    .checked();
    let mut x: Vec<f32> = (0..geo.input_len()).map(|i| (i % 7) as f32 - 3.0).collect();
    let unread = |i: usize| i % 8 == 7 || (i / 8) % 6 == 5;
    let w: Vec<f32> = (0..geo.weight_len())
        .map(|i| (i % 5) as f32 - 2.0)
        .collect();
    let g: Vec<f32> = (0..geo.output_len())
        .map(|i| (i % 3) as f32 - 1.0)
        .collect();
    let r = reference(&geo, &x, &w, &[0.5; 3], &g);
    for (i, v) in x.iter_mut().enumerate() {
        if unread(i) {
            *v = f32::NAN;
        }
    }
    for (kernels, isa) in KERNELS
        .iter()
        .flat_map(|k| available().map(move |isa| (k, isa)))
    {
        with_isa(isa, || {
            let name = kernels.name;
            let mut y = vec![0.0f32; geo.output_len()];
            (kernels.forward)(&geo, &x, &w, &[0.5; 3], &mut y);
            let (mut gw, mut gb) = (vec![0.0f32; geo.weight_len()], vec![0.0f32; 3]);
            (kernels.weight_grad)(&geo, &x, &g, &mut gw, &mut gb, 1.0);
            // small integers: every sum is exact
            let exact = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
            assert_eq!(exact(&y), r.y, "{name} forward on {isa:?}");
            assert_eq!(exact(&gw), r.gw, "{name} weight grad on {isa:?}");
            assert_eq!(exact(&gb), r.gb, "{name} bias grad on {isa:?}");
        });
    }
}

/// `c_in → c_out`, `k`×`k` at `stride` with `pad`, on `h`×`w` maps, in `groups` groups.
fn geo(
    (c_in, c_out, groups): (usize, usize, usize),
    (k, stride, pad): (usize, usize, usize),
    (h, w): (usize, usize),
) -> ConvGeometry {
    ConvGeometry {
        c_in,
        c_out,
        groups,
        k,
        stride,
        pad,
        h,
        w,
        oh: constnet::conv_out(h, k, stride, pad),
        ow: constnet::conv_out(w, k, stride, pad),
    }
    .checked()
}

/// The values every real-size layer test draws from.
fn layer_values() -> Vec<f32> {
    (0..997)
        .map(|i| ((i * 59 % 113) as f32 / 56.0) - 1.0)
        .collect()
}

/// Every convolution of ResNet-20 (stem, 3×3 at stride 1 and 2, 1×1 projections), on both
/// kernels.
#[test]
fn kernels_equal_the_reference_on_resnet20_layers() {
    let values = layer_values();
    let resnet20 = [
        geo((1, 16, 1), (3, 1, 1), (32, 32)),
        geo((16, 16, 1), (3, 1, 1), (32, 32)),
        geo((16, 32, 1), (3, 2, 1), (32, 32)),
        geo((16, 32, 1), (1, 2, 0), (32, 32)),
        geo((32, 32, 1), (3, 1, 1), (16, 16)),
        geo((32, 64, 1), (3, 2, 1), (16, 16)),
        geo((32, 64, 1), (1, 2, 0), (16, 16)),
        geo((64, 64, 1), (3, 1, 1), (8, 8)),
    ];
    for g in resnet20 {
        check_kernels(&g, &values);
    }
}

/// Batch norm's constants (mean, scale, shift) for `c_out` channels, varied by channel.
fn affine_constants(c_out: usize) -> [Vec<f32>; 3] {
    [1.0f32, 2.0, 3.0].map(|k| (0..c_out).map(|o| ((o as f32 + k) * 1.3).sin()).collect())
}

/// The direct kernel with the output channels along the lanes (`conv_channels`, which
/// `conv_gemm::forward` runs for strided layers of few output channels) on every
/// instruction set, against the reference: ResNet-20's two 3×3/2 layers (one and several
/// blocks of input channels), 48 channels (a block of 32 and one of 16 with AVX-512), odd
/// maps (partial blocks of pixels, taps off the right edge), padding 0, a 5×5 kernel at
/// stride 3 and a 7×7 at stride 4 with the padding wider than the stride. Several samples in
/// one call give each sample's bits alone, and two threads give one thread's (split by
/// samples, then by channels); the fused map gives the pass then the map, bit for bit.
#[test]
fn channels_along_the_lanes_equal_the_reference() {
    use constnet::{ChannelAffine, Epilogue, conv_channels, threads};
    const SAMPLES: usize = 3;
    let values = layer_values();
    for geo in [
        geo((16, 32, 1), (3, 2, 1), (32, 32)),
        geo((32, 64, 1), (3, 2, 1), (16, 16)),
        geo((16, 48, 1), (3, 2, 1), (13, 11)),
        geo((32, 16, 1), (3, 2, 0), (9, 15)),
        geo((8, 32, 1), (5, 3, 2), (20, 17)),
        geo((4, 64, 1), (7, 4, 3), (30, 29)),
    ] {
        assert!(conv_channels::pays(&geo), "{geo:?}");
        check_kernels_of(&KERNELS[1], &geo, &values);
        let draw = |len, from| cycle(&values, len, from);
        let x = draw(SAMPLES * geo.input_len(), 5);
        let (w, b) = (draw(geo.weight_len(), 6), draw(geo.c_out, 7));
        let [mean, scale, shift] = affine_constants(geo.c_out);
        let affine = ChannelAffine {
            mean: &mean,
            scale: &scale,
            shift: &shift,
        };
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for isa in available() {
            with_isa(isa, || {
                let mut y = vec![f32::NAN; x.len() / geo.input_len() * geo.output_len()];
                conv_gemm::forward(&geo, &x, &w, &b, &mut y);
                let each = x.chunks(geo.input_len()).zip(y.chunks(geo.output_len()));
                for (n, (xn, yn)) in each.enumerate() {
                    let mut one = vec![f32::NAN; geo.output_len()];
                    conv_gemm::forward(&geo, xn, &w, &b, &mut one);
                    assert!(
                        bits(&one) == bits(yn),
                        "sample {n} alone, {geo:?} on {isa:?}"
                    );
                    let mut two = vec![f32::NAN; geo.output_len()];
                    threads::within_layers(2, || conv_gemm::forward(&geo, xn, &w, &b, &mut two));
                    assert!(bits(&two) == bits(yn), "two threads, {geo:?} on {isa:?}");
                }
                let mut two = vec![f32::NAN; y.len()];
                threads::within_layers(2, || conv_gemm::forward(&geo, &x, &w, &b, &mut two));
                assert!(
                    bits(&two) == bits(&y),
                    "a batch on two threads, {geo:?} on {isa:?}"
                );
                let mut fused = vec![f32::NAN; y.len()];
                let e = Epilogue::Relu;
                conv_gemm::forward_then(&geo, &x, &w, &b, &mut fused, Some(affine), e);
                let mut apart = y.clone();
                for y in apart.chunks_mut(geo.output_len()) {
                    affine.apply(y, e);
                }
                assert!(bits(&fused) == bits(&apart), "fused, {geo:?} on {isa:?}");
            });
        }
    }
}

/// The weight and bias gradients of a batch in one call (`x` and `g` holding 3 samples one
/// after the other) against the reference summed over the samples, on both kernel sets and
/// every instruction set, and added once to what the buffers hold: the matrix-product
/// kernels sum each value over the whole batch before scaling and adding it. The
/// geometries take each path: taps along the lanes (more than 64 output channels, with
/// AVX-512) with a last block of 5 taps and of 5 pixels (fewer than a vector), and with 522
/// output channels (two blocks of sums, a last run of 2 rows); output channels along the
/// lanes on a map of one panel and of several; F(2×2, 3×3) on 64 tiles (with AVX-512, the
/// channels along the lanes: one vector of them; several samples' 7×7 maps in one block
/// with partial blocks of channels; bands of tile rows with a shorter last one).
#[test]
fn a_batch_of_weight_gradients_is_the_sum_of_its_samples() {
    const SAMPLES: usize = 3;
    let values = layer_values();
    for geo in [
        geo((69, 80, 1), (1, 1, 0), (3, 23)), // taps: 64 + 5 taps, 64 + 5 pixels
        geo((7, 522, 1), (3, 1, 1), (5, 6)),  // taps: two blocks of 512 channels
        geo((24, 70, 1), (3, 2, 1), (23, 21)), // taps: several panels of pixels
        geo((12, 40, 1), (3, 1, 1), (7, 7)),  // channels along the lanes, one panel
        geo((10, 24, 1), (3, 2, 1), (21, 19)), // and several
        geo((16, 16, 1), (3, 1, 1), (16, 16)), // F(2×2, 3×3), one vector of channels
        geo((40, 72, 1), (3, 1, 1), (7, 7)),  // samples in one block, partial channel blocks
        geo((20, 24, 1), (3, 1, 1), (17, 23)), // bands of 5 tile rows, the last of 4
        geo((96, 256, 2), (5, 1, 2), (9, 9)), // two groups
    ] {
        let draw = |len, from| cycle(&values, len, from);
        let (x, g) = (
            draw(SAMPLES * geo.input_len(), 0),
            draw(SAMPLES * geo.output_len(), 3),
        );
        let (w, b) = (draw(geo.weight_len(), 1), draw(geo.c_out, 2));
        let mut r = Reference::default();
        for (x, g) in x.chunks(geo.input_len()).zip(g.chunks(geo.output_len())) {
            let one = reference(&geo, x, &w, &b, g);
            for (sum, one) in [
                (&mut r.gw, &one.gw),
                (&mut r.gw_abs, &one.gw_abs),
                (&mut r.gb, &one.gb),
                (&mut r.gb_abs, &one.gb_abs),
            ] {
                sum.resize(one.len(), 0.0);
                sum.iter_mut().zip(one).for_each(|(s, v)| *s += v);
            }
        }
        let terms = SAMPLES * geo.oh * geo.ow;
        for kernels in &KERNELS {
            for isa in available() {
                with_isa(isa, || {
                    let what = |part: &str| format!("{} {part} of a batch, {geo:?}", kernels.name);
                    let (mut gw, mut gb) = (vec![0.0f32; w.len()], vec![0.0f32; b.len()]);
                    (kernels.weight_grad)(&geo, &x, &g, &mut gw, &mut gb, 1.0);
                    assert_within(&what("weight grad"), isa, &gw, &r.gw, &r.gw_abs, terms);
                    assert_within(&what("bias grad"), isa, &gb, &r.gb, &r.gb_abs, terms);
                    if kernels.name == "gemm" {
                        let (mut gw2, mut gb2) = (vec![0.5f32; w.len()], vec![0.5f32; b.len()]);
                        (kernels.weight_grad)(&geo, &x, &g, &mut gw2, &mut gb2, 1.0);
                        let added = |v: &[f32]| -> Vec<f32> { v.iter().map(|v| 0.5 + v).collect() };
                        assert_eq!(gw2, added(&gw), "{}", what("weight grad added once"));
                        assert_eq!(gb2, added(&gb), "{}", what("bias grad added once"));
                    }
                });
            }
        }
    }
}

/// The forward pass and the input gradient of a batch in one call (`x` and `g` holding 3
/// samples one after the other), on both kernel sets and every instruction set, against
/// the reference of each sample; where one sample alone takes the same path, the same bits;
/// with batch norm and a ReLU fused, the bits of the pass then the map; on two threads
/// (half the samples each), the bits of one. The geometries take each path of a batch: the
/// output channels along the lanes with 9 tiles per sample (which pays for a batch, not for
/// one sample), 16 tiles with a partial second block of channels, one block of 64 channels,
/// a map of 49 tiles with a partial block of channels and of input channels, padding 0;
/// F(2×2, 3×3) with the tiles along the lanes (16 channels); the product on `X̂` one sample
/// after the other.
#[test]
fn a_batch_of_forward_passes_and_input_gradients_equals_its_samples() {
    use constnet::{ChannelAffine, Epilogue, conv_winograd_channels, threads};
    const SAMPLES: usize = 3;
    let values = layer_values();
    for (geo, channels) in [
        (geo((40, 72, 1), (3, 1, 1), (5, 6)), (true, false)),
        (geo((40, 72, 1), (3, 1, 1), (7, 7)), (true, true)),
        (geo((16, 64, 1), (3, 1, 1), (8, 8)), (true, true)),
        (geo((33, 130, 1), (3, 1, 1), (14, 13)), (true, true)),
        (geo((24, 64, 1), (3, 1, 0), (10, 9)), (true, true)),
        (geo((16, 16, 1), (3, 1, 1), (16, 16)), (false, false)),
        (geo((12, 40, 1), (3, 2, 1), (9, 9)), (false, false)),
    ] {
        let pays = (
            conv_winograd_channels::pays_for(&geo, SAMPLES),
            conv_winograd_channels::pays_for(&geo, 1),
        );
        assert_eq!(pays, channels, "{geo:?}");
        let draw = |len, from| cycle(&values, len, from);
        let (x, g) = (
            draw(SAMPLES * geo.input_len(), 0),
            draw(SAMPLES * geo.output_len(), 3),
        );
        let (w, b) = (draw(geo.weight_len(), 1), draw(geo.c_out, 2));
        let [mean, scale, shift] = affine_constants(geo.c_out);
        let affine = ChannelAffine {
            mean: &mean,
            scale: &scale,
            shift: &shift,
        };
        let (k, samples) = (geo.k, |v: &[f32], len: usize| {
            v.chunks(len).map(<[f32]>::to_vec).collect::<Vec<_>>()
        });
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for kernels in &KERNELS {
            for isa in available() {
                with_isa(isa, || {
                    let what = |part: &str| format!("{} {part} of a batch, {geo:?}", kernels.name);
                    let mut y = vec![f32::NAN; SAMPLES * geo.output_len()];
                    (kernels.forward)(&geo, &x, &w, &b, &mut y);
                    let mut gi = vec![f32::NAN; SAMPLES * geo.input_len()];
                    (kernels.input_grad)(&geo, &w, &g, &mut gi);
                    let each = samples(&x, geo.input_len())
                        .into_iter()
                        .zip(samples(&g, geo.output_len()));
                    for (n, (xn, gn)) in each.enumerate() {
                        let r = reference(&geo, &xn, &w, &b, &gn);
                        let yn = &y[n * geo.output_len()..][..geo.output_len()];
                        let gin = &gi[n * geo.input_len()..][..geo.input_len()];
                        let terms = (geo.c_in * k * k + 1, geo.c_out * k * k);
                        assert_within(&what("forward"), isa, yn, &r.y, &r.y_abs, terms.0);
                        assert_within(&what("input grad"), isa, gin, &r.gi, &r.gi_abs, terms.1);
                        if kernels.name == "direct" || channels.0 == channels.1 {
                            let mut one = vec![0.0; geo.output_len()];
                            (kernels.forward)(&geo, &xn, &w, &b, &mut one);
                            assert!(bits(&one) == bits(yn), "{}", what("forward, alone"));
                            let mut one = vec![0.0; geo.input_len()];
                            (kernels.input_grad)(&geo, &w, &gn, &mut one);
                            assert!(bits(&one) == bits(gin), "{}", what("input grad, alone"));
                        }
                    }
                    if kernels.name == "gemm" {
                        let (mut fused, mut two) = (vec![0.0; y.len()], vec![0.0; y.len()]);
                        let e = Epilogue::Relu;
                        conv_gemm::forward_then(&geo, &x, &w, &b, &mut fused, Some(affine), e);
                        let mut apart = y.clone();
                        for y in apart.chunks_mut(geo.output_len()) {
                            affine.apply(y, e);
                        }
                        assert!(bits(&fused) == bits(&apart), "{}", what("fused"));
                        threads::within_layers(2, || {
                            conv_gemm::forward(&geo, &x, &w, &b, &mut two);
                        });
                        assert!(bits(&two) == bits(&y), "{}", what("forward on two threads"));
                    }
                });
            }
        }
    }
}

/// F(2×2, 3×3) (`conv_winograd`, which `conv_gemm::forward` and, at padding 1,
/// `conv_gemm::input_grad` run where it pays, and `conv_winograd_grad`, which
/// `conv_gemm::weight_grad` runs on maps of 64 tiles or more) on every instruction set: the
/// smallest map it takes (8×8), odd output sizes (tiles half off the map), padding 0 and 1, input channels
/// in several blocks, output channels in partial blocks of 4 and in several blocks of 64,
/// tiles in several blocks with a partial last one, and a map of one block of tiles with
/// several blocks of output channels (its inputs transformed once for all of them).
#[test]
fn winograd_equals_the_reference() {
    let values = layer_values();
    for g in [
        geo((16, 16, 1), (3, 1, 1), (8, 8)),
        geo((33, 20, 1), (3, 1, 0), (11, 13)),
        geo((40, 72, 1), (3, 1, 1), (17, 15)),
        geo((20, 18, 1), (3, 1, 1), (30, 35)),
        geo((70, 130, 1), (3, 1, 1), (16, 16)),
        geo((40, 136, 1), (3, 1, 1), (13, 14)), // one block of 49 tiles, 3 of output channels
    ] {
        assert!(conv_winograd::pays(&g), "{g:?}");
        assert_eq!(conv_winograd::pays_input_grad(&g), g.pad == 1, "{g:?}");
        let tiles = g.oh.div_ceil(2) * g.ow.div_ceil(2);
        assert_eq!(
            conv_winograd_grad::pays_weight_grad(&g),
            tiles >= 64,
            "{g:?}"
        );
        check_kernels_of(&conv_gemm::GEMM, &g, &values);
    }
}

/// A geometry that F(2×2, 3×3) takes: 16 to 36 channels in, 16 to 72 out (past one block of
/// 64), padding 0 or 1, maps of any parity from 3 to 30 rows and 40 columns.
fn winograd_geometry() -> impl Strategy<Value = ConvGeometry> {
    (
        (16usize..=36, 16usize..=72),
        0usize..=1,
        (3usize..=30, 3usize..=40),
    )
        .prop_map(|((c_in, c_out), pad, (h, w))| geo((c_in, c_out, 1), (3, 1, pad), (h, w)))
        .prop_filter("F(2×2, 3×3) pays", conv_winograd::pays)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// F(2×2, 3×3) on random geometries it takes, every pass and instruction set, against
    /// the `f64` reference.
    #[test]
    fn winograd_equals_the_reference_for_any_geometry_it_takes(
        geo in winograd_geometry(),
        v in values(),
    ) {
        check_kernels_of(&conv_gemm::GEMM, &geo, &v);
    }
}

/// F(4×4, 3×3) (`conv_winograd4`, which `conv_gemm::forward` and, at padding 1,
/// `conv_gemm::input_grad` run on maps of 53 columns or more) on every instruction set: the
/// narrowest map it takes, widths and heights that are not multiples of 4 (tiles partly off
/// the map), padding 0 and 1, input channels in two blocks of 32 with a partial one, output
/// channels in two blocks of 64 with a partial block of 4, tiles in several blocks; and the
/// geometries next to it that stay with F(2×2, 3×3).
#[test]
fn winograd4_equals_the_reference() {
    let values = layer_values();
    for g in [
        geo((16, 32, 1), (3, 1, 1), (5, 53)),
        geo((33, 70, 1), (3, 1, 0), (11, 58)),
        geo((40, 36, 1), (3, 1, 1), (13, 61)),
        geo((70, 130, 1), (3, 1, 1), (9, 56)),
    ] {
        assert!(conv_winograd4::pays(&g), "{g:?}");
        assert_eq!(
            conv_winograd4::pays_input_grad(&g),
            g.pad == 1 && g.c_in >= conv_winograd4::MIN_OUT,
            "{g:?}"
        );
        check_kernels_of(&conv_gemm::GEMM, &g, &values);
    }
    for g in [
        geo((16, 32, 1), (3, 1, 1), (56, 52)), // 13 tiles to a row
        geo((16, 16, 1), (3, 1, 1), (56, 56)), // 16 output channels
    ] {
        assert!(
            conv_winograd::pays(&g) && !conv_winograd4::pays(&g),
            "{g:?}"
        );
    }
}

/// A geometry that F(4×4, 3×3) takes: 16 to 40 channels in, 32 to 72 out (past one block
/// of 64), padding 0 or 1, maps of 3 to 12 rows and 53 to 70 columns.
fn winograd4_geometry() -> impl Strategy<Value = ConvGeometry> {
    (
        (16usize..=40, 32usize..=72),
        0usize..=1,
        (3usize..=12, 53usize..=70),
    )
        .prop_map(|((c_in, c_out), pad, (h, w))| geo((c_in, c_out, 1), (3, 1, pad), (h, w)))
        .prop_filter("F(4×4, 3×3) pays", conv_winograd4::pays)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// F(4×4, 3×3) on random geometries it takes, every pass and instruction set, against
    /// the `f64` reference.
    #[test]
    fn winograd4_equals_the_reference_for_any_geometry_it_takes(
        geo in winograd4_geometry(),
        v in values(),
    ) {
        check_kernels_of(&conv_gemm::GEMM, &geo, &v);
    }
}

// The larger layers, at their real sizes, on the matrix-product kernels only (the direct
// ones take seconds): several blocks of taps (up to 4,608 rows), of output channels (512)
// and of pixels (up to 50,176), two groups. Three tests, so that the test threads share them.

/// ResNet-18's stem, a layer1 convolution, its last projection and a layer4 convolution.
#[test]
fn gemm_kernels_equal_the_reference_on_resnet18_layers() {
    let values = layer_values();
    for g in [
        geo((3, 64, 1), (7, 2, 3), (224, 224)),  // ResNet-18's stem
        geo((64, 64, 1), (3, 1, 1), (56, 56)),   // ResNet-18's layer1
        geo((256, 512, 1), (1, 2, 0), (14, 14)), // its last projection
        geo((512, 512, 1), (3, 1, 1), (7, 7)),   // its layer4
    ] {
        check_kernels_of(&conv_gemm::GEMM, &g, &values);
    }
}

/// VGG's first convolution, a VGG-style 3×3 and AlexNet's grouped conv2.
#[test]
fn gemm_kernels_equal_the_reference_on_vgg_and_alexnet_layers() {
    let values = layer_values();
    for g in [
        geo((3, 64, 1), (3, 1, 1), (224, 224)),  // VGG's first
        geo((128, 128, 1), (3, 1, 1), (28, 28)), // a VGG-style 3×3 of 1,152 taps
        geo((96, 256, 2), (5, 1, 2), (27, 27)),  // AlexNet's grouped conv2
    ] {
        check_kernels_of(&conv_gemm::GEMM, &g, &values);
    }
}

/// The geometries of the other networks that none of the tests above has, each on the
/// kernels its layer runs (`conv_gemm::kernels_for`): AlexNet's 11×11/4 stem, ZF Net's 7×7/2
/// with padding 1 and its unpadded 5×5/2, GoogLeNet's 1×1 in inception 3a, and a DenseNet
/// layer's 3×3 growth convolution. Channels, kernel, stride and padding are the layer's; the
/// maps are cropped (to keep the scalar instruction set and the `f64` reference quick), with
/// the same remainder of `(in + 2·pad − kernel) mod stride`, so the last window stops where
/// the real layer's does.
#[test]
fn kernels_equal_the_reference_on_alexnet_zfnet_googlenet_and_densenet_layers() {
    let values = layer_values();
    for g in [
        geo((3, 64, 1), (11, 4, 2), (60, 60)), // torchvision AlexNet's features.0 (224)
        geo((3, 96, 1), (7, 2, 1), (48, 48)),  // ZF Net's conv1 (224 → 110)
        geo((96, 256, 1), (5, 2, 0), (19, 19)), // ZF Net's conv2 (55 → 26)
        geo((192, 64, 1), (1, 1, 0), (28, 28)), // GoogLeNet's inception3a.branch1
        geo((128, 32, 1), (3, 1, 1), (20, 20)), // DenseNet's denseblock1 conv2 (56)
    ] {
        check_kernels_of(conv_gemm::kernels_for(&g), &g, &values);
    }
}

/// The matrix-product kernels give the same bits on every call, from any thread, with
/// other threads running them at the same time: no sum depends on anything but the
/// geometry and the numbers.
#[test]
fn gemm_kernels_are_deterministic_across_calls_and_threads() {
    let g = geo((32, 64, 1), (3, 2, 1), (17, 15));
    let x: Vec<f32> = (0..g.input_len())
        .map(|i| ((i * 31 % 97) as f32).sin())
        .collect();
    let w: Vec<f32> = (0..g.weight_len())
        .map(|i| ((i * 17 % 89) as f32).cos())
        .collect();
    let dy: Vec<f32> = (0..g.output_len())
        .map(|i| ((i * 7 % 83) as f32).sin())
        .collect();
    let run = || {
        let mut y = vec![0.0f32; g.output_len()];
        conv_gemm::forward(&g, &x, &w, &[0.25; 64], &mut y);
        let (mut gw, mut gb) = (vec![0.0f32; g.weight_len()], vec![0.0f32; 64]);
        conv_gemm::weight_grad(&g, &x, &dy, &mut gw, &mut gb, 1.0);
        let mut gi = vec![0.0f32; g.input_len()];
        conv_gemm::input_grad(&g, &w, &dy, &mut gi);
        [y, gw, gb, gi].map(|v| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
    };
    let first = run();
    assert_eq!(run(), first, "a second call");
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4).map(|_| scope.spawn(run)).collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), first, "another thread");
        }
    });
}

/// `conv_gemm::forward_then` (batch norm and a ReLU, or a ReLU alone, applied to the sums in
/// registers, as `infer` fuses them) gives the bits of `forward` followed by the map as a
/// pass, on every instruction set: several blocks of taps (the map applies after the last only), partial
/// pixel vectors, two groups, both of the threads' splits (run one after the other without
/// the `threads` feature), a NaN input, and channels the ReLU clears.
#[test]
fn forward_then_is_forward_and_the_channel_map_bit_for_bit() {
    use constnet::{ChannelAffine, Epilogue, threads};
    let cases = [
        (geo((32, 64, 1), (3, 2, 1), (17, 15)), 1),
        (geo((8, 16, 2), (3, 1, 1), (9, 9)), 1),
        (geo((64, 64, 1), (3, 1, 1), (56, 56)), 2), // F(2×2, 3×3), split by channels
        (geo((32, 64, 2), (3, 1, 1), (56, 56)), 2), // on `X̂` (two groups), by pixels
        (geo((512, 512, 1), (3, 1, 1), (7, 7)), 2), // split by channels
        // F(2×2, 3×3) with the output channels along the lanes, split by channels.
        (geo((256, 256, 1), (3, 1, 1), (14, 14)), 2),
    ];
    for (g, threads) in cases {
        let mut x: Vec<f32> = (0..g.input_len())
            .map(|i| ((i * 31 % 97) as f32).sin())
            .collect();
        x[g.input_len() / 3] = f32::NAN;
        let w: Vec<f32> = (0..g.weight_len())
            .map(|i| ((i * 17 % 89) as f32).cos() * 0.1)
            .collect();
        let b: Vec<f32> = (0..g.c_out).map(|o| (o as f32 * 0.37).sin()).collect();
        let constants =
            |k: f32| -> Vec<f32> { (0..g.c_out).map(|o| ((o as f32 + k) * 1.3).sin()).collect() };
        let (mean, scale, shift) = (constants(1.0), constants(2.0), constants(3.0));
        let affine = ChannelAffine {
            mean: &mean,
            scale: &scale,
            shift: &shift,
        };
        for isa in available() {
            for e in [Epilogue::Identity, Epilogue::Relu] {
                let (mut fused, mut apart) = (vec![0.0; g.output_len()], vec![0.0; g.output_len()]);
                with_isa(isa, || {
                    threads::within_layers(threads, || {
                        conv_gemm::forward_then(&g, &x, &w, &b, &mut fused, Some(affine), e);
                        conv_gemm::forward(&g, &x, &w, &b, &mut apart);
                    })
                });
                affine.apply(&mut apart, e);
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert!(bits(&fused) == bits(&apart), "{g:?} on {isa:?}, {e:?}");
                assert!(fused.iter().any(|v| v.is_nan()), "{g:?}: the NaN reached");
                if e == Epilogue::Relu {
                    assert!(fused.iter().filter(|v| **v == 0.0).count() > g.output_len() / 10);
                    // A ReLU alone (VGG's and AlexNet's convolutions).
                    with_isa(isa, || {
                        threads::within_layers(threads, || {
                            conv_gemm::forward_then(&g, &x, &w, &b, &mut fused, None, e);
                            conv_gemm::forward(&g, &x, &w, &b, &mut apart);
                        })
                    });
                    e.apply(&mut apart);
                    assert!(bits(&fused) == bits(&apart), "{g:?} on {isa:?}, ReLU alone");
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "the output has the wrong length")]
fn kernels_check_the_slice_lengths() {
    let geo = ConvGeometry {
        c_in: 1,
        c_out: 1,
        groups: 1,
        k: 1,
        stride: 1,
        pad: 0,
        h: 2,
        w: 2,
        oh: 2,
        ow: 2,
    };
    conv_kernel::forward(&geo, &[0.0; 4], &[1.0], &[0.0], &mut [0.0; 3]);
}

/// A weight gradient's batch has as many inputs as output gradients.
#[test]
#[should_panic(expected = "the output gradient has the wrong length")]
fn a_weight_gradient_batch_needs_an_output_gradient_per_input() {
    let geo = geo((1, 1, 1), (1, 1, 0), (2, 2)); // 4 input values, 4 output values
    let (mut gw, mut gb) = ([0.0f32; 1], [0.0f32; 1]);
    conv_gemm::weight_grad(&geo, &[0.0; 8], &[0.0; 4], &mut gw, &mut gb, 1.0);
}

// ---------------------------------------------------------------------------------------------
// The layers in f32 (the kernels) against themselves in f64.
// ---------------------------------------------------------------------------------------------

use constnet::{
    BatchLayer, Conv2d, DepthwiseConv2d, GroupedConv2d, Layer, SgdLayer, Tensor, conv_out,
    zeroed_box,
};

/// `values` from `from`, every 7th, cyclically: `len` numbers in [−1, 1].
fn pick(values: &[f32], len: usize, from: usize) -> impl Iterator<Item = f32> + '_ {
    (0..len).map(move |i| values[(from + 7 * i) % values.len()])
}

/// The f64 twin of an f32 tensor, its values widened, or their absolute values.
fn widen<X: Tensor<Scalar = f32>, Y: Tensor<Scalar = f64>>(x: &X, abs: bool) -> Box<Y> {
    let mut y = zeroed_box::<Y>();
    for (y, &x) in y.flat_mut().iter_mut().zip(x.flat()) {
        *y = if abs {
            f64::from(x.abs())
        } else {
            f64::from(x)
        };
    }
    y
}

/// A layer `L32` in f32 (the SIMD kernels, or Conv2d's LeNet kernels where they apply)
/// against `L64`, the same layer in f64 (the reference loops), on every instruction set:
/// forward, weight, bias and input gradients within the bound of the module (with
/// `Σ|term|` from the reference on absolute values); a batch of two equal to two single
/// passes; and the fused SGD step equal to `backward` then `w − lr·∂E/∂w`, to the bit.
fn check_pair<L32, L64>(geo: &ConvGeometry, values: &[f32])
where
    L32: SgdLayer<Scalar = f32, Workspace = ()> + BatchLayer<2>,
    L64: Layer<Scalar = f64, Workspace = ()>,
{
    let mut l32 = zeroed_box::<L32>();
    for i in 0..L32::PARAM_TENSORS {
        let p = l32.param_mut(i);
        let len = p.len();
        p.iter_mut()
            .zip(pick(values, len, 11 * i))
            .for_each(|(p, v)| *p = v);
    }
    let (mut l64, mut abs) = (zeroed_box::<L64>(), zeroed_box::<L64>());
    for i in 0..L32::PARAM_TENSORS {
        for ((w, a), &v) in l64
            .param_mut(i)
            .iter_mut()
            .zip(abs.param_mut(i))
            .zip(l32.param(i))
        {
            (*w, *a) = (f64::from(v), f64::from(v.abs()));
        }
    }
    let mut x = zeroed_box::<L32::Input>();
    let len = x.flat().len();
    x.flat_mut()
        .iter_mut()
        .zip(pick(values, len, 3))
        .for_each(|(x, v)| *x = v);
    let mut g = zeroed_box::<L32::Output>();
    let len = g.flat().len();
    g.flat_mut()
        .iter_mut()
        .zip(pick(values, len, 5))
        .for_each(|(g, v)| *g = v);

    // The reference, and Σ|term| of every value.
    let (x64, g64) = (
        widen::<_, L64::Input>(&*x, false),
        widen::<_, L64::Output>(&*g, false),
    );
    let (xa, ga) = (
        widen::<_, L64::Input>(&*x, true),
        widen::<_, L64::Output>(&*g, true),
    );
    let (mut y64, mut ya) = (zeroed_box::<L64::Output>(), zeroed_box::<L64::Output>());
    l64.forward(&x64, &mut y64, &mut ());
    abs.forward(&xa, &mut ya, &mut ());
    let (mut grads64, mut gradsa) = (zeroed_box::<L64>(), zeroed_box::<L64>());
    let (mut gi64, mut gia) = (zeroed_box::<L64::Input>(), zeroed_box::<L64::Input>());
    l64.backward(&x64, &mut (), &g64, Some(&mut gi64), &mut grads64);
    abs.backward(&xa, &mut (), &ga, Some(&mut gia), &mut gradsa);

    let (cig, cog, kk) = (geo.in_per_group(), geo.out_per_group(), geo.k * geo.k);
    let pixels = geo.oh * geo.ow;
    for isa in available() {
        with_isa(isa, || {
            let mut y = zeroed_box::<L32::Output>();
            y.flat_mut().fill(f32::NAN);
            l32.forward(&x, &mut y, &mut ());
            assert_within(
                "forward",
                isa,
                y.flat(),
                y64.flat(),
                ya.flat(),
                cig * kk + 1,
            );
            let mut grads = zeroed_box::<L32>();
            let mut gi = zeroed_box::<L32::Input>();
            gi.flat_mut().fill(f32::NAN);
            l32.backward(&x, &mut (), &g, Some(&mut gi), &mut grads);
            for (i, what) in ["weight grad", "bias grad"].into_iter().enumerate() {
                let (got, want, scale) = (grads.param(i), grads64.param(i), gradsa.param(i));
                assert_within(what, isa, got, want, scale, pixels);
            }
            assert_within(
                "input grad",
                isa,
                gi.flat(),
                gi64.flat(),
                gia.flat(),
                cog * kk,
            );

            // A batch of the same sample twice: the same outputs and input gradients, and
            // twice the parameter gradients (within the bound of a sum over both samples:
            // the matrix-product kernels sum each over the batch before adding it).
            let mut xs = zeroed_box::<[L32::Input; 2]>();
            let mut gs = zeroed_box::<[L32::Output; 2]>();
            (xs[0], xs[1], gs[0], gs[1]) = (*x, *x, *g, *g);
            let mut ys = zeroed_box::<[L32::Output; 2]>();
            let mut gis = zeroed_box::<[L32::Input; 2]>();
            let mut ws = zeroed_box::<<L32 as BatchLayer<2>>::BatchWorkspace>();
            let mut batch_grads = zeroed_box::<L32>();
            l32.forward_batch(&xs, &mut ys, &mut ws);
            l32.backward_batch(&xs, &mut ws, &gs, Some(&mut gis), &mut batch_grads);
            for n in 0..2 {
                assert_eq!(ys[n].flat(), y.flat(), "batch forward on {isa:?}");
                assert_eq!(gis[n].flat(), gi.flat(), "batch input grad on {isa:?}");
            }
            for (i, what) in ["batch weight grad", "batch bias grad"]
                .into_iter()
                .enumerate()
            {
                let twice = |v: &[f64]| -> Vec<f64> { v.iter().map(|v| 2.0 * v).collect() };
                let (want, scale) = (twice(grads64.param(i)), twice(gradsa.param(i)));
                assert_within(what, isa, batch_grads.param(i), &want, &scale, 2 * pixels);
            }

            // The fused SGD step: the input gradient with the old weights, then the step.
            let lr = 0.375f32;
            let mut stepped = zeroed_box::<L32>();
            for i in 0..L32::PARAM_TENSORS {
                stepped.param_mut(i).copy_from_slice(l32.param(i));
            }
            let mut gi_sgd = zeroed_box::<L32::Input>();
            stepped.backward_sgd(&x, &mut (), &g, Some(&mut gi_sgd), lr);
            assert_eq!(gi_sgd.flat(), gi.flat(), "SGD input grad on {isa:?}");
            for i in 0..L32::PARAM_TENSORS {
                let want: Vec<f32> = (l32.param(i).iter().zip(grads.param(i)))
                    .map(|(&w, &g)| w - lr * g)
                    .collect();
                assert_eq!(stepped.param(i), want, "SGD step of tensor {i} on {isa:?}");
            }
        });
    }
}

/// `GroupedConv2d` with `G` groups.
macro_rules! grouped {
    ($v:expr, $ci:literal => $co:literal, G $g:literal, $k:literal, S $s:literal, P $p:literal, $h:literal x $w:literal) => {{
        const OH: usize = conv_out($h, $k, $s, $p);
        const OW: usize = conv_out($w, $k, $s, $p);
        type G<T> = GroupedConv2d<T, $ci, $co, $g, { $ci / $g }, $k, $s, $p, $h, $w, OH, OW>;
        check_pair::<G<f32>, G<f64>>(&G::<f32>::GEOMETRY, $v);
    }};
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// AlexNet's two groups: its 5×5 and its 3×3 grouped layers, and a stride.
    #[test]
    fn two_groups_equal_the_reference(v in values()) {
        grouped!(&v, 4 => 6, G 2, 5, S 1, P 2, 9 x 9);
        grouped!(&v, 4 => 6, G 2, 3, S 1, P 1, 7 x 7);
        grouped!(&v, 6 => 4, G 2, 3, S 2, P 1, 9 x 8);
    }

    /// MobileNet's depthwise 3×3 convolutions, stride 1 and 2, padding 1.
    #[test]
    fn depthwise_equals_the_reference(v in values()) {
        grouped!(&v, 5 => 5, G 5, 3, S 1, P 1, 9 x 9);
        grouped!(&v, 5 => 5, G 5, 3, S 2, P 1, 9 x 9);
    }
}

// ---------------------------------------------------------------------------------------------
// The reference loops of GroupedConv2d, in f64.
// ---------------------------------------------------------------------------------------------

/// Fills a flat tensor with `values` from `from`.
fn fill64(x: &mut [f64], values: &[f32], from: usize) {
    let len = x.len();
    x.iter_mut()
        .zip(pick(values, len, from))
        .for_each(|(x, v)| *x = f64::from(v));
}

/// `GroupedConv2d` with one group is `Conv2d`, to the last bit: forward, input gradient, and
/// parameter gradients added to buffers that already hold a gradient.
fn check_one_group_is_conv2d<C, G>(values: &[f32])
where
    C: Layer<Scalar = f64, Workspace = ()>,
    G: Layer<Scalar = f64, Workspace = (), Input = C::Input, Output = C::Output>,
{
    let (mut c, mut g) = (zeroed_box::<C>(), zeroed_box::<G>());
    for i in 0..C::PARAM_TENSORS {
        fill64(c.param_mut(i), values, 11 * i);
        g.param_mut(i).copy_from_slice(c.param(i));
    }
    let mut x = zeroed_box::<C::Input>();
    fill64(x.flat_mut(), values, 3);
    let mut r = zeroed_box::<C::Output>();
    fill64(r.flat_mut(), values, 5);
    let (mut yc, mut yg) = (zeroed_box::<C::Output>(), zeroed_box::<C::Output>());
    c.forward(&x, &mut yc, &mut ());
    g.forward(&x, &mut yg, &mut ());
    assert_eq!(yc.flat(), yg.flat(), "forward");
    let (mut gc, mut gg) = (zeroed_box::<C>(), zeroed_box::<G>());
    for i in 0..C::PARAM_TENSORS {
        fill64(gc.param_mut(i), values, 13 + i);
        fill64(gg.param_mut(i), values, 13 + i);
    }
    let (mut gic, mut gig) = (zeroed_box::<C::Input>(), zeroed_box::<C::Input>());
    c.backward(&x, &mut (), &r, Some(&mut gic), &mut gc);
    g.backward(&x, &mut (), &r, Some(&mut gig), &mut gg);
    assert_eq!(gic.flat(), gig.flat(), "input gradient");
    for i in 0..C::PARAM_TENSORS {
        assert_eq!(gc.param(i), gg.param(i), "parameter gradient {i}");
    }
}

/// `G` groups are `G` convolutions side by side: group `k`'s outputs are `Conv2d` of group
/// `k`'s inputs with group `k`'s filters, to the last bit, in the forward and the backward
/// pass.
#[test]
fn groups_are_convolutions_side_by_side() {
    type Grouped = GroupedConv2d<f64, 4, 6, 2, 2, 3, 2, 1, 7, 6, 4, 3>;
    type Part = Conv2d<f64, 2, 3, 3, 2, 1, 7, 6, 4, 3>;
    let values: Vec<f32> = (0..997)
        .map(|i| ((i * 53 % 97) as f32 / 48.0) - 1.0)
        .collect();
    let mut grouped = zeroed_box::<Grouped>();
    fill64(grouped.param_mut(0), &values, 0);
    fill64(grouped.param_mut(1), &values, 1);
    let mut x = zeroed_box::<[[[f64; 6]; 7]; 4]>();
    fill64(x.flat_mut(), &values, 2);
    let mut r = zeroed_box::<[[[f64; 3]; 4]; 6]>();
    fill64(r.flat_mut(), &values, 3);
    let mut y = zeroed_box::<[[[f64; 3]; 4]; 6]>();
    grouped.forward(&x, &mut y, &mut ());
    let mut grads = zeroed_box::<Grouped>();
    let mut gi = zeroed_box::<[[[f64; 6]; 7]; 4]>();
    grouped.backward(&x, &mut (), &r, Some(&mut gi), &mut grads);
    for k in 0..2 {
        let mut part = zeroed_box::<Part>();
        part.weight
            .copy_from_slice(&grouped.weight[3 * k..3 * k + 3]);
        part.bias.copy_from_slice(&grouped.bias[3 * k..3 * k + 3]);
        let xk: [[[f64; 6]; 7]; 2] = x[2 * k..2 * k + 2].try_into().unwrap();
        let rk: [[[f64; 3]; 4]; 3] = r[3 * k..3 * k + 3].try_into().unwrap();
        let mut yk = [[[0.0; 3]; 4]; 3];
        part.forward(&xk, &mut yk, &mut ());
        assert_eq!(yk[..], y[3 * k..3 * k + 3], "group {k} forward");
        let mut part_grads = zeroed_box::<Part>();
        let mut gik = [[[0.0; 6]; 7]; 2];
        part.backward(&xk, &mut (), &rk, Some(&mut gik), &mut part_grads);
        assert_eq!(gik[..], gi[2 * k..2 * k + 2], "group {k} input gradient");
        assert_eq!(
            part_grads.weight[..],
            grads.weight[3 * k..3 * k + 3],
            "group {k} weights"
        );
        assert_eq!(
            part_grads.bias[..],
            grads.bias[3 * k..3 * k + 3],
            "group {k} biases"
        );
    }
}

/// The f64 SGD step equals `backward` into zeroed gradients then `Sgd::step`, to the bit.
#[test]
fn the_f64_sgd_step_equals_backward_then_a_step() {
    type L = DepthwiseConv2d<f64, 3, 3, 2, 1, 7, 6, 4, 3>;
    let values: Vec<f32> = (0..997)
        .map(|i| ((i * 29 % 89) as f32 / 44.0) - 1.0)
        .collect();
    let mut layer = zeroed_box::<L>();
    fill64(layer.param_mut(0), &values, 0);
    fill64(layer.param_mut(1), &values, 1);
    let mut x = zeroed_box::<[[[f64; 6]; 7]; 3]>();
    fill64(x.flat_mut(), &values, 2);
    let mut r = zeroed_box::<[[[f64; 3]; 4]; 3]>();
    fill64(r.flat_mut(), &values, 3);
    let mut grads = zeroed_box::<L>();
    let mut gi = zeroed_box::<[[[f64; 6]; 7]; 3]>();
    layer.backward(&x, &mut (), &r, Some(&mut gi), &mut grads);
    let mut stepped = layer.clone();
    let mut gi_sgd = zeroed_box::<[[[f64; 6]; 7]; 3]>();
    stepped.backward_sgd(&x, &mut (), &r, Some(&mut gi_sgd), 0.1);
    constnet::Sgd { lr: 0.1 }.step(&mut *layer, &grads);
    assert_eq!(*stepped, *layer);
    assert_eq!(*gi_sgd, *gi);
}

#[test]
fn one_group_is_conv2d_in_f64() {
    let values: Vec<f32> = (0..997)
        .map(|i| ((i * 41 % 103) as f32 / 51.0) - 1.0)
        .collect();
    check_one_group_is_conv2d::<
        Conv2d<f64, 3, 4, 3, 2, 1, 9, 8, 5, 4>,
        GroupedConv2d<f64, 3, 4, 1, 3, 3, 2, 1, 9, 8, 5, 4>,
    >(&values);
    check_one_group_is_conv2d::<
        Conv2d<f64, 3, 4, 7, 2, 3, 13, 11, 7, 6>,
        GroupedConv2d<f64, 3, 4, 1, 3, 7, 2, 3, 13, 11, 7, 6>,
    >(&values);
    check_one_group_is_conv2d::<
        Conv2d<f64, 4, 2, 1, 1, 0, 5, 6, 5, 6>,
        GroupedConv2d<f64, 4, 2, 1, 4, 1, 1, 0, 5, 6, 5, 6>,
    >(&values);
}

/// A grouped convolution's state_dict entries are PyTorch's: `weight` of shape
/// `[C_out, C_in / groups, K, K]` and `bias`, and they load back.
#[cfg(feature = "safetensors")]
#[test]
fn grouped_weights_have_pytorchs_names_and_shapes() {
    use constnet::state_dict::{load_state_dict, save_state_dict};
    use constnet::{Named, TensorKind, name, tensor_names};
    use rand::SeedableRng;
    name!(Conv = "conv2");
    type Net = Named<Conv, GroupedConv2d<f32, 4, 6, 2, 2, 3, 1, 1, 5, 5, 5, 5>>;
    assert_eq!(tensor_names::<Net>(), ["conv2.weight", "conv2.bias"]);
    let mut net = zeroed_box::<Net>();
    net.init(&mut rand::rngs::StdRng::seed_from_u64(7));
    net.param_mut(1).fill(0.25);
    assert_eq!(net.tensor_shape(TensorKind::Param, 0).dims(), [6, 2, 3, 3]);
    assert_eq!(net.tensor_shape(TensorKind::Param, 1).dims(), [6]);
    let bytes = save_state_dict(&*net).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("conv2.weight").unwrap().shape(), [6, 2, 3, 3]);
    assert_eq!(file.tensor("conv2.bias").unwrap().shape(), [6]);
    let mut copy = zeroed_box::<Net>();
    load_state_dict(&mut *copy, &bytes).unwrap();
    assert_eq!(copy.param(0), net.param(0));
    assert_eq!(copy.param(1), net.param(1));
}

// ---------------------------------------------------------------------------------------------
// Finite differences, with the harness and tolerances of `gradients.rs`.
// ---------------------------------------------------------------------------------------------

use crate::gradients::{ATOL_LAYER, CASES, check_layer, draw, smooth};

/// 4 → 6 channels in 2 groups, 3×3 at stride 2 with padding 1, on a non-square 7×6 map.
type GroupedFd = GroupedConv2d<f64, 4, 6, 2, 2, 3, 2, 1, 7, 6, 4, 3>;
/// 3 channels, 3×3, stride 1, padding 1, on a non-square 5×6 map.
type DepthwiseFd = DepthwiseConv2d<f64, 3, 3, 1, 1, 5, 6, 5, 6>;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn grouped_conv2d_gradients_match_finite_differences(d in draw::<GroupedFd>(-1.0..1.0)) {
        check_layer::<GroupedFd>(&d, ATOL_LAYER, smooth)?;
    }

    #[test]
    fn depthwise_conv2d_gradients_match_finite_differences(d in draw::<DepthwiseFd>(-1.0..1.0)) {
        check_layer::<DepthwiseFd>(&d, ATOL_LAYER, smooth)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Conv2d: every geometry its LeNet-sized kernels do not take runs the kernels above.
// ---------------------------------------------------------------------------------------------

/// `Conv2d` and `GroupedConv2d` with one group, `CI` → `CO` channels, a `K`×`K` kernel at
/// stride `S` with padding `P`, over `H`×`W` maps.
macro_rules! dense {
    ($v:expr, $ci:literal => $co:literal, $k:literal, S $s:literal, P $p:literal, $h:literal x $w:literal) => {{
        const OH: usize = conv_out($h, $k, $s, $p);
        const OW: usize = conv_out($w, $k, $s, $p);
        type C<T> = Conv2d<T, $ci, $co, $k, $s, $p, $h, $w, OH, OW>;
        type G<T> = GroupedConv2d<T, $ci, $co, 1, $ci, $k, $s, $p, $h, $w, OH, OW>;
        check_pair::<C<f32>, C<f64>>(&G::<f32>::GEOMETRY, $v);
        check_pair::<G<f32>, G<f64>>(&G::<f32>::GEOMETRY, $v);
    }};
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// VGG's and ResNet's 3×3 convolutions, padding 1, stride 1 and 2; odd, non-square maps.
    #[test]
    fn three_by_three_padding_one_equals_the_reference(v in values()) {
        dense!(&v, 3 => 5, 3, S 1, P 1, 9 x 9);
        dense!(&v, 3 => 5, 3, S 2, P 1, 9 x 11);
        // a row of more than one pass of 64 pixels
        dense!(&v, 2 => 3, 3, S 1, P 1, 3 x 70);
    }

    /// ResNet's and GoogLeNet's 1×1 convolutions, stride 1 (Conv2d's LeNet kernels take the
    /// 7×9 map, the new kernel the 5×5 one) and stride 2 (ResNet's downsampling shortcut).
    #[test]
    fn one_by_one_equals_the_reference(v in values()) {
        dense!(&v, 4 => 6, 1, S 1, P 0, 7 x 9);
        dense!(&v, 4 => 6, 1, S 1, P 0, 5 x 5);
        dense!(&v, 4 => 6, 1, S 2, P 0, 9 x 7);
        // more than one block of 16 output channels
        dense!(&v, 3 => 20, 1, S 1, P 0, 5 x 5);
    }

    /// GoogLeNet's and AlexNet's 5×5 convolutions with padding 2.
    #[test]
    fn five_by_five_padding_two_equals_the_reference(v in values()) {
        dense!(&v, 3 => 4, 5, S 1, P 2, 11 x 9);
    }

    /// ResNet's and GoogLeNet's 7×7 stem at stride 2 with padding 3.
    #[test]
    fn seven_by_seven_stride_two_equals_the_reference(v in values()) {
        dense!(&v, 3 => 4, 7, S 2, P 3, 13 x 11);
    }

    /// AlexNet's 11×11 stem at stride 4 with padding 2 (torchvision's).
    #[test]
    fn eleven_by_eleven_stride_four_equals_the_reference(v in values()) {
        dense!(&v, 3 => 4, 11, S 4, P 2, 27 x 23);
    }
}

/// ResNet- and VGG-sized layers run in a thread with a 2 MiB stack: the kernels keep no
/// layer-sized buffer there (Conv2d's LeNet-sized kernels, which do, are not used for them),
/// and the fused SGD step builds no gradient there.
#[test]
fn big_convolutions_run_on_a_small_stack() {
    fn run<L: SgdLayer<Scalar = f32, Workspace = ()>>() {
        let mut layer = zeroed_box::<L>();
        layer.param_mut(1).fill(0.5);
        let x = zeroed_box::<L::Input>();
        let mut y = zeroed_box::<L::Output>();
        layer.forward(&x, &mut y, &mut ());
        assert!(y.flat().iter().all(|&y| y == 0.5));
        let mut grads = zeroed_box::<L>();
        let mut gi = zeroed_box::<L::Input>();
        layer.backward(&x, &mut (), &y, Some(&mut gi), &mut grads);
        let pixels = (L::Output::LEN / layer.param(1).len()) as f32;
        assert!(grads.param(1).iter().all(|&g| g == 0.5 * pixels));
        layer.backward_sgd(&x, &mut (), &y, Some(&mut gi), 1.0);
        assert!(layer.param(1).iter().all(|&b| b == 0.5 - 0.5 * pixels));
    }
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            run::<Conv2d<f32, 64, 64, 1, 1, 0, 56, 56, 56, 56>>(); // ResNet's 1×1
            run::<Conv2d<f32, 32, 32, 3, 1, 1, 56, 56, 56, 56>>(); // VGG's 3×3
            run::<DepthwiseConv2d<f32, 64, 3, 2, 1, 56, 56, 28, 28>>(); // MobileNet's
            // F(2×2, 3×3) with the channels along the lanes (its buffers, ~0.7 MB; on
            // 14×14, the weight gradient too).
            run::<Conv2d<f32, 64, 64, 3, 1, 1, 8, 8, 8, 8>>();
            run::<Conv2d<f32, 256, 256, 3, 1, 1, 14, 14, 14, 14>>();
        })
        .unwrap()
        .join()
        .unwrap();
}
