//! Random affine distortions of training digits: shifts, rotations and scalings.
//!
//! Each training image gets its own transform, drawn from a hash of (seed, epoch, image
//! index), so a run is reproducible and does not depend on which thread draws it.

use crate::lenet::Image;
use crate::scalar::Scalar;

/// How much to distort training digits (all zero: none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Augment {
    /// Largest translation, in pixels, along each axis (uniform in `[-shift, shift]`).
    pub shift: f64,
    /// Largest rotation, in degrees (uniform in `[-rotate, rotate]`).
    pub rotate: f64,
    /// Largest relative change of size (uniform scale factor in `[1 - scale, 1 + scale]`).
    pub scale: f64,
}

impl Augment {
    /// No distortion.
    pub const NONE: Self = Self {
        shift: 0.0,
        rotate: 0.0,
        scale: 0.0,
    };

    /// The transform of image `index` in `epoch` for a run seeded with `seed`.
    pub fn draw(&self, seed: u64, epoch: usize, index: usize) -> Affine {
        if *self == Self::NONE {
            return Affine::IDENTITY;
        }
        let r = mix(seed, epoch as u64 + 1, index as u64 + 1);
        // Four uniform numbers in [-1, 1] from 16-bit slices of one hash.
        let u = |k: u32| ((r >> (16 * k)) & 0xFFFF) as f64 / 32767.5 - 1.0;
        Affine {
            dy: self.shift * u(0),
            dx: self.shift * u(1),
            angle: self.rotate.to_radians() * u(2),
            scale: 1.0 + self.scale * u(3),
        }
    }
}

/// A similarity transform of a digit about its centre: scale, rotate, then translate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    /// Vertical translation in pixels (positive: down).
    pub dy: f64,
    /// Horizontal translation in pixels (positive: right).
    pub dx: f64,
    /// Rotation in radians.
    pub angle: f64,
    /// Size factor.
    pub scale: f64,
}

impl Affine {
    /// The identity: the digit as it is, padded by 2.
    pub const IDENTITY: Self = Self {
        dy: 0.0,
        dx: 0.0,
        angle: 0.0,
        scale: 1.0,
    };
}

/// `p / 255` for every byte `p`, computed once at compile time: a division per pixel was
/// a tenth of a training epoch without distortions.
const LEVELS: [f64; 256] = {
    let mut levels = [0.0; 256];
    let mut p = 0;
    while p < 256 {
        levels[p] = p as f64 / 255.0;
        p += 1;
    }
    levels
};

/// Writes a 28×28 digit into a 32×32 input, centred (2-pixel border) and transformed by `t`,
/// with bilinear sampling; pixels scale to [0, 1] and everything outside the digit is 0.
/// The identity (or whole-pixel shifts) reproduces the pixels exactly.
pub fn warp_digit<T: Scalar>(pixels: &[u8; 784], t: &Affine, out: &mut Image<T>) {
    if *t == Affine::IDENTITY {
        // No distortion: copy the digit into the middle of a zero frame.
        *out = [[[T::zero(); 32]; 32]; 1];
        for (row, src) in out[0][2..30].iter_mut().zip(pixels.chunks_exact(28)) {
            for (o, &p) in row[2..30].iter_mut().zip(src) {
                *o = T::from_f64(LEVELS[usize::from(p)]);
            }
        }
        return;
    }
    let (sin, cos) = t.angle.sin_cos();
    let inv = 1.0 / t.scale;
    let at = |r: isize, c: isize| -> f64 {
        if (0..28).contains(&r) && (0..28).contains(&c) {
            LEVELS[usize::from(pixels[r as usize * 28 + c as usize])]
        } else {
            0.0
        }
    };
    for (y, row) in out[0].iter_mut().enumerate() {
        for (x, v) in row.iter_mut().enumerate() {
            // Output pixel relative to the frame's centre, minus the translation…
            let (py, px) = (y as f64 - 15.5 - t.dy, x as f64 - 15.5 - t.dx);
            // …rotated back and unscaled, relative to the digit's centre (13.5, 13.5).
            let sy = (cos * py - sin * px) * inv + 13.5;
            let sx = (sin * py + cos * px) * inv + 13.5;
            let (r0, c0) = (sy.floor(), sx.floor());
            let (fy, fx) = (sy - r0, sx - c0);
            let (r, c) = (r0 as isize, c0 as isize);
            let value = (1.0 - fy) * ((1.0 - fx) * at(r, c) + fx * at(r, c + 1))
                + fy * ((1.0 - fx) * at(r + 1, c) + fx * at(r + 1, c + 1));
            *v = T::from_f64(value);
        }
    }
}

/// SplitMix64 of three words: a reproducible per-(seed, epoch, image) random number that
/// does not depend on which thread asks.
pub(crate) fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digit() -> [u8; 784] {
        let mut p = [0u8; 784];
        for (i, v) in p.iter_mut().enumerate() {
            *v = ((i * 37) % 256) as u8;
        }
        p
    }

    #[test]
    fn identity_is_the_padded_digit_exactly() {
        let p = digit();
        let mut a = [[[1.0f64; 32]; 32]; 1];
        warp_digit(&p, &Affine::IDENTITY, &mut a);
        for y in 0..32 {
            for x in 0..32 {
                let want = if (2..30).contains(&y) && (2..30).contains(&x) {
                    f64::from(p[(y - 2) * 28 + x - 2]) / 255.0
                } else {
                    0.0
                };
                assert!((a[0][y][x] - want).abs() < 1e-12, "({y}, {x})");
            }
        }
    }

    #[test]
    fn whole_pixel_shift_moves_pixels_exactly() {
        let p = digit();
        let mut a = [[[0.0f64; 32]; 32]; 1];
        warp_digit(
            &p,
            &Affine {
                dy: -2.0,
                dx: 1.0,
                ..Affine::IDENTITY
            },
            &mut a,
        );
        assert!((a[0][0][3] - f64::from(p[0]) / 255.0).abs() < 1e-12);
        // output (y, x) shows digit pixel (y − 2 − dy, x − 2 − dx) = (y, x − 3)
        assert!((a[0][10][20] - f64::from(p[10 * 28 + 17]) / 255.0).abs() < 1e-12);
    }

    #[test]
    fn quarter_turn_rotates_about_the_centre() {
        let mut p = [0u8; 784];
        p[0] = 255; // top-left corner of the digit
        let mut a = [[[0.0f64; 32]; 32]; 1];
        warp_digit(
            &p,
            &Affine {
                angle: core::f64::consts::FRAC_PI_2,
                ..Affine::IDENTITY
            },
            &mut a,
        );
        // A quarter turn by +π/2 (y down) takes the top-left corner to the top-right.
        let lit: Vec<_> = (0..32)
            .flat_map(|y| (0..32).map(move |x| (y, x)))
            .filter(|&(y, x)| a[0][y][x] > 0.5)
            .collect();
        assert_eq!(lit, [(2, 29)]);
    }

    #[test]
    fn draws_are_reproducible_and_within_bounds() {
        let aug = Augment {
            shift: 2.0,
            rotate: 10.0,
            scale: 0.1,
        };
        let draws: Vec<_> = (0..1000).map(|i| aug.draw(5, 1, i)).collect();
        assert_eq!(draws[7], aug.draw(5, 1, 7));
        assert_ne!(draws[7], aug.draw(5, 2, 7));
        for d in &draws {
            assert!(
                d.dy.abs() <= 2.0
                    && d.dx.abs() <= 2.0
                    && d.angle.abs() <= 10f64.to_radians() + 1e-12
            );
            assert!((d.scale - 1.0).abs() <= 0.1 + 1e-12);
        }
        assert!(draws.iter().any(|d| d.dy > 1.8) && draws.iter().any(|d| d.angle < -0.15));
        assert_eq!(Augment::NONE.draw(5, 1, 7), Affine::IDENTITY);
    }
}
