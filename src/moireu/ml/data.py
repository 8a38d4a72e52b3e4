"""Reading the dataset store, the stratified split, and the image preprocessing pipeline.

The store schema is :mod:`moireu.data.schema` (one reader for every stage): ML uses
``image (sample, ky, kx) float32``, ``U (sample)`` and ``split (sample)`` ∈ {``grid``, ``heldout``},
plus attrs (``config``, ``image_transform``).

Preprocessing (the same for training, evaluation and prediction, parameters stored in the
checkpoint) maps a stored image ``I`` to the network input ``x``:

1. resize to ``input_size`` by area averaging (``F.interpolate(mode="area")``), which keeps the
   integrated weight of each FT-LDOS peak;
2. optional augmentation (training, or robustness evaluation);
3. per-image normalisation: ``"l2"`` (``x / ‖x‖₂``, the reference recipe), ``"zscore"``
   (``(x − mean(x)) / std(x)``, which makes the model blind to gain and offset), or none;
4. global standardisation ``(x − μ) / σ`` with scalar μ, σ computed on the training split only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moireu.errors import InputError

__all__ = ["StoreData", "open_dataset", "load_split", "stratified_split", "random_split", "split_indices",
           "SPLIT_MODES", "SPLIT_PARTS", "split_names", "Preprocess", "store_fingerprint"]


@dataclass
class StoreData:
    """What the ML stage reads from a store: images + labels of one selection of samples."""

    images: np.ndarray  # (n, H, W) float32
    U: np.ndarray  # (n,) float64
    index: np.ndarray  # (n,) int64: sample indices in the store
    attrs: dict[str, Any]
    variation: np.ndarray | None = None  # (n,) int64: acquisition-draw id (the split groups by it)

    def take(self, pos: np.ndarray) -> "StoreData":
        """The samples at positions ``pos`` (a new StoreData)."""
        pos = np.asarray(pos, dtype=np.int64)
        return StoreData(self.images[pos], self.U[pos], self.index[pos], self.attrs,
                         None if self.variation is None else self.variation[pos])

    @property
    def image_shape(self) -> tuple[int, int]:
        return (int(self.images.shape[1]), int(self.images.shape[2]))


def open_dataset(path: str | Path):
    """Open a dataset store with the one reader (:func:`moireu.data.schema.open_store`) and check
    the variables ML needs.

    Raises
    ------
    InputError
        The path does not exist, is not a readable dataset store, or lacks ``image``/``U``/``split``.
    """
    from moireu.data import schema as sc

    ds = sc.open_store(path)
    sc.require(ds, ("image", "U", "split"), "training and evaluation")
    return ds


def store_fingerprint(ds) -> dict[str, Any]:
    """The identity of a store: sample count, image shape, label sum, config hash and an image checksum.

    Two stores built with different configs (another ``dataset.seed`` included) or holding different
    images never share a fingerprint; the image checksum reads the first and the last image only.
    """
    import hashlib

    n = int(ds.sizes["sample"])
    cfg = ds.attrs.get("config", "")
    cfg = cfg if isinstance(cfg, str) else json.dumps(cfg, sort_keys=True, default=str)
    h = hashlib.sha256(cfg.encode())
    if n:
        for i in sorted({0, n - 1}):
            h.update(np.ascontiguousarray(np.asarray(ds["image"].isel(sample=i).values, dtype=np.float32)).tobytes())
    return {"n_samples": n, "image_shape": [int(s) for s in ds["image"].shape[1:]],
            "U_sum": round(float(np.asarray(ds["U"].values, dtype=np.float64).sum()), 9),
            "digest": h.hexdigest()[:16]}


def split_names(ds) -> np.ndarray:
    """The ``split`` of every sample as strings (``grid``/``heldout``), whether the store holds names or
    the schema's int8 code (:func:`moireu.data.schema.decode_split`)."""
    from moireu.data import schema as sc

    return sc.decode_split(np.asarray(ds["split"].values))


def _attrs(ds) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in ds.attrs.items():
        if isinstance(v, str) and k in ("config", "image_transform"):
            try:
                out[k] = json.loads(v)
                continue
            except json.JSONDecodeError:
                pass
        out[k] = v
    return out


def load_split(ds, which: str) -> StoreData:
    """Images and labels of ``which`` ∈ {``grid``, ``heldout``} samples (NaNs refused)."""
    from moireu.data import schema as sc

    split = split_names(ds)
    idx = np.flatnonzero(split == which)
    if idx.size == 0:
        raise InputError(f"the dataset has no {which!r} samples (split values present: "
                         f"{sorted(set(split.tolist()))})")
    images = sc.values(ds, "image", idx).astype(np.float32, copy=False)
    U = sc.values(ds, "U").astype(np.float64)[idx]
    bad = ~np.isfinite(images).reshape(len(idx), -1).all(axis=1)
    if bad.any():
        raise InputError(f"{int(bad.sum())} {which!r} image(s) contain NaN or inf (first sample index "
                         f"{int(idx[np.flatnonzero(bad)[0]])}); rebuild the dataset")
    if not np.isfinite(U).all():
        raise InputError(f"{int((~np.isfinite(U)).sum())} {which!r} label(s) U are NaN or inf")
    var = np.asarray(ds["variation"].values, dtype=np.int64)[idx] if "variation" in ds.variables else None
    return StoreData(images=images, U=U, index=idx.astype(np.int64), attrs=_attrs(ds), variation=var)


def stratified_split(U: np.ndarray, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                     seed: int = 0, decimals: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split positions ``0..n−1`` into train/val/test, stratified by the value of U (legacy split).

    Within each U stratum (U rounded to ``decimals``) the samples are permuted with a generator
    seeded by ``seed``; the first ``round(f_val·m)`` go to validation, the next ``round(f_test·m)``
    to test, the rest to training (each part gets at least one sample when ``m ≥ 3``).

    This split is *by image*: images of one crop (variation) at different U land in different parts,
    so it is kept only to re-read checkpoints written before :func:`split_indices` existed.

    Raises
    ------
    InputError
        When the test or validation part would be empty (too few samples).
    """
    f_train, f_val, f_test = fractions
    if not np.isclose(f_train + f_val + f_test, 1.0) or min(fractions) <= 0:
        raise InputError(f"split fractions must be positive and sum to 1, got {fractions}")
    U = np.asarray(U, dtype=np.float64)
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    keys = np.round(U, decimals)
    for u in np.unique(keys):
        pos = np.flatnonzero(keys == u)
        pos = pos[rng.permutation(pos.size)]
        m = pos.size
        n_val = int(round(f_val * m))
        n_test = int(round(f_test * m))
        if m >= 3:
            n_val, n_test = max(n_val, 1), max(n_test, 1)
        val.append(pos[:n_val])
        test.append(pos[n_val:n_val + n_test])
        train.append(pos[n_val + n_test:])
    tr, va, te = (np.sort(np.concatenate(p)).astype(np.int64) for p in (train, val, test))
    if te.size == 0 or va.size == 0 or tr.size == 0:
        raise InputError(f"{U.size} grid sample(s) cannot be split into train/val/test "
                         f"({tr.size}/{va.size}/{te.size}); the dataset needs at least 3 images per U value")
    return tr, va, te


def random_split(n: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                 seed: int = 42) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference (``paper``) split: one random permutation of ``0..n−1``, not stratified.

    The first ``⌊f_train·n⌋`` permuted positions are training, the next ``⌊f_val·n⌋`` validation,
    the rest test (Tanksale & Stauber: 60/20/20 with seed 42). Returned sorted.
    """
    f_train, f_val, f_test = fractions
    if not np.isclose(f_train + f_val + f_test, 1.0) or min(fractions) <= 0:
        raise InputError(f"split fractions must be positive and sum to 1, got {fractions}")
    perm = np.random.default_rng(seed).permutation(int(n))
    n_tr, n_va = int(f_train * n), int(f_val * n)
    parts = (perm[:n_tr], perm[n_tr:n_tr + n_va], perm[n_tr + n_va:])
    if min(p.size for p in parts) == 0:
        raise InputError(f"{n} grid sample(s) cannot be split {fractions} into non-empty train/val/test")
    return tuple(np.sort(p).astype(np.int64) for p in parts)  # type: ignore[return-value]


#: parts of a split, in order
SPLIT_PARTS = ("train", "val", "cal", "test")
# stream id of the split in the seed sequence (other streams: member seeds, augmentation)
_SPLIT_STREAM = 11
PAPER_SEED = 42
PAPER_FRACTIONS = (0.6, 0.2, 0.2)


def split_indices(mode: str, n: int, variation: np.ndarray | None = None, seed: int = 0,
                  fractions: tuple[float, float, float, float] = (0.55, 0.15, 0.15, 0.15)) -> dict[str, np.ndarray]:
    """Positions ``0..n−1`` of the grid samples split into ``train``/``val``/``cal``/``test``.

    ``mode="variation"`` (default, leak-free): the distinct ``variation`` ids (one id = one acquisition
    draw v of the dataset, contract A) are permuted with ``default_rng(SeedSequence([seed, 11]))`` and
    cut into four groups of ``round(f·m)`` ids (each part ≥ 1 id, training takes the rest); every image
    goes where its id went, so no crop (nor any image sharing a draw index) is in two parts. ``cal``
    (split-conformal calibration and the out-of-distribution threshold) therefore holds only crops
    that neither the gradient steps nor early stopping (``val``) saw.

    ``mode="paper"``: the reference split, random 60/20/20 by image with seed 42 (``fractions`` and
    ``seed`` ignored): ``train``/``val``/``test``; ``cal`` is the validation part (the reference has no
    calibration set).

    Parameters
    ----------
    mode : {"variation", "paper"}
    n : int
        Number of grid samples.
    variation : array (n,) of int, optional
        Variation id of each sample (needed by ``mode="variation"``).
    seed : int
    fractions : (train, val, cal, test)
        Fractions of the variation ids, positive, summing to 1.

    Returns
    -------
    dict
        ``{"train", "val", "cal", "test"}`` → sorted int64 positions.

    Raises
    ------
    InputError
        Unknown mode, bad fractions, missing variation ids, or too few ids for four parts.
    """
    if mode not in SPLITS:
        raise InputError(f"split mode must be one of {', '.join(SPLIT_MODES)}, got {mode!r}")
    return SPLITS[mode](int(n), variation, int(seed), fractions)


def _paper_split(n: int, variation: np.ndarray | None, seed: int, fractions: tuple) -> dict[str, np.ndarray]:
    """The reference split of :func:`split_indices` (``mode="paper"``)."""
    tr, va, te = random_split(n, PAPER_FRACTIONS, seed=PAPER_SEED)
    return {"train": tr, "val": va, "cal": va.copy(), "test": te}


def _variation_split(n: int, variation: np.ndarray | None, seed: int, fractions: tuple) -> dict[str, np.ndarray]:
    """The leak-free split by acquisition of :func:`split_indices` (``mode="variation"``)."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 4 or min(fr) <= 0 or not np.isclose(sum(fr), 1.0):
        raise InputError(f"split fractions (train, val, cal, test) must be 4 positive numbers summing to 1, got {fractions}")
    if variation is None:
        raise InputError("the variation split needs the store's variation ids (the store has no `variation`); "
                         "use split mode 'paper'")
    var = np.asarray(variation).astype(np.int64).ravel()
    if var.size != n:
        raise InputError(f"{var.size} variation ids for {n} samples")
    ids = np.unique(var)
    m = ids.size
    if m < 4:
        raise InputError(f"the grid samples have {m} distinct variation id(s); a leak-free train/val/cal/test split "
                         "needs at least 4 (dataset.n_offsets ≥ 4)")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_STREAM]))
    ids = ids[rng.permutation(m)]
    counts = [max(1, int(round(f * m))) for f in fr[1:]]
    while sum(counts) > m - 1:  # training keeps at least one id
        counts[int(np.argmax(counts))] -= 1
    cuts = np.cumsum([0, *counts])
    parts = {"val": ids[cuts[0]:cuts[1]], "cal": ids[cuts[1]:cuts[2]], "test": ids[cuts[2]:cuts[3]],
             "train": ids[cuts[3]:]}
    return {k: np.flatnonzero(np.isin(var, parts[k])).astype(np.int64) for k in SPLIT_PARTS}


#: the split modes of :func:`split_indices` (``train.split``), each a function
#: ``(n, variation, seed, fractions) → {train, val, cal, test}``
SPLITS = {"variation": _variation_split, "paper": _paper_split}
SPLIT_MODES = tuple(SPLITS)


class Preprocess(nn.Module):
    """Stored image → network input (resize, per-image normalisation, global standardisation).

    Parameters
    ----------
    image_shape : (H, W)
        Shape of the stored images this pipeline accepts.
    input_size : int
        Side of the resized (square) network input; 0 keeps the stored size.
    per_image : {"zscore", "l2", "none"}
    mean, std : float
        Global standardisation constants (from the training split; see :meth:`fit`).
    """

    def __init__(self, image_shape: tuple[int, int], input_size: int = 0, per_image: str = "zscore",
                 mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        if per_image not in ("zscore", "l2", "none"):
            raise InputError(f"per-image normalisation must be zscore, l2 or none, got {per_image!r}")
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.input_size = int(input_size)
        self.per_image = per_image
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    @property
    def out_shape(self) -> tuple[int, int]:
        if self.input_size and self.input_size != self.image_shape[0]:
            return (self.input_size, self.input_size)
        return self.image_shape

    def check(self, x: torch.Tensor) -> torch.Tensor:
        """Bring ``x`` to ``(n, 1, H, W)`` float32 and refuse a wrong image size."""
        if x.ndim == 2:
            x = x[None, None]
        elif x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1] != 1:
            raise InputError(f"images must have shape (n, H, W) or (n, 1, H, W), got {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != self.image_shape:
            raise InputError(f"image size {x.shape[-2]}×{x.shape[-1]} does not match the "
                             f"{self.image_shape[0]}×{self.image_shape[1]} images this model was trained on")
        return x.float()

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        x = self.check(x)
        if self.out_shape != self.image_shape:
            x = F.interpolate(x, size=self.out_shape, mode="area")
        return x

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image normalisation then global standardisation (x already resized)."""
        flat = x.flatten(1)
        if self.per_image == "zscore":
            mu = flat.mean(1).view(-1, 1, 1, 1)
            sd = flat.std(1).clamp_min(1e-8).view(-1, 1, 1, 1)
            x = (x - mu) / sd
        elif self.per_image == "l2":
            x = x / flat.norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalise(self.resize(x))

    @torch.no_grad()
    def fit(self, x_resized: torch.Tensor) -> "Preprocess":
        """Set the global mean/std from (resized) training images after per-image normalisation."""
        self.mean.fill_(0.0)
        self.std.fill_(1.0)
        z = self.normalise(x_resized)
        self.mean.fill_(float(z.mean()))
        self.std.fill_(float(z.std().clamp_min(1e-12)))
        return self

    def spec(self) -> dict[str, Any]:
        return {"image_shape": list(self.image_shape), "input_size": self.input_size,
                "per_image": self.per_image, "mean": float(self.mean), "std": float(self.std)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "Preprocess":
        return cls(tuple(spec["image_shape"]), spec["input_size"], spec["per_image"], spec["mean"], spec["std"])
