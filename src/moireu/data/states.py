"""Hartree–Fock states as an artefact: the ground state per (U, ν), kept in one verified file per preset.

A :class:`States` holds, per point (a rung of the preset's U ladder, or an ``extra`` U off it):
the HF summary and order parameters, the branch that won (:data:`moireu.data.schema.BRANCH_CODES`) and the
energy margin to the runner-up, the per-atom LDOS per spin at the preset's biases, the restart data
(occupations and the Fock pair density), and its provenance; shared: the moiré cell geometry. The file
(:mod:`moireu.io.states`) carries a checksum per point and the **fingerprint** of everything that
determines a state — the ``lattice`` section, the ``hf`` section but for U and ν, the ladder and its
candidate starts, the LDOS options (``stm.eta``, ``stm.broadening``, ``stm.kmesh``) and, for a random
seed pattern, the seed. :meth:`States.check` compares it with a configuration key by key, so a refusal
names the key that differs.

Images are rendered from states (:class:`moireu.data.tasks.StatesBackend`); nothing downstream of a
states file needs Hartree–Fock. How the states are found: :mod:`moireu.data.ladder`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from moireu.config import MoireuConfig
from moireu.data.schema import BRANCH_CODES, U_DECIMALS
from moireu.errors import InputError
from moireu.io.states import read_states, write_states

__all__ = ["KINDS", "SCALARS", "States", "fingerprint_keys", "needed_biases", "shipped_states_path",
           "states_fingerprint"]

#: point kinds: a ladder rung, or a U off the ladder solved from its two ladder neighbours
KINDS = ("ladder", "extra")
#: float64 scalars stored per point (eV, ν, electrons; NaN where not applicable)
SCALARS = ("U", "filling", "kT", "total_energy", "energy_margin", "fermi_level", "homo", "lumo", "gap",
           "max_moment", "staggered_moment", "total_moment", "charge_spread", "residual", "from_U",
           "seconds", "iterations")
#: per-point strings: state id (hash of the restart data), the neighbours' state ids this point was
#: last tried from (ladder: the sweeps; extra: the two neighbours it was solved from), and a JSON record
STRINGS = ("state_id", "tried_below", "tried_above", "record")
#: LDOS options that determine the stored LDOS
LDOS_KEYS = ("eta", "broadening", "kmesh")


def fingerprint_keys(cfg: MoireuConfig) -> dict[str, Any]:
    """Every configuration key that determines a stored state, flattened (``section.key`` → value)."""
    d = cfg.to_dict()
    keys: dict[str, Any] = {f"lattice.{k}": v for k, v in d["lattice"].items()}
    keys |= {f"hf.{k}": v for k, v in d["hf"].items() if k not in ("U", "filling")}
    keys |= {f"states.{k}": v for k, v in d["states"].items() if k != "max_passes"}
    keys |= {f"stm.{k}": d["stm"][k] for k in LDOS_KEYS}
    if cfg.hf.init == "random":
        keys["seed"] = cfg.seed
    return keys


def states_fingerprint(cfg: MoireuConfig) -> str:
    """SHA-256 (16 hex digits) of :func:`fingerprint_keys`."""
    return hashlib.sha256(json.dumps(fingerprint_keys(cfg), sort_keys=True).encode()).hexdigest()[:16]


def needed_biases(cfg: MoireuConfig) -> tuple[float, ...]:
    """The biases (eV from E_F) whose LDOS a states file of ``cfg`` holds: the dataset's and the STM section's."""
    return tuple(sorted({round(float(b), 9) for b in (*cfg.dataset.biases, *cfg.stm.biases)}))


def shipped_states_path(preset: str) -> Path:
    """Where the states of a shipped preset live (package data ``moireu/presets/<preset>.states.nc``)."""
    return Path(str(resources.files("moireu.presets").joinpath(f"{preset}.states.nc")))


def state_id(occupations: np.ndarray, pair_density: np.ndarray) -> str:
    """A 16-hex-digit hash of the restart data as stored (occupations float64, pair density float32)."""
    h = hashlib.sha256(np.ascontiguousarray(occupations, "<f8").tobytes())
    h.update(np.ascontiguousarray(pair_density, "<f4").tobytes())
    return h.hexdigest()[:16]


@dataclass
class Point:
    """One stored state (what :meth:`States.put` takes and :meth:`States.point` returns)."""

    kind: str
    U: float
    filling: float
    branch: str
    occupations: np.ndarray
    pair_density: np.ndarray
    ldos: np.ndarray  # (n_bias, 2, N) per spin
    scalars: dict[str, float]
    tried_below: str = ""
    tried_above: str = ""
    record: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.U = round(float(self.U), U_DECIMALS)
        self.filling = float(self.filling)
        self.occupations = np.asarray(self.occupations, np.float64)
        self.pair_density = np.asarray(self.pair_density, np.float32)
        self.ldos = np.asarray(self.ldos, np.float32)

    @property
    def key(self) -> tuple[float, float]:
        return (self.U, self.filling)

    @property
    def state_id(self) -> str:
        return state_id(self.occupations, self.pair_density)

    @property
    def total_energy(self) -> float:
        return float(self.scalars["total_energy"])

    @property
    def converged(self) -> bool:
        return bool(self.record.get("converged", True))

    @property
    def unresolved(self) -> dict[str, Any] | None:
        """The candidate start that stopped *unconverged* below the stored state, when one did.

        The rule keeps the lowest *converged* solution. A start that reached its iteration limit with a
        total energy lower than the kept state's by more than :data:`moireu.hf.ground.SAME_STATE_E` says the
        kept state may not be the HF ground state: ``{"candidate", "below_meV", "iterations", "max_moment"}``
        of the lowest such start, else None.
        """
        from moireu.hf.ground import is_lower

        low = [(float(v["total_energy"]) - self.total_energy, k, v)
               for k, v in self.record.get("candidates", {}).items()
               if not v.get("converged", True) and math.isfinite(float(v.get("total_energy", math.nan)))]
        if not low:
            return None
        d, k, v = min(low, key=lambda t: t[0])
        if not is_lower(float(v["total_energy"]), self.total_energy):
            return None
        return {"candidate": k, "below_meV": round(1e3 * d, 3), "iterations": int(v.get("iterations", 0)),
                "max_moment": float(v.get("max_moment", math.nan))}

    def summary(self) -> dict[str, Any]:
        """The order parameters and bookkeeping of this point, as plain JSON values."""
        s = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.scalars.items()}
        return s | {"kind": self.kind, "branch": self.branch, "state_id": self.state_id,
                    "converged": self.converged, "unresolved": self.unresolved}


class States:
    """The states of one configuration (its :func:`states_fingerprint`): ladder rungs and extra points.

    Build with :meth:`new` (empty, for a configuration) or :meth:`load` (a verified file); :meth:`put`
    adds or replaces a point, :meth:`save` writes the whole file atomically.
    """

    def __init__(self, attrs: dict[str, Any], geometry: dict[str, np.ndarray], biases: np.ndarray,
                 points: Iterable[Point] = (), path: Path | None = None) -> None:
        self.attrs = dict(attrs)
        self.geometry = geometry
        self.biases = np.asarray(biases, float)
        self._points: dict[tuple[float, float], Point] = {}
        for p in points:
            self._points[p.key] = p
        self.path = path

    # ------------------------------------------------------------------ construction
    @classmethod
    def new(cls, cfg: MoireuConfig, geometry: dict[str, np.ndarray], system_fingerprint: str) -> "States":
        """Empty states of ``cfg`` on the moiré cell ``geometry`` (keys of :data:`moireu.data.schema.LDOS_GEOMETRY`)."""
        attrs = {"fingerprint": states_fingerprint(cfg), "fingerprint_keys": fingerprint_keys(cfg),
                 "ladder": list(cfg.states.ladder), "fillings": [float(f) for f in cfg.states.fillings],
                 "preset": cfg.preset, "system_fingerprint": system_fingerprint, "config": cfg.to_dict(),
                 "sweeps": {"converged": False, "passes": 0}, "history": []}
        return cls(attrs, {k: np.asarray(v) for k, v in geometry.items()}, np.asarray(needed_biases(cfg)))

    @classmethod
    def load(cls, path: str | Path) -> "States":
        """Read and verify ``path`` (checksums, format); see :meth:`check` for the configuration."""
        path = Path(path)
        per, shared, attrs = read_states(path)
        n = len(per.get("U", ()))
        codes = {c: n for n, c in BRANCH_CODES.items()}
        pts = []
        for i in range(n):
            sc = {k: float(per[k][i]) for k in SCALARS}
            p = Point(kind=KINDS[int(per["kind"][i])], U=sc["U"], filling=sc["filling"],
                      branch=codes.get(int(per["branch"][i]), "?"), occupations=per["occupations"][i],
                      pair_density=per["pair_density"][i], ldos=per["ldos"][i], scalars=sc,
                      tried_below=str(per["tried_below"][i]), tried_above=str(per["tried_above"][i]),
                      record=json.loads(str(per["record"][i])))
            if p.state_id != str(per["state_id"][i]):
                raise InputError(f"{str(path)!r}: the state at U = {p.U:g} does not match its state id")
            pts.append(p)
        geometry = {k: shared[k] for k in ("atom_xyz", "atom_layer", "atom_sublattice", "cell")}
        return cls(attrs, geometry, shared["bias"], pts, path)

    def save(self, path: str | Path | None = None) -> Path:
        """Write every point to ``path`` (default: where it was loaded from) atomically."""
        from moireu.provenance import provenance

        path = Path(path or self.path)
        pts = self.points()
        per: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
            k: (("point",), np.array([p.scalars.get(k, math.nan) for p in pts], np.float64)) for k in SCALARS}
        per["kind"] = (("point",), np.array([KINDS.index(p.kind) for p in pts], np.int8))
        per["branch"] = (("point",), np.array([BRANCH_CODES.get(p.branch, -1) for p in pts], np.int16))
        per["state_id"] = (("point",), np.array([p.state_id for p in pts], dtype=str))
        per["tried_below"] = (("point",), np.array([p.tried_below for p in pts], dtype=str))
        per["tried_above"] = (("point",), np.array([p.tried_above for p in pts], dtype=str))
        per["record"] = (("point",), np.array([json.dumps(p.record, sort_keys=True, default=str) for p in pts],
                                              dtype=str))
        per["occupations"] = (("point", "site", "spin"), np.stack([p.occupations for p in pts]))
        per["pair_density"] = (("point", "spin", "pair"), np.stack([p.pair_density for p in pts]))
        per["ldos"] = (("point", "bias", "spin", "site"), np.stack([p.ldos for p in pts]))
        g = self.geometry
        shared = {"atom_xyz": (("site", "xyz"), np.asarray(g["atom_xyz"], float)),
                  "atom_layer": (("site",), np.asarray(g["atom_layer"], np.int8)),
                  "atom_sublattice": (("site",), np.asarray(g["atom_sublattice"], np.int8)),
                  "cell": (("vec", "xy"), np.asarray(g["cell"], float)[:, :2]),
                  "bias": (("bias",), self.biases)}
        prov = provenance()
        attrs = dict(self.attrs) | {"provenance": prov}
        write_states(path, per, shared, attrs)
        self.path = path
        return path

    # ------------------------------------------------------------------ access
    def points(self, kind: str | None = None) -> list[Point]:
        """Points sorted by (ν, U), of one ``kind`` or all."""
        return [self._points[k] for k in sorted(self._points, key=lambda t: (t[1], t[0]))
                if kind is None or self._points[k].kind == kind]

    def get(self, U: float, filling: float = 0.0) -> Point | None:
        return self._points.get((round(float(U), U_DECIMALS), float(filling)))

    def put(self, p: Point) -> None:
        self._points[p.key] = p

    def remove(self, U: float, filling: float = 0.0) -> None:
        self._points.pop((round(float(U), U_DECIMALS), float(filling)), None)

    @property
    def ladder(self) -> list[float]:
        return [float(u) for u in self.attrs["ladder"]]

    @property
    def fillings(self) -> list[float]:
        return [float(f) for f in self.attrs["fillings"]]

    @property
    def fingerprint(self) -> str:
        return str(self.attrs["fingerprint"])

    def rungs_done(self, filling: float = 0.0) -> list[float]:
        return [p.U for p in self.points("ladder") if p.filling == float(filling)]

    def rungs_missing(self, filling: float = 0.0) -> list[float]:
        done = set(self.rungs_done(filling))
        return [u for u in self.ladder if round(u, U_DECIMALS) not in done]

    def neighbours(self, U: float, filling: float = 0.0) -> tuple[Point | None, Point | None]:
        """The solved ladder rungs just below and just above ``U`` (None where there is none)."""
        rungs = [p for p in self.points("ladder") if p.filling == float(filling)]
        below = [p for p in rungs if p.U < U]
        above = [p for p in rungs if p.U > U]
        return (below[-1] if below else None, above[0] if above else None)

    def ldos(self, U: float, filling: float, biases: Iterable[float]) -> np.ndarray:
        """Spin-summed per-atom LDOS (n_bias, N) float64 of the point at ``U`` for ``biases`` (eV)."""
        p = self.get(U, filling)
        if p is None:
            raise InputError(f"no state at U = {U:g} eV, ν = {filling:g} in the states file")
        rows = []
        for b in biases:
            j = np.flatnonzero(np.abs(self.biases - float(b)) < 1e-9)
            if not j.size:
                raise InputError(f"the states file has the LDOS at biases {self.biases.tolist()} eV, not at {b:g}")
            rows.append(p.ldos[j[0]].astype(np.float64).sum(axis=0))
        return np.stack(rows)

    def result(self, U: float, filling: float = 0.0) -> Any:
        """The state at ``U`` as an :class:`moireu.hf.HFResult` (restart data, order parameters; no bands)."""
        from moireu.hf import HFResult

        p = self.get(U, filling)
        if p is None:
            raise InputError(f"no state at U = {U:g} eV, ν = {filling:g} in the states file")
        s = p.scalars
        return HFResult(occupations=p.occupations.copy(), pair_density=p.pair_density.astype(np.float64),
                        band_energies=None, fermi_level=s["fermi_level"], total_energy=s["total_energy"],
                        converged=p.converged, iterations=int(s["iterations"]),
                        residual_history=np.array([s["residual"]]), energy_history=np.array([s["total_energy"]]),
                        U=p.U, filling=p.filling, kT=s["kT"],
                        sublattice=np.asarray(self.geometry["atom_sublattice"], int),
                        layer=np.asarray(self.geometry["atom_layer"], int),
                        fingerprint=str(self.attrs["system_fingerprint"]), seconds=s["seconds"],
                        meta={"states": {"branch": p.branch, "state_id": p.state_id, "file": str(self.path)}},
                        homo=s["homo"], lumo=s["lumo"])

    # ------------------------------------------------------------------ trust
    def differences(self, cfg: MoireuConfig) -> list[str]:
        """``key: stored → configured`` for every fingerprint key that differs, and missing biases."""
        mine, want = dict(self.attrs.get("fingerprint_keys", {})), fingerprint_keys(cfg)
        out = [f"{k}: {mine.get(k)!r} here, {want.get(k)!r} configured" for k in sorted(set(mine) | set(want))
               if json.dumps(mine.get(k)) != json.dumps(want.get(k))]
        if not out and self.fingerprint != states_fingerprint(cfg):
            out.append(f"fingerprint {self.fingerprint} here, {states_fingerprint(cfg)} configured")
        missing = [b for b in needed_biases(cfg) if not np.any(np.abs(self.biases - b) < 1e-9)]
        if missing:
            out.append(f"LDOS biases {[1e3 * b for b in missing]} meV not stored (has {(1e3 * self.biases).tolist()})")
        return out

    def check(self, cfg: MoireuConfig) -> None:
        """Refuse (InputError) when these states are not those of ``cfg``, naming each key that differs."""
        diff = self.differences(cfg)
        if diff:
            raise InputError(f"states {str(self.path)!r} were made with another configuration: " + "; ".join(diff))

    def concavity(self, filling: float = 0.0) -> list[dict[str, Any]]:
        """Ladder rungs below the chord of their two neighbours: a neighbour does not hold the lowest state.

        For a fixed density matrix the HF energy is linear in U (the Hubbard term is U Σᵢ (nᵢ↑ − n⁰)(nᵢ↓ − n⁰)),
        so the ground-state energy, a minimum over states, is concave: E(U_k) ≥ the chord through
        E(U_{k−1}) and E(U_{k+1}). A rung more than :data:`moireu.hf.ground.SAME_STATE_E` below that chord
        proves that a state lower than the one stored exists at a neighbour (the state of rung k, carried
        there, lies on the tangent at U_k, below the chord).
        """
        from moireu.hf.ground import is_lower

        pts = sorted((p for p in self.points("ladder") if p.filling == filling), key=lambda p: p.U)
        out = []
        for a, b, c in zip(pts, pts[1:], pts[2:]):
            w = (b.U - a.U) / (c.U - a.U)
            chord = (1 - w) * a.total_energy + w * c.total_energy
            d = b.total_energy - chord
            if is_lower(b.total_energy, chord):
                out.append({"U": b.U, "filling": filling, "below_chord_meV": round(1e3 * d, 3),
                            "neighbours": [a.U, c.U]})
        return out

    # ------------------------------------------------------------------ report
    def info(self) -> dict[str, Any]:
        """What ``moireu states info --json`` prints: ladder, rungs done, per-point summaries, provenance."""
        out: dict[str, Any] = {"file": str(self.path), "fingerprint": self.fingerprint,
                               "preset": self.attrs.get("preset"), "ladder": self.ladder, "fillings": self.fillings,
                               "biases_meV": (1e3 * self.biases).tolist(),
                               "n_atoms": int(len(self.geometry["atom_layer"])),
                               "sweeps": self.attrs.get("sweeps"), "provenance": self.attrs.get("provenance"),
                               "history": self.attrs.get("history", [])}
        for nu in self.fillings:
            out.setdefault("rungs", {})[f"{nu:g}"] = {"done": self.rungs_done(nu), "missing": self.rungs_missing(nu)}
        out["unresolved"] = [p.U for p in self.points() if p.unresolved is not None]
        out["concavity"] = [c for nu in self.fillings for c in self.concavity(nu)]
        out["complete"] = all(not self.rungs_missing(nu) for nu in self.fillings) and bool(
            (self.attrs.get("sweeps") or {}).get("converged"))
        out["points"] = [p.summary() | {"candidates": p.record.get("candidates", {}), "cost": p.record.get("cost"),
                                        "git_commit": p.record.get("git_commit"), "created": p.record.get("created")}
                         for p in self.points()]
        return out


def geometry_of(model: Any) -> dict[str, np.ndarray]:
    """The moiré cell of a TB model in the keys of :data:`moireu.data.schema.LDOS_GEOMETRY`."""
    return {"atom_xyz": np.asarray(model.positions, float), "cell": np.asarray(model.cell, float),
            "atom_layer": np.asarray(model.layer, np.int8), "atom_sublattice": np.asarray(model.sublattice, np.int8)}
