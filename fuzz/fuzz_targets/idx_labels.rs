//! The IDX labels reader on any bytes: an error or exactly the labels the bytes hold (each a
//! digit class), never a panic or an allocation the bytes do not back.
#![no_main]

use constnet::mnist::{CLASSES, Dataset, PIXELS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Blank images for as many labels as the header claims (if few), so a valid file loads.
    let claimed = data
        .get(4..8)
        .map_or(0, |c| u32::from_be_bytes(c.try_into().unwrap()));
    let count = claimed.min(64);
    let mut images = vec![0, 0, 8, 3];
    images.extend(count.to_be_bytes());
    images.extend([0, 0, 0, 28, 0, 0, 0, 28]);
    images.resize(16 + count as usize * PIXELS, 0);
    if let Ok(set) = Dataset::from_idx_bytes(&images, data) {
        assert_eq!(set.len(), claimed as usize);
        assert!(set.labels().iter().all(|&l| usize::from(l) < CLASSES));
        if data.first() != Some(&0x1f) {
            assert_eq!(set.labels(), &data[8..]);
        }
    }
});
