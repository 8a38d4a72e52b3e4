"""STM simulation: per-atom LDOS, the measurement model (maps), alignment and FT-LDOS images (finufft).

See :mod:`moireu.stm.ldos`, :mod:`moireu.stm.patch`, :mod:`moireu.stm.measure`, :mod:`moireu.stm.align`,
:mod:`moireu.stm.ftldos`. File formats of user maps live in :mod:`moireu.io`.
"""

from moireu.stm.align import AlignInfo, map_to_image, measure_lattice, reference_lattice
from moireu.stm.ftldos import (FTWindow, ImageTransform, amplitude_to_image, ft_direct, ft_grid, ft_points,
                               ftldos)
from moireu.stm.ldos import (broadening, check_energies_in_spectrum, dos_from_spectrum, ldos_at,
                             ldos_from_spectrum)
from moireu.stm.measure import (CORRUPTIONS, CellGeometry, MeasurementSpec, ScanParams, acquire, corrupted_spec, draw_scan,
                                scan_rng, simulate_map, user_map_image, user_map_to_image)
from moireu.stm.patch import Patch, build_patch, patch_points, reciprocal_peaks, render_map, spot_profile

__all__ = [
    "AlignInfo", "CORRUPTIONS", "acquire", "CellGeometry", "FTWindow", "ImageTransform", "MeasurementSpec", "Patch",
    "ScanParams", "amplitude_to_image", "broadening", "build_patch", "check_energies_in_spectrum",
    "corrupted_spec", "dos_from_spectrum", "draw_scan", "ft_direct", "ft_grid", "ft_points", "ftldos", "ldos_at",
    "ldos_from_spectrum", "map_to_image", "measure_lattice", "patch_points", "reciprocal_peaks", "reference_lattice",
    "render_map", "scan_rng", "simulate_map", "spot_profile", "user_map_image", "user_map_to_image",
]
