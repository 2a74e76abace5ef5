//! The weights loader never panics and never half-loads: random truncations and corruptions
//! of a real LeNet-5 file give a typed error and leave the network untouched.

use constnet::weights::{WeightsError, load_weights, save_weights};
use constnet::{LeNet5, zeroed_box};
use proptest::prelude::*;
use rand::SeedableRng;
use std::sync::LazyLock;

static FILE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    save_weights(&*LeNet5::<f32>::new_boxed(
        &mut rand::rngs::StdRng::seed_from_u64(11),
    ))
    .expect("fresh weights are finite")
});

fn target() -> Box<LeNet5<f32>> {
    LeNet5::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(12))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_truncation_is_an_error_and_changes_nothing(len in 0usize..255_500) {
        let len = len.min(FILE.len() - 1);
        let mut net = target();
        let before = net.clone();
        let err = load_weights(&mut *net, &FILE[..len]).unwrap_err();
        prop_assert!(matches!(err, WeightsError::Truncated { .. } | WeightsError::BadMagic), "{err:?}");
        prop_assert_eq!(net, before);
    }

    #[test]
    fn any_single_byte_change_is_detected(at in 0usize..255_500, flip in 1u8..=255) {
        let mut bytes = FILE.clone();
        let at = at % bytes.len();
        bytes[at] ^= flip;
        let mut net = target();
        let before = net.clone();
        prop_assert!(load_weights(&mut *net, &bytes).is_err());
        prop_assert_eq!(net, before);
    }

    #[test]
    fn random_corruption_never_panics(
        edits in proptest::collection::vec((0usize..255_500, any::<u8>()), 1..32),
        cut in proptest::option::of(0usize..255_500),
        header_only in any::<bool>(),
    ) {
        let mut bytes = FILE.clone();
        for (at, value) in edits {
            let at = if header_only { at % 400 } else { at % bytes.len() };
            bytes[at] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        let mut net = target();
        let before = net.clone();
        if load_weights(&mut *net, &bytes).is_err() {
            prop_assert_eq!(net, before);
        }
    }
}

#[test]
fn a_header_claiming_four_billion_parameters_is_refused_without_allocating() {
    let mut bytes = FILE.clone();
    bytes[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut net = zeroed_box::<LeNet5<f32>>();
    let err = load_weights(&mut *net, &bytes).unwrap_err();
    assert_eq!(
        err,
        WeightsError::ParamCountMismatch {
            file: u32::MAX as usize,
            network: 63_802
        }
    );
    bytes[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        load_weights(&mut *net, &bytes),
        Err(WeightsError::Truncated { .. } | WeightsError::ArchitectureMismatch { .. })
    ));
}
