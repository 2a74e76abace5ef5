//! constnet's weights loader on any bytes: a typed error that leaves the network unchanged, or
//! weights that save back to exactly the same bytes. Also through `load_lenet5_reader`, which
//! sniffs the format and reads no more than the largest valid file. Each input is tried as it
//! is and with its last 4 bytes made its checksum, so mutations reach the checks after it.
#![no_main]

use constnet::weights::{MAGIC, crc32, load_lenet5_reader, load_weights, save_weights};
use constnet::{Layer, LeNet5, zeroed_box};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As it is, through the file loader's path: format sniffing, bounded reading, checks.
    if let Ok(loaded) = load_lenet5_reader(data, "fuzz")
        && data.starts_with(&MAGIC)
    {
        assert_eq!(save_weights(&*loaded).expect("finite"), data);
    }
    // With its checksum fixed: refused without a change to the network, or saved back whole.
    if let Some(body) = data.len().checked_sub(4) {
        let mut fixed = data.to_vec();
        let crc = crc32(&fixed[..body]);
        fixed[body..].copy_from_slice(&crc.to_le_bytes());
        let mut net = zeroed_box::<LeNet5<f32>>();
        net.param_mut(9).fill(0.5);
        let before = net.clone();
        match load_weights(&mut *net, &fixed) {
            Ok(()) => assert_eq!(
                save_weights(&*net).expect("loaded weights are finite"),
                fixed
            ),
            Err(_) => assert!(net == before, "a refused file changed the network"),
        }
    }
});
