//! 2-D max pooling.

use core::marker::PhantomData;

use rand::Rng;

use crate::fusion::Fusion;
use crate::lanes::{
    LANES, LaneLayer, block_of, block_of_mut, check_lanes, lane_get, lane_put, relu_mask,
};
use crate::layer::{Layer, no_such_param};
use crate::pool_kernel::{self, PoolGeometry};
use crate::pool_lenet;
use crate::scalar::Scalar;
use crate::shape::pool_out;
use crate::simd;
use crate::tensor::{Maps, Tensor};

/// Max pooling over `K`×`K` windows with stride `S`, from `C`×`H`×`W` to `C`×`OH`×`OW`.
///
/// Optional `P` pads each side with −∞ (at most `K / 2`, as PyTorch requires), and `CEIL`
/// turns on PyTorch's ceil mode; both default to off, so `MaxPool2d<T, C, H, W, K, S, OH, OW>`
/// is the plain pool. `OH` and `OW` must equal [`crate::pool_out`]`(H, K, S, P, CEIL)`:
/// `⌊(H + 2·P − K) / S⌋ + 1`, rows and columns past the last window that fits unread, or in
/// ceil mode `⌈…⌉ + 1` as long as the last window starts inside the map or its left padding.
/// ResNet-18's `MaxPool2d<T, 64, 112, 112, 3, 2, 56, 56, 1>` and GoogLeNet's
/// `MaxPool2d<T, 64, 112, 112, 3, 2, 56, 56, 0, true>` are both 112 → 56. In `f32` every
/// pass runs the SIMD kernels of [`crate::pool_kernel`], whatever the window, stride, padding
/// and mode ([`MaxPool2d::uses_simd`]), and gives the bits of the reference loops; only
/// LeNet-sized 2×2 layers (at most 6×28×28 inputs) keep the passes tuned for them.
///
/// The forward pass records which input won each window; the backward pass routes the gradient there (the first maximum on
/// ties, like PyTorch).
///
/// **NaN**: a NaN anywhere in a window makes that window's output NaN, as in PyTorch. Every
/// path follows this one rule ([`beats`]: NaN ranks above every number): the reference loops,
/// the SIMD passes of every instruction set, inference, batches and lanes. The gradient of
/// such a window goes to its first NaN (PyTorch picks its last; the output is the same).
///
/// ```
/// use constnet::{Layer, MaxPool2d};
/// let pool = MaxPool2d::<f32, 1, 4, 4, 2, 2, 2, 2>::new();
/// let x = [[[1.0, 2.0, 0.0, 0.0], [3.0, 4.0, 0.0, 9.0], [0.0; 4], [0.0, 0.0, 0.0, -1.0]]];
/// let mut y = [[[0.0; 2]; 2]; 1];
/// pool.forward(&x, &mut y, &mut [[[0; 2]; 2]; 1]);
/// assert_eq!(y, [[[4.0, 9.0], [0.0, 0.0]]]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MaxPool2d<
    T,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize = 0,
    const CEIL: bool = false,
>(PhantomData<T>);

pub use crate::simd::beats;

// The lane kernels take blocks of the lane layout's width.
const _: () = assert!(pool_kernel::BLOCK == LANES);

/// Whether `K`×`K` windows at stride `S` reach the last row and column of an `H`×`W` map.
const fn covers(h: usize, w: usize, k: usize, s: usize) -> bool {
    (h - k).is_multiple_of(s) && (w - k).is_multiple_of(s)
}

impl<
    T: Scalar,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
> MaxPool2d<T, C, H, W, K, S, OH, OW, P, CEIL>
{
    /// The shape rules; evaluated at compile time by every pass and by [`Layer::CHECK`].
    pub const SHAPE_OK: () = {
        assert!(
            K > 0 && S > 0,
            "MaxPool2d: window K and stride S must be at least 1"
        );
        assert!(
            2 * P <= K,
            "MaxPool2d: padding P must be at most half the window K (PyTorch's rule)"
        );
        assert!(
            K <= H + 2 * P && K <= W + 2 * P,
            "MaxPool2d: window K is larger than the padded map"
        );
        assert!(K * K <= u32::MAX as usize, "MaxPool2d: window too large");
        // PyTorch's rule: the last window that fits (floor), or in ceil mode one more if it
        // starts inside the map or its left padding; rows and columns past it unread.
        assert!(
            OH == pool_out(H, K, S, P, CEIL),
            "MaxPool2d: output height OH must equal pool_out(H, K, S, P, CEIL): ⌊(H + 2·P − K) / S⌋ + 1, or ⌈…⌉ + 1 in ceil mode"
        );
        assert!(
            OW == pool_out(W, K, S, P, CEIL),
            "MaxPool2d: output width OW must equal pool_out(W, K, S, P, CEIL): ⌊(W + 2·P − K) / S⌋ + 1, or ⌈…⌉ + 1 in ceil mode"
        );
    };

    /// Whether the windows cover the map exactly, without padding (`S` divides `H − K` and
    /// `W − K`): the tiled passes of other scalars than `f32` need it.
    const COVERS: bool = P == 0 && !CEIL && covers(H, W, K, S);

    /// Whether the `f32` passes are LeNet-5's tuned 2×2 ones (`pool_lenet.rs`): 2×2
    /// windows at stride 2 tiling maps of at most 28×28, at most 6×28×28 inputs. On so
    /// few outputs they cost less than [`crate::pool_kernel`]'s.
    const LENET: bool = pool_lenet::takes((C, H, W), (K, S, P), CEIL);

    /// The shape, for the kernels of [`crate::pool_kernel`].
    pub const GEO: PoolGeometry = PoolGeometry {
        c: C,
        h: H,
        w: W,
        k: K,
        stride: S,
        pad: P,
        ceil: CEIL,
        oh: OH,
        ow: OW,
    }
    .checked();

    /// Whether the passes of this layer run the SIMD kernels of [`crate::pool_kernel`]: in
    /// `f32` (the others run the reference loops), for every window up to 32 wide at strides
    /// up to 8 ([`PoolGeometry::vectorised`]; beyond, plain loops), except LeNet-sized 2×2
    /// layers (at most 6×28×28 inputs, 2×2 windows at stride 2 tiling maps of at most
    /// 28×28). Those keep the passes tuned for LeNet-5: SIMD where a map's row fills a
    /// vector, branch-free loops otherwise, and a branch-free backward pass.
    ///
    /// ```
    /// use constnet::MaxPool2d;
    /// assert!(MaxPool2d::<f32, 64, 112, 112, 3, 2, 56, 56, 1>::uses_simd());
    /// assert!(!MaxPool2d::<f64, 64, 112, 112, 3, 2, 56, 56, 1>::uses_simd());
    /// ```
    pub fn uses_simd() -> bool {
        const { Self::SHAPE_OK };
        T::as_f32(&[]).is_some() && !Self::LENET && Self::GEO.vectorised()
    }

    /// Input pixel of tap `(i, j)` of window `(y, x)`, or `None` in the padding or past the
    /// map (a ceil-mode window may reach past it).
    #[inline(always)]
    fn tap(y: usize, x: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let r = (y * S + i).checked_sub(P)?;
        let c = (x * S + j).checked_sub(P)?;
        (r < H && c < W).then_some((r, c))
    }

    /// The plain loops of [`Layer::forward`], for any window and stride: the definition the
    /// fast path is tested against.
    pub fn forward_reference(
        &self,
        input: &Maps<T, C, H, W>,
        output: &mut Maps<T, C, OH, OW>,
        ws: &mut [[[u32; OW]; OH]; C],
    ) {
        for c in 0..C {
            for y in 0..OH {
                for x in 0..OW {
                    // The padding is −∞, as in PyTorch: only taps on the map compete.
                    let mut best = T::neg_infinity();
                    let mut at = None;
                    for i in 0..K {
                        for j in 0..K {
                            let Some((r, s)) = Self::tap(y, x, i, j) else {
                                continue;
                            };
                            let v = input[c][r][s];
                            if at.is_none() || beats(v, best) {
                                best = v;
                                at = Some(i * K + j);
                            }
                        }
                    }
                    // Every window holds a tap of the map (P ≤ K/2, and a ceil-mode window
                    // starts inside the map or its left padding).
                    let at = at.unwrap_or(0);
                    output[c][y][x] = best;
                    ws[c][y][x] = at as u32;
                }
            }
        }
    }

    /// The plain loops of [`Layer::backward`] (see [`MaxPool2d::forward_reference`]).
    pub fn backward_reference(
        _input: &Maps<T, C, H, W>,
        ws: &[[[u32; OW]; OH]; C],
        grad_output: &Maps<T, C, OH, OW>,
        gi: &mut Maps<T, C, H, W>,
    ) {
        // In place: a whole-tensor temporary would be built on the stack.
        gi.as_flattened_mut().as_flattened_mut().fill(T::zero());
        for c in 0..C {
            for y in 0..OH {
                for x in 0..OW {
                    let at = ws[c][y][x] as usize;
                    if let Some((r, s)) = Self::tap(y, x, at / K, at % K) {
                        gi[c][r][s] = gi[c][r][s] + grad_output[c][y][x];
                    }
                }
            }
        }
    }

    /// Backward pass for tiling windows: every input pixel belongs to exactly one window, so
    /// each is *written* once (the gradient or zero), with no branch and no zero-fill. (Here,
    /// not beside `pool_lenet`'s forward loops: moved there, it was vectorised worse, LeNet-5's
    /// pool1 backward 5× as long.)
    fn backward_tiled(
        ws: &[[[u32; OW]; OH]; C],
        grad_output: &Maps<T, C, OH, OW>,
        gi: &mut Maps<T, C, H, W>,
    ) {
        // Index loops over the const sizes, not zips: they need no link-time inlining (see
        // `crate::pairs`).
        for c in 0..C {
            for oy in 0..OH {
                let (g, at) = (&grad_output[c][oy], &ws[c][oy]);
                for (i, row) in gi[c][oy * K..oy * K + K].iter_mut().enumerate() {
                    for ox in 0..OW {
                        let (g, at) = (g[ox], at[ox]);
                        for (j, v) in row[ox * K..ox * K + K].iter_mut().enumerate() {
                            // An index, not a select, which the compiler may make a branch.
                            *v = [T::zero(), g][usize::from(at as usize == i * K + j)];
                        }
                    }
                }
            }
        }
    }

    /// The pooling layer (it has no parameters).
    pub const fn new() -> Self {
        const { Self::SHAPE_OK };
        Self(PhantomData)
    }
}

impl<
    T: Scalar,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
> Layer for MaxPool2d<T, C, H, W, K, S, OH, OW, P, CEIL>
{
    type Scalar = T;
    type Input = Maps<T, C, H, W>;
    type Output = Maps<T, C, OH, OW>;
    /// For every output, the winning tap `i·K + j` inside its window.
    type Workspace = [[[u32; OW]; OH]; C];
    const CHECK: () = Self::SHAPE_OK;
    const PARAM_TENSORS: usize = 0;

    /// In `f32`, [`pool_kernel::forward`] (bit for bit [`MaxPool2d::forward_reference`]).
    fn forward(&self, input: &Self::Input, output: &mut Self::Output, ws: &mut Self::Workspace) {
        const { Self::SHAPE_OK };
        if let (Some(x), Some(y)) = (T::as_f32(input.flat()), T::as_f32_mut(output.flat_mut())) {
            let at = ws.as_flattened_mut().as_flattened_mut();
            if !Self::LENET {
                pool_kernel::forward(&Self::GEO, x, y, at);
            } else if !simd::dispatch(pool_lenet::Forward2x2::<C, H, W, OH, OW> { x, y, at })
                && pool_lenet::forward_tiled::<T, C, H, W, K, OH, OW>(input, output, ws)
            {
                self.forward_reference(input, output, ws);
            }
        } else if S == K && Self::COVERS {
            if pool_lenet::forward_tiled::<T, C, H, W, K, OH, OW>(input, output, ws) {
                self.forward_reference(input, output, ws);
            }
        } else {
            self.forward_reference(input, output, ws);
        }
    }

    /// In `f32`, only the maxima ([`pool_kernel::max`], the values of [`Layer::forward`]
    /// bit for bit); otherwise [`Layer::forward`]. LeNet-sized 2×2 layers take the maxima of
    /// columns before rows, so a window whose maximum is a zero of both signs may give
    /// `+0.0` where [`Layer::forward`] gives `-0.0`.
    fn infer(&self, input: &Self::Input, output: &mut Self::Output, ws: &mut Self::Workspace) {
        const { Self::SHAPE_OK };
        if let (Some(x), Some(y)) = (T::as_f32(input.flat()), T::as_f32_mut(output.flat_mut())) {
            if !Self::LENET {
                return pool_kernel::max(&Self::GEO, x, y);
            }
            let kernel = pool_lenet::Max2x2::<C, H, W, OH, OW> { x, y };
            if simd::dispatch_within(kernel, W.min(OH * OW)) {
                return;
            }
        }
        self.forward(input, output, ws);
    }

    /// In `f32`, [`pool_kernel::backward`] (bit for bit [`MaxPool2d::backward_reference`]).
    fn backward(
        &self,
        input: &Self::Input,
        ws: &mut Self::Workspace,
        grad_output: &Self::Output,
        grad_input: Option<&mut Self::Input>,
        _grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        let Some(gi) = grad_input else { return };
        if !Self::LENET
            && let (Some(g), Some(gx)) =
                (T::as_f32(grad_output.flat()), T::as_f32_mut(gi.flat_mut()))
        {
            let at = ws.as_flattened().as_flattened();
            pool_kernel::backward(&Self::GEO, at, g, gx);
        } else if S == K && Self::COVERS {
            Self::backward_tiled(ws, grad_output, gi);
        } else {
            Self::backward_reference(input, ws, grad_output, gi);
        }
    }

    fn param(&self, i: usize) -> &[T] {
        no_such_param("MaxPool2d", i)
    }
    fn param_mut(&mut self, i: usize) -> &mut [T] {
        no_such_param("MaxPool2d", i)
    }
    fn init<R: Rng + ?Sized>(&mut self, _rng: &mut R) {}
}

/// The whole batch at once, 16 samples per vector (see [`crate::lanes`]): a window's
/// maximum is a vector `max`, and the backward pass finds each lane's winner again from the
/// input (the first maximum, as in [`Layer::forward`]) instead of keeping it.
impl<
    T: Scalar,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
    const N: usize,
> LaneLayer<N> for MaxPool2d<T, C, H, W, K, S, OH, OW, P, CEIL>
{
    /// One sample's input and input gradient, output and winners, for the reference loops.
    type LaneWorkspace = (
        (Maps<T, C, H, W>, Maps<T, C, H, W>),
        (Maps<T, C, OH, OW>, [[[u32; OW]; OH]; C]),
    );

    fn forward_lanes(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &mut [Self::Output; N],
        ws: &mut Self::LaneWorkspace,
    ) {
        const { Self::SHAPE_OK };
        check_lanes(N);
        let x = Maps::flat_slice(block_of(input, block));
        let y = Maps::flat_slice_mut(block_of_mut(output, block));
        if let (Some(x), Some(y)) = (T::as_f32(x), T::as_f32_mut(y)) {
            if Self::LENET {
                let kernel = pool_lenet::ForwardLanes::<C, H, W, K, S, OH, OW> { x, y };
                return simd::dispatch(kernel);
            }
            return pool_kernel::forward_lanes(&Self::GEO, x, y);
        }
        let ((xs, _), (ys, at)) = ws;
        for n in 0..LANES {
            lane_get(x, n, xs.flat_mut());
            self.forward_reference(xs, ys, at);
            lane_put(ys.flat(), n, y);
        }
    }

    fn backward_lanes(
        &self,
        block: usize,
        input: &[Self::Input; N],
        _output: &[Self::Output; N],
        ws: &mut Self::LaneWorkspace,
        grad_output: &[Self::Output; N],
        grad_input: Option<&mut [Self::Input; N]>,
        _grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        check_lanes(N);
        let Some(gi) = grad_input else { return };
        self.backward_lanes_pool(block, (input, grad_output, gi), ws, false);
    }

    const MASKS_FOR_FREE: bool = true;
    const LANE_EPILOGUE: Option<Fusion<'static, T>> = if K == 2 && S == 2 && Self::COVERS {
        Some(Fusion::POOL)
    } else {
        None
    };

    /// The mask is the window's maximum, read anyway: `g` goes to the winner if it is
    /// positive.
    fn backward_lanes_masked(
        &self,
        block: usize,
        input: &[Self::Input; N],
        _output: &[Self::Output; N],
        ws: &mut Self::LaneWorkspace,
        grad_output: &[Self::Output; N],
        grad_input: &mut [Self::Input; N],
        _grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        check_lanes(N);
        self.backward_lanes_pool(block, (input, grad_output, grad_input), ws, true);
    }
}

impl<
    T: Scalar,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
> MaxPool2d<T, C, H, W, K, S, OH, OW, P, CEIL>
{
    /// The lane backward pass of block `block`, with the input gradient zero where the input
    /// is not positive if `relu`.
    #[allow(clippy::type_complexity)]
    fn backward_lanes_pool<const N: usize>(
        &self,
        block: usize,
        (input, grad_output, gi): (
            &[Maps<T, C, H, W>; N],
            &[Maps<T, C, OH, OW>; N],
            &mut [Maps<T, C, H, W>; N],
        ),
        ws: &mut <Self as LaneLayer<N>>::LaneWorkspace,
        relu: bool,
    ) {
        let (x, g, gi) = (
            Maps::flat_slice(block_of(input, block)),
            Maps::flat_slice(block_of(grad_output, block)),
            Maps::flat_slice_mut(block_of_mut(gi, block)),
        );
        if let (Some(x), Some(g), Some(gi)) = (T::as_f32(x), T::as_f32(g), T::as_f32_mut(gi)) {
            if Self::LENET {
                // Tiling windows: every input gradient is written.
                let kernel = pool_lenet::BackwardLanes::<C, H, W, K, S, OH, OW> { x, g, gi, relu };
                return simd::dispatch(kernel);
            }
            return pool_kernel::backward_lanes(&Self::GEO, x, g, gi, relu);
        }
        let ((xs, gxs), (gs, at)) = ws;
        for n in 0..LANES {
            lane_get(x, n, xs.flat_mut());
            self.forward_reference(xs, gs, at);
            lane_get(g, n, gs.flat_mut());
            Self::backward_reference(xs, at, gs, gxs);
            if relu {
                relu_mask(gxs.flat_mut(), xs.flat());
            }
            lane_put(gxs.flat(), n, gi);
        }
    }
}

crate::zeroable!(impl [T: Scalar, const C: usize, const H: usize, const W: usize, const K: usize, const S: usize, const OH: usize, const OW: usize, const P: usize, const CEIL: bool]
    for MaxPool2d [T, C, H, W, K, S, OH, OW, P, CEIL] (_0));

// In batches, sample by sample; the fused SGD step, just the backward pass.
crate::batch_by_sample::per_sample!(impl<T; const C: usize, const H: usize, const W: usize, const K: usize,
    const S: usize, const OH: usize, const OW: usize, const P: usize, const CEIL: bool>
    for MaxPool2d<T, C, H, W, K, S, OH, OW, P, CEIL>);
crate::fused::no_params!(impl<T; const C: usize, const H: usize, const W: usize, const K: usize,
    const S: usize, const OH: usize, const OW: usize, const P: usize, const CEIL: bool>
    for MaxPool2d<T, C, H, W, K, S, OH, OW, P, CEIL>);
