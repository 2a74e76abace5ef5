//! constnet's weights loader on any bytes: a typed error that leaves the network unchanged, or
//! weights that save back to exactly the same bytes. Also through `load_lenet5_reader`, which
//! sniffs the format and reads no more than the largest valid file. Each input is tried as it
//! is and with its last 4 bytes made its checksum, so mutations reach the checks after it.
#![no_main]

use constnet::weights::{MAGIC, crc32, load_lenet5_reader, load_weights, save_weights};
use constnet::{Layer, LeNet5, zeroed_box};
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8]) {
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
        if data.starts_with(&MAGIC) {
            assert_eq!(save_weights(&*loaded).expect("finite"), data);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(body) = data.len().checked_sub(4) {
        let mut fixed = data.to_vec();
        let crc = crc32(&fixed[..body]);
        fixed[body..].copy_from_slice(&crc.to_le_bytes());
        check(&fixed);
    }
});
