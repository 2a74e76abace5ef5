//! Names of a network's parts: PyTorch's `state_dict` keys from the types, safetensors in
//! and out with buffers and counters (and every defect refused, naming the tensor, with the
//! network unchanged), and activations found by name.

use constnet::pytorch::SafetensorsError;
use constnet::state_dict::{load_state_dict, save_state_dict};
use constnet::{
    BatchNorm2d, Block, Conv2d, Identity, Layer, Maps, Named, Network, NoBias, Relu, Residual,
    name, sequential, tensor_names, zeroed_box,
};
use rand::SeedableRng;
use safetensors::tensor::{Dtype, TensorView};

name!(Conv1 = "conv1");
name!(Bn1 = "bn1");
name!(Conv2 = "conv2");
name!(Bn2 = "bn2");
name!(Downsample = "downsample");
name!(Layer1 = "layer1");
name!(Relu1 = "relu");

/// torchvision's BasicBlock(4 → 8, stride 2) and BasicBlock(8 → 8), as `layer1`.
type Down = Residual<
    sequential![
        Named<Conv1, NoBias<Conv2d<f64, 4, 8, 3, 2, 1, 7, 7, 4, 4>>>,
        Named<Bn1, BatchNorm2d<f64, 8, 4, 4>>,
        Named<Relu1, Relu<Maps<f64, 8, 4, 4>>>,
        Named<Conv2, NoBias<Conv2d<f64, 8, 8, 3, 1, 1, 4, 4, 4, 4>>>,
        Named<Bn2, BatchNorm2d<f64, 8, 4, 4>>,
    ],
    Named<
        Downsample,
        sequential![NoBias<Conv2d<f64, 4, 8, 1, 2, 0, 7, 7, 4, 4>>, BatchNorm2d<f64, 8, 4, 4>],
    >,
>;
type Same = Residual<
    sequential![
        Named<Conv1, NoBias<Conv2d<f64, 8, 8, 3, 1, 1, 4, 4, 4, 4>>>,
        Named<Bn1, BatchNorm2d<f64, 8, 4, 4>>,
        Named<Relu1, Relu<Maps<f64, 8, 4, 4>>>,
        Named<Conv2, NoBias<Conv2d<f64, 8, 8, 3, 1, 1, 4, 4, 4, 4>>>,
        Named<Bn2, BatchNorm2d<f64, 8, 4, 4>>,
    ],
    Identity<Maps<f64, 8, 4, 4>>,
>;
type Stage = Named<
    Layer1,
    sequential![
        Block<sequential![Down, Relu<Maps<f64, 8, 4, 4>>]>,
        Block<sequential![Same, Relu<Maps<f64, 8, 4, 4>>]>
    ],
>;

#[test]
fn names_are_torchvisions() {
    let names = tensor_names::<Stage>();
    let expected_params = [
        "layer1.0.conv1.weight",
        "layer1.0.bn1.weight",
        "layer1.0.bn1.bias",
        "layer1.0.conv2.weight",
        "layer1.0.bn2.weight",
        "layer1.0.bn2.bias",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.weight",
        "layer1.0.downsample.1.bias",
        "layer1.1.conv1.weight",
    ];
    assert_eq!(&names[..expected_params.len()], expected_params);
    assert!(names.contains(&"layer1.0.downsample.1.running_var".to_string()));
    assert!(names.contains(&"layer1.1.bn2.num_batches_tracked".to_string()));
    assert_eq!(names.last().unwrap(), "layer1.1.bn2.num_batches_tracked");
    let net = zeroed_box::<Stage>();
    assert_eq!(
        net.tensor_shape(constnet::TensorKind::Param, 6).dims(),
        [8, 4, 1, 1]
    );
}

fn trained() -> Box<Stage> {
    let mut net = zeroed_box::<Stage>();
    net.init(&mut rand::rngs::StdRng::seed_from_u64(2));
    for i in 0..<Stage as Layer>::BUFFER_TENSORS {
        for (j, v) in net.buffer_mut(i).iter_mut().enumerate() {
            *v = 0.5 + (i + j) as f64 / 16.0;
        }
    }
    for i in 0..<Stage as Layer>::COUNTERS {
        *net.counter_mut(i) = 10 + i as u64;
    }
    net
}

#[test]
fn a_state_dict_round_trips_with_buffers_and_counters() {
    let net = trained();
    let bytes = save_state_dict(&*net).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let counter = st.tensor("layer1.1.bn1.num_batches_tracked").unwrap();
    assert_eq!((counter.dtype(), counter.shape()), (Dtype::I64, &[][..]));
    assert_eq!(
        st.tensor("layer1.0.downsample.1.running_mean")
            .unwrap()
            .dtype(),
        Dtype::F64
    );
    // Another network's values (and the same eps and momentum, which are not in the file).
    let mut back = zeroed_box::<Stage>();
    back.init(&mut rand::rngs::StdRng::seed_from_u64(99));
    load_state_dict(&mut *back, &bytes).unwrap();
    assert!(*back == *net, "the loaded network differs");
}

/// The file `bytes` with tensor `name` replaced (or removed, for `None`).
fn edited(bytes: &[u8], name: &str, with: Option<(Dtype, Vec<usize>, Vec<u8>)>) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != name)
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    if let Some((dtype, shape, data)) = with {
        tensors.push((name.to_string(), dtype, shape, data));
    }
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn every_defect_of_a_buffer_or_counter_names_it_and_leaves_the_network_alone() {
    let bytes = save_state_dict(&*trained()).unwrap();
    let var = "layer1.0.bn2.running_var";
    let count = "layer1.0.bn2.num_batches_tracked";
    let cases = [
        (
            edited(&bytes, var, None),
            SafetensorsError::Missing { tensor: var.into() },
        ),
        (
            edited(&bytes, var, Some((Dtype::F64, vec![4], vec![0; 32]))),
            SafetensorsError::Shape {
                tensor: var.into(),
                found: vec![4],
                expected: vec![8],
            },
        ),
        (
            edited(
                &bytes,
                count,
                Some((Dtype::F32, vec![], 3f32.to_le_bytes().to_vec())),
            ),
            SafetensorsError::Dtype {
                tensor: count.into(),
                found: "F32".into(),
            },
        ),
        (
            edited(
                &bytes,
                count,
                Some((Dtype::I64, vec![], (-1i64).to_le_bytes().to_vec())),
            ),
            SafetensorsError::NonFinite {
                tensor: count.into(),
                index: 0,
            },
        ),
        (
            edited(
                &bytes,
                var,
                Some((
                    Dtype::F64,
                    vec![8],
                    [f64::NAN; 8].iter().flat_map(|v| v.to_le_bytes()).collect(),
                )),
            ),
            SafetensorsError::NonFinite {
                tensor: var.into(),
                index: 0,
            },
        ),
        (
            edited(
                &bytes,
                "layer1.0.bn2.momentum",
                Some((Dtype::F64, vec![1], vec![0; 8])),
            ),
            SafetensorsError::Unexpected {
                tensor: "layer1.0.bn2.momentum".into(),
            },
        ),
    ];
    for (file, expected) in cases {
        let mut net = zeroed_box::<Stage>();
        let untouched = zeroed_box::<Stage>();
        assert_eq!(load_state_dict(&mut *net, &file), Err(expected));
        assert_eq!(net, untouched);
    }
}

#[test]
fn parts_that_would_share_a_name_are_refused() {
    // Two unnamed chains side by side in a residual block both number their layers from 0.
    type Ambiguous = Residual<
        sequential![Conv2d<f32, 2, 2, 1, 1, 0, 3, 3, 3, 3>],
        sequential![Conv2d<f32, 2, 2, 1, 1, 0, 3, 3, 3, 3>],
    >;
    let net = zeroed_box::<Ambiguous>();
    assert!(
        matches!(save_state_dict(&*net), Err(SafetensorsError::Invalid(m)) if m.contains("both called `weight`"))
    );
}

#[test]
fn activations_are_found_by_name_through_named_parts() {
    let net = trained();
    let mut ws = zeroed_box::<<Stage as Layer>::Workspace>();
    let x = [[[0.25f64; 7]; 7]; 4];
    let mut y = zeroed_box::<Maps<f64, 8, 4, 4>>();
    net.forward_in(&constnet::Pass::eval(), &x, &mut y, &mut ws);
    // conv1 of the first block, by hand: the same convolution alone.
    let mut conv1 = zeroed_box::<Maps<f64, 8, 4, 4>>();
    let first_block = &net.layer.first.layer.first;
    first_block
        .body
        .first
        .first
        .first
        .first
        .infer(&x, &mut conv1, &mut ());
    // the paths of the tensors' names: the block is `layer1.0`
    let found = <Stage as Layer>::activation(&ws, "layer1.0.conv1").expect("a named layer");
    assert_eq!(found.get::<Maps<f64, 8, 4, 4>>(), Some(&*conv1));
    assert!(<Stage as Layer>::activation(&ws, "layer1.0.relu").is_some());
    assert!(<Stage as Layer>::activation(&ws, "layer1.0").is_some());
    assert!(
        <Stage as Layer>::activation(&ws, "layer1.conv1").is_none(),
        "the block's number is part of the path"
    );
    assert!(
        <Stage as Layer>::activation(&ws, "conv1").is_none(),
        "paths start at the top"
    );
    assert!(<Stage as Layer>::activation(&ws, "layer1.nothing").is_none());
}

/// Activations are found by the same paths as the tensors: through named parts, numbered
/// blocks (`layer1.0`), a residual block's parts (`layer2.0.downsample.0`) and a
/// sequence's unnamed layers (`features.0`).
#[test]
fn activations_are_found_by_torchvision_paths() {
    use constnet::{Layer, ResNet20, Tensor, zeroed_box};
    use rand::SeedableRng;
    type Net = ResNet20<f64, 1, 10>;
    let net = Net::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(8));
    let mut ws = zeroed_box::<<Net as Layer>::Workspace>();
    let mut x = zeroed_box::<<Net as Layer>::Input>();
    for (i, v) in x.flat_mut().iter_mut().enumerate() {
        *v = ((i * 37) % 11) as f64 / 11.0 - 0.5;
    }
    let mut y = [0.0; 10];
    net.infer(&x, &mut y, &mut ws);
    let dims = |name: &str| Net::activation(&ws, name).map(|a| a.dims().to_vec());
    assert_eq!(dims("conv1"), Some(vec![16, 32, 32]));
    assert_eq!(dims("layer1.0.conv1"), Some(vec![16, 32, 32]));
    assert_eq!(dims("layer2.0.conv1"), Some(vec![32, 16, 16]));
    assert_eq!(dims("layer2.0.downsample.0"), Some(vec![32, 16, 16]));
    assert_eq!(dims("layer3"), Some(vec![64, 8, 8]));
    assert_eq!(dims("avgpool"), Some(vec![64]));
    for missing in ["layer1.3", "layer1.0.conv3", "layer1.00", "layer4", "0"] {
        assert_eq!(dims(missing), None, "{missing}");
    }
    // a stage's output is its last block's, and a block's is its ReLU's
    let flat = |name: &str| Net::activation(&ws, name).unwrap().flat().to_vec();
    assert_eq!(flat("layer2"), flat("layer2.2"));
    assert_ne!(flat("layer2.1"), flat("layer2.2"));
    // the block's first convolution reads the stage's input: conv1 → bn1 → relu of the stem
    let relu = flat("relu");
    assert!(relu.iter().all(|&v| v >= 0.0) && relu.iter().any(|&v| v > 0.0));
    assert_eq!(flat("layer1.0.bn1").len(), 16 * 32 * 32);
}

/// In a chain of unnamed layers (torchvision's `features`), each is called by its position.
#[test]
fn unnamed_layers_of_a_sequence_are_called_by_position() {
    use constnet::{Conv2d, Layer, Maps, MaxPool2d, Named, Relu, name, sequential, zeroed_box};
    name!(Features = "features");
    type Net = Named<
        Features,
        sequential![
            Conv2d<f32, 1, 2, 3, 1, 1, 4, 4, 4, 4>,
            Relu<Maps<f32, 2, 4, 4>>,
            MaxPool2d<f32, 2, 4, 4, 2, 2, 2, 2>,
            Conv2d<f32, 2, 3, 1, 1, 0, 2, 2, 2, 2>,
        ],
    >;
    let mut net = zeroed_box::<Net>();
    net.layer.first.first.first.bias = [-1.0, 2.0];
    let ws = {
        let mut ws = zeroed_box::<<Net as Layer>::Workspace>();
        let mut y = [[[0.0f32; 2]; 2]; 3];
        net.infer(&[[[1.0; 4]; 4]], &mut y, &mut ws);
        ws
    };
    let act = |name: &str| Net::activation(&ws, name).map(|a| (a.dims().to_vec(), a.flat()[0]));
    assert_eq!(act("features.0"), Some((vec![2, 4, 4], -1.0)));
    assert_eq!(act("features.1"), Some((vec![2, 4, 4], 0.0)));
    assert_eq!(act("features.2"), Some((vec![2, 2, 2], 0.0)));
    assert_eq!(
        act("features.3"),
        None,
        "the last layer's output is the pass's output"
    );
    assert_eq!(act("features.4"), None);
    assert_eq!(act("0"), None);
}
