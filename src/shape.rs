//! PyTorch's output-size rules for convolution and pooling, as `const fn`s, so that concrete
//! types can spell their sizes out: `Conv2d<f32, 3, 64, 7, 2, 3, 224, 224, { conv_out(224, 7,
//! 2, 3) }, { conv_out(224, 7, 2, 3) }>`. The layers' compile-time checks use the same rules.

/// Output size of a convolution (or a floor-mode pooling) along one axis, PyTorch's rule:
/// `⌊(input + 2·padding − kernel) / stride⌋ + 1`; rows or columns past the last window that
/// fits are not read.
///
/// ```
/// use constnet::{conv_out, Conv2d};
/// type Conv1 = Conv2d<f32, 1, 6, 5, 1, 0, 32, 32, { conv_out(32, 5, 1, 0) }, { conv_out(32, 5, 1, 0) }>;
/// assert_eq!(conv_out(32, 5, 1, 0), 28);
/// assert_eq!(conv_out(224, 7, 2, 3), 112); // ResNet-18's stem: ⌊223 / 2⌋ + 1
/// # let _ = constnet::zeroed_box::<Conv1>();
/// ```
pub const fn conv_out(input: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    (input + 2 * padding - kernel) / stride + 1
}

/// Output size of a pooling window along one axis, PyTorch's rule: `⌊(input + 2·padding −
/// kernel) / stride⌋ + 1`, or with `ceil_mode` the ceiling instead, less one if the last
/// window would then start past the input and its left padding (it must start at or before
/// `input + padding − 1`).
///
/// ```
/// use constnet::pool_out;
/// assert_eq!(pool_out(112, 3, 2, 1, false), 56); // ResNet-18's max-pool
/// assert_eq!(pool_out(112, 3, 2, 0, true), 56); // GoogLeNet's maxpool1 (ceil mode)
/// assert_eq!(pool_out(55, 3, 2, 0, true), 27); // ZF Net: ⌈52 / 2⌉ + 1
/// assert_eq!(pool_out(5, 2, 2, 1, true), 3); // a ceil window that would start in padding only
/// ```
pub const fn pool_out(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    ceil_mode: bool,
) -> usize {
    let span = input + 2 * padding - kernel;
    if !ceil_mode {
        return span / stride + 1;
    }
    let out = span.div_ceil(stride) + 1;
    // PyTorch: the last window must start inside the input or its left padding.
    if (out - 1) * stride >= input + padding {
        out - 1
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_out_follows_the_formula() {
        assert_eq!(conv_out(32, 5, 1, 0), 28);
        assert_eq!(conv_out(14, 5, 1, 0), 10);
        assert_eq!(conv_out(28, 5, 1, 2), 28);
        assert_eq!(conv_out(28, 2, 2, 0), 14);
        // floor: the stride need not divide
        assert_eq!(conv_out(224, 7, 2, 3), 112);
        assert_eq!(conv_out(227, 11, 4, 0), 55);
        assert_eq!(conv_out(7, 3, 2, 0), 3);
    }

    /// Against PyTorch's `pooling_output_shape` (aten/src/ATen/native/Pool.h), written out
    /// for every input, kernel, stride and padding in a small range.
    #[test]
    fn pool_out_is_pytorchs_rule() {
        for input in 1..40usize {
            for kernel in 1..=input.min(7) {
                for stride in 1..5 {
                    for padding in 0..=kernel / 2 {
                        for ceil in [false, true] {
                            let (i, k, s, p) =
                                (input as i64, kernel as i64, stride as i64, padding as i64);
                            let num = i + 2 * p - k + if ceil { s - 1 } else { 0 };
                            let mut out = num.div_euclid(s) + 1;
                            if ceil && (out - 1) * s >= i + p {
                                out -= 1;
                            }
                            assert_eq!(
                                pool_out(input, kernel, stride, padding, ceil) as i64,
                                out,
                                "in {input} k {kernel} s {stride} p {padding} ceil {ceil}"
                            );
                        }
                    }
                }
            }
        }
        assert_eq!(pool_out(110, 3, 2, 0, true), 55); // ZF Net
        assert_eq!(pool_out(26, 3, 2, 0, true), 13);
        assert_eq!(pool_out(13, 3, 2, 0, true), 6);
    }
}
