"""Image completion with a trained run: masks, input files, scores and baselines.

``ebmlab inpaint`` fills the pixels where a mask is 1 by sampling the model's conditional
``p(x_m | x_o) ∝ exp(−U(x_o ⊕ x_m))`` (:meth:`ebmlab.methods.Method.complete`, in the run's
standardised coordinates ``z = (x − shift)/scale``); the observed pixels come back exactly
as given. ``samples = k`` averages ``k`` completions per image (a Monte-Carlo estimate of
the conditional mean, the completion that minimises the expected squared error).

Masks (``True`` / 1 = missing), by name:

* ``center``: the central ``⌊H/2⌋ × ⌊W/2⌋`` square (rows and columns from ``⌊H/4⌋``), a
  quarter of the image: 4×4 of the 8×8 digits, 14×14 of MNIST;
* ``bottom_half``: rows ``H − ⌊H/2⌋ … H − 1``;
* ``random:P``: per image, exactly ``round(P·H·W)`` pixels (at least 1) drawn without
  replacement, a different set per image, from a ``torch.Generator`` seeded with ``seed``;
  all channels of a pixel alike.

Scores (against the ground truth, per image, then averaged over images): PSNR
``10 log₁₀(R² / MSE)`` and SSIM (Wang et al. 2004, Eq. 13: Gaussian window σ = 1.5,
``C₁ = (0.01 R)²``, ``C₂ = (0.03 R)²``), each on the missing pixels and on whole images.
``R`` is the data range (the run's training data: max − min). The SSIM map is computed at
every pixel (reflect padding, window radius 5, or less for images under 11 pixels a side:
radius 3 on the 8×8 digits) so it can be averaged over the missing pixels; the whole-image
SSIM is its mean over all pixels (libraries that crop the border average the interior only).

Baselines a user would try first: :func:`mean_fill` (the training set's mean image) and
:func:`knn_fill` (the mean of the ``k`` training images nearest on the visible pixels).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ebmlab.data.arrays import read_npy

MASK_NAMES = ("center", "bottom_half", "random:P")
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # 11×11 window (Wang et al. 2004)
SSIM_K1, SSIM_K2 = 0.01, 0.03


# -- masks ---------------------------------------------------------------------------------


def is_mask_name(text: str) -> bool:
    return text in ("center", "bottom_half") or text.startswith("random:")


def named_mask(spec: str, shape: tuple[int, ...], n: int, *, seed: int = 0,
               image: bool = True) -> Tensor:
    """Masks ``(n, *shape)`` (bool, ``True`` = missing) by name (see the module docstring).

    ``shape`` is the event shape, ``(C, H, W)`` for images; ``image=False`` (vector data)
    allows only ``random:P``, over the ``D`` coordinates."""
    if spec.startswith("random:"):
        try:
            p = float(spec.split(":", 1)[1])
        except ValueError:
            p = math.nan
        if not 0 < p <= 1:
            raise ValueError(f"mask {spec!r}: random:P needs a fraction 0 < P <= 1")
        spatial = shape[1:] if image and len(shape) == 3 else shape
        d = math.prod(spatial)
        k = max(1, round(p * d))
        g = torch.Generator().manual_seed(seed)
        order = torch.stack([torch.randperm(d, generator=g) for _ in range(n)])
        flat = torch.zeros(n, d, dtype=torch.bool)
        flat.scatter_(1, order[:, :k], True)
        return flat.reshape(n, *([1] if spatial != shape else []), *spatial).expand(n, *shape)
    if spec not in ("center", "bottom_half"):
        raise ValueError(f"mask {spec!r}: masks by name are {', '.join(MASK_NAMES)}")
    if not image or len(shape) != 3:
        raise ValueError(f"mask {spec!r} needs image data; the run's data are vectors of shape "
                         f"{tuple(shape)} (use random:P or a mask file)")
    _, h, w = shape
    m = torch.zeros(h, w, dtype=torch.bool)
    if spec == "center":
        m[h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2] = True
    else:
        m[h - h // 2:, :] = True
    if not m.any():
        raise ValueError(f"mask {spec!r} hides no pixel of a {h}×{w} image")
    return m.expand(n, *shape)


# -- files ---------------------------------------------------------------------------------


def _load_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"{what} {path}: file not found")
    return read_npy(path, what)


def to_event_layout(a: np.ndarray, shape: tuple[int, ...], what: str, *, batched: bool = True
                    ) -> np.ndarray:
    """``a`` reshaped to ``(N, *shape)`` (``batched``) or ``shape``, from any of the
    accepted layouts ``(N, H, W)`` (one channel), ``(N, C, H, W)`` or flat ``(N, D)``."""
    lead = a.shape[:1] if batched else ()
    rest = a.shape[1:] if batched else a.shape
    d = math.prod(shape)
    fits = (rest == tuple(shape)
            or (len(shape) == 3 and shape[0] == 1 and rest == tuple(shape[1:]))
            or rest == (d,))
    if not fits or (batched and (a.ndim < 2 or a.shape[0] == 0)):
        layouts = [tuple(shape)]
        if len(shape) == 3 and shape[0] == 1:
            layouts.insert(0, tuple(shape[1:]))
        if len(shape) > 1:
            layouts.append((d,))
        want = " or ".join(str(("N", *s) if batched else s).replace("'", "") for s in layouts)
        raise ValueError(f"{what} of shape {tuple(a.shape)} do not fit the run's data shape "
                         f"{tuple(shape)}: use {want}")
    return a.reshape(*lead, *shape)


def read_images(path: str | Path, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``X.npy`` as given and as ``(N, *shape)`` float64; one-line errors for a missing or
    unreadable file, a shape that is not the run's data shape, NaN or infinite values."""
    a = _load_npy(Path(path), "--images")
    x = to_event_layout(a, shape, f"images in {path}").astype(np.float64)
    if not np.isfinite(x).all():
        i = int(np.flatnonzero(~np.isfinite(x).reshape(x.shape[0], -1).all(1))[0])
        raise ValueError(f"--images {path}: image {i} has NaN or infinite values")
    return a, x


def read_mask(path: str | Path, images: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``M.npy``: one mask of an image's shape in ``X`` or one per image (``X``'s shape),
    values 0/1 (1 = missing); returned as bool ``(N, *shape)``."""
    m = _load_npy(Path(path), "--mask")
    if m.shape == images.shape[1:]:
        m = np.broadcast_to(m, images.shape)
    elif m.shape != images.shape:
        raise ValueError(f"--mask {path}: shape {tuple(m.shape)} matches neither one image "
                         f"{tuple(images.shape[1:])} nor the images {tuple(images.shape)}")
    if not np.isin(m, (0, 1)).all():
        raise ValueError(f"--mask {path}: values must be 0 (observed) or 1 (missing)")
    return to_event_layout(m != 0, shape, "masks")


def check_masks(mask: Tensor | np.ndarray) -> None:
    """Every image needs a missing pixel to fill."""
    flat = np.asarray(mask).reshape(len(mask), -1)
    empty = np.flatnonzero(~flat.any(axis=1))
    if empty.size == len(flat):
        raise ValueError("the mask has no missing pixel (1 = missing, to be filled)")
    if empty.size:
        raise ValueError(f"the mask of image {int(empty[0])} has no missing pixel "
                         "(1 = missing, to be filled)")


# -- completion ----------------------------------------------------------------------------


def complete_images(method: Any, data: Any, x: Tensor, mask: Tensor, *, samples: int = 1,
                    n_steps: int | None = None, seed: int = 0, batch_size: int = 512
                    ) -> Tensor:
    """Completions of ``x`` ``(N, *shape)`` in data units where ``mask`` is True: each image
    standardised with the run's ``data.shift`` / ``data.scale``, completed ``samples``
    times by ``method.complete`` (at most ``batch_size`` chains at once), mapped back and
    averaged; observed pixels are ``x``'s exactly."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    device, dtype = data.train.device, data.train.dtype
    rng = torch.Generator(device=device).manual_seed(seed)
    shift, scale = data.shift.to(device, dtype), data.scale.to(device, dtype)
    xs = x.to(device, dtype)
    ms = mask.to(device).expand_as(xs)
    per = max(1, batch_size // samples)
    out = []
    for i in range(0, xs.shape[0], per):
        xb, mb = xs[i: i + per], ms[i: i + per]
        z = ((xb - shift) / scale).repeat_interleave(samples, 0)
        zc = method.complete(z, mb.repeat_interleave(samples, 0), n_steps=n_steps, rng=rng)
        filled = (zc * scale + shift).reshape(xb.shape[0], samples, *xb.shape[1:]).mean(1)
        out.append(torch.where(mb, filled, xb))
    return torch.cat(out).to(x.device, x.dtype)


def mean_fill(train: Tensor, x: Tensor, mask: Tensor) -> Tensor:
    """Missing pixels from the training set's mean image (all in data units)."""
    return torch.where(mask, train.mean(0).to(x).expand_as(x), x)


def knn_fill(train: Tensor, x: Tensor, mask: Tensor, k: int = 5, batch_size: int = 256
             ) -> Tensor:
    """Missing pixels from the mean of the ``k`` training images nearest to each image on
    its visible pixels: ``d²(x, t) = Σ_{p visible} (x_p − t_p)²`` (each image its own mask)."""
    if not 1 <= k <= train.shape[0]:
        raise ValueError(f"k must be in 1..{train.shape[0]}, got {k}")
    mask = mask.expand_as(x)
    t = train.reshape(train.shape[0], -1).to(torch.float64)
    t_sq = t.square()
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i: i + batch_size].reshape(-1, t.shape[1]).to(torch.float64)
        vis = (~mask[i: i + batch_size]).reshape(-1, t.shape[1]).to(torch.float64)
        d2 = (vis * xb.square()).sum(1, keepdim=True) - 2 * (vis * xb) @ t.T + vis @ t_sq.T
        idx = torch.topk(d2, k, dim=1, largest=False).indices
        fill = t[idx].mean(1).to(x.dtype).reshape(-1, *x.shape[1:])
        out.append(fill)
    return torch.where(mask, torch.cat(out), x)


# -- scores --------------------------------------------------------------------------------


def _per_image_mean(v: Tensor, where: Tensor | None) -> Tensor:
    """Mean of each image's values over ``where`` (broadcast to ``v``: a mask ``(N, 1, H,
    W)`` selects a pixel in every channel)."""
    if where is None:
        return v.reshape(v.shape[0], -1).mean(1)
    w = where.to(v.device).expand_as(v).reshape(v.shape[0], -1).to(v.dtype)
    return (v.reshape(v.shape[0], -1) * w).sum(1) / w.sum(1)


def psnr(pred: Tensor, truth: Tensor, data_range: float, where: Tensor | None = None) -> Tensor:
    """Per image ``10 log₁₀(R² / MSE)``, the MSE over ``where`` (default: all pixels)."""
    mse = _per_image_mean((pred.double() - truth.double()).square(), where)
    return 10 * torch.log10(data_range**2 / mse)


def gaussian_window(radius: int, sigma: float = SSIM_SIGMA) -> Tensor:
    """The normalised 1-D Gaussian ``exp(−t²/(2σ²))``, ``t = −radius … radius``."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-t.square() / (2 * sigma**2))
    return w / w.sum()


def ssim_radius(h: int, w: int) -> int:
    """5 (the 11×11 window), or the largest radius reflect padding allows on smaller images."""
    return max(0, min(SSIM_RADIUS, (min(h, w) - 1) // 2))


def ssim_map(pred: Tensor, truth: Tensor, data_range: float, *, radius: int | None = None,
             sigma: float = SSIM_SIGMA) -> Tensor:
    """The SSIM index at every pixel of ``(N, C, H, W)`` images (Wang et al. 2004, Eq. 13)

        SSIM = (2 μ_x μ_y + C₁)(2 σ_xy + C₂) / ((μ_x² + μ_y² + C₁)(σ_x² + σ_y² + C₂)),

    local means, variances and covariance weighted by a Gaussian window (σ = 1.5, weights
    summing to 1), ``C₁ = (0.01 R)²``, ``C₂ = (0.03 R)²``; the images are reflect-padded
    by the window radius so the map has the images' size."""
    x, y = pred.double(), truth.double()
    n, c, h, w = x.shape
    r = ssim_radius(h, w) if radius is None else radius
    g = gaussian_window(r, sigma)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, 2 * r + 1, 2 * r + 1)

    def blur(v: Tensor) -> Tensor:
        if r > 0:
            v = F.pad(v, (r, r, r, r), mode="reflect")
        return F.conv2d(v, kernel, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def ssim(pred: Tensor, truth: Tensor, data_range: float, where: Tensor | None = None) -> Tensor:
    """Per image mean SSIM over ``where`` (default: every pixel), channels averaged."""
    return _per_image_mean(ssim_map(pred, truth, data_range), where)


def score(pred: Tensor, truth: Tensor, mask: Tensor, data_range: float) -> dict[str, float]:
    """Mean over images of PSNR and SSIM on the missing pixels and on whole images
    (``(N, C, H, W)`` images; vector data ``(N, D)`` get PSNR only)."""
    mask = mask.expand_as(truth)
    out = {"psnr_missing": float(psnr(pred, truth, data_range, mask).mean()),
           "psnr_whole": float(psnr(pred, truth, data_range).mean())}
    if truth.dim() == 4:
        out["ssim_missing"] = float(ssim(pred, truth, data_range, mask).mean())
        out["ssim_whole"] = float(ssim(pred, truth, data_range).mean())
    return out


def data_range(train: Tensor) -> float:
    """``R = max − min`` of the training data (data units): 1 for pixels in [0, 1]."""
    r = float(train.max() - train.min())
    return r if r > 0 else 1.0


__all__ = ["MASK_NAMES", "check_masks", "complete_images", "data_range", "gaussian_window",
           "is_mask_name", "knn_fill", "mean_fill", "named_mask", "psnr", "read_images",
           "read_mask", "score", "ssim", "ssim_map", "to_event_layout"]
