//! The convolution's definition as plain loops, for any geometry taken at run time and any
//! element type: the path of `f64` (the reference every `f32` kernel is tested against) and
//! of [`Conv2d`](crate::Conv2d)'s and [`GroupedConv2d`](crate::GroupedConv2d)'s
//! `forward_reference` / `backward_reference`.
//!
//! Each value is summed in the definition's order — an output from its bias over the input
//! channels, the kernel's rows and its columns; a weight's gradient over the output pixels
//! row by row; an input pixel's gradient over the output channels, then the output pixels
//! row by row — but the loops run along output rows, so that the innermost one is a
//! multiply-add along a row that the compiler vectorises, not a bounds test per tap.
//! Changing the loop order, not the order of any sum, keeps every result bit for bit.
//!
//! ```
//! use constnet::conv_kernel::ConvGeometry;
//! use constnet::conv_reference;
//! // One 2×2 kernel of ones over a 3×3 map, stride 1, no padding, bias 0.5.
//! const GEO: ConvGeometry = ConvGeometry {
//!     c_in: 1, c_out: 1, groups: 1, k: 2, stride: 1, pad: 0, h: 3, w: 3, oh: 2, ow: 2,
//! }
//! .checked();
//! let x = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
//! let mut y = [0.0; 4];
//! conv_reference::forward(&GEO, &x, &[1.0; 4], &[0.5], &mut y);
//! assert_eq!(y, [12.5, 16.5, 24.5, 28.5]);
//! ```

use crate::conv_kernel::ConvGeometry;
use crate::scalar::Scalar;

/// The output columns whose tap `j` of a kernel row reads the input row (not the padding):
/// `lo..hi` with `x·stride + j − pad` in `0..w`, or `None` if there are none (a map
/// narrower than the padding can leave a tap nothing to read).
#[inline]
fn columns(geo: &ConvGeometry, j: usize) -> Option<(usize, usize)> {
    let (s, p) = (geo.stride, geo.pad);
    let (lo, hi) = if s == 1 {
        (p.saturating_sub(j), (geo.w + p).saturating_sub(j))
    } else {
        (
            p.saturating_sub(j).div_ceil(s),
            (geo.w + p).saturating_sub(j).div_ceil(s),
        )
    };
    let hi = hi.min(geo.ow);
    (lo < hi).then_some((lo, hi))
}

/// The input row that kernel row `i` reads for output row `y`, or `None` in the padding.
#[inline]
fn source_row(geo: &ConvGeometry, y: usize, i: usize) -> Option<usize> {
    (y * geo.stride + i)
        .checked_sub(geo.pad)
        .filter(|&r| r < geo.h)
}

/// `dst[x] += w · src[x·stride + j − pad]` over the columns `j` reads, `x` ascending.
#[inline(always)]
fn add_scaled<T: Scalar>(geo: &ConvGeometry, j: usize, dst: &mut [T], w: T, src: &[T]) {
    let Some((lo, hi)) = columns(geo, j) else {
        return;
    };
    let (start, n) = (lo * geo.stride + j - geo.pad, hi - lo);
    let dst = &mut dst[lo..hi];
    if geo.stride == 1 {
        let src = &src[start..start + n];
        for t in 0..n {
            dst[t] = dst[t] + w * src[t];
        }
    } else {
        for (t, v) in dst.iter_mut().enumerate() {
            *v = *v + w * src[start + t * geo.stride];
        }
    }
}

/// The convolution `geo` of one sample `x` (`[c_in][h][w]`) by the weights `w`
/// (`[c_out][c_in / groups][k][k]`) plus the biases `b`, into `y` (`[c_out][oh][ow]`).
pub fn forward<T: Scalar>(geo: &ConvGeometry, x: &[T], w: &[T], b: &[T], y: &mut [T]) {
    let (cig, cog, k) = (geo.in_per_group(), geo.out_per_group(), geo.k);
    let (map, kernel) = (geo.h * geo.w, cig * k * k);
    assert_eq!(x.len(), geo.c_in * map);
    assert_eq!(w.len(), geo.c_out * kernel);
    assert_eq!(b.len(), geo.c_out);
    assert_eq!(y.len(), geo.c_out * geo.oh * geo.ow);
    for (o, out) in y.chunks_exact_mut(geo.oh * geo.ow).enumerate() {
        let first = o / cog * cig;
        let wo = &w[o * kernel..][..kernel];
        for (yy, row) in out.chunks_exact_mut(geo.ow).enumerate() {
            row.fill(b[o]);
            for (c, wc) in wo.chunks_exact(k * k).enumerate() {
                let input = &x[(first + c) * map..][..map];
                for (i, taps) in wc.chunks_exact(k).enumerate() {
                    let Some(r) = source_row(geo, yy, i) else {
                        continue;
                    };
                    let src = &input[r * geo.w..][..geo.w];
                    for (j, &tap) in taps.iter().enumerate() {
                        add_scaled(geo, j, row, tap, src);
                    }
                }
            }
        }
    }
}

/// The backward pass of [`forward`]: adds the gradients of the weights and biases to `gw`
/// and `gb` and, if asked, writes the input's gradient to `gi`, from the output's gradient
/// `gy`.
pub fn backward<T: Scalar>(
    geo: &ConvGeometry,
    (x, w, gy): (&[T], &[T], &[T]),
    gi: Option<&mut [T]>,
    gw: &mut [T],
    gb: &mut [T],
) {
    if let Some(gi) = gi {
        input_grad(geo, w, gy, gi);
    }
    param_grads(geo, x, gy, gw, gb);
}

/// The input's gradient `gi` (written) from the output's gradient `gy` through the
/// weights `w`.
pub fn input_grad<T: Scalar>(geo: &ConvGeometry, w: &[T], gy: &[T], gi: &mut [T]) {
    let (cig, cog, k) = (geo.in_per_group(), geo.out_per_group(), geo.k);
    let (map, kernel) = (geo.h * geo.w, cig * k * k);
    assert_eq!(w.len(), geo.c_out * kernel);
    assert_eq!(gy.len(), geo.c_out * geo.oh * geo.ow);
    assert_eq!(gi.len(), geo.c_in * map);
    gi.fill(T::zero());
    for (o, g_map) in gy.chunks_exact(geo.oh * geo.ow).enumerate() {
        let (first, wo) = (o / cog * cig, &w[o * kernel..][..kernel]);
        for (yy, g_row) in g_map.chunks_exact(geo.ow).enumerate() {
            for c in 0..cig {
                for i in 0..k {
                    let Some(r) = source_row(geo, yy, i) else {
                        continue;
                    };
                    let dst = &mut gi[(first + c) * map + r * geo.w..][..geo.w];
                    // The taps from the last to the first: a pixel's contributions then
                    // come in ascending output column, as in the definition's loop over
                    // the output pixels.
                    for j in (0..k).rev() {
                        let Some((lo, hi)) = columns(geo, j) else {
                            continue;
                        };
                        let tap = wo[(c * k + i) * k + j];
                        let (start, g_row) = (lo * geo.stride + j - geo.pad, &g_row[lo..hi]);
                        if geo.stride == 1 {
                            let dst = &mut dst[start..start + g_row.len()];
                            for t in 0..g_row.len() {
                                dst[t] = dst[t] + g_row[t] * tap;
                            }
                        } else {
                            for (t, &g) in g_row.iter().enumerate() {
                                let s = start + t * geo.stride;
                                dst[s] = dst[s] + g * tap;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds the gradients of the weights (`gw`, each summed over the output pixels row by
/// row) and of the biases (`gb`) of the sample `x` from the output's gradient `gy`.
///
/// Pixel by pixel, every tap in the innermost loops: the sum of one weight is a chain
/// that cannot be reordered, so the chains of all of a pixel's taps run side by side.
pub fn param_grads<T: Scalar>(geo: &ConvGeometry, x: &[T], gy: &[T], gw: &mut [T], gb: &mut [T]) {
    let (cig, cog, k) = (geo.in_per_group(), geo.out_per_group(), geo.k);
    let (map, kernel) = (geo.h * geo.w, cig * k * k);
    assert_eq!(x.len(), geo.c_in * map);
    assert_eq!((gw.len(), gb.len()), (geo.c_out * kernel, geo.c_out));
    assert_eq!(gy.len(), geo.c_out * geo.oh * geo.ow);
    for (o, g_map) in gy.chunks_exact(geo.oh * geo.ow).enumerate() {
        gb[o] = g_map.iter().fold(gb[o], |sum, &g| sum + g);
        let (first, gwo) = (o / cog * cig, &mut gw[o * kernel..][..kernel]);
        let input = &x[first * map..][..cig * map];
        for (yy, g_row) in g_map.chunks_exact(geo.ow).enumerate() {
            for (xx, &g) in g_row.iter().enumerate() {
                // The input columns of the taps, `first..first + k` unless at an edge.
                let left = (xx * geo.stride).checked_sub(geo.pad);
                let inside = left.filter(|&s| s + k <= geo.w);
                for (c, gwc) in gwo.chunks_exact_mut(k * k).enumerate() {
                    for (i, gwr) in gwc.chunks_exact_mut(k).enumerate() {
                        let Some(r) = source_row(geo, yy, i) else {
                            continue;
                        };
                        let src = &input[c * map + r * geo.w..][..geo.w];
                        if let Some(s) = inside {
                            let src = &src[s..s + k];
                            for j in 0..k {
                                gwr[j] = gwr[j] + g * src[j];
                            }
                        } else {
                            for (j, gw) in gwr.iter_mut().enumerate() {
                                let s = (xx * geo.stride + j).checked_sub(geo.pad);
                                if let Some(&v) = s.and_then(|s| src.get(s)) {
                                    *gw = *gw + g * v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition pixel by pixel, tap by tap: what the loops above must equal bit for
    /// bit.
    fn by_pixel(
        geo: &ConvGeometry,
        (x, w, b, gy): (&[f64], &[f64], &[f64], &[f64]),
    ) -> [Vec<f64>; 4] {
        let (cig, cog, k) = (geo.in_per_group(), geo.out_per_group(), geo.k);
        let mut y = vec![0.0; geo.output_len()];
        let (mut gi, mut gw, mut gb) = (vec![0.0; x.len()], vec![0.0; w.len()], b.to_vec());
        for o in 0..geo.c_out {
            for oy in 0..geo.oh {
                for ox in 0..geo.ow {
                    let at = (o * geo.oh + oy) * geo.ow + ox;
                    let (mut acc, g) = (b[o], gy[at]);
                    gb[o] += g;
                    for c in 0..cig {
                        let ci = o / cog * cig + c;
                        for i in 0..k {
                            for j in 0..k {
                                let r = (oy * geo.stride + i).checked_sub(geo.pad);
                                let s = (ox * geo.stride + j).checked_sub(geo.pad);
                                let (Some(r), Some(s)) = (r, s) else { continue };
                                if r >= geo.h || s >= geo.w {
                                    continue;
                                }
                                let (xi, wi) = (
                                    (ci * geo.h + r) * geo.w + s,
                                    ((o * cig + c) * k + i) * k + j,
                                );
                                acc += w[wi] * x[xi];
                                gw[wi] += g * x[xi];
                                gi[xi] += g * w[wi];
                            }
                        }
                    }
                    y[at] = acc;
                }
            }
        }
        [y, gi, gw, gb]
    }

    #[test]
    fn the_row_loops_equal_the_definition_bit_for_bit() {
        let mut seed = 7u64;
        let mut draw = |n: usize| -> Vec<f64> {
            (0..n)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
                })
                .collect()
        };
        // (c_in, c_out, groups, k, stride, pad, h, w)
        let shapes = [
            (1, 1, 1, 1, 1, 0, 1, 1),
            (2, 3, 1, 3, 1, 1, 5, 6),
            (3, 2, 1, 5, 1, 0, 9, 7),
            (2, 4, 2, 3, 2, 1, 7, 8),
            (4, 4, 4, 3, 1, 1, 6, 5),
            (3, 2, 1, 7, 2, 3, 11, 9),
            (1, 2, 1, 11, 4, 2, 23, 19),
            (2, 2, 1, 3, 3, 2, 4, 4),
            (2, 2, 1, 4, 1, 3, 2, 3),
            (2, 3, 1, 5, 1, 2, 1, 1),
            (1, 2, 1, 5, 4, 2, 2, 1),
        ];
        for (c_in, c_out, groups, k, stride, pad, h, w) in shapes {
            let oh = (h + 2 * pad - k) / stride + 1;
            let ow = (w + 2 * pad - k) / stride + 1;
            let geo = ConvGeometry {
                c_in,
                c_out,
                groups,
                k,
                stride,
                pad,
                h,
                w,
                oh,
                ow,
            }
            .checked();
            let (x, wt, b, gy) = (
                draw(geo.input_len()),
                draw(geo.weight_len()),
                draw(c_out),
                draw(geo.output_len()),
            );
            let [y, gi, gw, gb] = by_pixel(&geo, (&x, &wt, &b, &gy));
            let mut got = vec![1.0; y.len()];
            forward(&geo, &x, &wt, &b, &mut got);
            assert_eq!(got, y, "forward of {geo:?}");
            let (mut got_gi, mut got_gw, mut got_gb) =
                (vec![1.0; x.len()], vec![0.0; wt.len()], b.clone());
            backward(
                &geo,
                (&x, &wt, &gy),
                Some(&mut got_gi),
                &mut got_gw,
                &mut got_gb,
            );
            assert_eq!(got_gi, gi, "input gradient of {geo:?}");
            assert_eq!(got_gw, gw, "weight gradient of {geo:?}");
            assert_eq!(got_gb, gb, "bias gradient of {geo:?}");
        }
    }
}
