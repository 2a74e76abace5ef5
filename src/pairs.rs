//! `pairs`: the kernels' zip, inlined without link-time optimisation.
//!
//! The standard library's `Iterator::zip` over slices builds its iterator in
//! `ZipImpl::new` and `TrustedRandomAccessNoCoerce::size`, generic functions that are not
//! inlined across codegen units. Only the thin local LTO of the release profile inlines them
//! into a kernel's `#[target_feature]` body; without it (the test profile has `lto = "off"`)
//! a zip built in an inner loop is two calls, and the vectors it walks leave the registers:
//! LeNet-5's inference of one image ran 15 times slower, and the test suite took 66 s
//! instead of 43 s.
//!
//! So the kernels' inner loops write `a.pairs(b)` for `a.zip(b)`: the same pairs in the same
//! order, every method `#[inline(always)]` — over fixed-size arrays of vectors
//! (accumulators, loaded rows) as over chunks. Two loops index by `enumerate` into the other
//! array instead (one exit and a known count): the fully connected layer's SGD step of one
//! sample, where `pairs(..).enumerate()` ran 18% slower even with LTO, and the GEMM
//! microkernel (`conv_gemm_micro::micro`; as fast either way).
//!
//! A zip over a long run of scalars, built once per call and vectorised by the compiler
//! through the standard zip's random access, stays a standard zip (`relu_mask`, the
//! gradient sums; and the packing loops of `conv_gemm`, where `pairs` cost ResNet-18's
//! inference 4%).

/// Pairs the items of two iterators, stopping at the shorter: `Iterator::zip` for the
/// kernels (see the module's note).
pub(crate) trait Pairs: Iterator + Sized {
    /// Like `self.zip(other)`: `(a, b)` pairs until either iterator ends (`other` is not
    /// advanced once `self` has ended).
    #[inline(always)]
    fn pairs<B: IntoIterator>(self, other: B) -> Pair<Self, B::IntoIter> {
        Pair {
            a: self,
            b: other.into_iter(),
        }
    }
}

impl<I: Iterator> Pairs for I {}

/// The iterator [`Pairs::pairs`] returns.
pub(crate) struct Pair<A, B> {
    a: A,
    b: B,
}

impl<A: Iterator, B: Iterator> Iterator for Pair<A, B> {
    type Item = (A::Item, B::Item);

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let a = self.a.next()?;
        let b = self.b.next()?;
        Some((a, b))
    }

    #[inline(always)]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let (a_lo, a_hi) = self.a.size_hint();
        let (b_lo, b_hi) = self.b.size_hint();
        let hi = match (a_hi, b_hi) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (a_lo.min(b_lo), hi)
    }
}

#[cfg(test)]
mod tests {
    use super::Pairs;

    #[test]
    fn pairs_match_zip_and_stop_at_the_shorter() {
        let a = [1, 2, 3, 4, 5];
        let b = [10, 20, 30];
        let got: ([(i32, i32); 3], usize) = {
            let mut out = [(0, 0); 3];
            let mut n = 0;
            for (o, (&x, &y)) in out.iter_mut().pairs(a.iter().pairs(&b)) {
                *o = (x, y);
                n += 1;
            }
            (out, n)
        };
        let want: [(i32, i32); 3] = core::array::from_fn(|i| (a[i], b[i]));
        assert_eq!(got, (want, 3));
        assert_eq!(a.iter().pairs(&b).size_hint(), (3, Some(3)));
        assert_eq!(b.iter().pairs(0..).size_hint(), (3, Some(3)));
        // The first iterator ends first: the second is not advanced past its pair.
        let mut longer = b.iter();
        assert_eq!(a[..2].iter().pairs(&mut longer).count(), 2);
        assert_eq!(longer.next(), Some(&30));
    }
}
