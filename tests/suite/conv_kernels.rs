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

use constnet::conv_kernel::{self, ConvGeometry};
use constnet::simd::{Isa, with_isa};
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
    for (o, &bias) in b.iter().enumerate() {
        let group = o / cog;
        for oy in 0..geo.oh {
            for ox in 0..geo.ow {
                let at = (o * geo.oh + oy) * geo.ow + ox;
                let go = f64::from(g[at]);
                let (mut y, mut y_abs) = (f64::from(bias), f64::from(bias).abs());
                r.gb[o] += go;
                r.gb_abs[o] += go.abs();
                for ci in 0..cig {
                    let c = group * cig + ci;
                    for i in 0..k {
                        for j in 0..k {
                            let (Some(row), Some(col)) = (
                                (oy * geo.stride + i).checked_sub(geo.pad),
                                (ox * geo.stride + j).checked_sub(geo.pad),
                            ) else {
                                continue;
                            };
                            if row >= geo.h || col >= geo.w {
                                continue;
                            }
                            let xi = (c * geo.h + row) * geo.w + col;
                            let wi = ((o * cig + ci) * k + i) * k + j;
                            let (xv, wv) = (f64::from(x[xi]), f64::from(w[wi]));
                            y += wv * xv;
                            y_abs += (wv * xv).abs();
                            r.gw[wi] += go * xv;
                            r.gw_abs[wi] += (go * xv).abs();
                            r.gi[xi] += go * wv;
                            r.gi_abs[xi] += (go * wv).abs();
                        }
                    }
                }
                r.y[at] = y;
                r.y_abs[at] = y_abs;
            }
        }
    }
    r
}

/// Forward, weight and bias gradient (added to a prefilled buffer, and scaled) and input
/// gradient (written over NaN) of the kernels on every instruction set, against [`reference`].
fn check_kernels(geo: &ConvGeometry, values: &[f32]) {
    let draw = |len: usize, from: usize| -> Vec<f32> {
        (0..len)
            .map(|i| values[(from + 7 * i) % values.len()])
            .collect()
    };
    let x = draw(geo.input_len(), 0);
    let w = draw(geo.weight_len(), 1);
    let b = draw(geo.c_out, 2);
    let g = draw(geo.output_len(), 3);
    let r = reference(geo, &x, &w, &b, &g);
    let (cig, cog, k) = (geo.in_per_group(), geo.out_per_group(), geo.k);
    for isa in available() {
        with_isa(isa, || {
            let mut y = vec![f32::NAN; geo.output_len()];
            conv_kernel::forward(geo, &x, &w, &b, &mut y);
            assert_within("forward", isa, &y, &r.y, &r.y_abs, cig * k * k + 1);

            // Scaled by −2 (exact: a power of two), then unscaled.
            let (mut gw, mut gb) = (vec![0.0f32; w.len()], vec![0.0f32; b.len()]);
            conv_kernel::weight_grad(geo, &x, &g, &mut gw, &mut gb, -2.0);
            let unscale = |v: &[f32]| -> Vec<f32> { v.iter().map(|v| v * -0.5).collect() };
            let pixels = geo.oh * geo.ow;
            assert_within("weight grad", isa, &unscale(&gw), &r.gw, &r.gw_abs, pixels);
            assert_within("bias grad", isa, &unscale(&gb), &r.gb, &r.gb_abs, pixels);
            // The gradients are added, once per value, to what the buffers hold.
            let (mut gw2, mut gb2) = (vec![0.25f32; w.len()], vec![0.25f32; b.len()]);
            conv_kernel::weight_grad(geo, &x, &g, &mut gw2, &mut gb2, -2.0);
            let added = |v: &[f32]| -> Vec<f32> { v.iter().map(|v| 0.25 + v).collect() };
            assert_eq!(gw2, added(&gw), "weight grad added on {isa:?}");
            assert_eq!(gb2, added(&gb), "bias grad added on {isa:?}");

            let mut gi = vec![f32::NAN; geo.input_len()];
            conv_kernel::input_grad(geo, &w, &g, &mut gi);
            assert_within("input grad", isa, &gi, &r.gi, &r.gi_abs, cog * k * k);
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
/// either side (several blocks of channels per gathered row), and a group of 17.
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
    for isa in available() {
        with_isa(isa, || {
            let mut y = vec![0.0f32; geo.output_len()];
            conv_kernel::forward(&geo, &x, &w, &[0.5; 3], &mut y);
            let (mut gw, mut gb) = (vec![0.0f32; geo.weight_len()], vec![0.0f32; 3]);
            conv_kernel::weight_grad(&geo, &x, &g, &mut gw, &mut gb, 1.0);
            // small integers: every sum is exact
            let exact = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
            assert_eq!(exact(&y), r.y, "forward on {isa:?}");
            assert_eq!(exact(&gw), r.gw, "weight grad on {isa:?}");
            assert_eq!(exact(&gb), r.gb, "bias grad on {isa:?}");
        });
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
