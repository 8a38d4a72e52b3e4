"""STM simulation: per-atom LDOS, real-space patches and maps, FT-LDOS images (finufft), user maps.

See :mod:`moireu.stm.ldos`, :mod:`moireu.stm.patch`, :mod:`moireu.stm.ftldos`, :mod:`moireu.stm.usermap`.
"""

from moireu.stm.ftldos import (FTWindow, ImageTransform, amplitude_to_image, ft_direct, ft_grid, ft_points,
                               ftldos)
from moireu.stm.ldos import (broadening, check_energies_in_spectrum, dos_from_spectrum, ldos_at,
                             ldos_from_spectrum)
from moireu.stm.patch import Patch, build_patch, patch_points, reciprocal_peaks, render_map, spot_profile
from moireu.stm.usermap import UserMap, check_map_geometry, read_user_map, user_map_to_image

__all__ = [
    "FTWindow", "ImageTransform", "Patch", "UserMap", "amplitude_to_image", "broadening", "build_patch",
    "check_energies_in_spectrum", "check_map_geometry", "dos_from_spectrum", "ft_direct", "ft_grid", "ft_points",
    "ftldos", "ldos_at", "ldos_from_spectrum", "patch_points", "read_user_map", "reciprocal_peaks", "render_map",
    "spot_profile", "user_map_to_image",
]
