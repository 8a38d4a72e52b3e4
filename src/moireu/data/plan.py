"""What a dataset build computes: solve points, image variations and warm-start chains.

A build is fully described by the resolved configuration. It consists of

* **solve points** ``(split, U, ν)``: one Hartree–Fock solve each. ``split`` is ``"grid"`` for
  every ``U`` in ``dataset.U_values`` and ``"heldout"`` for ``dataset.heldout`` random fractional
  values drawn uniformly in ``(min U, max U)`` from the dataset seed;
* **image specs** per solve point: every bias offset in ``dataset.biases`` times ``dataset.n_offsets``
  variations. A variation is only an index ``v``: every image is its own simulated acquisition
  (:mod:`moireu.stm.measure`), drawn from
  ``default_rng(SeedSequence([seed, 7, point hash, bias index, v]))`` (:func:`point_hash`,
  :func:`moireu.stm.measure.scan_rng`), so no two images share a crop, orientation or noise draw,
  and a store built with another ``dataset.seed`` has all-new acquisitions. The ML split groups
  images by ``v``.

So the number of images is ``n_points × len(biases) × n_offsets``.

Adaptive refinement (``dataset.refine = n``): after the grid solves, ``n`` extra *grid* U values are
placed at the midpoints of the grid intervals across which the HF order parameters change most
(:func:`refinement_values`), so that training data are densest where the physics — and with it the
image — changes fastest (a moment onset, the growth of antiferromagnetic order). They are chosen from
the solved grid only, never from the held-out points.

Warm starts: for each filling the grid and held-out ``U`` are merged, sorted and cut into
contiguous runs of at most ``dataset.chain_length`` points. When ``"warm"`` is a ground-state
candidate, each solve of a run is handed its predecessor's density matrix; the runs depend on the
configuration only — never on the number of workers — so the data of a build are the same on any
cluster.

A warm start makes a point's state depend on its chain where several mean-field states coexist
(non-magnetic, antiferromagnetic, ferromagnetic and intermediate states lie within 20 meV per cell below
U ≈ 4.5 eV on the demo preset: docs/results-demo.md, "One state per U"). So the default ``dataset.ground_state`` solves every point from cold starts only — the
configured seed, a ferromagnetic start and the non-magnetic branch — and keeps the lowest-energy
solution (:mod:`moireu.hf.ground`): a point's state is then a function of its U alone, and stores of
any U set agree. ``"warm"`` among the candidates adds the chain predecessor's state. The store records
which start won (``hf_branch``) and by how much (``hf_energy_margin``). A state no candidate reaches at
one U but some start found at another can be brought in by the optional sweeps in U after the solves
(``dataset.sweep``, off by default because the states then depend on the store's set of U;
:func:`moireu.data.jobs.sweep_task`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from moireu.config import MoireuConfig
from moireu.data.schema import HF_ORDER_PARAMETERS, SPLITS
from moireu.data.schema import U_DECIMALS as _U_DECIMALS  # U is rounded to 1 µeV: exact keys
from moireu.errors import InputError


@dataclass(frozen=True, order=True)
class SolvePoint:
    """One Hartree–Fock solve: ``split`` ∈ {grid, heldout}, ``U`` (eV), ``filling`` ν."""

    split: str
    U: float
    filling: float

    @property
    def key(self) -> str:
        """A file-name-safe identifier, unique within a build."""
        return f"{self.split}_U{self.U:.6f}_nu{self.filling:+.4f}"

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")


@dataclass(frozen=True)
class Variation:
    """Index ``id`` of a per-image acquisition draw (the scan itself is drawn at render time)."""

    id: int


@dataclass(frozen=True)
class ImageSpec:
    """One image of a solve point: bias offset from E_F (eV) and a patch variation."""

    bias: float
    variation: Variation


@dataclass
class Plan:
    """Every solve point, the image specs shared by all points and the warm-start chains."""

    points: list[SolvePoint]
    specs: list[ImageSpec]
    chains: list[list[SolvePoint]] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return len(self.points) * len(self.specs)

    def predecessor(self) -> dict[SolvePoint, SolvePoint | None]:
        """The point each solve warm-starts from (``None`` at the head of a chain)."""
        out: dict[SolvePoint, SolvePoint | None] = {}
        for chain in self.chains:
            prev = None
            for p in chain:
                out[p] = prev
                prev = p
        return out


def dataset_seed(cfg: MoireuConfig) -> int:
    """The seed of every random choice of the dataset stage (``dataset.seed``, else the top-level seed)."""
    s = getattr(cfg.dataset, "seed", None)
    return int(cfg.seed if s is None else s)


def heldout_values(cfg: MoireuConfig, n: int | None = None) -> np.ndarray:
    """``n`` (default ``dataset.heldout``) held-out U values, uniform in ``(min U, max U)``.

    Drawn from ``numpy.random.default_rng(SeedSequence([seed, 5, 1]))``: the first ``n`` values do
    not depend on ``n``, so raising ``heldout`` later (``--append``) keeps the earlier values. Values
    that coincide with a grid value after rounding to 1 µeV are redrawn (measure zero in practice).
    """
    n = cfg.dataset.heldout if n is None else n
    if n < 0:
        raise InputError(f"the number of held-out U values must be ≥ 0, got {n}")
    if n == 0:
        return np.zeros(0)
    grid = np.asarray(cfg.dataset.U_values, float)
    lo, hi = float(grid.min()), float(grid.max())
    if not hi > lo:
        raise InputError(f"held-out U needs a U grid with a range, got U_values = {list(grid)}")
    rng = np.random.default_rng(np.random.SeedSequence([dataset_seed(cfg), 5, 1]))
    taken = set(np.round(grid, _U_DECIMALS).tolist())
    out: list[float] = []
    while len(out) < n:
        u = round(float(rng.uniform(lo, hi)), _U_DECIMALS)
        if lo < u < hi and u not in taken:
            taken.add(u)
            out.append(u)
    return np.asarray(out)


def variations(cfg: MoireuConfig) -> list[Variation]:
    """The ``dataset.n_offsets`` acquisition indices 0 … n − 1 of every (point, bias)."""
    return [Variation(v) for v in range(cfg.dataset.n_offsets)]


def point_hash(point: SolvePoint) -> int:
    """A stable 32-bit integer of a solve point (its key), an entropy word of the scan seeds."""
    import hashlib

    return int.from_bytes(hashlib.sha256(point.key.encode()).digest()[:4], "little")


def _check(cfg: MoireuConfig) -> None:
    d = cfg.dataset
    if len(d.U_values) == 0:
        raise InputError("dataset.U_values is empty: give at least one U (eV)")
    rounded = [round(float(u), _U_DECIMALS) for u in d.U_values]
    if len(set(rounded)) != len(rounded):
        dup = sorted({u for u in rounded if rounded.count(u) > 1})
        raise InputError(f"dataset.U_values has duplicate values {dup}; each U must appear once")
    if len(d.fillings) == 0 or len(set(d.fillings)) != len(d.fillings):
        raise InputError(f"dataset.fillings must be non-empty and without duplicates, got {list(d.fillings)}")
    if len(d.biases) == 0 or len(set(d.biases)) != len(d.biases):
        raise InputError(f"dataset.biases must be non-empty and without duplicates, got {list(d.biases)}")


def make_plan(cfg: MoireuConfig, n_chains: int | None = None) -> Plan:
    """Build the plan of ``cfg`` with its warm-start chains.

    Parameters
    ----------
    cfg : MoireuConfig
        Resolved configuration (``dataset`` section drives the plan).
    n_chains : int, optional
        Contiguous warm-start runs per filling; default (what builds use): :func:`build_chains`,
        independent of the cluster.
    """
    _check(cfg)
    d = cfg.dataset
    grid = [round(float(u), _U_DECIMALS) for u in sorted(d.U_values)]
    held = heldout_values(cfg).tolist()
    points: list[SolvePoint] = []
    for nu in d.fillings:
        points += [SolvePoint("grid", u, float(nu)) for u in grid]
        points += [SolvePoint("heldout", float(u), float(nu)) for u in sorted(held)]
    specs = [ImageSpec(float(b), v) for b in d.biases for v in variations(cfg)]
    plan = Plan(points=points, specs=specs)
    plan.chains = build_chains(cfg, points) if n_chains is None else make_chains(points, n_chains)
    return plan


def build_chains(cfg: MoireuConfig, points: Iterable[SolvePoint]) -> list[list[SolvePoint]]:
    """The chains a build uses: runs of at most ``dataset.chain_length`` points (:func:`chains_of_length`)
    when ``"warm"`` is a ``dataset.ground_state`` candidate, else one point per run (cold starts only:
    no solve waits for, or starts from, another)."""
    if "warm" in cfg.dataset.ground_state:
        return chains_of_length(points, cfg.dataset.chain_length)
    return [[p] for p in points]


def chains_of_length(points: Iterable[SolvePoint], chain_length: int) -> list[list[SolvePoint]]:
    """Per filling, the fewest balanced contiguous runs (:func:`make_chains`) of ≤ ``chain_length`` points."""
    points = list(points)
    out: list[list[SolvePoint]] = []
    for nu in sorted({p.filling for p in points}):
        pts = [p for p in points if p.filling == nu]
        out += make_chains(pts, -(-len(pts) // max(1, int(chain_length))))
    return out


def make_chains(points: Iterable[SolvePoint], n_chains: int) -> list[list[SolvePoint]]:
    """Per filling, sort all points by U and cut them into ``n_chains`` contiguous runs.

    Runs have lengths differing by at most one; each run is ordered by increasing U.
    """
    n_chains = max(1, int(n_chains))
    by_nu: dict[float, list[SolvePoint]] = {}
    for p in points:
        by_nu.setdefault(p.filling, []).append(p)
    chains: list[list[SolvePoint]] = []
    for nu in sorted(by_nu):
        pts = sorted(by_nu[nu], key=lambda p: (p.U, p.split))
        k = min(n_chains, len(pts))
        # np.array_split semantics: first (len % k) runs one longer
        q, r = divmod(len(pts), k)
        start = 0
        for i in range(k):
            n = q + (1 if i < r else 0)
            chains.append(pts[start:start + n])
            start += n
    return chains


#: HF order parameters whose change across a grid interval drives the refinement (the schema's, less the energy).
REFINE_KEYS = tuple(k for k in HF_ORDER_PARAMETERS if k != "total_energy")


def refinement_values(U: Iterable[float], records: Iterable[dict], n: int) -> list[float]:
    """The ``n`` midpoints of the grid intervals across which the order parameters change most.

    For each quantity q in :data:`REFINE_KEYS` the change across an interval ``[U_j, U_j+1]`` is
    ``|q(U_j+1) − q(U_j)|`` divided by the range of q over the grid (quantities that do not vary are
    ignored); an interval's score is the largest of these. Ties go to the lower U. Deterministic, so a
    resumed build picks the same values.

    Parameters
    ----------
    U : grid U values (eV) of one filling, any order.
    records : the solve records at those U (dicts with the keys of :data:`REFINE_KEYS`).
    n : how many midpoints (at most the number of intervals).
    """
    pairs = sorted(zip([float(u) for u in U], records), key=lambda t: t[0])
    if n <= 0 or len(pairs) < 2:
        return []
    u = np.array([p[0] for p in pairs])
    score = np.zeros(len(u) - 1)
    for key in REFINE_KEYS:
        q = np.array([float(r.get(key, np.nan)) for _, r in pairs])
        if not np.all(np.isfinite(q)):
            continue
        span = float(q.max() - q.min())
        if span > 0:
            score = np.maximum(score, np.abs(np.diff(q)) / span)
    order = sorted(range(len(score)), key=lambda j: (-score[j], j))[:n]
    return sorted(round(float(0.5 * (u[j] + u[j + 1])), _U_DECIMALS) for j in order)
