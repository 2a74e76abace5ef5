//! What `infer` does differently from an evaluation forward pass, with the same output bit
//! for bit: a ReLU applied by the batch norm or the residual add before it as they write
//! (`Layer::infer_fused` with an epilogue), batch norm (and the ReLU after it) applied by
//! the convolution before it to its sums (`Layer::infer_fused` with an affine map), on the
//! blocks of ResNet, DenseNet and GoogLeNet; a concatenation's branches written straight into
//! its output. The forward pass keeps what `infer` skips.

use constnet::densenet::DenseLayer;
use constnet::googlenet::BasicConv2d;
use constnet::resnet::{BasicBlock, BasicBlockDown};
use constnet::simd::{Isa, with_isa};
use constnet::{
    BatchNorm2d, ChannelAffine, Conv2d, Epilogue, Fusion, Layer, Pass, Tensor, sequential,
    zeroed_box,
};
use rand::{RngExt, SeedableRng};

/// `L` with random parameters and batch-norm statistics (buffers come in pairs: running
/// mean, running variance).
fn random<L: Layer<Scalar = f32>>(rng: &mut rand::rngs::StdRng) -> Box<L> {
    let mut net = zeroed_box::<L>();
    net.init(rng);
    for i in 0..L::BUFFER_TENSORS {
        for v in net.buffer_mut(i) {
            *v = if i % 2 == 0 {
                rng.random_range(-0.5..0.5)
            } else {
                rng.random_range(0.5..2.0)
            };
        }
    }
    net
}

/// `infer` and an evaluation `forward_in` of `L` agree bit for bit on random inputs; and
/// `infer` did fuse: the output of each named layer in `skipped` (with negative values,
/// which the ReLU or the batch norm after it changes) is left unwritten in its workspace,
/// where the forward pass keeps it.
fn infer_is_the_evaluation_pass<L: Layer<Scalar = f32>>(skipped: &[&str]) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..3 {
        let net = random::<L>(&mut rng);
        let mut x = zeroed_box::<L::Input>();
        x.flat_mut()
            .iter_mut()
            .for_each(|v| *v = rng.random_range(-1.0..1.0));
        let (mut fused, mut apart) = (zeroed_box::<L::Output>(), zeroed_box::<L::Output>());
        let (mut ws_fused, mut ws_apart) = (zeroed_box::<L::Workspace>(), zeroed_box());
        net.infer(&x, &mut fused, &mut ws_fused);
        net.forward_in(&Pass::eval(), &x, &mut apart, &mut ws_apart);
        let bits = |t: &L::Output| t.flat().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert!(
            bits(&fused) == bits(&apart),
            "{skipped:?}: infer differs from forward_in"
        );
        for skipped in skipped {
            let kept = L::activation(&ws_apart, skipped)
                .expect("a named layer")
                .flat()
                .to_vec();
            let left = L::activation(&ws_fused, skipped).unwrap().flat().to_vec();
            assert!(
                kept.iter().any(|&v| v < 0.0),
                "{skipped}: the fused map's input has negatives"
            );
            assert!(
                left.iter().all(|&v| v == 0.0),
                "{skipped}: infer wrote what it fused"
            );
        }
    }
}

#[test]
fn resnet_blocks_infer_with_batch_norms_in_the_convolutions_and_relus_in_the_adds() {
    infer_is_the_evaluation_pass::<BasicBlock<f32, 4, 6>>(&["conv1", "bn1", "conv2"]);
    infer_is_the_evaluation_pass::<BasicBlockDown<f32, 4, 8, 6, 3>>(&["conv1", "bn1", "conv2"]);
    // 288 taps (two blocks of the matrix product: the map follows the last) on 144 pixels
    // (three panels, the last partial).
    infer_is_the_evaluation_pass::<BasicBlock<f32, 32, 12>>(&["conv1", "bn1", "conv2"]);
}

#[test]
fn densenet_layers_infer_with_the_relus_in_the_batch_norms_and_norm2_in_conv1() {
    infer_is_the_evaluation_pass::<DenseLayer<f32, 8, 5>>(&["norm1", "conv1", "norm2"]);
}

#[test]
fn googlenet_units_infer_with_the_batch_norm_and_relu_in_the_convolution() {
    infer_is_the_evaluation_pass::<BasicConv2d<f32, 3, 4, 3, 1, 1, 6, 6>>(&["conv", "bn"]);
}

#[test]
fn the_relu_epilogue_maps_as_the_relu_layer_does_nan_and_signed_zeros_included() {
    use constnet::{Epilogue, Relu};
    let x = [-1.0f32, -0.0, 0.0, 2.5, f32::NAN, f32::NEG_INFINITY];
    let mut layer = [0.0f32; 6];
    Relu::<[f32; 6]>::new().forward(&x, &mut layer, &mut ());
    let mut mapped = x;
    Epilogue::Relu.apply(&mut mapped);
    assert_eq!(mapped.map(f32::to_bits), layer.map(f32::to_bits));
    assert!(mapped[4].is_nan());
    let mut same = x;
    Epilogue::Identity.apply(&mut same);
    assert_eq!(same.map(f32::to_bits), x.map(f32::to_bits));
    assert_eq!(Epilogue::Relu.after(Epilogue::Relu), Some(Epilogue::Relu));
    assert_eq!(
        Epilogue::Identity.after(Epilogue::Relu),
        Some(Epilogue::Relu)
    );
    assert_eq!(
        Epilogue::Relu.after(Epilogue::Identity),
        Some(Epilogue::Relu)
    );
}

/// A forward pass keeps every branch's output of a concatenation (`visualize` draws them);
/// `infer` writes them straight into the concatenation's output, which holds the same maps.
#[test]
fn a_forward_pass_keeps_the_concatenations_branches_and_infer_gives_the_same_output() {
    use constnet::googlenet::Inception;
    type Module = Inception<f32, 4, 2, 2, 3, 2, 2, 2, 9, 5>;
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let net = random::<Module>(&mut rng);
    let mut x = zeroed_box::<<Module as Layer>::Input>();
    x.flat_mut()
        .iter_mut()
        .for_each(|v| *v = rng.random_range(-1.0..1.0));
    let (mut kept, mut inferred) = (zeroed_box::<<Module as Layer>::Output>(), zeroed_box());
    let mut ws = zeroed_box::<<Module as Layer>::Workspace>();
    net.forward_in(&Pass::eval(), &x, &mut kept, &mut ws);
    net.infer(&x, &mut inferred, &mut zeroed_box());
    assert_eq!(kept.flat(), inferred.flat());
    let branch1 = Module::activation(&ws, "branch1").expect("a named branch");
    assert_eq!(branch1.flat(), &kept.flat()[..2 * 5 * 5]);
    assert!(branch1.flat().iter().any(|&v| v > 0.0));
    let branch4 = Module::activation(&ws, "branch4").expect("a named branch");
    assert_eq!(branch4.flat(), &kept.flat()[7 * 5 * 5..]);
}

/// A ResNet-20 for 1×32×32 images and 10 classes with random parameters and buffers, and `N`
/// random images, from `seed`.
#[allow(clippy::type_complexity)]
fn resnet20_and_images<const N: usize>(
    seed: u64,
) -> (
    Box<constnet::resnet::ResNet20Logits<f32, 1, 10>>,
    Box<[constnet::Maps<f32, 1, 32, 32>; N]>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let net = random(&mut rng);
    let mut x = zeroed_box::<[constnet::Maps<f32, 1, 32, 32>; N]>();
    for image in x.iter_mut() {
        image
            .flat_mut()
            .iter_mut()
            .for_each(|v| *v = rng.random_range(-1.0..1.0));
    }
    (net, x)
}

/// A network with batch norm infers a batch with the fusions of `infer`: its first stages
/// sample by sample (batch norm needs the batch only to train), its last stage, whose 8×8
/// maps fill a fraction of F(2×2, 3×3)'s blocks alone, layer by layer on the whole batch.
/// Both give the same bits as `infer` on each image and as the layer-by-layer evaluation
/// pass over the batch, on every instruction set. ResNet-20's 3×3 layers run F(2×2, 3×3):
/// with the weights transformed once per batch there, on each call in `infer`.
#[test]
fn batched_inference_with_batch_norm_is_per_sample_inference_bit_for_bit() {
    use constnet::BatchLayer;
    use constnet::resnet::ResNet20Logits;
    type Net = ResNet20Logits<f32, 1, 10>;
    type Body = constnet::resnet::BasicBlock<f32, 16, 32>;
    const N: usize = 3;
    type Last = constnet::resnet::BasicBlock<f32, 64, 8>;
    const {
        assert!(
            <Body as BatchLayer<N>>::WHOLE_BATCH && !<Body as BatchLayer<N>>::INFER_WHOLE_BATCH
        );
        assert!(
            <Last as BatchLayer<N>>::INFER_WHOLE_BATCH
                && !<Last as BatchLayer<1>>::INFER_WHOLE_BATCH
        );
    };
    let (net, x) = resnet20_and_images::<N>(11);
    let (mut batched, mut layered) = (
        zeroed_box::<[[f32; 10]; N]>(),
        zeroed_box::<[[f32; 10]; N]>(),
    );
    for isa in Isa::ALL.into_iter().filter(|isa| isa.available()) {
        with_isa(isa, || {
            net.infer_batch(&x, &mut batched, &mut zeroed_box());
            net.forward_batch_in(&Pass::eval(), &x, &mut layered, &mut zeroed_box());
            let mut ws = zeroed_box::<<Net as Layer>::Workspace>();
            for n in 0..N {
                let mut one = [0.0f32; 10];
                net.infer(&x[n], &mut one, &mut ws);
                assert_eq!(
                    batched[n].map(f32::to_bits),
                    one.map(f32::to_bits),
                    "sample {n} on {isa:?}"
                );
                assert_eq!(
                    layered[n].map(f32::to_bits),
                    one.map(f32::to_bits),
                    "sample {n} on {isa:?}"
                );
            }
        });
    }
}

/// Inside `threads::within_layers(2, ..)` a batch runs layer by layer on the whole batch, each
/// convolution giving each thread half the samples (ResNet-20's first stages too, which one
/// thread runs sample by sample): the same bits as one thread, on every instruction set, at
/// the batch of the `nets` bench (its 16- and 32-channel layers then see 32 samples a call).
#[test]
fn batched_inference_on_two_threads_is_one_threads_bit_for_bit() {
    use constnet::BatchLayer;
    use constnet::resnet::ResNet20Logits;
    type Net = ResNet20Logits<f32, 1, 10>;
    const N: usize = 64;
    let (net, x) = resnet20_and_images::<N>(12);
    let (mut one, mut two) = (
        zeroed_box::<[[f32; 10]; N]>(),
        zeroed_box::<[[f32; 10]; N]>(),
    );
    let mut ws = zeroed_box::<<Net as BatchLayer<N>>::BatchWorkspace>();
    for isa in Isa::ALL.into_iter().filter(|isa| isa.available()) {
        with_isa(isa, || {
            net.infer_batch(&x, &mut one, &mut ws);
            constnet::threads::within_layers(2, || net.infer_batch(&x, &mut two, &mut ws));
            for n in 0..N {
                assert_eq!(
                    one[n].map(f32::to_bits),
                    two[n].map(f32::to_bits),
                    "sample {n} on {isa:?}"
                );
            }
        });
    }
}

/// A convolution on the matrix-product path applies the ReLU after it to its sums in `infer`
/// (VGG's and AlexNet's conv → ReLU), leaving its own output unwritten; LeNet-5's tuned
/// convolutions do not, so their outputs stay where `LeNet5::activations` reads them.
#[test]
fn a_convolution_applies_the_relu_after_it_on_the_matrix_product_path_only() {
    use constnet::{Conv2d, Maps, Relu, sequential};
    type Vgg = sequential![Conv2d<f32, 8, 16, 3, 1, 1, 9, 9, 9, 9>, Relu<Maps<f32, 16, 9, 9>>];
    const { assert!(<Conv2d<f32, 8, 16, 3, 1, 1, 9, 9, 9, 9> as Layer>::APPLIES_EPILOGUES) };
    const { assert!(!<Conv2d<f32, 1, 6, 5, 1, 0, 32, 32, 28, 28> as Layer>::APPLIES_EPILOGUES) };
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let net = random::<Vgg>(&mut rng);
    let mut x = zeroed_box::<Maps<f32, 8, 9, 9>>();
    x.flat_mut()
        .iter_mut()
        .for_each(|v| *v = rng.random_range(-1.0..1.0));
    let (mut fused, mut apart) = (
        zeroed_box::<Maps<f32, 16, 9, 9>>(),
        zeroed_box::<Maps<f32, 16, 9, 9>>(),
    );
    let (mut ws_fused, mut ws_apart) = (
        zeroed_box::<<Vgg as Layer>::Workspace>(),
        zeroed_box::<<Vgg as Layer>::Workspace>(),
    );
    net.infer(&x, &mut fused, &mut ws_fused);
    net.forward_in(&Pass::eval(), &x, &mut apart, &mut ws_apart);
    let bits = |t: &Maps<f32, 16, 9, 9>| t.flat().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert!(bits(&fused) == bits(&apart));
    assert!(ws_apart.mid.flat().iter().any(|&v| v < 0.0));
    assert!(
        ws_fused.mid.flat().iter().all(|&v| v == 0.0),
        "infer wrote the convolution's output"
    );
}

/// `infer_fused` with a per-channel affine map and a ReLU gives what `infer` and then the
/// maps as a pass of their own give, bit for bit, on every instruction set: whether the
/// layer applies them to its sums (a convolution, a chain that ends in one) or runs them
/// after its own pass (batch norm, a residual block), which a chain never asks of them but
/// a caller may.
fn fused_affine_is_the_maps_after<L: Layer<Scalar = f32>, const C: usize>() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let net = random::<L>(&mut rng);
    let mut x = zeroed_box::<L::Input>();
    x.flat_mut()
        .iter_mut()
        .for_each(|v| *v = rng.random_range(-1.0..1.0));
    let mean: [f32; C] = core::array::from_fn(|_| rng.random_range(-0.5..0.5));
    let scale: [f32; C] = core::array::from_fn(|_| rng.random_range(-2.0..2.0));
    let shift: [f32; C] = core::array::from_fn(|_| rng.random_range(-0.5..0.5));
    let affine = ChannelAffine {
        mean: &mean,
        scale: &scale,
        shift: &shift,
    };
    for isa in Isa::ALL.into_iter().filter(|isa| isa.available()) {
        with_isa(isa, || {
            let (mut fused, mut apart) = (zeroed_box::<L::Output>(), zeroed_box::<L::Output>());
            let mut ws = zeroed_box::<L::Workspace>();
            let fusion = Fusion {
                affine: Some(affine),
                ..Fusion::epilogue(Epilogue::Relu)
            };
            net.infer_fused(&x, &mut fused, &mut ws, fusion);
            net.infer(&x, &mut apart, &mut ws);
            affine.apply(apart.flat_mut(), Epilogue::Relu);
            let bits = |t: &L::Output| t.flat().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert!(bits(&fused) == bits(&apart), "{isa:?}");
            assert!(fused.flat().contains(&0.0) && fused.flat().iter().any(|&v| v > 0.0));
        });
    }
}

#[test]
fn infer_fused_with_an_affine_map_is_infer_then_the_maps() {
    type Conv = Conv2d<f32, 4, 8, 3, 1, 1, 6, 6, 6, 6>;
    fused_affine_is_the_maps_after::<Conv, 8>();
    fused_affine_is_the_maps_after::<BatchNorm2d<f32, 4, 6, 6>, 4>();
    fused_affine_is_the_maps_after::<BasicBlock<f32, 4, 6>, 4>();
    fused_affine_is_the_maps_after::<sequential![Conv, BatchNorm2d<f32, 8, 6, 6>], 8>();
    fused_affine_is_the_maps_after::<sequential![BatchNorm2d<f32, 4, 6, 6>, Conv], 8>();
}
