//! Fully connected layer, `y = W·x + b`.

use rand::Rng;

use crate::batch::BatchLayer;
use crate::fused::SgdLayer;
use crate::lanes::{
    BlockOrder, CacheLines, LANES, LaneLayer, block_from_lanes, block_of, block_of_mut,
    check_lanes, lane_get, lane_put, relu_mask, transpose_blocks,
};
use crate::layer::{Layer, Shape, TensorKind, he_uniform, no_such_param};
use crate::scalar::Scalar;
use crate::simd;

/// A fully connected layer from `IN` to `OUT` values: `y = W·x + b`.
///
/// The weight is stored `[out][in]`, PyTorch's layout.
///
/// ```
/// use constnet::{Layer, Linear, zeroed_box};
/// let mut fc = zeroed_box::<Linear<f64, 2, 3>>();
/// fc.weight = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
/// fc.bias = [0.0, 0.0, 0.5];
/// let mut y = [0.0; 3];
/// fc.forward(&[2.0, 3.0], &mut y, &mut ());
/// assert_eq!(y, [2.0, 3.0, 5.5]);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[repr(C, align(64))]
pub struct Linear<T, const IN: usize, const OUT: usize> {
    /// Weights, `[output][input]`.
    pub weight: [[T; IN]; OUT],
    /// One bias per output.
    pub bias: [T; OUT],
}

impl<T: Scalar, const IN: usize, const OUT: usize> Linear<T, IN, OUT> {
    /// The shape rule; evaluated at compile time by every pass and by [`Layer::CHECK`].
    pub const SHAPE_OK: () = assert!(IN > 0 && OUT > 0, "Linear: IN and OUT must be at least 1");

    /// The plain loops of [`Layer::forward`]: the definition the fast path is tested against,
    /// and the path for `f64`.
    pub fn forward_reference(&self, input: &[T; IN], output: &mut [T; OUT]) {
        const { Self::SHAPE_OK };
        for ((y, w), &b) in output.iter_mut().zip(&self.weight).zip(&self.bias) {
            *y = w.iter().zip(input).fold(b, |acc, (&w, &x)| acc + w * x);
        }
    }

    /// The plain loops of [`Layer::backward`] (see [`Linear::forward_reference`]).
    pub fn backward_reference(
        &self,
        input: &[T; IN],
        grad_output: &[T; OUT],
        grad_input: Option<&mut [T; IN]>,
        grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        for ((gw, gb), &g) in grads
            .weight
            .iter_mut()
            .zip(&mut grads.bias)
            .zip(grad_output)
        {
            *gb = *gb + g;
            for (gw, &x) in gw.iter_mut().zip(input) {
                *gw = *gw + g * x;
            }
        }
        if let Some(gi) = grad_input {
            *gi = [T::zero(); IN];
            for (w, &g) in self.weight.iter().zip(grad_output) {
                for (gi, &w) in gi.iter_mut().zip(w) {
                    *gi = *gi + g * w;
                }
            }
        }
    }

    /// `f32` fast forward of `n = x.len() / IN` samples at once (rows of `x` and `y`).
    /// Returns `false`, touching nothing, if `T` is not `f32`.
    pub(crate) fn forward_fast(&self, x: &[T], y: &mut [T]) -> bool {
        let (Some(x), Some(y), Some(w), Some(b)) = (
            T::as_f32(x),
            T::as_f32_mut(y),
            T::as_f32(self.weight.as_flattened()),
            T::as_f32(&self.bias),
        ) else {
            return false;
        };
        simd::dispatch(fast::Forward::<IN, OUT> { x, w, b, y });
        true
    }

    /// The input gradient (with the current weights), then `w ← w − lr · g xᵀ` and
    /// `b ← b − lr · g`, with no gradient buffer (see [`crate::fused`]).
    pub(crate) fn backward_sgd_fused(
        &mut self,
        x: &[T; IN],
        g: &[T; OUT],
        grad_input: Option<&mut [T; IN]>,
        lr: T,
    ) {
        if let (Some(xf), Some(gf)) = (T::as_f32(x), T::as_f32(g)) {
            let lr = lr.to_f64() as f32;
            let mut scaled = [0.0f32; OUT];
            for (s, &g) in scaled.iter_mut().zip(gf) {
                *s = -lr * g;
            }
            let w = T::as_f32_mut(self.weight.as_flattened_mut()).expect("T is f32");
            let gi = grad_input.map(|gi| T::as_f32_mut(gi).expect("T is f32"));
            simd::dispatch(fast::SgdStep::<IN, OUT> {
                w,
                x: xf,
                g: gf,
                scaled: &scaled,
                gi,
            });
            let b = T::as_f32_mut(&mut self.bias).expect("T is f32");
            for (b, &s) in b.iter_mut().zip(&scaled) {
                *b += s;
            }
            return;
        }
        // The reference loops' arithmetic, so that f64 matches backward + Sgd::step exactly.
        if let Some(gi) = grad_input {
            *gi = [T::zero(); IN];
            for (w, &g) in self.weight.iter().zip(g) {
                for (gi, &w) in gi.iter_mut().zip(w) {
                    *gi = *gi + g * w;
                }
            }
        }
        for ((w, b), &g) in self.weight.iter_mut().zip(&mut self.bias).zip(g) {
            *b = *b - lr * g;
            for (w, &x) in w.iter_mut().zip(x) {
                *w = *w - lr * (g * x);
            }
        }
    }

    /// `f32` fast backward of `n = x.len() / IN` samples at once: parameter gradients summed
    /// over the samples into `grads`, input gradients (if asked) written per sample.
    /// Returns `false`, touching nothing, if `T` is not `f32`.
    pub(crate) fn backward_fast(
        &self,
        x: &[T],
        g: &[T],
        grad_input: Option<&mut [T]>,
        grads: &mut Self,
    ) -> bool {
        let (Some(x), Some(g)) = (T::as_f32(x), T::as_f32(g)) else {
            return false;
        };
        let gb = T::as_f32_mut(&mut grads.bias).expect("T is f32");
        for g_row in g.chunks_exact(OUT) {
            for (gb, &v) in gb.iter_mut().zip(g_row) {
                *gb += v;
            }
        }
        let gw = T::as_f32_mut(grads.weight.as_flattened_mut()).expect("T is f32");
        simd::dispatch(fast::WeightGrad::<IN, OUT> { x, g, gw });
        if let Some(gi) = grad_input {
            let gi = T::as_f32_mut(gi).expect("T is f32");
            let w = T::as_f32(self.weight.as_flattened()).expect("T is f32");
            simd::dispatch(fast::InputGrad::<IN, OUT> { w, g, gi });
        }
        true
    }
}

impl<T: Scalar, const IN: usize, const OUT: usize> Layer for Linear<T, IN, OUT> {
    type Scalar = T;
    type Input = [T; IN];
    type Output = [T; OUT];
    type Workspace = ();
    const CHECK: () = Self::SHAPE_OK;
    const PARAM_TENSORS: usize = 2;

    fn forward(&self, input: &[T; IN], output: &mut [T; OUT], _ws: &mut ()) {
        const { Self::SHAPE_OK };
        if !self.forward_fast(input.as_slice(), output.as_mut_slice()) {
            self.forward_reference(input, output);
        }
    }

    fn backward(
        &self,
        input: &[T; IN],
        _ws: &mut (),
        grad_output: &[T; OUT],
        grad_input: Option<&mut [T; IN]>,
        grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        if T::as_f32(&self.bias).is_some() {
            let gi = grad_input.map(|gi| gi.as_mut_slice());
            self.backward_fast(input.as_slice(), grad_output.as_slice(), gi, grads);
        } else {
            self.backward_reference(input, grad_output, grad_input, grads);
        }
    }

    fn param(&self, i: usize) -> &[T] {
        match i {
            0 => self.weight.as_flattened(),
            1 => &self.bias,
            _ => no_such_param("Linear", i),
        }
    }

    fn param_mut(&mut self, i: usize) -> &mut [T] {
        match i {
            0 => self.weight.as_flattened_mut(),
            1 => &mut self.bias,
            _ => no_such_param("Linear", i),
        }
    }

    /// PyTorch's layout: the weight is `[OUT, IN]`.
    fn tensor_shape(&self, kind: TensorKind, i: usize) -> Shape {
        match (kind, i) {
            (TensorKind::Param, 0) => Shape::new(&[OUT, IN]),
            (TensorKind::Param, 1) => Shape::new(&[self.param(1).len()]),
            _ => no_such_param("Linear", i),
        }
    }

    /// He uniform over fan-in `IN`; biases zero.
    fn init<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        he_uniform(self.weight.as_flattened_mut(), IN, rng);
        self.bias = [T::zero(); OUT];
    }
}

/// The batch as one matrix product: each weight is read once per batch, not once per sample.
impl<T: Scalar, const IN: usize, const OUT: usize, const N: usize> BatchLayer<N>
    for Linear<T, IN, OUT>
{
    /// The batch's inputs and outputs transposed, `[input][sample]` and `[output][sample]`,
    /// for the forward kernel with the samples in the vector lanes.
    type BatchWorkspace = ([[T; N]; IN], [[T; N]; OUT]);
    const WHOLE_BATCH: bool = true;

    fn forward_sample(
        &self,
        _n: usize,
        input: &[T; IN],
        output: &mut [T; OUT],
        _ws: &mut Self::BatchWorkspace,
    ) {
        self.forward(input, output, &mut ());
    }

    fn backward_sample(
        &self,
        _n: usize,
        input: &[T; IN],
        _ws: &mut Self::BatchWorkspace,
        grad_output: &[T; OUT],
        grad_input: Option<&mut [T; IN]>,
        grads: &mut Self,
    ) {
        self.backward(input, &mut (), grad_output, grad_input, grads);
    }

    /// With `N` a multiple of the lane count (16, 32, 64 with AVX-512), the samples run in
    /// the vector lanes: each weight is broadcast once per vector of samples and no sum is
    /// horizontal. Otherwise blocks of dot products, as for one sample.
    fn forward_batch(
        &self,
        input: &[[T; IN]; N],
        output: &mut [[T; OUT]; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        const { Self::SHAPE_OK };
        if let (Some(x), Some(y), Some(w), Some(b), Some(xt), Some(yt)) = (
            T::as_f32(input.as_flattened()),
            T::as_f32_mut(output.as_flattened_mut()),
            T::as_f32(self.weight.as_flattened()),
            T::as_f32(&self.bias),
            T::as_f32_mut(ws.0.as_flattened_mut()),
            T::as_f32_mut(ws.1.as_flattened_mut()),
        ) && simd::dispatch(fast::ForwardSamples::<IN, OUT> { x, w, b, y, xt, yt })
        {
            return;
        }
        if !self.forward_fast(input.as_flattened(), output.as_flattened_mut()) {
            for (x, y) in input.iter().zip(output.iter_mut()) {
                self.forward_reference(x, y);
            }
        }
    }

    fn backward_batch(
        &self,
        input: &[[T; IN]; N],
        _ws: &mut Self::BatchWorkspace,
        grad_output: &[[T; OUT]; N],
        grad_input: Option<&mut [[T; IN]; N]>,
        grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        if T::as_f32(&self.bias).is_some() {
            let gi = grad_input.map(|gi| gi.as_flattened_mut());
            self.backward_fast(input.as_flattened(), grad_output.as_flattened(), gi, grads);
        } else {
            match grad_input {
                Some(gi) => {
                    for ((x, g), gi) in input.iter().zip(grad_output).zip(gi) {
                        self.backward_reference(x, g, Some(gi), grads);
                    }
                }
                None => {
                    for (x, g) in input.iter().zip(grad_output) {
                        self.backward_reference(x, g, None, grads);
                    }
                }
            }
        }
    }
}

/// Where a fully connected layer's lane backward pass gathers the batch's inputs and output
/// gradients sample by sample, block by block, for the weight gradient (a matrix product
/// over the samples, after the last block; `f32` only).
pub struct LinearLaneWorkspace<T, const IN: usize, const OUT: usize, const N: usize> {
    /// The batch's inputs, `[sample][input]`, gathered block by block in the backward pass.
    pub x: CacheLines<[[T; IN]; N]>,
    /// The batch's output gradients (through the fused ReLU), `[sample][output]`.
    pub g: CacheLines<[[T; OUT]; N]>,
    /// One block's output gradient through a fused ReLU, in lanes.
    pub masked: CacheLines<[[T; OUT]; LANES]>,
    /// The block the backward pass expects next: the weight gradient waits for the last.
    pub order: BlockOrder,
}

/// 16 samples per vector: each weight is broadcast once per block and multiplies 16 samples;
/// the weight gradient, a sum over the samples, runs once per batch on the samples
/// transposed back.
impl<T: Scalar, const IN: usize, const OUT: usize, const N: usize> LaneLayer<N>
    for Linear<T, IN, OUT>
{
    type LaneWorkspace = LinearLaneWorkspace<T, IN, OUT, N>;

    fn forward_lanes(
        &self,
        block: usize,
        input: &[[T; IN]; N],
        output: &mut [[T; OUT]; N],
        _ws: &mut Self::LaneWorkspace,
    ) {
        const { Self::SHAPE_OK };
        check_lanes(N);
        let y = block_of_mut(output, block).as_flattened_mut();
        self.forward_lanes_any(block_of(input, block).as_flattened(), y, false);
    }

    fn fuses_relu(&self) -> bool {
        T::as_f32(&self.bias).is_some()
    }

    /// The SIMD kernel applies the ReLU as it stores the output.
    fn forward_lanes_relu(
        &self,
        block: usize,
        input: &[[T; IN]; N],
        output: &mut [T],
        _ws: &mut Self::LaneWorkspace,
    ) -> bool {
        check_lanes(N);
        if !<Self as LaneLayer<N>>::fuses_relu(self) {
            return false;
        }
        let y = &mut output[block * OUT * LANES..][..OUT * LANES];
        self.forward_lanes_any(block_of(input, block).as_flattened(), y, true);
        true
    }

    fn backward_lanes(
        &self,
        block: usize,
        input: &[[T; IN]; N],
        _output: &[[T; OUT]; N],
        ws: &mut Self::LaneWorkspace,
        grad_output: &[[T; OUT]; N],
        grad_input: Option<&mut [[T; IN]; N]>,
        grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        check_lanes(N);
        ws.order.take(block, N / LANES);
        let g = block_of(grad_output, block).as_flattened();
        let samples = (&mut ws.x.0, &mut ws.g.0);
        self.backward_lanes_any::<N>(block, input, g, samples, grad_input, grads);
    }

    /// The ReLU's gradient is applied to the block's output gradient once, before both
    /// gradients read it.
    fn backward_lanes_relu(
        &self,
        block: usize,
        input: &[[T; IN]; N],
        output: Option<&[T]>,
        ws: &mut Self::LaneWorkspace,
        grad_output: &[T],
        grad_input: Option<&mut [[T; IN]; N]>,
        grads: &mut Self,
    ) -> bool {
        check_lanes(N);
        if !<Self as LaneLayer<N>>::fuses_relu(self) {
            return false;
        }
        let len = OUT * LANES;
        let LinearLaneWorkspace {
            x,
            g,
            masked,
            order,
        } = ws;
        order.take(block, N / LANES);
        let masked = masked.0.as_flattened_mut();
        masked.copy_from_slice(&grad_output[block * len..][..len]);
        if let Some(y) = output {
            relu_mask(masked, &y[block * len..][..len]);
        }
        self.backward_lanes_any::<N>(
            block,
            input,
            masked,
            (&mut x.0, &mut g.0),
            grad_input,
            grads,
        );
        true
    }
}

impl<T: Scalar, const IN: usize, const OUT: usize> Linear<T, IN, OUT> {
    /// One block's forward pass in lanes (`x` is `[in][16]`, `y` `[out][16]`), then a ReLU
    /// if `relu`: the SIMD kernel in `f32`, else the reference loops sample by sample.
    fn forward_lanes_any(&self, x: &[T], y: &mut [T], relu: bool) {
        if let (Some(x), Some(y), Some(w), Some(b)) = (
            T::as_f32(x),
            T::as_f32_mut(y),
            T::as_f32(self.weight.as_flattened()),
            T::as_f32(&self.bias),
        ) {
            simd::dispatch(lanes_fast::Forward::<IN, OUT> { x, w, b, y, relu });
            return;
        }
        let (mut xs, mut ys) = ([T::zero(); IN], [T::zero(); OUT]);
        for n in 0..LANES {
            lane_get(x, n, &mut xs);
            self.forward_reference(&xs, &mut ys);
            if relu {
                ys = ys.map(|v| if v <= T::zero() { T::zero() } else { v });
            }
            lane_put(&ys, n, y);
        }
    }

    /// One block's backward pass in lanes from its output gradient `g` (`[out][16]`): the
    /// input gradient in lanes, and the block's inputs and gradients kept sample by sample
    /// in `samples`, for the parameter gradients of the whole batch after the last block
    /// (in `f32`; otherwise the reference loops, sample by sample).
    fn backward_lanes_any<const N: usize>(
        &self,
        block: usize,
        input: &[[T; IN]; N],
        g: &[T],
        (xs, gs): (&mut [[T; IN]; N], &mut [[T; OUT]; N]),
        grad_input: Option<&mut [[T; IN]; N]>,
        grads: &mut Self,
    ) {
        let mut gi = grad_input.map(|gi| block_of_mut(gi, block).as_flattened_mut());
        let Some(gf) = T::as_f32(g) else {
            let x = block_of(input, block).as_flattened();
            let (mut xn, mut gn, mut gx) = ([T::zero(); IN], [T::zero(); OUT], [T::zero(); IN]);
            for n in 0..LANES {
                lane_get(x, n, &mut xn);
                lane_get(g, n, &mut gn);
                let want = gi.is_some().then_some(&mut gx);
                self.backward_reference(&xn, &gn, want, grads);
                if let Some(gi) = gi.as_deref_mut() {
                    lane_put(&gx, n, gi);
                }
            }
            return;
        };
        if let Some(gi) = gi {
            let w = T::as_f32(self.weight.as_flattened()).expect("T is f32");
            let gi = T::as_f32_mut(gi).expect("T is f32");
            simd::dispatch(lanes_fast::InputGrad::<IN, OUT> { w, g: gf, gi });
        }
        block_from_lanes(input, xs, block);
        transpose_blocks(g, block_of_mut(gs, block).as_flattened_mut(), (OUT, LANES));
        if block + 1 == N / LANES {
            self.backward_fast(xs.as_flattened(), gs.as_flattened(), None, grads);
        }
    }
}

/// `f32` kernels for `n` samples at once (`n = 1` for [`Layer::forward`]), generic over the
/// instruction set. Forward is a block of dot products (`RB` samples × `OB` outputs share
/// every load); the two gradients are blocks of `axpy`s along the contiguous input axis.
pub(crate) mod fast {
    use crate::simd::{Kernel, Simd, for_blocks, transpose_matrix};

    /// Ones in the last `rem` lanes, zeros before (`0 < rem < LANES`): which lanes of a
    /// vector ending at a row's end lie past the row's last whole vector.
    #[inline(always)]
    fn tail_mask<S: Simd>(s: S, rem: usize) -> S::F {
        const STEPS: [f32; 32] = {
            let mut steps = [0.0; 32];
            let mut i = 16;
            while i < 32 {
                steps[i] = 1.0;
                i += 1;
            }
            steps
        };
        s.load(&STEPS, 16 - S::LANES + rem)
    }

    /// `y[r][c] = b[c] + Σ_i x[r][i] · w[c][i]` for `RB` rows × `OB` columns.
    #[inline(always)]
    fn dot_block<S: Simd, const RB: usize, const OB: usize, const IN: usize>(
        s: S,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        y: &mut [f32],
        y_stride: usize,
    ) {
        let full = IN / S::LANES * S::LANES;
        let mut acc = [[s.splat(0.0); OB]; RB];
        for i in (0..full).step_by(S::LANES) {
            let wv: [S::F; OB] = core::array::from_fn(|c| s.load(w, c * IN + i));
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = s.load(x, r * IN + i);
                for (a, &wv) in acc.iter_mut().zip(&wv) {
                    *a = s.mul_add(xv, wv, *a);
                }
            }
        }
        let vector_tail = full < IN && IN >= S::LANES;
        if vector_tail {
            // The last vector ends at IN; its lanes already summed see x = 0.
            let (i, keep) = (IN - S::LANES, tail_mask(s, IN - full));
            let wv: [S::F; OB] = core::array::from_fn(|c| s.load(w, c * IN + i));
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = s.load(x, r * IN + i);
                let xv = s.select_gt(keep, s.splat(0.5), xv, s.splat(0.0));
                for (a, &wv) in acc.iter_mut().zip(&wv) {
                    *a = s.mul_add(xv, wv, *a);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (c, &a) in acc.iter().enumerate() {
                let mut sum = s.sum(a);
                if !vector_tail {
                    for i in full..IN {
                        sum += x[r * IN + i] * w[c * IN + i];
                    }
                }
                y[r * y_stride + c] = b[c] + sum;
            }
        }
    }

    /// Forward pass of `x.len() / IN` samples.
    pub(crate) struct Forward<'a, const IN: usize, const OUT: usize> {
        pub x: &'a [f32],
        pub w: &'a [f32],
        pub b: &'a [f32],
        pub y: &'a mut [f32],
    }

    impl<const IN: usize, const OUT: usize> Kernel for Forward<'_, IN, OUT> {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            let n = self.x.len() / IN;
            macro_rules! columns {
                ($r0:ident, $RB:ident) => {
                    // Three outputs, not four: with 4 × 4 sums LLVM kept one in memory,
                    // and its store-to-load chain bound the loop (batch-64 inference −5%).
                    for_blocks!(OUT, [3, 1], |c0, OB| {
                        dot_block::<S, $RB, OB, IN>(
                            s,
                            &self.x[$r0 * IN..],
                            &self.w[c0 * IN..],
                            &self.b[c0..],
                            &mut self.y[$r0 * OUT + c0..],
                            OUT,
                        );
                    });
                };
            }
            if S::LANES >= 16 && n == 1 && IN * OUT > 16 * 1024 {
                // One sample, weights bigger than L1 (fc1: 192 KB): the layer streams them
                // from L2, and eight rows at a time keep more loads in flight.
                for_blocks!(OUT, [8, 4, 1], |c0, OB| {
                    dot_block::<S, 1, OB, IN>(
                        s,
                        self.x,
                        &self.w[c0 * IN..],
                        &self.b[c0..],
                        &mut self.y[c0..],
                        OUT,
                    );
                });
            } else if S::LANES >= 16 {
                for_blocks!(n, [4, 1], |r0, RB| {
                    columns!(r0, RB);
                });
            } else {
                for_blocks!(n, [2, 1], |r0, RB| {
                    columns!(r0, RB);
                });
            }
        }
    }

    /// `yt[o][r] = b[o] + Σ_i w[o][i] · xt[i][r]` for `OB` outputs × `RV` vectors of samples
    /// from vector `v0` (`xt` and `yt` have `n` samples per row).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    // Index loops on purpose (see the comment inside).
    #[allow(clippy::needless_range_loop)]
    fn samples_block<S: Simd, const OB: usize, const RV: usize, const IN: usize>(
        s: S,
        xt: &[f32],
        n: usize,
        w: &[f32],
        b: &[f32],
        yt: &mut [f32],
        v0: usize,
    ) {
        // Constant trip counts only: LLVM then keeps the 24 sums in registers (iterating
        // over the bias slice made it store every sum back to the stack after each step).
        let mut acc = [[s.splat(0.0); RV]; OB];
        for o in 0..OB {
            acc[o] = [s.splat(b[o]); RV];
        }
        let w: &[f32] = &w[..OB * IN];
        for i in 0..IN {
            let mut xv = [s.splat(0.0); RV];
            for v in 0..RV {
                xv[v] = s.load(xt, i * n + (v0 + v) * S::LANES);
            }
            for o in 0..OB {
                let wv = s.splat(w[o * IN + i]);
                for v in 0..RV {
                    acc[o][v] = s.mul_add(wv, xv[v], acc[o][v]);
                }
            }
        }
        for o in 0..OB {
            for v in 0..RV {
                s.store(yt, o * n + (v0 + v) * S::LANES, acc[o][v]);
            }
        }
    }

    /// Forward pass of `n` samples with the samples in the lanes, when `n` is a multiple of
    /// the lane count (and the instruction set has FMA): `x` is transposed into `xt`, the
    /// result `yt` back into `y`. Returns `false`, doing nothing, otherwise.
    pub(crate) struct ForwardSamples<'a, const IN: usize, const OUT: usize> {
        pub x: &'a [f32],
        pub w: &'a [f32],
        pub b: &'a [f32],
        pub y: &'a mut [f32],
        pub xt: &'a mut [f32],
        pub yt: &'a mut [f32],
    }

    impl<const IN: usize, const OUT: usize> Kernel for ForwardSamples<'_, IN, OUT> {
        type Output = bool;
        #[inline(always)]
        fn run<S: Simd>(self, s: S) -> bool {
            let n = self.x.len() / IN;
            if S::LANES < 8 || n == 0 || !n.is_multiple_of(S::LANES) {
                return false;
            }
            transpose_matrix(s, self.x, (n, IN), self.xt);
            let vectors = n / S::LANES;
            let (xt, w, b) = (&*self.xt, self.w, self.b);
            macro_rules! blocks {
                ([$($ob:literal),*], [$($rv:literal),*]) => {
                    for_blocks!(OUT, [$($ob),*], |o0, OB| {
                        for_blocks!(vectors, [$($rv),*], |v0, RV| {
                            samples_block::<S, OB, RV, IN>(
                                s,
                                xt,
                                n,
                                &w[o0 * IN..],
                                &b[o0..],
                                &mut self.yt[o0 * n..],
                                v0,
                            );
                        });
                    });
                };
            }
            if S::LANES >= 16 {
                // 32 registers: 6 outputs × 4 vectors of samples.
                blocks!([6, 4, 1], [4, 2, 1]);
            } else {
                blocks!([4, 1], [2, 1]);
            }
            transpose_matrix(s, self.yt, (OUT, n), self.y);
            true
        }
    }

    /// `out[r][i] (+)= Σ_k coef[r·cr + k·ck] · m[k][i]` for `RB` rows × `NV` vectors of `i`
    /// starting at `i0`, over `k < K`; rows of `m` and `out` are `IN` long.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn axpy_block<S: Simd, const RB: usize, const NV: usize, const IN: usize>(
        s: S,
        coef: &[f32],
        (cr, ck, k_count): (usize, usize, usize),
        m: &[f32],
        out: &mut [f32],
        (i0, keep): (usize, Option<S::F>),
        accumulate: bool,
    ) {
        let mut acc = [[s.splat(0.0); NV]; RB];
        if accumulate {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (v, a) in acc.iter_mut().enumerate() {
                    *a = s.load(out, r * IN + i0 + v * S::LANES);
                }
            }
        }
        for k in 0..k_count {
            let mut mv: [S::F; NV] =
                core::array::from_fn(|v| s.load(m, k * IN + i0 + v * S::LANES));
            if let Some(keep) = keep {
                for mv in &mut mv {
                    *mv = s.select_gt(keep, s.splat(0.5), *mv, s.splat(0.0));
                }
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let c = s.splat(coef[r * cr + k * ck]);
                for (a, &mv) in acc.iter_mut().zip(&mv) {
                    *a = s.mul_add(c, mv, *a);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, &a) in acc.iter().enumerate() {
                s.store(out, r * IN + i0 + v * S::LANES, a);
            }
        }
    }

    /// Rows `0..rows` of `out` from [`axpy_block`]s: 4-vector then 1-vector blocks along `i`,
    /// then plain scalars for the last `IN % LANES` columns.
    #[inline(always)]
    fn axpy_rows<S: Simd, const IN: usize>(
        s: S,
        rows: usize,
        coef: &[f32],
        (cr, ck, k_count): (usize, usize, usize),
        m: &[f32],
        out: &mut [f32],
        accumulate: bool,
    ) {
        let full = IN / S::LANES;
        let vector_tail = full * S::LANES < IN && IN >= S::LANES;
        macro_rules! along_i {
            ($r0:ident, $RB:ident) => {
                let (coef, out) = (&coef[$r0 * cr..], &mut out[$r0 * IN..]);
                for_blocks!(full, [4, 1], |v0, NV| {
                    axpy_block::<S, $RB, NV, IN>(
                        s,
                        coef,
                        (cr, ck, k_count),
                        m,
                        out,
                        (v0 * S::LANES, None),
                        accumulate,
                    );
                });
                if vector_tail {
                    // One vector ending at IN: written over, its first lanes get the same
                    // values again; added to, they add zeros.
                    let keep = if accumulate {
                        Some(tail_mask(s, IN - full * S::LANES))
                    } else {
                        None
                    };
                    axpy_block::<S, $RB, 1, IN>(
                        s,
                        coef,
                        (cr, ck, k_count),
                        m,
                        out,
                        (IN - S::LANES, keep),
                        accumulate,
                    );
                }
                // Rows shorter than a vector: plain scalars.
                let scalar_tail = if vector_tail {
                    IN..IN
                } else {
                    full * S::LANES..IN
                };
                for r in 0..$RB {
                    for i in scalar_tail.clone() {
                        let sum = (0..k_count)
                            .fold(0.0, |acc, k| acc + coef[r * cr + k * ck] * m[k * IN + i]);
                        let o = &mut out[r * IN + i];
                        *o = if accumulate { *o + sum } else { sum };
                    }
                }
            };
        }
        if S::LANES >= 16 {
            for_blocks!(rows, [4, 1], |r0, RB| {
                along_i!(r0, RB);
            });
        } else {
            for_blocks!(rows, [2, 1], |r0, RB| {
                along_i!(r0, RB);
            });
        }
    }

    /// `gw[o][i] += Σ_b g[b][o] · x[b][i]`.
    pub(crate) struct WeightGrad<'a, const IN: usize, const OUT: usize> {
        pub x: &'a [f32],
        pub g: &'a [f32],
        pub gw: &'a mut [f32],
    }

    impl<const IN: usize, const OUT: usize> Kernel for WeightGrad<'_, IN, OUT> {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            let n = self.x.len() / IN;
            axpy_rows::<S, IN>(s, OUT, self.g, (1, OUT, n), self.x, self.gw, true);
        }
    }

    /// One sample's input gradient with the current weights, `gi[i] = Σ_o g[o] · w[o][i]`,
    /// and the update `w[o][i] += scaled[o] · x[i]` (`scaled = −lr·g`) in one pass over the
    /// weights: at batch 1 they stream from L2 (fc1: 192 KB), and two passes read them
    /// twice. On whole vectors, the same arithmetic in the same order as [`InputGrad`] then
    /// [`WeightGrad`]; the last `IN % LANES` columns as plain scalars (a vector ending at
    /// `IN` would read weights its neighbour already updated).
    pub(crate) struct SgdStep<'a, const IN: usize, const OUT: usize> {
        pub w: &'a mut [f32],
        pub x: &'a [f32],
        pub g: &'a [f32],
        pub scaled: &'a [f32],
        pub gi: Option<&'a mut [f32]>,
    }

    /// [`SgdStep`] for the `NV` vectors of columns from `i0`, every row.
    #[inline(always)]
    fn sgd_columns<S: Simd, const NV: usize, const IN: usize>(
        s: S,
        w: &mut [f32],
        (x, g, scaled): (&[f32], &[f32], &[f32]),
        gi: Option<&mut [f32]>,
        i0: usize,
    ) {
        let xv: [S::F; NV] = core::array::from_fn(|v| s.load(x, i0 + v * S::LANES));
        let mut acc = [s.splat(0.0); NV];
        for (o, (&g, &scaled)) in g.iter().zip(scaled).enumerate() {
            let (g, scaled) = (s.splat(g), s.splat(scaled));
            for (v, (a, &xv)) in acc.iter_mut().zip(&xv).enumerate() {
                let at = o * IN + i0 + v * S::LANES;
                let wv = s.load(w, at);
                *a = s.mul_add(g, wv, *a);
                s.store(w, at, s.mul_add(scaled, xv, wv));
            }
        }
        if let Some(gi) = gi {
            for (v, &a) in acc.iter().enumerate() {
                s.store(gi, i0 + v * S::LANES, a);
            }
        }
    }

    impl<const IN: usize, const OUT: usize> Kernel for SgdStep<'_, IN, OUT> {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            let SgdStep {
                w,
                x,
                g,
                scaled,
                mut gi,
            } = self;
            let full = IN / S::LANES;
            for_blocks!(full, [4, 1], |v0, NV| {
                sgd_columns::<S, NV, IN>(s, w, (x, g, scaled), gi.as_deref_mut(), v0 * S::LANES);
            });
            // The last `IN % LANES` columns, one at a time.
            for i in full * S::LANES..IN {
                let mut sum = 0.0;
                for (o, (&g, &scaled)) in g.iter().zip(scaled).enumerate() {
                    let w = &mut w[o * IN + i];
                    sum += g * *w;
                    *w += 0.0 + scaled * x[i];
                }
                if let Some(gi) = gi.as_deref_mut() {
                    gi[i] = sum;
                }
            }
        }
    }

    /// `gi[b][i] = Σ_o g[b][o] · w[o][i]`.
    pub(crate) struct InputGrad<'a, const IN: usize, const OUT: usize> {
        pub w: &'a [f32],
        pub g: &'a [f32],
        pub gi: &'a mut [f32],
    }

    impl<const IN: usize, const OUT: usize> Kernel for InputGrad<'_, IN, OUT> {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            let n = self.g.len() / OUT;
            axpy_rows::<S, IN>(s, n, self.g, (OUT, 1, OUT), self.w, self.gi, false);
        }
    }
}

/// `f32` kernels for one block of 16 samples in lanes ([`crate::lanes`]), generic over the
/// instruction set: every multiply-add is a broadcast weight times one element of 16
/// samples, `OB` outputs (or inputs) at a time sharing each load.
pub(crate) mod lanes_fast {
    use crate::lanes::LANES;
    use crate::simd::{Kernel, Simd, for_blocks};

    /// `y[o] = b[o] + Σ_i w[o][i] · x[i]` (then `max(y, 0)` if `relu`), `x` `[in][16]`,
    /// `y` `[out][16]`.
    pub(crate) struct Forward<'a, const IN: usize, const OUT: usize> {
        pub x: &'a [f32],
        pub w: &'a [f32],
        pub b: &'a [f32],
        pub y: &'a mut [f32],
        /// Whether to store `max(y, 0)` (NaN passing, −0 made +0, as [`crate::Relu`]).
        pub relu: bool,
    }

    /// Outputs `0..OB` of `w`, `b` and `y` (which start at the block's first output), for
    /// the lanes `v0..v0 + S::LANES`.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // constant-trip index loops keep the sums in registers
    fn forward_block<S: Simd, const OB: usize, const IN: usize>(
        s: S,
        (x, w, b): (&[f32], &[f32], &[f32]),
        y: &mut [f32],
        v0: usize,
        relu: bool,
    ) {
        let w = &w[..OB * IN];
        let mut acc = [s.splat(0.0); OB];
        for o in 0..OB {
            acc[o] = s.splat(b[o]);
        }
        for i in 0..IN {
            let xv = s.load(x, i * LANES + v0);
            for o in 0..OB {
                acc[o] = s.mul_add(s.splat(w[o * IN + i]), xv, acc[o]);
            }
        }
        for o in 0..OB {
            let v = acc[o];
            s.store(y, o * LANES + v0, if relu { s.relu(v) } else { v });
        }
    }

    impl<const IN: usize, const OUT: usize> Kernel for Forward<'_, IN, OUT> {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            let Forward { x, w, b, y, relu } = self;
            let x = &x[..IN * LANES];
            for v0 in (0..LANES).step_by(S::LANES) {
                macro_rules! outputs {
                    ([$($ob:literal),*]) => {
                        for_blocks!(OUT, [$($ob),*], |o0, OB| {
                            let at = (x, &w[o0 * IN..], &b[o0..]);
                            forward_block::<S, OB, IN>(s, at, &mut y[o0 * LANES..], v0, relu);
                        });
                    };
                }
                if S::LANES >= 16 {
                    outputs!([24, 4, 1]);
                } else {
                    outputs!([8, 1]);
                }
            }
        }
    }

    /// `gi[i] = Σ_o w[o][i] · g[o]`, `g` `[out][16]`, `gi` `[in][16]`.
    pub(crate) struct InputGrad<'a, const IN: usize, const OUT: usize> {
        pub w: &'a [f32],
        pub g: &'a [f32],
        pub gi: &'a mut [f32],
    }

    /// Inputs `0..RB` of `w`'s rows and of `gi` (which start at the block's first input),
    /// for the lanes `v0..v0 + S::LANES`.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn input_grad_block<S: Simd, const RB: usize, const IN: usize, const OUT: usize>(
        s: S,
        (w, g): (&[f32], &[f32]),
        gi: &mut [f32],
        v0: usize,
    ) {
        let mut acc = [s.splat(0.0); RB];
        for o in 0..OUT {
            let gv = s.load(g, o * LANES + v0);
            let w: &[f32; RB] = w[o * IN..][..RB].try_into().expect("RB weights");
            for r in 0..RB {
                acc[r] = s.mul_add(s.splat(w[r]), gv, acc[r]);
            }
        }
        for r in 0..RB {
            s.store(gi, r * LANES + v0, acc[r]);
        }
    }

    impl<const IN: usize, const OUT: usize> Kernel for InputGrad<'_, IN, OUT> {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            let InputGrad { w, g, gi } = self;
            let g = &g[..OUT * LANES];
            for v0 in (0..LANES).step_by(S::LANES) {
                macro_rules! inputs {
                    ([$($rb:literal),*]) => {
                        for_blocks!(IN, [$($rb),*], |i0, RB| {
                            let at = (&w[i0..], g);
                            input_grad_block::<S, RB, IN, OUT>(s, at, &mut gi[i0 * LANES..], v0);
                        });
                    };
                }
                if S::LANES >= 16 {
                    inputs!([24, 4, 1]);
                } else {
                    inputs!([8, 1]);
                }
            }
        }
    }
}

crate::zeroable!(impl [T: Scalar, const IN: usize, const OUT: usize] for Linear [T, IN, OUT] { weight, bias });
crate::zeroable!(impl [T: Scalar, const IN: usize, const OUT: usize, const N: usize]
    for LinearLaneWorkspace [T, IN, OUT, N] { x, g, masked, order });

/// A fully connected layer's gradient is as big as its weights: the update is the weight
/// gradient's outer product, added straight to the weights.
impl<T: Scalar, const IN: usize, const OUT: usize> SgdLayer for Linear<T, IN, OUT> {
    fn backward_sgd(
        &mut self,
        input: &[T; IN],
        _ws: &mut (),
        grad_output: &[T; OUT],
        grad_input: Option<&mut [T; IN]>,
        lr: T,
    ) {
        self.backward_sgd_fused(input, grad_output, grad_input, lr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zeroed_box;

    #[test]
    fn backward_gives_outer_product_and_transpose() {
        let mut fc = zeroed_box::<Linear<f64, 2, 2>>();
        fc.weight = [[1.0, 2.0], [3.0, 4.0]];
        let mut grads = zeroed_box::<Linear<f64, 2, 2>>();
        let mut gx = [0.0; 2];
        fc.backward(
            &[5.0, 6.0],
            &mut (),
            &[1.0, -1.0],
            Some(&mut gx),
            &mut grads,
        );
        assert_eq!(gx, [1.0 - 3.0, 2.0 - 4.0]);
        assert_eq!(grads.weight, [[5.0, 6.0], [-5.0, -6.0]]);
        assert_eq!(grads.bias, [1.0, -1.0]);
        // A second sample accumulates.
        fc.backward(&[5.0, 6.0], &mut (), &[1.0, -1.0], None, &mut grads);
        assert_eq!(grads.bias, [2.0, -2.0]);
    }
}
