//! constnet's weights loader on any bytes: a typed error that leaves the network unchanged, or
//! weights that save back to exactly the same bytes. Also through `load_lenet5_reader`, which
//! sniffs the format and reads no more than the largest valid file.
#![no_main]

use constnet::weights::{load_lenet5_reader, load_weights, save_weights};
use constnet::{Layer, LeNet5, zeroed_box};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut net = zeroed_box::<LeNet5<f32>>();
    net.param_mut(9).fill(0.5);
    let before = net.clone();
    match load_weights(&mut *net, data) {
        Ok(()) => assert_eq!(
            save_weights(&*net).expect("loaded weights are finite"),
            data
        ),
        Err(_) => assert!(net == before, "a refused file changed the network"),
    }
    if let Ok(loaded) = load_lenet5_reader(data, "fuzz") {
        if data.starts_with(&constnet::weights::MAGIC) {
            assert_eq!(save_weights(&*loaded).expect("finite"), data);
        }
    }
});
