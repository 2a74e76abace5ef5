//! The article's later networks in little memory: every network evaluates one image in a
//! thread with a 2 MiB stack (nothing big on the stack), ResNet-20 takes a training step at
//! the trainer's batch size there too, and VGG-16's evaluation of one image peaks at no more
//! than 1.25 × (its weights + the activations that must be live at once).

use constnet::{
    AlexNet, AlexNet2012, BatchLayer, DenseNet121, GoogLeNet, Layer, Network, Pass, ResNet18,
    ResNet20, Scalar, Sgd, Tensor, Vgg16, ZfNet, zeroed_box,
};
use rand::SeedableRng;

const STACK: usize = 2 * 1024 * 1024;

/// Runs `f` in a thread with a 2 MiB stack; a stack overflow aborts the test binary.
fn in_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// One image of 0.5 through `L` in evaluation mode, with freshly initialised weights;
/// returns the output's sum.
fn eval_one<L: Layer>() -> f64 {
    let mut net = zeroed_box::<L>();
    net.init(&mut rand::rngs::StdRng::seed_from_u64(5));
    let mut x = zeroed_box::<L::Input>();
    x.flat_mut().fill(Scalar::from_f64(0.5));
    let mut y = zeroed_box::<L::Output>();
    let mut ws = zeroed_box::<L::Workspace>();
    net.infer(&x, &mut y, &mut ws);
    y.flat().iter().map(|v| v.to_f64()).sum()
}

#[test]
fn every_network_evaluates_an_image_in_a_2_mib_stack() {
    let sums = in_small_stack(|| {
        [
            eval_one::<AlexNet<f32>>(),
            eval_one::<AlexNet2012<f32>>(),
            eval_one::<ZfNet<f32>>(),
            eval_one::<Vgg16<f32>>(),
            eval_one::<ResNet18<f32>>(),
            eval_one::<ResNet20<f32, 1, 10>>(),
            eval_one::<GoogLeNet<f32>>(),
            eval_one::<DenseNet121<f32>>(),
        ]
    });
    // each ends in a softmax: its probabilities sum to 1
    for (i, s) in sums.iter().enumerate() {
        assert!(
            (s - 1.0).abs() < 1e-4,
            "network {i}: probabilities sum to {s}"
        );
    }
}

#[test]
fn resnet20_takes_a_training_step_at_the_trainers_batch_size_in_a_2_mib_stack() {
    const N: usize = 32;
    type Net = ResNet20<f32, 1, 10>;
    let changed = in_small_stack(|| {
        let mut net = Net::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(3));
        let before = net.param(0).to_vec();
        let mut x = zeroed_box::<[<Net as Layer>::Input; N]>();
        for (i, v) in Tensor::flat_slice_mut(&mut x[..]).iter_mut().enumerate() {
            *v = ((i * 7919) % 13) as f32 / 13.0;
        }
        let mut y = zeroed_box::<[[f32; 10]; N]>();
        let mut ws = zeroed_box::<<Net as BatchLayer<N>>::BatchWorkspace>();
        let mut grads = zeroed_box::<Net>();
        net.forward_batch_in(&Pass::train(1, 0), &x, &mut y, &mut ws);
        let mut g = zeroed_box::<[[f32; 10]; N]>();
        for (n, row) in g.iter_mut().enumerate() {
            row[n % 10] = -1.0 / N as f32;
        }
        net.backward_batch(&x, &mut ws, &g, None, &mut grads);
        Sgd { lr: 0.1 }.step(&mut *net, &grads);
        (net.param(0) != &before[..], net.first.counter(0))
    });
    assert_eq!(
        changed,
        (true, 1),
        "the step moved the weights and the running statistics"
    );
}

/// The peak resident memory of this process (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Run alone in a child process by [`vgg16_evaluation_peaks_near_its_weights`]: evaluates one
/// image and prints the peak RSS.
#[test]
#[ignore = "run by vgg16_evaluation_peaks_near_its_weights in a process of its own"]
fn vgg16_evaluation_child() {
    if std::env::var_os("CONSTNET_MEMORY_CHILD").is_none() {
        return;
    }
    let sum = eval_one::<Vgg16<f32>>();
    assert!((sum - 1.0).abs() < 1e-4);
    println!("peak_rss={}", peak_rss());
}

#[test]
#[cfg(target_os = "linux")]
fn vgg16_evaluation_peaks_near_its_weights() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "nets_memory::vgg16_evaluation_child",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("CONSTNET_MEMORY_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peak: u64 = stdout
        .lines()
        .find_map(|l| l.split("peak_rss=").nth(1))
        .expect("the child prints its peak")
        .parse()
        .unwrap();
    // weights, plus the largest input-output pair of one layer (conv1_2: 64×224×224 in and out)
    let weights = core::mem::size_of::<Vgg16<f32>>() as u64;
    let live = 2 * 64 * 224 * 224 * 4;
    let bound = (weights + live) * 5 / 4;
    eprintln!(
        "VGG-16 evaluation: peak RSS {} MiB, bound {} MiB",
        peak >> 20,
        bound >> 20
    );
    assert!(peak <= bound, "peak RSS {peak} > {bound}");
}
