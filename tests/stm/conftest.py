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
