//! The IDX images reader on any bytes (raw; gzip is sniffed too, see `idx_gzip`): an error or
//! exactly the images the bytes hold, never a panic or an allocation the bytes do not back.
#![no_main]

use constnet::mnist::{Dataset, PIXELS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Labels for as many images as the header claims (if few), so a valid file loads.
    let claimed = data
        .get(4..8)
        .map_or(0, |c| u32::from_be_bytes(c.try_into().unwrap()));
    let count = claimed.min(10_000);
    let mut labels = vec![0, 0, 8, 1];
    labels.extend(count.to_be_bytes());
    labels.resize(8 + count as usize, 7);
    if let Ok(set) = Dataset::from_idx_bytes(data, &labels) {
        assert_eq!(set.len(), claimed as usize);
        if data.first() != Some(&0x1f) {
            // Raw: the pixels are the bytes after the 16-byte header, and nothing else.
            assert_eq!(data.len(), 16 + set.len() * PIXELS);
            for i in 0..set.len() {
                assert_eq!(&set.pixels(i)[..], &data[16 + i * PIXELS..][..PIXELS]);
            }
        }
    }
});
