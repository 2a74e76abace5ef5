//! Network-shaped values split between threads, each thread a range of every parameter
//! tensor: the audited `unsafe` that lets the trainer's threads share its update.
//!
//! The sum of the threads' gradients and the optimizer's step are elementwise, so they can
//! be shared out by ranges of each tensor, and each element gets the same operations in the
//! same order whichever thread computes it: the weights stay bit-identical. No safe split
//! expresses "the middle third of every tensor of these four values" ([`Layer::param_mut`]
//! borrows the whole value for one tensor), so [`Split::new`] takes each value's tensors'
//! places once, checks that they lie inside the value and do not overlap, and
//! [`Split::next_part`] hands out each range of every tensor to one [`Part`] only.

use core::marker::PhantomData;
use core::ops::Range;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::layer::Layer;

/// A range of a tensor's elements starts at a multiple of this many bytes (a cache line),
/// so two threads never write the same line.
const ALIGN: usize = 64;

/// Where a value's parameter tensors are: (offset in bytes from the value's start, length),
/// tensor by tensor. Kept between steps so that splitting does not allocate.
#[derive(Debug, Default)]
pub(crate) struct Places(Vec<(usize, usize)>);

/// `V` values of type `L`, their parameter tensors shared out in `parts` parts: part `k`
/// is the same range of tensor `i` in every value.
pub(crate) struct Split<'a, L: Layer, const V: usize> {
    bases: [*mut u8; V],
    places: &'a [(usize, usize)],
    parts: usize,
    next: AtomicUsize,
    _values: PhantomData<&'a mut L>,
}

// SAFETY: a `Split` is a unique borrow of its values' tensors, like `&mut L` (`Send` and
// `Sync` when the scalars are); its `Part`s reach disjoint elements (`next_part`).
unsafe impl<L: Layer, const V: usize> Send for Split<'_, L, V> where L::Scalar: Send {}
// SAFETY: as above; shared, a `Split` only hands out distinct parts (an atomic counter).
unsafe impl<L: Layer, const V: usize> Sync for Split<'_, L, V> where L::Scalar: Send {}

impl<'a, L: Layer, const V: usize> Split<'a, L, V> {
    /// `values`' parameter tensors in `parts` parts (at least 1), or `None` if a tensor
    /// is not inside its value (a layer keeping its parameters on the heap), the values'
    /// tensors are not in the same places, or two tensors overlap. `places` is scratch.
    pub(crate) fn new(
        values: [&'a mut L; V],
        places: &'a mut Places,
        parts: usize,
    ) -> Option<Self> {
        let size = core::mem::size_of::<L>();
        let places_of = |value: &mut L, out: &mut Vec<(usize, usize)>| {
            let start = value as *mut L as usize;
            out.clear();
            for i in 0..L::PARAM_TENSORS {
                let t = value.param_mut(i);
                let bytes = core::mem::size_of_val(t);
                let offset = (t.as_mut_ptr() as usize).checked_sub(start)?;
                if offset.checked_add(bytes)? > size {
                    return None;
                }
                out.push((offset, t.len()));
            }
            Some(())
        };
        let mut values = values;
        let (first, rest) = values.split_first_mut()?;
        places_of(first, &mut places.0)?;
        let ours = &places.0;
        let elem = core::mem::size_of::<L::Scalar>();
        for (i, &(a, n)) in ours.iter().enumerate() {
            for &(b, m) in &ours[..i] {
                if a < b + m * elem && b < a + n * elem {
                    return None;
                }
            }
        }
        for value in rest {
            // The same type, so the same places, unless a layer hands out different fields
            // for different values.
            let start = &mut **value as *mut L as usize;
            for (i, &(offset, len)) in ours.iter().enumerate() {
                let t = value.param_mut(i);
                if t.as_mut_ptr() as usize != start + offset || t.len() != len {
                    return None;
                }
            }
        }
        let bases = values.map(|v| v as *mut L as *mut u8);
        Some(Self {
            bases,
            places: &places.0,
            parts: parts.max(1),
            next: AtomicUsize::new(0),
            _values: PhantomData,
        })
    }

    /// The next part nobody has taken yet, if any: each part is handed out once.
    pub(crate) fn next_part(&self) -> Option<Part<'_, L, V>> {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        (k < self.parts).then_some(Part { split: self, k })
    }
}

/// Part `k` of a [`Split`]: the same range of every tensor of every value.
pub(crate) struct Part<'s, L: Layer, const V: usize> {
    split: &'s Split<'s, L, V>,
    k: usize,
}

impl<L: Layer, const V: usize> Part<'_, L, V> {
    /// The elements of tensor `i` (`i < L::PARAM_TENSORS`) this part owns.
    pub(crate) fn range(&self, i: usize) -> Range<usize> {
        let len = self.split.places[i].1;
        let step = (ALIGN / core::mem::size_of::<L::Scalar>().max(1)).max(1);
        let bound = |k: usize| {
            if k >= self.split.parts {
                len
            } else {
                (len * k / self.split.parts) / step * step
            }
        };
        bound(self.k)..bound(self.k + 1)
    }

    /// This part's range of tensor `i` in each of the values, in their order.
    pub(crate) fn tensors(&mut self, i: usize) -> [&mut [L::Scalar]; V] {
        let range = self.range(i);
        let offset = self.split.places[i].0;
        self.split.bases.map(|base| {
            // SAFETY: `Split::new` checked that tensor `i` of every value is `len` scalars
            // at `base + offset`, inside the value, which the split borrows mutably for its
            // lifetime; `range` is inside `0..len`. No other reference reaches these
            // elements: tensors do not overlap (checked), the values are distinct `&mut`,
            // parts' ranges of a tensor are disjoint (`range` of distinct `k`), each `k` is
            // handed out once (`next_part`), and `&mut self` ends the slices of a previous
            // call before new ones are made.
            unsafe {
                let t = base.add(offset).cast::<L::Scalar>();
                core::slice::from_raw_parts_mut(t.add(range.start), range.len())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, Linear, Relu, zeroed_box};

    type Net = Chain<Chain<Linear<f32, 7, 40>, Relu<[f32; 40]>>, Linear<f32, 40, 3>>;

    #[test]
    fn parts_cover_every_tensor_of_every_value_once() {
        for parts in 1..=5 {
            let mut a = zeroed_box::<Net>();
            let mut b = zeroed_box::<Net>();
            let mut places = Places::default();
            let split = Split::new([&mut *a, &mut *b], &mut places, parts).expect("tensors inside");
            let mut n = 0;
            while let Some(mut part) = split.next_part() {
                n += 1;
                for i in 0..Net::PARAM_TENSORS {
                    let [x, y] = part.tensors(i);
                    for v in x.iter_mut() {
                        *v += 1.0;
                    }
                    for v in y.iter_mut() {
                        *v += 2.0;
                    }
                }
            }
            assert_eq!(n, parts, "each part once");
            assert!(split.next_part().is_none());
            for i in 0..Net::PARAM_TENSORS {
                assert!(
                    a.param(i).iter().all(|&v| v == 1.0),
                    "tensor {i}, {parts} parts"
                );
                assert!(
                    b.param(i).iter().all(|&v| v == 2.0),
                    "tensor {i}, {parts} parts"
                );
            }
        }
    }

    #[test]
    fn ranges_start_on_cache_lines_and_tile_each_tensor() {
        let mut a = zeroed_box::<Net>();
        let mut places = Places::default();
        let split = Split::new([&mut *a], &mut places, 3).unwrap();
        let mut ranges = Vec::new();
        while let Some(part) = split.next_part() {
            ranges.push(part.range(0)); // the first layer's 280 weights
        }
        assert_eq!(ranges, [0..80, 80..176, 176..280]);
    }
}
