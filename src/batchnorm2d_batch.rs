//! [`BatchNorm2d`]'s passes over a batch: in training, each channel normalised with the
//! batch's mean and variance, which update the running statistics, and the backward pass
//! through those statistics; in evaluation, sample by sample with the running ones.

use crate::batch::BatchLayer;
use crate::batchnorm_kernel as kernel;
use crate::batchnorm2d::{BatchNorm2d, BatchNormEps, BatchNormWorkspace, TrainingBatch};
use crate::fusion::{Epilogue, Fusion};
use crate::layer::Layer;
use crate::mode::{Mode, Pass, Train};
use crate::scalar::Scalar;

impl<T: Scalar, const C: usize, const H: usize, const W: usize, E: BatchNormEps, const N: usize>
    BatchLayer<N> for BatchNorm2d<T, C, H, W, E>
{
    type BatchWorkspace = BatchNormWorkspace<T, C>;

    /// Batch statistics need every sample before any output.
    const WHOLE_BATCH: bool = true;

    fn forward_batch(
        &self,
        x: &[Self::Input; N],
        y: &mut [Self::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        self.forward_batch_in(&Pass::<Train>::DEFAULT, x, y, ws);
    }

    fn forward_batch_in<M: Mode>(
        &self,
        _pass: &Pass<M>,
        x: &[Self::Input; N],
        y: &mut [Self::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        let () = TrainingBatch::<Self, M, N>::OK;
        ws.train = M::TRAIN;
        let n = (N * H * W) as f64;
        for c in 0..C {
            if M::TRAIN {
                let maps = kernel::Maps {
                    all: x.as_flattened().as_flattened().as_flattened(),
                    at: c * H * W,
                    len: H * W,
                    stride: C * H * W,
                };
                let (mean, var) = kernel::batch_stats(maps, n);
                ws.mean[c] = T::from_f64(mean);
                ws.var[c] = T::from_f64(var);
                ws.inv_std[c] = T::one() / (T::from_f64(var) + self.eps).sqrt();
            } else {
                (ws.mean[c], ws.inv_std[c], _) = self.eval_affine(c);
            }
            for (x, y) in x.iter().zip(y.iter_mut()) {
                self.affine(
                    c,
                    (ws.mean[c], ws.inv_std[c]),
                    (&x[c], &mut y[c]),
                    Epilogue::Identity,
                );
            }
        }
    }

    fn infer_batch(
        &self,
        x: &[Self::Input; N],
        y: &mut [Self::Output; N],
        _ws: &mut Self::BatchWorkspace,
    ) {
        for (x, y) in x.iter().zip(y.iter_mut()) {
            self.infer(x, y, &mut ());
        }
    }

    fn backward_batch(
        &self,
        x: &[Self::Input; N],
        ws: &mut Self::BatchWorkspace,
        g: &[Self::Output; N],
        mut grad_input: Option<&mut [Self::Input; N]>,
        grads: &mut Self,
    ) {
        let n = T::from_f64((N * H * W) as f64);
        for c in 0..C {
            // The batch's sums once: they are the parameter gradients, and a training pass's
            // input gradient needs their means.
            let stats = (ws.mean[c], ws.inv_std[c]);
            let maps = x
                .iter()
                .zip(g)
                .map(|(x, g)| (x[c].as_flattened(), g[c].as_flattened()));
            let sums = (&mut grads.bias[c], &mut grads.weight[c]);
            let (sum_g, sum_gx) = kernel::batch_grad_sums(maps, stats, sums);
            if let Some(gi) = grad_input.as_deref_mut() {
                let terms = ws.train.then(|| (sum_g / n, sum_gx / n));
                let (mean, inv_std) = stats;
                let scale = self.weight[c] * inv_std;
                for s in 0..N {
                    let maps = (
                        x[s][c].as_flattened(),
                        g[s][c].as_flattened(),
                        gi[s][c].as_flattened_mut(),
                    );
                    kernel::input_grad(maps, (mean, inv_std, scale), terms);
                }
            }
            if ws.train {
                let unbiased = ws.var[c] * n / (n - T::one());
                grads.running_mean[c] = grads.running_mean[c] + ws.mean[c];
                grads.running_var[c] = grads.running_var[c] + unbiased;
            }
        }
        if ws.train {
            grads.num_batches_tracked += 1;
        }
    }

    /// Evaluation passes only: a chain runs batch normalisation on the whole batch
    /// (`WHOLE_BATCH`), and in training one sample alone has no batch statistics.
    ///
    /// # Panics
    /// In training mode.
    fn forward_sample_in<M: Mode>(
        &self,
        _pass: &Pass<M>,
        n: usize,
        x: &Self::Input,
        y: &mut Self::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        assert!(
            !M::TRAIN,
            "BatchNorm2d: a training pass runs on the whole batch, not sample by sample"
        );
        let _ = n;
        ws.train = false;
        for c in 0..C {
            (ws.mean[c], ws.inv_std[c], _) = self.eval_affine(c);
        }
        self.infer(x, y, &mut ());
    }

    /// See [`BatchLayer::forward_sample_in`]: evaluation only.
    fn forward_sample(
        &self,
        n: usize,
        x: &Self::Input,
        y: &mut Self::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        BatchLayer::<N>::forward_sample_in(self, &Pass::<crate::mode::Eval>::DEFAULT, n, x, y, ws);
    }

    fn infer_sample(
        &self,
        _n: usize,
        x: &Self::Input,
        y: &mut Self::Output,
        _ws: &mut Self::BatchWorkspace,
    ) {
        self.infer(x, y, &mut ());
    }

    /// Inference needs no batch statistics.
    const INFER_WHOLE_BATCH: bool = false;

    fn infer_sample_fused(
        &self,
        _n: usize,
        x: &Self::Input,
        y: &mut Self::Output,
        _ws: &mut Self::BatchWorkspace,
        f: Fusion<'_, T>,
    ) {
        self.infer_fused(x, y, &mut (), f);
    }

    fn infer_batch_fused(
        &self,
        x: &[Self::Input; N],
        y: &mut [Self::Output; N],
        _ws: &mut Self::BatchWorkspace,
        f: Fusion<'_, T>,
    ) {
        for (x, y) in x.iter().zip(y.iter_mut()) {
            self.infer_fused(x, y, &mut (), f);
        }
    }

    /// The backward pass of one sample after an evaluation pass.
    ///
    /// # Panics
    /// After a training pass, whose gradient needs the whole batch.
    fn backward_sample(
        &self,
        _n: usize,
        x: &Self::Input,
        ws: &mut Self::BatchWorkspace,
        g: &Self::Output,
        grad_input: Option<&mut Self::Input>,
        grads: &mut Self,
    ) {
        assert!(
            !ws.train,
            "BatchNorm2d: the backward pass of a training pass runs on the whole batch"
        );
        self.backward(x, &mut (), g, grad_input, grads);
    }
}
