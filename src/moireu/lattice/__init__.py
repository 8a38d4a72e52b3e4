"""Stage 1 — atomistic tight-binding model of (twisted bilayer) graphene.

``build_tbg(index, interlayer_distance, cutoff)`` → immutable :class:`TightBindingModel` with Bloch
Hamiltonians ``hk(k_frac)``; :func:`kmesh`, :func:`band_path`, :func:`fermi_level` / :func:`fermi_solve`
(the package's one Fermi–Dirac and Fermi-level implementation), :func:`dos`.
"""

from moireu.lattice.bands import (BandSummary, FermiLevel, band_path, central_bands, dos, fermi_dirac, fermi_level,
                                  fermi_solve, kmesh, summarize_bands)
from moireu.lattice.geometry import Geometry, graphene_geometry, n_atoms, tbg_geometry, twist_angle
from moireu.lattice.model import (PairList, TightBindingModel, bloch_sum, build_graphene, build_tbg, find_pairs,
                                  slater_koster)

__all__ = ["BandSummary", "FermiLevel", "Geometry", "PairList", "TightBindingModel", "band_path", "bloch_sum",
           "build_graphene", "build_tbg", "central_bands", "dos", "fermi_dirac", "fermi_level", "fermi_solve",
           "find_pairs", "graphene_geometry", "kmesh", "n_atoms", "slater_koster", "summarize_bands", "tbg_geometry",
           "twist_angle"]
