"""Dataset stage: U sweeps on dask.distributed into one self-describing Zarr store.

Public API
----------
``build_dataset(cfg, out, ...) -> BuildReport``
    build / resume / extend a store (:mod:`.build`)
``open_store(path) -> xarray.Dataset``
    the one store reader (schema: :mod:`.schema`)
``make_plan(cfg, n_chains) -> Plan``
    the solve points, image specs and warm-start chains
``dataset_info(path) -> dict``, ``export_png(path, dir)``
    summaries and viewable PNGs (:mod:`.info`)
"""

from moireu.data.build import BuildError, BuildReport, build_dataset
from moireu.data.info import dataset_info, export_png
from moireu.data.plan import ImageSpec, Plan, SolvePoint, Variation, heldout_values, make_plan, variations
from moireu.data.schema import decode_split, open_store, round_u
from moireu.data.tasks import Backend, PhysicsBackend, Rendered

__all__ = ["Backend", "BuildError", "BuildReport", "decode_split", "round_u", "ImageSpec", "PhysicsBackend", "Plan", "Rendered", "SolvePoint",
           "Variation", "build_dataset", "dataset_info", "export_png", "heldout_values", "make_plan",
           "open_store", "variations"]
