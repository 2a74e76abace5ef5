//! The live page's request handling (`visualize --serve`) on any bytes: the first line is a
//! request's method and target, the rest its body. `route` and `parse_pixels` give a route or
//! a typed error with a 4xx status, never a panic, and the pixels they accept are 784 finite
//! values in [0, 1], exactly those the body wrote.
#![no_main]

use constnet::live::{parse_pixels, route};
use constnet::mnist::PIXELS;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(head) = std::str::from_utf8(head) {
        let (method, target) = head.split_once(' ').unwrap_or((head, "/"));
        if let Err(bad) = route(method, target) {
            assert!(
                (400..500).contains(&bad.status()),
                "{bad}: {}",
                bad.status()
            );
        }
    }
    match parse_pixels(body) {
        Ok(pixels) => {
            assert_eq!(pixels.len(), PIXELS);
            assert!(
                pixels
                    .iter()
                    .all(|v| v.is_finite() && (0.0..=1.0).contains(v))
            );
            let text = std::str::from_utf8(body).expect("accepted bodies are UTF-8");
            let written: Vec<f64> = text
                .trim()
                .trim_matches(['[', ']'])
                .split(',')
                .map(|t| t.trim().parse().expect("accepted tokens are numbers"))
                .collect();
            assert_eq!(&written[..], &pixels[..]);
        }
        Err(bad) => assert!(
            (400..500).contains(&bad.status()),
            "{bad}: {}",
            bad.status()
        ),
    }
});
