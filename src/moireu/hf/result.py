"""Result of a Hartree–Fock solve: order parameters, the density matrix for restarts, I/O.

A result is saved as one NetCDF file through xarray (written to a temporary sibling and renamed, so
a crash never leaves a half-written file). It carries the fingerprint of the :class:`HFSystem` that
produced it; loading it for another system raises :class:`~moireu.errors.InputError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from moireu.errors import InputError

__all__ = ["HFResult"]


@dataclass
class HFResult:
    r"""Self-consistent (or flagged unconverged) mean-field state.

    Attributes
    ----------
    occupations : (N, 2) ⟨n_iσ⟩, spin index 0 = ↑, 1 = ↓
    pair_density : (2, npair) real-space density matrix ρ_σ,ij(R) on the system's Fock pair list
        (the half list, one of each (i, j, R)/(j, i, −R)); empty without Fock
    band_energies : (nk, 2, N) mean-field eigenvalues on the SCF mesh (eV), or None
    fermi_level : μ (eV); mid-gap when the mesh spectrum is gapped (:func:`moireu.lattice.fermi_solve`)
    total_energy : HF energy per moiré cell (eV), :math:`\mathrm{Tr}[H_{TB}\rho] + E_{int}[\delta\rho]`
        (internal energy of the output density; the −kT·S term of the free energy is not included)
    converged, iterations, residual_history, energy_history, seconds
    U, filling, kT : the solve parameters (eV, ν, eV)
    sublattice, layer : (N,) int, for the order parameters
    fingerprint : identifies the HFSystem (geometry, hoppings, k-mesh, Coulomb parameters)
    meta : resolved solve options, system description, config and provenance (JSON-able)
    homo, lumo : highest state below and lowest state above μ on the SCF mesh (eV; NaN when unknown)
    """

    occupations: np.ndarray
    pair_density: np.ndarray
    band_energies: np.ndarray | None
    fermi_level: float
    total_energy: float
    converged: bool
    iterations: int
    residual_history: np.ndarray
    energy_history: np.ndarray
    U: float
    filling: float
    kT: float
    sublattice: np.ndarray
    layer: np.ndarray
    fingerprint: str
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    homo: float = float("nan")
    lumo: float = float("nan")

    # ------------------------------------------------------------------ order parameters
    @property
    def n_orb(self) -> int:
        return int(self.occupations.shape[0])

    @property
    def magnetization(self) -> np.ndarray:
        """(N,) site moment m_i = n_i↑ − n_i↓ (in units of μ_B/… i.e. electrons)."""
        return self.occupations[:, 0] - self.occupations[:, 1]

    @property
    def charge(self) -> np.ndarray:
        """(N,) site charge n_i = n_i↑ + n_i↓ (electrons)."""
        return self.occupations.sum(axis=1)

    @property
    def max_moment(self) -> float:
        """max_i ``|m_i|``."""
        return float(np.abs(self.magnetization).max())

    @property
    def total_moment(self) -> float:
        """Σ_i m_i per moiré cell (zero for an antiferromagnet)."""
        return float(self.magnetization.sum())

    @property
    def staggered_moment(self) -> float:
        r"""Sublattice-staggered moment, averaged over layers:
        :math:`\frac{1}{n_\ell}\sum_\ell \frac{1}{N_\ell}\left|\sum_{i\in\ell}(-1)^{s_i} m_i\right|`."""
        m = self.magnetization
        sign = 1.0 - 2.0 * self.sublattice
        vals = [abs(float(np.mean(sign[self.layer == ly] * m[self.layer == ly]))) for ly in np.unique(self.layer)]
        return float(np.mean(vals))

    @property
    def charge_spread(self) -> float:
        """max_i n_i − min_i n_i: the real-space charge inhomogeneity (electrons)."""
        c = self.charge
        return float(c.max() - c.min())

    def _edges(self) -> tuple[float, float]:
        if np.isfinite(self.homo) and np.isfinite(self.lumo):
            return float(self.homo), float(self.lumo)
        if self.band_energies is None:
            return float("nan"), float("nan")
        e = np.asarray(self.band_energies)
        above, below = e[e > self.fermi_level], e[e <= self.fermi_level]
        return (float(below.max()) if below.size else float("nan"), float(above.min()) if above.size else float("nan"))

    @property
    def gap(self) -> float:
        """LUMO − HOMO on the SCF mesh (eV; the level spacing at μ when metallic, 0 when unknown)."""
        h, l = self._edges()
        return float(max(l - h, 0.0)) if np.isfinite(h) and np.isfinite(l) else 0.0

    def summary(self) -> dict[str, Any]:
        """Scalar summary (the keys scripts rely on: converged, iterations, seconds, fermi_level_eV,
        max_moment, staggered_moment, charge_spread; homo_eV/lumo_eV bracket fermi_level_eV, which
        sits mid-gap for a gapped mesh spectrum)."""
        return {
            "converged": bool(self.converged),
            "iterations": int(self.iterations),
            "seconds": float(self.seconds),
            "U": float(self.U),
            "filling": float(self.filling),
            "kT": float(self.kT),
            "fermi_level_eV": float(self.fermi_level),
            "total_energy_eV": float(self.total_energy),
            "residual": float(self.residual_history[-1]) if len(self.residual_history) else float("nan"),
            "max_moment": self.max_moment,
            "staggered_moment": self.staggered_moment,
            "total_moment": self.total_moment,
            "charge_spread": self.charge_spread,
            "charge_std": float(np.std(self.charge)),
            "gap_eV": self.gap,
            "homo_eV": self._edges()[0],
            "lumo_eV": self._edges()[1],
            "n_electrons": float(self.charge.sum()),
            "n_orb": self.n_orb,
        }

    # ------------------------------------------------------------------ I/O
    def to_dataset(self):
        """xarray.Dataset with every array and the scalars/metadata as attributes."""
        import xarray as xr

        from moireu.provenance import provenance

        dv: dict[str, Any] = {
            "occupations": (("site", "spin"), self.occupations),
            "magnetization": (("site",), self.magnetization),
            "charge": (("site",), self.charge),
            "pair_density": (("spin", "pair"), self.pair_density),
            "residual_history": (("iteration",), np.asarray(self.residual_history, float)),
            "energy_history": (("iteration",), np.asarray(self.energy_history, float)),
            "sublattice": (("site",), np.asarray(self.sublattice, np.int8)),
            "layer": (("site",), np.asarray(self.layer, np.int8)),
        }
        if self.band_energies is not None:
            dv["band_energies"] = (("k", "spin", "band"), self.band_energies)
        meta = dict(self.meta)
        meta.setdefault("provenance", provenance())
        attrs = {
            "fermi_level": float(self.fermi_level), "total_energy": float(self.total_energy),
            "converged": int(bool(self.converged)), "iterations": int(self.iterations),
            "U": float(self.U), "filling": float(self.filling), "kT": float(self.kT),
            "seconds": float(self.seconds), "fingerprint": self.fingerprint,
            "homo": float(self.homo), "lumo": float(self.lumo),
            "meta": json.dumps(meta, default=str), "summary": json.dumps(self.summary()),
            "format": "moireu.hf.HFResult/1",
        }
        return xr.Dataset(dv, coords={"spin": ["up", "down"]}, attrs=attrs)

    def save(self, path: str | Path) -> Path:
        """Write NetCDF atomically (temporary sibling + rename)."""
        from moireu.provenance import atomic_path

        path = Path(path)
        ds = self.to_dataset()
        with atomic_path(path) as tmp:
            ds.to_netcdf(tmp, engine="netcdf4")
        return path

    @classmethod
    def load(cls, path: str | Path, system=None) -> "HFResult":
        """Read a result/checkpoint; with ``system`` given, refuse one made by another system."""
        import xarray as xr

        path = Path(path)
        if not path.is_file():
            raise InputError(f"HF result {str(path)!r} does not exist")
        try:
            with xr.open_dataset(path, engine="netcdf4") as ds:
                ds = ds.load()
        except (OSError, ValueError) as exc:
            raise InputError(f"{str(path)!r} is not a readable HF result: {exc}") from None
        if ds.attrs.get("format") != "moireu.hf.HFResult/1":
            raise InputError(f"{str(path)!r} is not a moireu HF result (format {ds.attrs.get('format')!r})")
        res = cls(
            occupations=ds["occupations"].values, pair_density=ds["pair_density"].values,
            band_energies=ds["band_energies"].values if "band_energies" in ds else None,
            fermi_level=float(ds.attrs["fermi_level"]), total_energy=float(ds.attrs["total_energy"]),
            converged=bool(ds.attrs["converged"]), iterations=int(ds.attrs["iterations"]),
            residual_history=ds["residual_history"].values, energy_history=ds["energy_history"].values,
            U=float(ds.attrs["U"]), filling=float(ds.attrs["filling"]), kT=float(ds.attrs["kT"]),
            sublattice=ds["sublattice"].values.astype(int), layer=ds["layer"].values.astype(int),
            fingerprint=str(ds.attrs["fingerprint"]), seconds=float(ds.attrs["seconds"]),
            meta=json.loads(ds.attrs.get("meta", "{}")),
            homo=float(ds.attrs.get("homo", float("nan"))), lumo=float(ds.attrs.get("lumo", float("nan"))),
        )
        if system is not None:
            system.check_compatible(res, what=f"HF result {str(path)!r}")
        return res

    def __eq__(self, other: object) -> bool:  # arrays make the dataclass default unusable
        if not isinstance(other, HFResult):
            return False
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or not np.array_equal(a, b):
                    return False
            elif a != b and not (isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b)):
                return False
        return True
