//! The IDX reader on gzip-compressed bytes (seeded with gzip files, so that mutations stay
//! mostly gzip): as images and as labels, a result that agrees with an independent
//! decompression, and never more memory than the header's (bounded) claim.
#![no_main]

use std::io::Read;

use constnet::mnist::{Dataset, PIXELS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let empty_images = [0, 0, 8, 3, 0, 0, 0, 0, 0, 0, 0, 28, 0, 0, 0, 28];
    let empty_labels = [0, 0, 8, 1, 0, 0, 0, 0];
    let as_images = Dataset::from_idx_bytes(data, &empty_labels);
    let as_labels = Dataset::from_idx_bytes(&empty_images, data);
    if data.starts_with(&[0x1f, 0x8b]) && (as_images.is_ok() || as_labels.is_ok()) {
        // Accepted: then the stream decompresses to an IDX file with no data.
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .take(16 + PIXELS as u64 + 1)
            .read_to_end(&mut plain)
            .expect("accepted gzip decompresses");
        assert!(
            plain.len() == 16 || plain.len() == 8,
            "{} bytes",
            plain.len()
        );
    }
});
