//! `MaxPool2d`'s semantics on hand-made maps, as PyTorch's: padding that never wins, ceil
//! mode's clipped windows, ties to the first maximum, overlapping windows' gradients added
//! (moved here from `src/maxpool2d.rs`; `fast_paths.rs` checks every path against the
//! reference loops).

use constnet::{Layer, MaxPool2d};

/// PyTorch's `F.max_pool2d(x, 2, 2, padding=1)` of 1..9 in a 3×3 map: the padding never
/// wins, and the gradient goes to the winners on the map.
#[test]
fn padding_is_minus_infinity() {
    let pool = MaxPool2d::<f64, 1, 3, 3, 2, 2, 2, 2, 1>::new();
    let x = [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]];
    let (mut y, mut at) = ([[[0.0; 2]; 2]; 1], [[[0; 2]; 2]; 1]);
    pool.forward(&x, &mut y, &mut at);
    assert_eq!(y, [[[1.0, 3.0], [7.0, 9.0]]]);
    let mut gi = [[[7.0; 3]; 3]; 1];
    let g = [[[1.0, 2.0], [3.0, 4.0]]];
    pool.backward(&x, &mut at, &g, Some(&mut gi), &mut MaxPool2d::new());
    assert_eq!(gi, [[[1.0, 0.0, 2.0], [0.0; 3], [3.0, 0.0, 4.0]]]);
    // all-negative maps: still a value of the map, never the −∞ of the padding
    let neg = x.map(|m| m.map(|r| r.map(|v: f64| -v)));
    pool.forward(&neg, &mut y, &mut at);
    assert_eq!(y, [[[-1.0, -2.0], [-4.0, -5.0]]]);
}

/// Ceil mode (`F.max_pool2d(x, 2, 2, ceil_mode=True)` over 0..24 in a 5×5 map): a third
/// row and column of windows, clipped to the map's last row and column.
#[test]
fn ceil_mode_adds_the_clipped_last_windows() {
    let pool = MaxPool2d::<f32, 1, 5, 5, 2, 2, 3, 3, 0, true>::new();
    let mut x = [[[0.0f32; 5]; 5]; 1];
    for (i, v) in x[0].iter_mut().flatten().enumerate() {
        *v = i as f32;
    }
    for isa in [false, true] {
        let mut y = [[[0.0; 3]; 3]; 1];
        if isa {
            pool.infer(&x, &mut y, &mut [[[0; 3]; 3]; 1]);
        } else {
            pool.forward(&x, &mut y, &mut [[[0; 3]; 3]; 1]);
        }
        assert_eq!(
            y,
            [[[6.0, 8.0, 9.0], [16.0, 18.0, 19.0], [21.0, 23.0, 24.0]]]
        );
    }
}

#[test]
fn backward_routes_to_the_winner_and_first_on_ties() {
    let pool = MaxPool2d::<f64, 1, 2, 4, 2, 2, 1, 2>::new();
    let x = [[[1.0, 5.0, 7.0, 7.0], [2.0, 3.0, 7.0, 0.0]]];
    let mut y = [[[0.0; 2]; 1]; 1];
    let mut ws = [[[0; 2]; 1]; 1];
    pool.forward(&x, &mut y, &mut ws);
    assert_eq!(y, [[[5.0, 7.0]]]);
    let mut gx = [[[9.0; 4]; 2]; 1];
    pool.backward(
        &x,
        &mut ws,
        &[[[10.0, 20.0]]],
        Some(&mut gx),
        &mut MaxPool2d::new(),
    );
    assert_eq!(gx, [[[0.0, 10.0, 20.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]);
}

#[test]
fn overlapping_windows_add_their_gradients() {
    // 3-wide window, stride 1: the centre max wins both windows.
    let pool = MaxPool2d::<f64, 1, 3, 4, 3, 1, 1, 2>::new();
    let x = [[
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 9.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ]];
    let mut y = [[[0.0; 2]; 1]; 1];
    let mut ws = [[[0; 2]; 1]; 1];
    pool.forward(&x, &mut y, &mut ws);
    let mut gx = [[[0.0; 4]; 3]; 1];
    pool.backward(
        &x,
        &mut ws,
        &[[[1.0, 2.0]]],
        Some(&mut gx),
        &mut MaxPool2d::new(),
    );
    assert_eq!(gx[0][1][2], 3.0);
    assert_eq!(gx.iter().flatten().flatten().sum::<f64>(), 3.0);
}
