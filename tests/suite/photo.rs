//! Photos as the later networks' inputs, against Pillow and torchvision
//! (`tests/data/photo/`, made by its `make_photo_fixtures.py`): decoding PNG and JPEG,
//! Pillow's bilinear resize, and torchvision's ImageNet evaluation transform.

use constnet::photo::{Photo, imagenet_input};
use serde_json::Value;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/photo/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn pillow() -> Value {
    serde_json::from_slice(&data("pillow.json")).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u8)
        .collect()
}

/// The largest difference between two equally long pixel lists.
fn max_diff(a: impl IntoIterator<Item = f32>, b: &[u8]) -> f32 {
    let a: Vec<f32> = a.into_iter().collect();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, &y)| (x - f32::from(y)).abs())
        .fold(0.0, f32::max)
}

#[test]
fn pngs_decode_to_their_pixels_in_every_colour_type() {
    let rgb = Photo::decode(&data("pattern.png")).unwrap();
    assert_eq!((rgb.width(), rgb.height()), (37, 23));
    // The pattern's first pixels, as make_photo_fixtures.py draws them.
    assert_eq!(&rgb.rgb()[..3], &[0, 40, 127]);
    let rgba = Photo::decode(&data("pattern_rgba.png")).unwrap();
    assert_eq!(rgba, rgb, "alpha is dropped");
    let grey = Photo::decode(&data("pattern_gray.png")).unwrap();
    assert!(grey.rgb().chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
}

/// JPEG decoders may round the inverse DCT and the chroma upsampling differently: within 3
/// levels of Pillow's (libjpeg's) pixels.
#[test]
fn jpegs_decode_as_pillow_decodes_them() {
    let pillow = pillow();
    for name in ["pattern.jpg", "pattern_gray.jpg"] {
        let photo = Photo::decode(&data(name)).unwrap();
        assert_eq!((photo.width(), photo.height()), (37, 23));
        let d = max_diff(
            photo.rgb().iter().map(|&v| f32::from(v)),
            &bytes(&pillow[name]),
        );
        assert!(d <= 3.0, "{name}: {d} levels from Pillow");
    }
}

/// Pillow rounds to 8 bits after each of its two passes; these are floats: within 1.5 levels.
#[test]
fn resizing_is_pillows_bilinear_both_ways() {
    let pillow = pillow();
    let photo = Photo::decode(&data("pattern.png")).unwrap();
    for case in ["resize_down", "resize_up"] {
        let want = &pillow[case];
        let (w, h, rgb) = photo.resized(want["shorter"].as_u64().unwrap() as usize);
        assert_eq!(w as u64, want["width"].as_u64().unwrap(), "{case}");
        assert_eq!(h as u64, want["height"].as_u64().unwrap(), "{case}");
        let d = max_diff(rgb, &bytes(&want["rgb"]));
        assert!(d <= 1.5, "{case}: {d} levels from Pillow");
    }
}

/// torchvision's Resize(256) → CenterCrop(224) → ToTensor → Normalize: within 1.5 levels of
/// 255 over the smallest standard deviation (0.224), everywhere it was sampled.
#[test]
fn the_imagenet_input_is_torchvisions_transform() {
    let pillow = pillow();
    let photo = Photo::decode(&data("pattern.png")).unwrap();
    let mut x = vec![0.0f32; 3 * 224 * 224];
    imagenet_input(&photo, 224, 224, &mut x).unwrap();
    let tolerance = 1.5 / 255.0 / 0.224;
    for pair in pillow["imagenet_224"].as_array().unwrap() {
        let i = pair[0].as_u64().unwrap() as usize;
        let want = pair[1].as_f64().unwrap() as f32;
        assert!(
            (x[i] - want).abs() <= tolerance,
            "value {i}: {} vs {want}",
            x[i]
        );
    }
}
