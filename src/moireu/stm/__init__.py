"""STM simulation: per-atom LDOS, the measurement model (maps), alignment and FT-LDOS images (finufft).

Modules in layers, each importing only those below it: :mod:`moireu.stm.ldos` (per-atom LDOS from HF
states); :mod:`moireu.stm.ft` (structure factors on a k window) → :mod:`moireu.stm.patch` (real-space
patches, Bragg and moiré peaks) → :mod:`moireu.stm.geometry` (the cell and its training frame) →
:mod:`moireu.stm.ftldos` (the image transform) → :mod:`moireu.stm.align` (lattice of a map, alignment)
→ :mod:`moireu.stm.metrology` (twist and heterostrain of a map), :mod:`moireu.stm.measure` (simulated
acquisitions, user maps) → :mod:`moireu.stm.simulate`. File formats of user maps live in
:mod:`moireu.io`.
"""

from moireu.stm.align import AlignInfo, map_to_image, measure_lattice
from moireu.stm.ft import FTWindow, ft_direct, ft_grid, ft_points
from moireu.stm.ftldos import ImageTransform, amplitude_to_image, ftldos
from moireu.stm.geometry import CellGeometry, reference_lattice
from moireu.stm.ldos import (broadening, check_energies_in_spectrum, dos_from_spectrum, ldos_at,
                             ldos_from_spectrum)
from moireu.stm.measure import (CORRUPTIONS, MeasurementSpec, ScanParams, acquire, corrupted_spec, draw_scan,
                                scan_rng, simulate_map, user_map_image, user_map_to_image)
from moireu.stm.patch import Patch, build_patch, patch_points, reciprocal_peaks, render_map, spot_profile

__all__ = [
    "AlignInfo", "CORRUPTIONS", "acquire", "CellGeometry", "FTWindow", "ImageTransform", "MeasurementSpec", "Patch",
    "ScanParams", "amplitude_to_image", "broadening", "build_patch", "check_energies_in_spectrum",
    "corrupted_spec", "dos_from_spectrum", "draw_scan", "ft_direct", "ft_grid", "ft_points", "ftldos", "ldos_at",
    "ldos_from_spectrum", "map_to_image", "measure_lattice", "patch_points", "reciprocal_peaks", "reference_lattice",
    "render_map", "scan_rng", "simulate_map", "spot_profile", "user_map_image", "user_map_to_image",
]
