//! The safetensors loader on any bytes: a typed error that leaves the network unchanged, or a
//! network that saves and loads back to itself. Also through `load_lenet5_reader`, which reads
//! the header, then no more data than it declares.
#![no_main]

use constnet::weights::load_lenet5_reader;
use constnet::{Layer, LeNet5, zeroed_box};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut net = zeroed_box::<LeNet5<f32>>();
    net.param_mut(9).fill(0.5);
    let before = net.clone();
    let accepted = net.load_safetensors(data).is_ok();
    if accepted {
        let saved = net.to_safetensors().expect("loaded values are finite");
        let mut back = zeroed_box::<LeNet5<f32>>();
        back.load_safetensors(&saved).expect("saved bytes load");
        assert!(back == net);
    } else {
        assert!(net == before, "a refused file changed the network");
    }
    if !data.starts_with(&constnet::weights::MAGIC) {
        // Bounded reading accepts exactly what loading the whole bytes accepts.
        assert_eq!(load_lenet5_reader(data, "fuzz").is_ok(), accepted);
    }
});
