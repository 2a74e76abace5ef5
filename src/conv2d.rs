//! 2-D convolution with bias, zero padding and stride.

use rand::Rng;

use crate::layer::{Layer, he_uniform, no_such_param};
use crate::scalar::Scalar;
use crate::tensor::Maps;

/// Output size of a convolution or pooling window along one axis:
/// `(input + 2·padding − kernel) / stride + 1`.
///
/// Use it to spell out output sizes in concrete types:
/// ```
/// use constnet::{conv_out, Conv2d};
/// type Conv1 = Conv2d<f32, 1, 6, 5, 1, 0, 32, 32, { conv_out(32, 5, 1, 0) }, { conv_out(32, 5, 1, 0) }>;
/// assert_eq!(conv_out(32, 5, 1, 0), 28);
/// # let _ = constnet::zeroed_box::<Conv1>();
/// ```
pub const fn conv_out(input: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    (input + 2 * padding - kernel) / stride + 1
}

/// A 2-D convolution: `CO` filters of `CI`×`K`×`K`, stride `S`, zero padding `P`, from
/// `CI`×`H`×`W` maps to `CO`×`OH`×`OW` maps, plus one bias per output channel.
///
/// `OH` and `OW` must equal `(H + 2·P − K) / S + 1` (see [`conv_out`]), with the division exact
/// so that no input pixel is silently dropped; a mismatch does not compile. Weights use
/// PyTorch's layout `[out][in][kh][kw]`, so a state dict copies straight in.
///
/// ```
/// use constnet::{Conv2d, Layer, zeroed_box};
/// // 1×32×32 → 6×28×28, as in LeNet-5's first layer.
/// let mut conv = zeroed_box::<Conv2d<f32, 1, 6, 5, 1, 0, 32, 32, 28, 28>>();
/// conv.bias = [0.5; 6];
/// let image = [[[1.0f32; 32]; 32]; 1];
/// let mut maps = [[[0.0f32; 28]; 28]; 6];
/// conv.forward(&image, &mut maps, &mut ());
/// assert_eq!(maps[5][27][27], 0.5); // zero weights: only the bias remains
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d<
    T,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> {
    /// Filters, `[out channel][in channel][row][column]`.
    pub weight: [[[[T; K]; K]; CI]; CO],
    /// One bias per output channel.
    pub bias: [T; CO],
}

impl<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> Conv2d<T, CI, CO, K, S, P, H, W, OH, OW>
{
    /// The shape rules; evaluated at compile time by every pass and by [`Layer::CHECK`].
    pub const SHAPE_OK: () = {
        assert!(
            CI > 0 && CO > 0,
            "Conv2d: channel counts CI and CO must be at least 1"
        );
        assert!(
            K > 0 && S > 0,
            "Conv2d: kernel K and stride S must be at least 1"
        );
        assert!(
            K <= H + 2 * P && K <= W + 2 * P,
            "Conv2d: kernel K is larger than the padded input (H + 2·P, W + 2·P)"
        );
        assert!(P < K, "Conv2d: padding P must be smaller than the kernel K");
        assert!(
            (H + 2 * P - K).is_multiple_of(S) && (W + 2 * P - K).is_multiple_of(S),
            "Conv2d: stride S must divide (H + 2·P − K) and (W + 2·P − K) exactly"
        );
        assert!(
            OH == (H + 2 * P - K) / S + 1,
            "Conv2d: output height OH must equal (H + 2·P − K) / S + 1"
        );
        assert!(
            OW == (W + 2 * P - K) / S + 1,
            "Conv2d: output width OW must equal (W + 2·P − K) / S + 1"
        );
    };

    /// Input pixel `(y·S + i − P, x·S + j − P)` for output `(y, x)` and tap `(i, j)`, or
    /// `None` when it falls in the zero padding.
    #[inline(always)]
    fn source(y: usize, x: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let r = (y * S + i).checked_sub(P)?;
        let c = (x * S + j).checked_sub(P)?;
        (r < H && c < W).then_some((r, c))
    }
}

impl<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> Layer for Conv2d<T, CI, CO, K, S, P, H, W, OH, OW>
{
    type Scalar = T;
    type Input = Maps<T, CI, H, W>;
    type Output = Maps<T, CO, OH, OW>;
    type Workspace = ();
    const CHECK: () = Self::SHAPE_OK;
    const PARAM_TENSORS: usize = 2;

    fn forward(&self, input: &Self::Input, output: &mut Self::Output, _ws: &mut ()) {
        const { Self::SHAPE_OK };
        for (o, out) in output.iter_mut().enumerate() {
            for (y, row) in out.iter_mut().enumerate() {
                for (x, v) in row.iter_mut().enumerate() {
                    let mut acc = self.bias[o];
                    for (c, filter) in self.weight[o].iter().enumerate() {
                        for (i, taps) in filter.iter().enumerate() {
                            for (j, &w) in taps.iter().enumerate() {
                                if let Some((r, s)) = Self::source(y, x, i, j) {
                                    acc = acc + w * input[c][r][s];
                                }
                            }
                        }
                    }
                    *v = acc;
                }
            }
        }
    }

    fn backward(
        &self,
        input: &Self::Input,
        _ws: &mut (),
        grad_output: &Self::Output,
        mut grad_input: Option<&mut Self::Input>,
        grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        if let Some(gi) = grad_input.as_deref_mut() {
            *gi = [[[T::zero(); W]; H]; CI];
        }
        for (o, g_map) in grad_output.iter().enumerate() {
            for (y, g_row) in g_map.iter().enumerate() {
                for (x, &g) in g_row.iter().enumerate() {
                    grads.bias[o] = grads.bias[o] + g;
                    for c in 0..CI {
                        for i in 0..K {
                            for j in 0..K {
                                if let Some((r, s)) = Self::source(y, x, i, j) {
                                    let gw = &mut grads.weight[o][c][i][j];
                                    *gw = *gw + g * input[c][r][s];
                                    if let Some(gi) = grad_input.as_deref_mut() {
                                        gi[c][r][s] = gi[c][r][s] + g * self.weight[o][c][i][j];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn param(&self, i: usize) -> &[T] {
        match i {
            0 => self.weight.as_flattened().as_flattened().as_flattened(),
            1 => &self.bias,
            _ => no_such_param("Conv2d", i),
        }
    }

    fn param_mut(&mut self, i: usize) -> &mut [T] {
        match i {
            0 => self
                .weight
                .as_flattened_mut()
                .as_flattened_mut()
                .as_flattened_mut(),
            1 => &mut self.bias,
            _ => no_such_param("Conv2d", i),
        }
    }

    /// He uniform over fan-in `CI·K·K`; biases zero.
    fn init<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        he_uniform(self.param_mut(0), CI * K * K, rng);
        self.bias = [T::zero(); CO];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zeroed_box;

    /// A hand-computed 1×3×3 → 1×2×2 convolution with a 2×2 kernel.
    #[test]
    fn forward_matches_hand_computation() {
        let mut conv = zeroed_box::<Conv2d<f64, 1, 1, 2, 1, 0, 3, 3, 2, 2>>();
        conv.weight = [[[[1.0, 2.0], [3.0, 4.0]]]];
        conv.bias = [10.0];
        let input = [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]];
        let mut out = [[[0.0; 2]; 2]; 1];
        conv.forward(&input, &mut out, &mut ());
        // top-left: 1·1 + 2·2 + 3·4 + 4·5 + bias 10 = 47
        assert_eq!(out, [[[47.0, 57.0], [77.0, 87.0]]]);
    }

    /// Padding 1, stride 2: the corner output sees only the bottom-right 2×2 of its kernel.
    #[test]
    fn padding_and_stride_skip_the_border() {
        let mut conv = zeroed_box::<Conv2d<f64, 1, 1, 3, 2, 1, 3, 3, 2, 2>>();
        conv.weight = [[[[1.0, 1.0, 1.0], [1.0, 100.0, 1.0], [1.0, 1.0, 1.0]]]];
        let input = [[[1.0; 3]; 3]];
        let mut out = [[[0.0; 2]; 2]; 1];
        conv.forward(&input, &mut out, &mut ());
        // output (0,0) centres on input (0,0): 4 real taps, one of them the 100.
        assert_eq!(out[0][0][0], 103.0);
        // output (1,1) centres on input (2,2): same by symmetry.
        assert_eq!(out[0][1][1], 103.0);
    }

    #[test]
    fn conv_out_follows_the_formula() {
        assert_eq!(conv_out(32, 5, 1, 0), 28);
        assert_eq!(conv_out(14, 5, 1, 0), 10);
        assert_eq!(conv_out(28, 5, 1, 2), 28);
        assert_eq!(conv_out(28, 2, 2, 0), 14);
    }

    #[test]
    fn init_is_he_uniform_and_seeded() {
        use rand::SeedableRng;
        let mut a = zeroed_box::<Conv2d<f32, 6, 16, 5, 1, 0, 14, 14, 10, 10>>();
        let mut b = zeroed_box::<Conv2d<f32, 6, 16, 5, 1, 0, 14, 14, 10, 10>>();
        a.init(&mut rand::rngs::StdRng::seed_from_u64(1));
        b.init(&mut rand::rngs::StdRng::seed_from_u64(1));
        assert_eq!(a, b);
        let bound = (6.0f32 / 150.0).sqrt();
        let w = a.param(0);
        assert!(w.iter().all(|v| v.abs() <= bound));
        // 2400 uniform draws: the largest is near the bound, the mean near zero.
        assert!(w.iter().fold(0.0f32, |m, v| m.max(v.abs())) > 0.95 * bound);
        assert!((w.iter().sum::<f32>() / 2400.0).abs() < 0.02);
        assert!(a.bias.iter().all(|&b| b == 0.0));
    }
}
