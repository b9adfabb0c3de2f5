"""Reference points for image quality: what FID / KID of a method mean.

* :func:`training_images` — real training images scored against the test split: the
  floor (no model beats real data of the same law; what is left is the estimators'
  finite-sample bias and the train/test difference).
* :func:`gaussian_mixture_samples` — a scikit-learn ``GaussianMixture`` fitted on the
  pixels (flattened images), then sampled: the classical density model every EBM
  should beat.

ebmlab's own methods are sampled with :meth:`ebmlab.run.Run.sample` (or
:meth:`ebmlab.methods.Method.sample`); all of them are scored with
:func:`ebmlab.evaluate.image_quality.score_images` in the same feature space.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(train: Tensor, n: int) -> None:
    if not isinstance(train, Tensor) or train.dim() < 2 or train.shape[0] < 2:
        raise ValueError(f"train must be a tensor (N >= 2, ...), got "
                         f"{tuple(train.shape) if isinstance(train, Tensor) else type(train)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")


def training_images(train: Tensor, n: int, seed: int = 0) -> Tensor:
    """``n`` distinct training images drawn at random (all of them, shuffled, when
    ``n ≥ N``)."""
    _check(train, n)
    gen = torch.Generator().manual_seed(seed)
    return train[torch.randperm(train.shape[0], generator=gen)[:n]].clone()


def gaussian_mixture_samples(train: Tensor, n: int, *, n_components: int = 10,
                             covariance_type: str = "full", reg_covar: float = 1e-3,
                             seed: int = 0) -> Tensor:
    """``n`` samples of a ``GaussianMixture(n_components, covariance_type)`` fitted by EM
    on the flattened ``train`` images, reshaped like them (pixels may leave [0, 1]; the
    scorer clamps them as it does every method's). ``reg_covar`` is added to each
    covariance's diagonal: always-blank border pixels have zero variance."""
    from sklearn.mixture import GaussianMixture

    _check(train, n)
    x = train.detach().reshape(train.shape[0], -1).double().cpu().numpy()
    gmm = GaussianMixture(n_components=n_components, covariance_type=covariance_type,
                          reg_covar=reg_covar, random_state=seed, max_iter=200)
    gmm.fit(x)
    samples, _ = gmm.sample(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # sample() sorts
    out = torch.from_numpy(samples).to(train.dtype)[order]                   # by component
    return out.reshape(n, *train.shape[1:])


__all__ = ["gaussian_mixture_samples", "training_images"]
