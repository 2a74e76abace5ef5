//! The bundled MNIST sample (`data/mnist-10k`) loads and looks like real digits, and the IDX
//! loader survives damaged files: random truncations and corruptions of real data, raw and
//! gzip, return `Ok` or `Err` quickly and never panic.
#![cfg(feature = "std")]

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use constnet::Image;
use constnet::mnist::{self, CLASSES, Dataset, IdxErrorKind, PIXELS};
use flate2::Compression;
use flate2::write::GzEncoder;
use proptest::prelude::*;

fn bundled_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-10k")
}

static BUNDLED: LazyLock<(Dataset, Dataset)> =
    LazyLock::new(|| mnist::load_dir(bundled_dir()).expect("the bundled data loads"));

fn class_counts(d: &Dataset) -> [usize; CLASSES] {
    let mut counts = [0; CLASSES];
    for i in 0..d.len() {
        counts[d.label(i)] += 1;
    }
    counts
}

#[test]
fn bundled_counts_and_classes() {
    let (train, test) = &*BUNDLED;
    assert_eq!((train.len(), test.len()), (8000, 2000));
    // every class is there, in MNIST's uneven proportions (1 most common, 5 least)
    let train_counts = class_counts(train);
    let test_counts = class_counts(test);
    assert_eq!(
        train_counts,
        [792, 903, 777, 819, 792, 706, 811, 861, 769, 770]
    );
    assert_eq!(
        test_counts,
        [209, 224, 214, 213, 188, 157, 203, 209, 175, 208]
    );
}

#[test]
fn train_and_test_share_no_image() {
    let (train, test) = &*BUNDLED;
    let seen: HashSet<&[u8; PIXELS]> = (0..train.len()).map(|i| train.pixels(i)).collect();
    assert_eq!(seen.len(), train.len(), "no duplicate in train");
    assert!((0..test.len()).all(|i| !seen.contains(test.pixels(i))));
}

/// Statistics only real MNIST digits have: about 13% ink, most pixels exactly background,
/// every digit's centre of mass within half a pixel of the middle (MNIST centred each digit
/// that way), and "1" the thinnest class, "0" the heaviest.
#[test]
fn bundled_images_look_like_real_digits() {
    let (train, test) = &*BUNDLED;
    for data in [train, test] {
        let mut image: Image<f32> = [[[0.0; 32]; 32]; 1];
        let (mut total, mut background) = (0.0f64, 0usize);
        let mut ink_per_class = [0.0f64; CLASSES];
        for i in 0..data.len() {
            data.write_image(i, &mut image);
            let rows = &image[0];
            // the 2-pixel padding is zero, the digit fills the middle 28×28
            for (y, row) in rows.iter().enumerate() {
                for (x, &p) in row.iter().enumerate() {
                    if !(2..30).contains(&y) || !(2..30).contains(&x) {
                        assert_eq!(p, 0.0, "image {i} border ({y}, {x})");
                    }
                    assert!((0.0..=1.0).contains(&p));
                }
            }
            let ink: f64 = rows.as_flattened().iter().map(|&p| f64::from(p)).sum();
            let mean = ink / 1024.0;
            assert!(
                (0.015..0.30).contains(&mean),
                "image {i}: mean intensity {mean}"
            );
            let (mut cy, mut cx) = (0.0, 0.0);
            for (y, row) in rows.iter().enumerate() {
                for (x, &p) in row.iter().enumerate() {
                    cy += y as f64 * f64::from(p);
                    cx += x as f64 * f64::from(p);
                }
            }
            let (cy, cx) = (cy / ink, cx / ink);
            assert!(
                (15.49..=16.51).contains(&cy) && (15.49..=16.51).contains(&cx),
                "image {i}: centre of mass ({cy}, {cx})"
            );
            total += ink / PIXELS as f64;
            background += data.pixels(i).iter().filter(|&&p| p == 0).count();
            ink_per_class[data.label(i)] += ink;
        }
        let mean = total / data.len() as f64;
        assert!(
            (0.125..0.14).contains(&mean),
            "mean pixel {mean} (MNIST's is 0.1307)"
        );
        let background = background as f64 / (data.len() * PIXELS) as f64;
        assert!(
            (0.78..0.84).contains(&background),
            "background fraction {background}"
        );
        let counts = class_counts(data);
        let per_class: Vec<f64> = (0..CLASSES)
            .map(|c| ink_per_class[c] / counts[c] as f64)
            .collect();
        let lightest = (0..CLASSES).min_by(|&a, &b| per_class[a].total_cmp(&per_class[b]));
        let heaviest = (0..CLASSES).max_by(|&a, &b| per_class[a].total_cmp(&per_class[b]));
        assert_eq!((lightest, heaviest), (Some(1), Some(0)), "{per_class:?}");
    }
}

/// `/usr/share/datasets/fashion-mnist` (Debian's `dataset-fashion-mnist`) uses the standard
/// names, gzip-compressed. Not bundled: skipped (saying so) where it is not installed, and
/// a failure where `CONSTNET_FASHION_MNIST=required` (as in CI, which installs it).
#[test]
fn debian_fashion_mnist_loads() {
    let dir = std::path::Path::new("/usr/share/datasets/fashion-mnist");
    if !dir.exists() {
        assert!(
            std::env::var("CONSTNET_FASHION_MNIST").as_deref() != Ok("required"),
            "CONSTNET_FASHION_MNIST=required, but {} is missing (apt-get install dataset-fashion-mnist)",
            dir.display()
        );
        eprintln!(
            "SKIPPED: {} is missing (apt-get install dataset-fashion-mnist)",
            dir.display()
        );
        return;
    }
    let t = std::time::Instant::now();
    let (train, test) = mnist::load_dir(dir).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!(class_counts(&train), [6000; CLASSES]);
    assert_eq!(class_counts(&test), [1000; CLASSES]);
    eprintln!("Fashion-MNIST loaded in {:?}", t.elapsed());
}

// ---- damaged files ----------------------------------------------------------------------

/// Images kept for the damage tests: small, so each case runs in microseconds.
const N: usize = 12;

fn header(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The first `N` bundled test digits re-encoded as IDX: raw images, raw labels, and both
/// gzipped, with the data set they hold.
struct Sample {
    images: Vec<u8>,
    labels: Vec<u8>,
    images_gz: Vec<u8>,
    labels_gz: Vec<u8>,
    data: Dataset,
}

static SAMPLE: LazyLock<Sample> = LazyLock::new(|| {
    let test = &BUNDLED.1;
    let mut images = header(&[mnist::IMAGES_MAGIC, N as u32, 28, 28]);
    let mut labels = header(&[mnist::LABELS_MAGIC, N as u32]);
    for i in 0..N {
        images.extend(test.pixels(i));
        labels.push(test.label(i) as u8);
    }
    let data = Dataset::from_idx_bytes(&images, &labels).unwrap();
    Sample {
        images_gz: gzip(&images),
        labels_gz: gzip(&labels),
        images,
        labels,
        data,
    }
});

/// An independent statement of what a valid raw pair is: exact lengths, right magics and
/// dimensions, labels 0–9, equal counts.
fn raw_pair_is_valid(images: &[u8], labels: &[u8]) -> bool {
    let word = |b: &[u8], i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap()) as usize;
    images.len() >= 16
        && labels.len() >= 8
        && word(images, 0) == 0x803
        && word(labels, 0) == 0x801
        && (word(images, 8), word(images, 12)) == (28, 28)
        && word(images, 4) == word(labels, 4)
        && images.len() as u64 == 16 + word(images, 4) as u64 * 784
        && labels.len() as u64 == 8 + word(labels, 4) as u64
        && labels[8..].iter().all(|&l| l <= 9)
}

/// Loads a pair, asserting it took well under a second.
fn load(images: &[u8], labels: &[u8]) -> Result<Dataset, mnist::IdxError> {
    Dataset::from_idx_bytes(images, labels)
}

/// Positions to damage: half in the header (where the counts live), half anywhere.
fn positions(len: usize, header: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![0..header, 0..len], 1..6)
}

fn corrupt(bytes: &[u8], at: &[usize], values: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.is_empty() {
        return out;
    }
    for (&i, &v) in at.iter().zip(values.iter().cycle()) {
        let len = out.len();
        out[i % len] = v;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn raw_truncations_fail_unless_whole(cut_images in 0..=16 + N * PIXELS, cut_labels in 0..=8 + N) {
        let s = &*SAMPLE;
        let images = &s.images[..cut_images];
        let labels = &s.labels[..cut_labels];
        match load(images, labels) {
            Ok(d) => {
                prop_assert_eq!((images.len(), labels.len()), (s.images.len(), s.labels.len()));
                prop_assert_eq!(d, s.data.clone());
            }
            Err(_) => prop_assert!(images.len() < s.images.len() || labels.len() < s.labels.len()),
        }
    }

    #[test]
    fn raw_corruptions_are_accepted_exactly_when_valid(
        image_at in positions(16 + N * PIXELS, 16),
        label_at in positions(8 + N, 8),
        values in prop::collection::vec(any::<u8>(), 1..6),
        which in 0..3u8,
    ) {
        let s = &*SAMPLE;
        let images = if which != 1 { corrupt(&s.images, &image_at, &values) } else { s.images.clone() };
        let labels = if which != 0 { corrupt(&s.labels, &label_at, &values) } else { s.labels.clone() };
        let result = load(&images, &labels);
        prop_assert_eq!(result.is_ok(), raw_pair_is_valid(&images, &labels), "{:?}", result.as_ref().err());
        if let Ok(d) = result {
            prop_assert_eq!(d.len(), N);
            for i in 0..N {
                prop_assert_eq!(&d.pixels(i)[..], &images[16 + i * PIXELS..16 + (i + 1) * PIXELS]);
                prop_assert_eq!(d.label(i), usize::from(labels[8 + i]));
            }
        }
    }

    #[test]
    fn gzip_damage_never_passes_wrong_data(
        image_at in positions(SAMPLE.images_gz.len(), 24),
        label_at in positions(SAMPLE.labels_gz.len(), 24),
        values in prop::collection::vec(any::<u8>(), 1..6),
        cut_images in 0..=SAMPLE.images_gz.len(),
        cut_labels in 0..=SAMPLE.labels_gz.len(),
        which in 0..4u8,
    ) {
        let s = &*SAMPLE;
        let (images, labels) = match which {
            0 => (corrupt(&s.images_gz, &image_at, &values), s.labels_gz.clone()),
            1 => (s.images_gz.clone(), corrupt(&s.labels_gz, &label_at, &values)),
            2 => (s.images_gz[..cut_images].to_vec(), s.labels_gz[..cut_labels].to_vec()),
            _ => (
                corrupt(&s.images_gz[..cut_images], &image_at, &values),
                corrupt(&s.labels_gz[..cut_labels.max(1)], &label_at, &values),
            ),
        };
        // Damage that reaches the data is caught (by the IDX checks or gzip's CRC-32); damage
        // that the data never sees (a gzip header's timestamp) may load, and loads right.
        if let Ok(d) = load(&images, &labels) {
            prop_assert_eq!(d, s.data.clone());
        }
        if which == 2 && (cut_images < s.images_gz.len() || cut_labels < s.labels_gz.len()) {
            prop_assert!(load(&images, &labels).is_err(), "a cut gzip stream must fail");
        }
    }
}

/// A header may claim at most `MAX_ITEMS` items: more is refused before any data is read
/// (`TooManyItems`); a claim within the bound but beyond the data is refused with both
/// counts (`CountExceedsData`). Raw and gzip, images and labels.
#[test]
fn a_header_claiming_more_items_than_it_holds_is_refused_with_the_counts() {
    let s = &*SAMPLE;
    for claim in [u32::MAX, mnist::MAX_ITEMS] {
        let mut images = s.images.clone();
        images[4..8].copy_from_slice(&claim.to_be_bytes());
        let mut labels = s.labels.clone();
        labels[4..8].copy_from_slice(&claim.to_be_bytes());
        for (im, lb, images_bad) in [
            (gzip(&images), s.labels_gz.clone(), true),
            (images.clone(), s.labels.clone(), true),
            (s.images.clone(), labels.clone(), false),
            (s.images_gz.clone(), gzip(&labels), false),
        ] {
            let e = Dataset::from_idx_bytes(&im, &lb).unwrap_err();
            let item = if images_bad { PIXELS as u64 } else { 1 };
            let head = if images_bad { 16 } else { 8 };
            match e.kind() {
                IdxErrorKind::TooManyItems { claimed, max } if claim > mnist::MAX_ITEMS => {
                    assert_eq!((*claimed, *max), (claim, mnist::MAX_ITEMS));
                }
                IdxErrorKind::CountExceedsData {
                    claimed,
                    held,
                    expected_bytes,
                    actual_bytes,
                } if claim <= mnist::MAX_ITEMS => {
                    assert_eq!((*claimed, *held), (claim, N as u64));
                    assert_eq!(*expected_bytes, head + u64::from(claim) * item);
                    assert_eq!(*actual_bytes, head + N as u64 * item);
                }
                k => panic!("claim {claim}: {k:?}"),
            }
            let file = if images_bad {
                "<images bytes>"
            } else {
                "<labels bytes>"
            };
            assert_eq!(e.file(), Path::new(file));
            assert!(e.to_string().contains(&claim.to_string()), "{e}");
        }
    }
}
