"""Dataset stage: U sweeps on dask.distributed into one self-describing Zarr store.

Public API
----------
``build_dataset(cfg, out, ...) -> BuildReport``   build / resume / extend a store (:mod:`.build`)
``open_store(path) -> xarray.Dataset``            read a store (contract in docs/ARCHITECTURE.md)
``make_plan(cfg, n_chains) -> Plan``              the solve points, image specs and warm-start chains
``dataset_info(path) -> dict``, ``export_png(path, dir)``   summaries and viewable PNGs (:mod:`.info`)
"""

from moireu.data.build import BuildReport, build_dataset
from moireu.data.info import dataset_info, export_png
from moireu.data.plan import ImageSpec, Plan, SolvePoint, Variation, heldout_values, make_plan, variations
from moireu.data.store import open_store
from moireu.data.tasks import Backend, PhysicsBackend, Rendered

__all__ = ["Backend", "BuildReport", "ImageSpec", "PhysicsBackend", "Plan", "Rendered", "SolvePoint",
           "Variation", "build_dataset", "dataset_info", "export_png", "heldout_values", "make_plan",
           "open_store", "variations"]
