"""Image quality without a download: FID and KID in the feature space of a small
classifier that ebmlab trains itself (PSNR and SSIM for paired images: ebmlab.inpaint).

FID and KID need a feature network. The usual one (Inception-v3 on ImageNet) is a
download and means little on 8×8 digits, so ebmlab trains a small ConvNet classifier
(:class:`FeatureClassifier`) on the data set's training split — seeded, deterministic
on CPU, seconds for the digits — and caches it (:func:`feature_space`). Every method
is scored by the same network: its 64-unit penultimate layer is the feature space.
Numbers are comparable within one data set and one classifier (the cache key names
both), not with published Inception FIDs.

* **FID** (Heusel et al. 2017): the Fréchet distance between Gaussian fits
  ``N(μ₁, Σ₁)``, ``N(μ₂, Σ₂)`` of the two feature samples,

      FID = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½).

  ``tr (Σ₁Σ₂)^½`` is computed as ``Σᵢ √λᵢ`` with ``λᵢ`` the eigenvalues of the
  symmetric PSD matrix ``Σ₁^½ Σ₂ Σ₁^½`` (similar to ``Σ₁Σ₂``), in float64, with
  round-off negatives clipped to 0 — no non-symmetric matrix square root. FID is biased
  upwards at finite sample sizes, so always compare at equal sample counts (reported).
* **KID** (Bińkowski et al. 2018): the unbiased MMD² with the cubic polynomial kernel
  ``k(x, y) = (xᵀy / d + 1)³``, averaged over random subsets of both samples; reported
  as mean ± sd over subsets. Unbiased: 0 in expectation for equal laws at any size.
* **PSNR / SSIM** (Wang et al. 2004) compare an image with its reference pixel by pixel
  (completion): :func:`ebmlab.inpaint.psnr`, :func:`ebmlab.inpaint.ssim` (on chosen
  pixels, e.g. the missing ones).

The cache: ``$EBMLAB_CACHE_DIR`` or ``$XDG_CACHE_HOME/ebmlab`` or ``~/.cache/ebmlab``,
subfolder ``classifiers``; one safetensors file per data set, named
``<dataset>-<hash>.safetensors`` where the hash covers the training images, labels,
the classifier settings and :data:`FEATURE_VERSION`. A file that cannot be read or does
not match is retrained with a warning; a cache folder that cannot be written is
reported with a warning and the network is kept in memory only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FEATURE_VERSION = 1  # bump when the network or its training changes: new cache keys
CACHE_ENV = "EBMLAB_CACHE_DIR"


# -- the classifier ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassifierSettings:
    """How the feature classifier is built and trained (all part of the cache key)."""

    seed: int = 0
    channels: int = 16       # first block; doubled by each strided block
    feature_dim: int = 64    # the feature space of FID / KID
    steps: int = 1000        # Adam steps
    batch_size: int = 64
    lr: float = 2e-3
    max_train: int = 20000   # train on at most the first this many training images

    def __post_init__(self) -> None:
        for name in ("channels", "feature_dim", "steps", "batch_size", "max_train"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ClassifierSettings.{name} must be an integer >= 1, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"ClassifierSettings.lr must be a number > 0, got {self.lr!r}")


class FeatureClassifier(nn.Module):
    """``(B, C, H, W)`` images in [0, 1] → class logits, for any ``H, W ≥ 1``.

    Three 3×3 convolutions (``c``, ``2c`` stride 2, ``4c`` stride 2) with ReLU, a global
    average pool, a linear layer to ``feature_dim`` units with ReLU — the features —
    and a linear head to the classes. Images of 16 pixels or more a side
    (``min_side``) get a stride-2 first convolution too (28×28 → 4×4 maps: a wider
    receptive field before the pool, and a quarter of the cost)."""

    def __init__(self, in_channels: int, n_classes: int, channels: int = 32,
                 feature_dim: int = 64, min_side: int = 8) -> None:
        super().__init__()
        c = channels
        first_stride = 2 if min_side >= 16 else 1
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, c, 3, stride=first_stride, padding=1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.embed = nn.Linear(4 * c, feature_dim)
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: Tensor) -> Tensor:
        h = self.body(x - 0.5).mean(dim=(2, 3))
        return F.relu(self.embed(h))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@dataclass
class FeatureSpace:
    """A trained feature classifier: :meth:`features` maps images to its feature space."""

    name: str
    net: FeatureClassifier
    image_shape: tuple[int, int, int]
    test_accuracy: float | None
    key: str
    scale: float = 1.0  # features are divided by it: RMS feature of the training images is 1
    cache_path: Path | None = None
    seconds: float = 0.0  # training time (0 when loaded from the cache)

    def _images(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise ValueError(f"images must be a torch.Tensor, got {type(x).__name__}")
        n = x.shape[0] if x.dim() else 0
        if x.dim() >= 2 and math.prod(x.shape[1:]) == math.prod(self.image_shape):
            x = x.reshape(n, *self.image_shape)
        else:
            raise ValueError(f"images must have shape (N, {', '.join(map(str, self.image_shape))})"
                             f" (or flat), got {tuple(x.shape)}")
        if n < 1:
            raise ValueError("no images to score")
        x = x.detach().to("cpu", torch.float32)
        bad = ~torch.isfinite(x.reshape(n, -1)).all(1)
        if bool(bad.any()):
            raise ValueError(f"{int(bad.sum())} of {n} images contain NaN or infinite values")
        return x.clamp(0.0, 1.0)

    def features(self, images: Tensor, batch_size: int = 500) -> Tensor:
        """``(N, feature_dim)`` float64 features of images in [0, 1] (data space): the
        classifier's penultimate layer divided by :attr:`scale`, so that the training
        images' features have root-mean-square 1 (FID and KID then have the same units
        for every data set, and KID's kernel ``(xᵀy/d + 1)³`` sees O(1) inner products).

        Images are clamped to [0, 1] first, as a saved image would be; NaN or infinite
        pixels are an error."""
        x = self._images(images)
        self.net.eval()
        with torch.no_grad():
            out = [self.net.features(chunk) for chunk in x.split(batch_size)]
        return torch.cat(out).double() / self.scale

    def accuracy(self, images: Tensor, labels: Tensor) -> float:
        x = self._images(images)
        with torch.no_grad():
            pred = torch.cat([self.net(c).argmax(1) for c in x.split(500)])
        return float((pred == labels.reshape(-1).to(pred)).double().mean())


def _digest(images: Tensor, labels: Tensor, settings: ClassifierSettings, n_classes: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"version": FEATURE_VERSION, "settings": dataclasses.asdict(settings),
                         "shape": list(images.shape), "n_classes": n_classes},
                        sort_keys=True).encode())
    h.update(images.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(labels.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def _check_training_data(images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    if images.dim() != 4:
        raise ValueError(f"training images must have shape (N, C, H, W), got "
                         f"{tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got "
                         f"{tuple(labels.shape)}")
    if images.shape[0] < 2:
        raise ValueError("the classifier needs at least 2 training images")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("training images contain NaN or infinite values")
    if int(labels.min()) < 0:
        raise ValueError("labels must be >= 0")
    return images.detach().to("cpu", torch.float32), labels.detach().to("cpu", torch.int64)


def train_classifier(images: Tensor, labels: Tensor,
                     settings: ClassifierSettings = ClassifierSettings(),
                     n_classes: int | None = None) -> FeatureClassifier:
    """Train a :class:`FeatureClassifier` on ``images (N, C, H, W)`` in [0, 1] and int
    ``labels (N,)``: Adam, ``settings.steps`` mini-batches drawn with a generator seeded
    by ``settings.seed``, parameters initialised under the same seed. The global RNG is
    left as it was; the same inputs and settings give the same network on CPU."""
    images, labels = _check_training_data(images, labels)
    images, labels = images[: settings.max_train], labels[: settings.max_train]
    k = int(labels.max()) + 1 if n_classes is None else n_classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        net = FeatureClassifier(images.shape[1], k, settings.channels, settings.feature_dim,
                                min(images.shape[2:]))
    gen = torch.Generator().manual_seed(settings.seed)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    n = images.shape[0]
    net.train()
    for step in range(settings.steps):
        idx = torch.randint(0, n, (min(settings.batch_size, n),), generator=gen)
        for g in opt.param_groups:  # cosine decay to 0: a settled, reproducible end point
            g["lr"] = settings.lr * 0.5 * (1 + math.cos(math.pi * step / settings.steps))
        loss = F.cross_entropy(net(images[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


# -- the cache --------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$EBMLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/ebmlab``, else ``~/.cache/ebmlab``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "ebmlab"


_MEMORY: dict[str, FeatureSpace] = {}  # this process's spaces by cache key


def _load_cached(path: Path, key: str) -> tuple[FeatureClassifier, dict[str, Any]]:
    from safetensors.torch import load_file, safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {})["ebmlab"])
    if meta.get("key") != key or meta.get("version") != FEATURE_VERSION:
        raise ValueError(f"it holds another network (key {meta.get('key')!r})")
    s = meta["settings"]
    net = FeatureClassifier(int(meta["in_channels"]), int(meta["n_classes"]),
                            int(s["channels"]), int(s["feature_dim"]),
                            min(int(v) for v in meta["image_shape"][1:]))
    net.load_state_dict(load_file(str(path)))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, meta


def _save_cached(path: Path, net: FeatureClassifier, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp,
                  metadata={"ebmlab": json.dumps(meta)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build_feature_space(name: str, train_images: Tensor, train_labels: Tensor,
                        test_images: Tensor | None = None, test_labels: Tensor | None = None,
                        *, settings: ClassifierSettings = ClassifierSettings(),
                        cache_dir: str | Path | None = None, use_cache: bool = True,
                        log: Callable[[str], None] | None = None) -> FeatureSpace:
    """The feature space of a classifier trained on ``train_images`` / ``train_labels``
    (images ``(N, C, H, W)`` in [0, 1]), loaded from the cache when it holds that network
    (see the module docstring), else trained and written there. ``test_*`` give the
    reported test accuracy. ``use_cache=False`` always trains and writes nothing."""
    images, labels = _check_training_data(train_images, train_labels)
    images, labels = images[: settings.max_train], labels[: settings.max_train]
    n_classes = int(labels.max()) + 1
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "images"
    key = f"{safe}-{_digest(images, labels, settings, n_classes)}"
    if use_cache and key in _MEMORY:
        return _MEMORY[key]
    c, h, w = (int(v) for v in images.shape[1:])
    shape = (c, h, w)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / "classifiers" / f"{key}.safetensors"
    if use_cache and path.exists():
        try:
            net, meta = _load_cached(path, key)
        except Exception as exc:  # corrupt, truncated, foreign: retrain
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            warnings.warn(f"feature classifier cache {path} is unreadable ({reason}); "
                          "retraining it", RuntimeWarning, stacklevel=2)
        else:
            space = FeatureSpace(name, net, shape, meta.get("test_accuracy"), key,
                                 float(meta["scale"]), path)
            _MEMORY[key] = space
            return space
    if log is not None:
        log(f"training the feature classifier for FID/KID on {name} ({images.shape[0]} "
            f"images, {settings.steps} steps)")
    started = time.perf_counter()
    net = train_classifier(images, labels, settings, n_classes)
    seconds = time.perf_counter() - started
    space = FeatureSpace(name, net, shape, None, key, 1.0, None, seconds)
    f = space.features(images)
    space.scale = float(f.square().mean().sqrt()) or 1.0
    if test_images is not None and test_labels is not None:
        space.test_accuracy = space.accuracy(test_images, test_labels)
    if log is not None:
        acc = "" if space.test_accuracy is None else \
            f", test accuracy {100 * space.test_accuracy:.1f} %"
        log(f"feature classifier trained in {seconds:.1f} s{acc}")
    if not use_cache:
        return space
    meta = {"key": key, "version": FEATURE_VERSION, "name": name,
            "settings": dataclasses.asdict(settings), "in_channels": shape[0],
            "n_classes": n_classes, "image_shape": list(shape), "n_train": images.shape[0],
            "test_accuracy": space.test_accuracy, "scale": space.scale, "seconds": seconds}
    try:
        _save_cached(path, net, meta)
        space.cache_path = path
    except OSError as exc:
        warnings.warn(f"cannot write the feature classifier cache {path} "
                      f"({exc.strerror or exc}); keeping it in memory only",
                      RuntimeWarning, stacklevel=2)
    _MEMORY[key] = space
    return space


def feature_space(name: str, path: str | Path | None = None, *,
                  settings: ClassifierSettings = ClassifierSettings(),
                  cache_dir: str | Path | None = None, use_cache: bool = True,
                  log: Callable[[str], None] | None = None) -> FeatureSpace:
    """The feature space of image data set ``name`` (as :func:`ebmlab.data.load_image_dataset`
    names it; ``path`` for the downloaded sets): a classifier trained on its whole training
    split (at most ``settings.max_train`` images), its test accuracy measured on the test
    split; cached (module docstring)."""
    from ebmlab.data.images import load_image_dataset

    train = load_image_dataset(name, path, split="train")
    test = load_image_dataset(name, path, split="test")
    return build_feature_space(name, _as_4d(train.images), train.labels, _as_4d(test.images),
                               test.labels, settings=settings, cache_dir=cache_dir,
                               use_cache=use_cache, log=log)


def _as_4d(x: Tensor) -> Tensor:
    return x[:, None] if x.dim() == 3 else x


def clear_memory() -> None:
    """Forget the feature spaces held in this process (the files stay)."""
    _MEMORY.clear()


# -- FID ----------------------------------------------------------------------------------------


def _check_features(f: Tensor, name: str) -> Tensor:
    if not isinstance(f, Tensor) or f.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor (N, d), got "
                         f"{tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__}")
    if f.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows, got {f.shape[0]}")
    if not bool(torch.isfinite(f).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return f.detach().double()


def gaussian_fit(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``(d,)`` and covariance ``(d, d)`` (``N − 1`` denominator), float64."""
    f = _check_features(features, "features")
    mu = f.mean(0)
    c = f - mu
    return mu, (c.T @ c) / (f.shape[0] - 1)


def _sym(m: Tensor) -> Tensor:
    return 0.5 * (m + m.T)


def _psd_eigenvalues(w: Tensor) -> Tensor:
    """Eigenvalues of a PSD matrix with those below its round-off level (``d · eps ·
    λ_max``, as a pseudo-inverse's cut-off) set to 0: in a rank-deficient covariance
    (dead feature units, fewer samples than features) they are noise of either sign whose
    square roots (≈ 1e-8 · √λ_max each) would add up to a visible error."""
    tol = w.shape[0] * torch.finfo(w.dtype).eps * float(w.abs().max().clamp_min(0))
    return torch.where(w > tol, w, torch.zeros_like(w))


def trace_sqrt_product(cov1: Tensor, cov2: Tensor) -> float:
    """``tr (Σ₁Σ₂)^½`` for symmetric PSD ``Σ₁, Σ₂``: ``Σ₁Σ₂`` is similar to the symmetric
    PSD ``Σ₁^½ Σ₂ Σ₁^½``, whose eigenvalues (``eigh``, float64, round-off ones set to 0 by
    :func:`_psd_eigenvalues`) give the trace of the square root."""
    w, v = torch.linalg.eigh(_sym(cov1.double()))
    root1 = (v * _psd_eigenvalues(w).sqrt()) @ v.T
    m = _sym(root1 @ cov2.double() @ root1)
    return float(_psd_eigenvalues(torch.linalg.eigvalsh(m)).sqrt().sum())


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """``‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)``: the squared 2-Wasserstein distance
    between ``N(μ₁, Σ₁)`` and ``N(μ₂, Σ₂)``."""
    mu1, mu2, cov1, cov2 = (t.detach().double() for t in (mu1, mu2, cov1, cov2))
    d = mu1.shape[0]
    if mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(f"shapes do not match: mu {tuple(mu1.shape)}, {tuple(mu2.shape)}; "
                         f"cov {tuple(cov1.shape)}, {tuple(cov2.shape)}")
    diff = mu1 - mu2
    return float(diff @ diff) + float(torch.trace(cov1) + torch.trace(cov2)) \
        - 2.0 * trace_sqrt_product(cov1, cov2)


def fid(features_a: Tensor, features_b: Tensor) -> float:
    """Fréchet distance between Gaussian fits of two feature samples ``(N, d)``, ``(M, d)``."""
    fa, fb = _check_features(features_a, "features_a"), _check_features(features_b, "features_b")
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"feature dimensions differ: {fa.shape[1]} vs {fb.shape[1]}")
    return frechet_distance(*gaussian_fit(fa), *gaussian_fit(fb))


# -- KID ----------------------------------------------------------------------------------------


def polynomial_kernel(a: Tensor, b: Tensor) -> Tensor:
    """``k(x, y) = (xᵀy / d + 1)³`` for rows of ``a (n, d)`` and ``b (m, d)``."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def mmd2_unbiased(a: Tensor, b: Tensor) -> float:
    """Unbiased MMD² with the cubic polynomial kernel:
    ``mean_{i≠j} k(aᵢ, aⱼ) + mean_{i≠j} k(bᵢ, bⱼ) − 2 mean_{i,j} k(aᵢ, bⱼ)``."""
    m, n = a.shape[0], b.shape[0]
    kaa, kbb, kab = polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)
    return float((kaa.sum() - kaa.diagonal().sum()) / (m * (m - 1))
                 + (kbb.sum() - kbb.diagonal().sum()) / (n * (n - 1)) - 2 * kab.mean())


def kid(features_a: Tensor, features_b: Tensor, *, n_subsets: int = 100,
        subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: the mean and sd over ``n_subsets`` of :func:`mmd2_unbiased` between random
    subsets (without replacement within a subset) of ``m = min(subset_size, N, M)`` rows
    of each sample. When ``m`` would be both whole samples (``N = M ≤ subset_size``)
    every subset would be the same, so half-size subsets are drawn instead: the mean is
    still unbiased and the sd says how much the estimate moves with the subset."""
    fa, fb = _check_features(features_a, "features_a"), _check_features(features_b, "features_b")
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"feature dimensions differ: {fa.shape[1]} vs {fb.shape[1]}")
    if n_subsets < 1 or subset_size < 2:
        raise ValueError(f"need n_subsets >= 1 and subset_size >= 2, got {n_subsets}, "
                         f"{subset_size}")
    m = min(subset_size, fa.shape[0], fb.shape[0])
    if m == fa.shape[0] == fb.shape[0]:
        m = max(2, m // 2)
    gen = torch.Generator().manual_seed(seed)
    values = torch.tensor([mmd2_unbiased(fa[torch.randperm(fa.shape[0], generator=gen)[:m]],
                                         fb[torch.randperm(fb.shape[0], generator=gen)[:m]])
                           for _ in range(n_subsets)], dtype=torch.float64)
    sd = float(values.std()) if n_subsets > 1 else 0.0
    return float(values.mean()), sd


# -- the one-call score ------------------------------------------------------------------------


def score_images(space: FeatureSpace, samples: Tensor, reference: Tensor, *,
                 kid_subsets: int = 100, kid_subset_size: int = 1000,
                 seed: int = 0) -> dict[str, Any]:
    """FID and KID of ``samples`` against ``reference`` (both images in [0, 1], data space)
    in ``space``: ``{"fid", "kid", "kid_sd", "n_samples", "n_reference"}``."""
    fs, fr = space.features(samples), space.features(reference)
    k, k_sd = kid(fs, fr, n_subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    return {"fid": fid(fs, fr), "kid": k, "kid_sd": k_sd, "n_samples": int(fs.shape[0]),
            "n_reference": int(fr.shape[0])}


__all__ = [
    "CACHE_ENV",
    "FEATURE_VERSION",
    "ClassifierSettings",
    "FeatureClassifier",
    "FeatureSpace",
    "build_feature_space",
    "clear_memory",
    "default_cache_dir",
    "feature_space",
    "fid",
    "frechet_distance",
    "gaussian_fit",
    "kid",
    "mmd2_unbiased",
    "polynomial_kernel",
    "score_images",
    "trace_sqrt_product",
    "train_classifier",
]
