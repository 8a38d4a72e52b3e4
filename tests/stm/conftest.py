"""Shared fixtures for the STM tests: small lattices built directly (no dependency on other stages)."""

import numpy as np
import pytest

A = 2.46


@pytest.fixture
def graphene_cell():
    """Graphene: a1 = a(1, 0), a2 = a(1/2, √3/2); A at 0, B at (a1 + a2)/3."""
    cell = np.array([[A, 0.0], [A / 2, A * np.sqrt(3) / 2]])
    xy = np.array([[0.0, 0.0], (cell[0] + cell[1]) / 3])
    return xy, cell


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def tbg2():
    """TBG i = 2 (θ = 13.17°, L_M = 10.65 Å, 76 atoms) with a moiré-periodic per-atom LDOS.

    LDOS_i = 1 + 0.3 Σ_j cos(G_j·r_i) over the first moiré shell + 0.1 on sublattice A: a pattern
    with C6-symmetric |FT| whose moiré and Bragg peaks are both strong.
    """
    from moireu.lattice.geometry import tbg_geometry

    g = tbg_geometry(2, 3.35)
    rec = 2 * np.pi * np.linalg.inv(g.cell).T
    shell = np.array([[1, 0], [0, 1], [1, 1], [-1, 0], [0, -1], [-1, -1]]) @ rec
    r = g.positions[:, :2]
    ldos = 1.0 + 0.3 * np.cos(r @ shell.T).sum(axis=1) + 0.1 * (g.sublattice == 0)
    return g, ldos


@pytest.fixture(scope="session")
def tbg2_transform(tbg2):
    from moireu.config import load_config
    from moireu.stm.ftldos import ImageTransform

    cfg = load_config("demo", overrides=["stm.n_pixels=48"])
    return ImageTransform.from_config(cfg.stm, geom=tbg2[0])
