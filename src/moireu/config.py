"""Validated run configuration: preset TOML → pydantic model → ``--set`` overrides → resolved copy.

Presets ship inside the package (``moireu/presets/*.toml``) and are only ever read. A run stores
its fully resolved configuration (every default filled in) next to its results, together with the
package version and git commit (:func:`save_resolved`).

Each stage owns one section: ``lattice``, ``hf``, ``stm``, ``dataset``, ``train``, ``analysis``.
A single top-level ``seed`` drives every random choice; sections derive their own seeds from it.
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from moireu.constants import A_CC, D_INTERLAYER, EPS_DEFAULT, GATE_DISTANCE
from moireu.hf.ground import CANDIDATES
from moireu.hf.mixing import Mixer
from moireu.hf.scf import SCFOptions
from moireu.hf.system import BACKENDS
from moireu.hf.terms import INITS
from moireu.ml.augment import PROFILES
from moireu.ml.data import SPLIT_MODES
from moireu.ml.models import RECIPES, available_models
from moireu.ml.train import DEVICES, LOSSES
from moireu.stm.ftldos import NORMALIZE
from moireu.stm.ldos import KINDS as LDOS_SHAPES
from moireu.stm.measure import TIP_HEIGHT, TIP_HEIGHT_JITTER, MeasurementSpec
from moireu.errors import InputError
from moireu.provenance import provenance, write_json_atomic, write_text_atomic


class _Section(BaseModel):
    """A config section: unknown keys refused, immutable, every float finite (no inf/nan anywhere)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


def _mesh(v: Any) -> tuple[int, int]:
    """One or two positive integers (one number n means n × n)."""
    if isinstance(v, int):
        v = (v, v)
    v = tuple(int(x) for x in v)
    if len(v) != 2 or min(v) < 1:
        raise ValueError(f"k-mesh must be one or two positive integers, got {v!r}")
    return v  # type: ignore[return-value]


class LatticeConfig(_Section):
    """Commensurate TBG (index i) with Slater–Koster pz hoppings."""

    index: int = Field(9, ge=1, le=40, description="commensurate index i (θ from cos θ = (3i²+3i+1/2)/(3i²+3i+1))")
    interlayer_distance: float = Field(D_INTERLAYER, gt=0.0, description="interlayer distance d (Å): the pressure knob")
    cutoff: float = Field(6.0, description="hopping cutoff radius (Å), > a_cc")
    band_points: int = Field(90, ge=4, description="k-points along K–Γ–M–K for band plots")
    dos_kmesh: int = Field(6, ge=1, description="Monkhorst–Pack n×n mesh for the DOS")
    dos_eta: float = Field(0.002, gt=0.0, description="DOS Gaussian broadening (eV)")

    @field_validator("cutoff")
    @classmethod
    def _cutoff(cls, v: float) -> float:
        """> a_cc, the carbon–carbon distance (moireu.constants.A_CC)."""
        if not v > A_CC:
            raise ValueError(f"must exceed the carbon–carbon distance a_cc = {A_CC} Å, got {v}")
        return v


#: the stage options whose defaults the config sections take (one home per default)
_SCF, _MS = SCFOptions(), MeasurementSpec()


class HFConfig(_Section):
    """Hartree–Fock with on-site Hubbard U and gate-screened long-range Coulomb."""

    U: float = Field(0.0, ge=0.0, le=20.0, description="on-site Hubbard U (eV)")
    eps: float = Field(EPS_DEFAULT, gt=0.0, description="relative permittivity ε")
    gate_distance: float = Field(GATE_DISTANCE, gt=0.0, description="gate-to-gate distance ξ (Å)")
    long_range: bool = Field(True, description="include the screened long-range Coulomb (Hartree + Fock)")
    fock_range: float = Field(5.0, ge=0.0, description="real-space range of the Fock term (Å)")
    filling: float = Field(0.0, ge=-4.0, le=4.0, description="ν, electrons per moiré cell from neutrality")
    kT: float = Field(0.001, gt=0.0, description="temperature k_B T (eV)")
    kmesh: tuple[int, int] = Field((2, 2), description="Monkhorst–Pack mesh (time-reversal reduced)")
    # the solver's options: fields, defaults and choices of moireu.hf.scf.SCFOptions and the registries
    init: Literal[INITS] = Field(_SCF.init, description="initial moment pattern of the solve "
                                 "(moireu.hf.terms.base.INITS)")
    init_amplitude: float = Field(_SCF.init_amplitude, ge=0.0, le=1.0, description="initial moment per site "
                                  "(seed from above)")
    mixer: Literal[Mixer.KINDS] = Field(_SCF.mixer, description="density mixing of the self-consistency loop "
                                        "(moireu.hf.mixing)")
    mixing_weight: float = Field(_SCF.mixing_weight, gt=0.0, le=1.0, description="mixing weight β: the step along "
                                 "the residual (moireu.hf.mixing)")
    mixing_history: int = Field(_SCF.mixing_history, ge=1, description="stored differences of the Anderson/Broyden "
                                "mixer")
    tol: float = Field(_SCF.tol, gt=0.0, description="density-matrix residual tolerance")
    energy_tol: float = Field(_SCF.energy_tol, gt=0.0, description="total-energy change tolerance (eV)")
    max_iter: int = Field(_SCF.max_iter, ge=1, description="self-consistency iterations at most")
    backend: Literal[BACKENDS] = Field(BACKENDS[0], description="eigensolver: scipy (LAPACK per k) or torch "
                                       "(batched torch.linalg.eigh)")

    _kmesh = field_validator("kmesh", mode="before")(lambda cls, v: _mesh(v))


def _range(v: Any) -> tuple[float, float]:
    """A range [lo, hi] with lo ≤ hi (one number x means [x, x])."""
    if isinstance(v, (int, float)):
        v = (v, v)
    v = tuple(float(x) for x in v)
    if len(v) != 2 or not v[0] <= v[1]:
        raise ValueError(f"expected a range [lo, hi] with lo ≤ hi, got {list(v)}")
    return v  # type: ignore[return-value]


class MeasurementConfig(_Section):
    """Ranges of the simulated STM acquisition (:mod:`moireu.stm.measure`); each image draws one scan.

    Ranges are ``[lo, hi]`` (uniform draws); ``*_max`` fields are symmetric bounds ``[-x, x]``.
    Noise amplitudes are relative to the standard deviation of the clean map (SNR = 1/amplitude).
    """

    # fields, defaults and units of moireu.stm.measure.MeasurementSpec (the acquisition it draws from)
    pixel_size: tuple[float, float] = Field(_MS.pixel_size, description="pixel size range (Å); the map is "
                                            "stm.map_pixels² pixels, so the field of view is pixels × size")
    rotation_deg: tuple[float, float] = Field(_MS.rotation_deg, description="scan-frame rotation range (deg)")
    tip_height_jitter: float = Field(TIP_HEIGHT_JITTER, ge=0.0, description="tip height = stm.tip_height ± this (Å)")
    scale_error_max: float = Field(_MS.scale_error_max, ge=0.0, lt=0.5, description="piezo calibration error per axis, "
                                   "uniform in ±this (relative)")
    heterostrain: tuple[float, float] = Field(_MS.heterostrain, description="uniaxial heterostrain range (relative)")
    twist_delta_max_deg: float = Field(_MS.twist_delta_max_deg, ge=0.0, description="twist-angle deviation, uniform in ±this (deg)")
    drift_max: float = Field(_MS.drift_max, ge=0.0, description="thermal drift over one frame, uniform magnitude in "
                             "[0, this] (Å), random direction")
    creep_max: float = Field(_MS.creep_max, ge=0.0, description="piezo creep amplitude along the slow axis, uniform in "
                             "[0, this] (Å)")
    noise_white: tuple[float, float] = Field(_MS.noise_white, description="white noise σ / map σ range")
    noise_pink: tuple[float, float] = Field(_MS.noise_pink, description="1/f (in scan time) noise σ / map σ range")
    noise_lines: tuple[float, float] = Field(_MS.noise_lines, description="scan-line offset σ / map σ range")
    twist_tolerance_deg: float = Field(0.25, gt=0.0, description="maps whose measured twist differs from the "
                                       "trained one by more are flagged out of range")
    align: bool = Field(True, description="measure the lattice on each map and bring it to the training frame")
    window_radius: float = Field(0.0, ge=0.0, description="Hann window radius of the FT in trained moiré periods "
                                 "(fixed k resolution: one peak shape for every field of view; larger maps average "
                                 "overlapping windows, smaller ones are refused); 0 = the inscribed disc of each map")

    _ranges = field_validator("pixel_size", "rotation_deg", "heterostrain", "noise_white", "noise_pink",
                              "noise_lines", mode="before")(lambda cls, v: _range(v))

    @field_validator("pixel_size")
    @classmethod
    def _pixel(cls, v: tuple[float, float]) -> tuple[float, float]:
        """lo > 0."""
        if v[0] <= 0:
            raise ValueError(f"pixel sizes must be positive (Å), got {list(v)}")
        return v

    @field_validator("heterostrain", "noise_white", "noise_pink", "noise_lines")
    @classmethod
    def _nonneg(cls, v: tuple[float, float]) -> tuple[float, float]:
        """lo ≥ 0."""
        if v[0] < 0:
            raise ValueError(f"must be ≥ 0, got {list(v)}")
        return v


class STMConfig(_Section):
    """LDOS, real-space maps and FT-LDOS images."""

    biases: tuple[float, ...] = Field((0.0,), description="bias offsets from E_F (eV)")
    eta: float = Field(0.004, gt=0.0, description="LDOS broadening (eV)")
    broadening: Literal[LDOS_SHAPES] = Field(LDOS_SHAPES[0], description="LDOS line shape of width eta")
    kmesh: tuple[int, int] = Field((4, 4), description="k-mesh for the LDOS (denser than the SCF mesh is fine)")
    patch_cells: int = Field(6, ge=1, description="patch of P×P moiré cells")
    tip_height: float = Field(TIP_HEIGHT, gt=0.0, description="nominal tip height above the top layer (Å)")
    map_pixels: int = Field(_MS.pixels, ge=8, description="rendered real-space map size (pixels per side)")
    n_pixels: int = Field(256, ge=8, description="FT-LDOS image size N×N")
    window_scale: float = Field(1.1, gt=0.0, description="k window: scale × (2π/a, 4π/(√3 a))")
    subtract_mean: bool = Field(True, description="subtract the mean weight before the transform (removes the "
                                "Bragg peaks of a uniform LDOS, leaving its modulation)")
    log_scale: bool = Field(False, description="image = log10 of the FT amplitude instead of the amplitude")
    normalize: Literal[NORMALIZE] = Field(NORMALIZE[0], description="per-image normalisation, "
                                                           "applied last")
    measurement: MeasurementConfig = MeasurementConfig()

    _kmesh = field_validator("kmesh", mode="before")(lambda cls, v: _mesh(v))


class DatasetConfig(_Section):
    """U grid × variations swept on dask."""

    U_values: tuple[float, ...] = Field(tuple(0.5 * i for i in range(13)), description="training U grid (eV)")
    fillings: tuple[float, ...] = Field((0.0,), description="fillings ν (electrons per moiré cell from neutrality)")
    biases: tuple[float, ...] = Field((0.0,), description="bias offsets from E_F (eV) of the images")
    n_offsets: int = Field(4, ge=1, description="random acquisitions (scans drawn from stm.measurement) per "
                           "(U, ν, bias); every image has its own scan")
    heldout: int = Field(0, ge=0, description="random fractional U values in (U_min, U_max)")
    paper_U_values: tuple[float, ...] | None = Field(None, description="the grid U of the reference pipeline "
                                                       "(dataset paper-images; every held-out U is kept), a subset "
                                                       "of U_values (None: all of U_values)")
    paper_n_offsets: int | None = Field(None, ge=1, description="acquisitions per (U, ν, bias) the reference "
                                        "pipeline sees (dataset paper-images keeps variations v < this; the draws "
                                        "of v do not depend on n_offsets, so its images stay the same when ours get "
                                        "more; None: all n_offsets)")
    seed: int | None = Field(None, ge=0, description="seed of held-out U and of every scan draw (None: top-level seed)")
    workers: int = Field(0, ge=0, description="dask workers (0 = one per core)")
    chain_length: int = Field(4, ge=1, description="HF solves per warm-start chain, when 'warm' is a "
                                                  "ground_state candidate (the chains, and with them the data, do "
                                                  "not depend on the number of workers)")
    retry: bool = Field(True, description="retry a failed or unconverged point once: another mixer, twice the "
                        "iterations (moireu.data.tasks.retry_overrides)")
    refine: int = Field(0, ge=0, description="extra grid U at the midpoints of the grid intervals where the HF "
                                             "order parameters change most (0 = off; see moireu.data.plan)")
    ground_state: tuple[str, ...] = Field(("seed", "nonmagnetic", "ferro"),
                                          description="HF starts solved at every "
                                          "point, the lowest-energy solution kept (moireu.hf.ground.CANDIDATES). "
                                          "The default's starts are all cold, so a point's state is a function of "
                                          "its U alone and stores of any U set agree; adding 'warm' adds the "
                                          "chain predecessor's state (path-dependent where states coexist: "
                                          "measured, docs/results-demo.md 'One state per U')")
    sweep: bool = Field(False, description="after the solves, sweep the points of each filling up and down in U, "
                        "re-solving each from its neighbour's state and keeping the lower: a state found at one U "
                        "reaches every U of the store where it is lowest (moireu.data.jobs.sweep_task). Off by "
                        "default: the states then depend on the store's set of U (docs/results-demo.md 'Sweeps in U'; the "
                        "shipped states' ladder sweeps are the way to the lowest state: moireu states)")

    @field_validator("U_values")
    @classmethod
    def _grid(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        """Non-empty, distinct, each ≥ 0 (kept sorted)."""
        if len(v) == 0:
            raise ValueError("the U grid is empty")
        if len(set(v)) != len(v):
            dup = sorted({x for x in v if v.count(x) > 1})
            raise ValueError(f"duplicate U values {dup}")
        if min(v) < 0:
            raise ValueError(f"U must be ≥ 0, got {min(v)}")
        return tuple(sorted(v))

    @model_validator(mode="after")
    def _paper_grid(self) -> "DatasetConfig":
        """paper_U_values, when given, is a non-empty subset of U_values (kept sorted)."""
        if self.paper_U_values is not None:
            grid = {round(u, 6) for u in self.U_values}
            extra = sorted(u for u in self.paper_U_values if round(u, 6) not in grid)
            if not self.paper_U_values or extra:
                raise ValueError(f"paper_U_values must be a non-empty subset of U_values; not in U_values: {extra}")
            object.__setattr__(self, "paper_U_values", tuple(sorted(self.paper_U_values)))
        return self

    @field_validator("ground_state")
    @classmethod
    def _ground(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        """Non-empty, distinct names of moireu.hf.ground.CANDIDATES."""

        bad = [c for c in v if c not in CANDIDATES]
        if bad or not v or len(set(v)) != len(v):
            raise ValueError(f"must be distinct names from {list(CANDIDATES)}, got {list(v)}")
        return v


class StatesConfig(_Section):
    """The Hartree–Fock ground states of a preset on its canonical U ladder (:mod:`moireu.data.states`).

    The ladder is ``U_min, U_min + U_step, …, U_max`` (eV) at every filling of ``fillings``, independent of
    any store's U values. Every rung is solved from the cold ``candidates`` (:data:`moireu.hf.ground.CANDIDATES`,
    cold starts only) and swept up and down the ladder (each rung re-solved from its neighbour's state) until
    no sweep step lowers any rung; a U off the ladder is solved from its two ladder neighbours' states and the
    same candidates. The lowest energy is kept everywhere.
    """

    U_min: float = Field(0.0, ge=0.0, description="lowest rung (eV)")
    U_max: float = Field(6.0, ge=0.0, description="highest rung (eV)")
    U_step: float = Field(0.25, gt=0.0, description="rung spacing (eV)")
    fillings: tuple[float, ...] = Field((0.0,), description="fillings ν of the ladder")
    candidates: tuple[str, ...] = Field(("seed", "nonmagnetic", "ferro"),
                                        description="cold HF starts solved at every rung (moireu.hf.ground.CANDIDATES, "
                                        "without 'warm': the sweeps bring in the neighbours' states)")
    max_passes: int = Field(8, ge=0, description="sweep passes (up + down) at most; a pass that changes nothing ends "
                            "the search earlier")

    @field_validator("candidates")
    @classmethod
    def _cold(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        """Non-empty, distinct names of moireu.hf.ground.CANDIDATES other than 'warm'."""

        bad = [c for c in v if c not in CANDIDATES or c == "warm"]
        if bad or not v or len(set(v)) != len(v):
            raise ValueError(f"must be distinct cold starts from {[c for c in CANDIDATES if c != 'warm']}, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _ladder(self) -> "StatesConfig":
        """U_max ≥ U_min, U_max − U_min a whole number of U_step, fillings non-empty and distinct."""
        if self.U_max < self.U_min:
            raise ValueError(f"U_max ({self.U_max}) must be ≥ U_min ({self.U_min})")
        n = (self.U_max - self.U_min) / self.U_step
        if abs(n - round(n)) > 1e-6:
            raise ValueError(f"U_max − U_min ({self.U_max - self.U_min:g} eV) must be a whole number of "
                             f"U_step ({self.U_step:g} eV)")
        if not self.fillings or len(set(self.fillings)) != len(self.fillings):
            raise ValueError(f"fillings must be non-empty and distinct, got {list(self.fillings)}")
        return self

    @property
    def ladder(self) -> tuple[float, ...]:
        """The rungs (eV), rounded to 1 µeV."""
        n = int(round((self.U_max - self.U_min) / self.U_step))
        return tuple(round(self.U_min + i * self.U_step, 6) for i in range(n + 1))


class TrainConfig(_Section):
    """Regressor training."""

    model: str = Field("cnn", description="a registered model variant (`moireu models`)")
    recipe: Literal[RECIPES] = Field(RECIPES[0], description="training settings: ours, or paper (the "
                                             "reference's, fixed: moireu.ml.train.resolve_recipe)")
    epochs: int = Field(40, ge=1, description="training epochs at most")
    batch_size: int = Field(32, ge=1, description="images per optimiser step")
    lr: float = Field(1e-3, gt=0.0, description="Adam learning rate")
    weight_decay: float = Field(1e-4, ge=0.0, description="Adam weight decay")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="dropout probability of the regression head")
    patience: int = Field(10, ge=1, description="epochs without a better validation loss before early stopping")
    grad_clip: float = Field(1.0, gt=0.0, description="gradient-norm clip")
    augment: Literal[tuple(PROFILES)] = Field("clean", description="training augmentation profile "
                                                               "(recipe ours; mild: robust to mild corruption, less accurate on clean data)")
    ensemble: int = Field(3, ge=1, description="deep-ensemble members")
    retrain_full: bool = Field(False, description="after early stopping, train a fresh network on train + "
                               "validation images for the best epoch count")
    input_size: int = Field(64, ge=0, description="resize images to this size for training (0 = as stored)")
    split: Literal[SPLIT_MODES] = Field(SPLIT_MODES[0], description="variation: train/val/cal/test by "
                                                 "variation group (leak-free); paper: random 60/20/20, seed 42")
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5, description="fraction of variation ids for early stopping")
    cal_fraction: float = Field(0.15, gt=0.0, lt=0.5, description="fraction of variation ids for the conformal "
                                "interval and the out-of-distribution threshold")
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5, description="fraction of variation ids for the test split")
    coverage: float = Field(0.9, gt=0.0, lt=1.0, description="nominal coverage of the conformal interval")
    loss: Literal[LOSSES] = Field("huber", description="loss on standardised targets (recipe ours)")
    width: int = Field(0, ge=0, description="base width (0 = recipe default: ours fc 256, cnn 8, resnet18 16; paper cnn 32, resnet18 64)")
    coord_channels: bool = Field(True, description="cnn: append pixel-coordinate input channels (recipe ours)")
    threads: int = Field(0, ge=0, description="torch CPU threads (0 = torch default)")
    device: Literal[DEVICES] = Field(DEVICES[0], description="where networks train: auto = CUDA when "
                                                   "torch sees a GPU, else the CPU (recorded in train.json)")
    pool_grid: int = Field(1, ge=1, le=8, description="cnn: final average pool to g×g cells (1 = global; recipe ours)")
    linear_skip: bool = Field(False, description="cnn: wide & deep linear read-out of the input pixels (off by default: "
                              "on the demo store it made the cnn worse, docs/results-demo.md)")
    skip_ridge_alpha: float = Field(0.1, ge=0.0, description="cnn linear skip: closed-form ridge read-out on "
                                    "per-pixel standardised inputs, frozen; α chosen on the validation split from "
                                    "this value × 10^0…6 (0 = learned from zero)")
    pretrained_weights: str | None = Field(None, description="torchvision-format resnet18 state dict (.pth) "
                                           "loaded before training (conv1 from the RGB mean; resnet18 variants)")

    @property
    def split_fractions(self) -> tuple[float, float, float, float]:
        """(train, val, cal, test) fractions of the variation ids (train takes what the others leave)."""
        return (1.0 - self.val_fraction - self.cal_fraction - self.test_fraction, self.val_fraction,
                self.cal_fraction, self.test_fraction)

    @field_validator("model")
    @classmethod
    def _registered(cls, v: str) -> str:
        """A model variant of the registry (moireu.ml.models.available_models; `moireu models` lists them)."""
        if v not in available_models():
            raise ValueError(f"unknown model {v!r}; choose one of {available_models()}")
        return v


class AnalysisConfig(_Section):
    """Analyses and report."""

    mode: Literal[RECIPES] = Field(RECIPES[0], description="paper: the reference analysis (PCA of per-U mean "
                                           "images; baselines on high-passed z-scored images, PCA(3)+ridge/kernel "
                                           "ridge, 80/20 split seed 101)")
    pca_components: int = Field(3, ge=1, description="k of the eigen-images and of the PCA-trajectory crossover")
    pca_max_components: int = Field(10, ge=1, description="components in the explained-variance plot")
    baseline_components: tuple[int, ...] = Field((3, 10), description="k of the PCA(k)+ridge/kernel-ridge baselines")
    ridge_alpha: float = Field(1.0, gt=0.0, description="ridge penalty α of the PCA(k)+ridge baseline")
    kernel_ridge: bool = Field(True, description="also fit PCA(k)+RBF kernel ridge (α, γ chosen on val)")
    t_hopping: float = Field(2.7, gt=0.0, description="t for U/t (eV)")
    n_bootstrap: int = Field(200, ge=2, description="bootstrap resamples of each U_c estimate")
    attribution_per_u: int = Field(6, ge=1, description="samples per distinct U explained by Grad-CAM/guided backprop")
    u_bins: int = Field(4, ge=1, description="U bins for averaged attribution maps")
    mask_radius: float = Field(0.3, gt=0.0, lt=0.5, description="peak-disc radius as a fraction of |g_M|")

    @field_validator("baseline_components")
    @classmethod
    def _ks(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        """One or more positive integers (kept sorted, without repeats)."""
        if not v or min(v) < 1:
            raise ValueError(f"need one or more positive component counts, got {v}")
        return tuple(sorted(set(int(x) for x in v)))


class MoireuConfig(BaseModel):
    """The whole resolved configuration of a run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str = Field("custom", description="name of the preset the configuration started from")
    seed: int = Field(0, ge=0, description="drives every random choice")
    lattice: LatticeConfig = LatticeConfig()
    hf: HFConfig = HFConfig()
    stm: STMConfig = STMConfig()
    dataset: DatasetConfig = DatasetConfig()
    states: StatesConfig = StatesConfig()
    train: TrainConfig = TrainConfig()
    analysis: AnalysisConfig = AnalysisConfig()

    @model_validator(mode="after")
    def _consistency(self) -> "MoireuConfig":
        """dataset.heldout > 0 needs a U grid with a range (U_values not all equal)."""
        if self.dataset.heldout and max(self.dataset.U_values) <= min(self.dataset.U_values):
            raise ValueError("held-out U needs a U grid with a range")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())

    def fingerprint(self, *sections: str) -> str:
        """Stable hash of the given sections (all when none): identifies compatible stores/runs."""
        import hashlib

        d = self.to_dict()
        keep = {k: d[k] for k in (sections or d.keys()) if k in d}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# presets, files, overrides


def available_presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("moireu.presets").iterdir() if p.name.endswith(".toml"))


def preset_dict(name: str) -> dict[str, Any]:
    """The raw contents of a shipped preset (read-only)."""
    names = available_presets()
    if name not in names:
        raise InputError(f"unknown preset {name!r}; available presets: {', '.join(names)}")
    text = resources.files("moireu.presets").joinpath(f"{name}.toml").read_text()
    return tomllib.loads(text)


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise InputError(f"--config {str(path)!r} is a directory; give a TOML file (e.g. a run's config.toml)")
    if not path.exists():
        raise InputError(f"config file {str(path)!r} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"config file {str(path)!r} cannot be read: {exc}") from None


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _deep_update(base: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = v
    return out


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def apply_override(d: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply one ``section.key=value`` override (value parsed as TOML, else a string)."""
    if "=" not in assignment:
        raise InputError(f"--set expects key=value, got {assignment!r}")
    key, _, raw = assignment.partition("=")
    parts = key.strip().split(".")
    model: type[BaseModel] = MoireuConfig
    for depth, p in enumerate(parts):
        fields = model.model_fields
        if p not in fields:
            where = ".".join(parts[:depth]) or "the top level"
            raise InputError(f"unknown config key {key.strip()!r}: {p!r} is not in {where}; "
                             f"allowed: {', '.join(_allowed_keys(model))}")
        ann = fields[p].annotation
        if depth < len(parts) - 1:
            if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
                raise InputError(f"unknown config key {key.strip()!r}: {p!r} has no sub-keys")
            model = ann
        elif isinstance(ann, type) and issubclass(ann, BaseModel):
            raise InputError(f"config key {key.strip()!r} is a section; set one of its keys: "
                             f"{', '.join(_allowed_keys(ann))}")
    nested: dict[str, Any] = {}
    cur = nested
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = _parse_value(raw.strip())
    return _deep_update(d, nested)


def _format_validation_error(exc: ValidationError, raw: dict[str, Any]) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        if err["type"] == "extra_forbidden":
            parent = MoireuConfig
            for p in err["loc"][:-1]:
                ann = parent.model_fields.get(str(p))
                parent = ann.annotation if ann is not None else parent  # type: ignore[assignment]
            allowed = ", ".join(_allowed_keys(parent)) if isinstance(parent, type) else ""
            lines.append(f"unknown config key {loc!r}; allowed: {allowed}")
        else:
            val = err.get("input")
            msg = err["msg"]
            lines.append(f"invalid value {val!r} for {loc!r}: {msg}")
    return "; ".join(lines)


def build_config(raw: dict[str, Any]) -> MoireuConfig:
    """Validate a raw dict; errors become :class:`InputError` naming key, value and what is allowed."""
    try:
        return MoireuConfig.model_validate(raw)
    except ValidationError as exc:
        raise InputError(_format_validation_error(exc, raw)) from None


def load_config(preset: str | None = "demo", config_file: str | Path | None = None,
                overrides: list[str] | tuple[str, ...] = ()) -> MoireuConfig:
    """preset (optional) → config file (optional, deep-merged) → ``key=value`` overrides → validated."""
    raw: dict[str, Any] = {}
    if preset:
        raw = preset_dict(preset)
        raw.setdefault("preset", preset)
    if config_file:
        raw = _deep_update(raw, read_toml(config_file))
    for o in overrides:
        raw = apply_override(raw, o)
    return build_config(raw)


def save_resolved(cfg: MoireuConfig, run_dir: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``config.toml`` (resolved) and ``provenance.json`` into ``run_dir`` atomically."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.toml", cfg.to_toml())
    prov = provenance() | {"config_fingerprint": cfg.fingerprint()} | (extra or {})
    write_json_atomic(run_dir / "provenance.json", prov)


def config_from_json(text: str) -> MoireuConfig:
    """Rebuild a config stored as JSON (e.g. in a store's attributes)."""
    return build_config(json.loads(text))


# ------------------------------------------------------------------------------------------------
# minimal TOML writer (nested tables of scalars and arrays: all our config holds)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if v is None:
        raise ValueError("TOML has no null")
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(d: dict[str, Any], _prefix: str = "") -> str:
    scalars = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict) and v is not None]
    out = []
    if scalars:
        if _prefix:
            out.append(f"[{_prefix}]")
        out.extend(scalars)
        out.append("")
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(dumps_toml(v, f"{_prefix}.{k}" if _prefix else k))
    return "\n".join(out)
