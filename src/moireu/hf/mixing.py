r"""Density mixers for the self-consistency loop.

All mixers map the input vector :math:`x_m` and the output :math:`g(x_m)` of one iteration to the
next input. With :math:`F_m = g(x_m) - x_m` (the residual) and mixing weight β:

* ``linear``: :math:`x_{m+1} = x_m + \beta F_m`.
* ``anderson`` (Pulay/DIIS; Anderson, J. ACM 12, 547 (1965); Pulay, CPL 73, 393 (1980)): with the
  last h differences :math:`\Delta x_i = x_{i+1}-x_i`, :math:`\Delta F_i = F_{i+1}-F_i`, choose
  :math:`\gamma = \arg\min\|F_m - \Delta F\,\gamma\|` and set
  :math:`x_{m+1} = x_m + \beta F_m - (\Delta x + \beta\Delta F)\gamma`.
* ``broyden``: Johnson's modified Broyden (PRB 38, 12807 (1988)) with normalised differences and a
  regularising weight :math:`w_0 = 0.01`: :math:`\gamma = (w_0^2 + \Delta F^\top\Delta F)^{-1}\Delta F^\top F_m`,
  same update. It equals Anderson as :math:`w_0 \to 0` but is better conditioned when the history
  becomes nearly linearly dependent.

Both quasi-Newton mixers restart their history when the residual grows by more than a factor 10
over the best one seen (a safeguard against a stale history after a phase change).
"""

from __future__ import annotations

import numpy as np

from moireu.errors import InputError

__all__ = ["Mixer", "make_mixer"]


class Mixer:
    """Linear / Anderson / Broyden mixer (see the module docstring).

    Parameters
    ----------
    kind : "linear", "anderson" or "broyden"
    weight : β in (0, 1]
    history : number of stored differences (≥ 1)
    """

    KINDS = ("linear", "anderson", "broyden")

    def __init__(self, kind: str = "anderson", weight: float = 0.3, history: int = 8) -> None:
        if kind not in self.KINDS:
            raise InputError(f"unknown mixer {kind!r}; allowed: {', '.join(self.KINDS)}")
        if not 0.0 < weight <= 1.0:
            raise InputError(f"mixing weight must be in (0, 1], got {weight!r}")
        if history < 1:
            raise InputError(f"mixing history must be ≥ 1, got {history!r}")
        self.kind, self.weight, self.history = kind, float(weight), int(history)
        self.reset()

    def reset(self) -> None:
        self._x: list[np.ndarray] = []
        self._f: list[np.ndarray] = []
        self._best = np.inf

    def __call__(self, x_in: np.ndarray, x_out: np.ndarray) -> np.ndarray:
        x_in = np.asarray(x_in, float)
        f = np.asarray(x_out, float) - x_in
        beta = self.weight
        if self.kind == "linear":
            return x_in + beta * f
        norm = float(np.linalg.norm(f))
        if norm > 10.0 * self._best:
            self.reset()
        self._best = min(self._best, norm)
        self._x.append(x_in.copy())
        self._f.append(f.copy())
        if len(self._x) > self.history + 1:
            self._x.pop(0)
            self._f.pop(0)
        if len(self._x) < 2:
            return x_in + beta * f
        dX = np.diff(np.array(self._x), axis=0).T  # (n, h)
        dF = np.diff(np.array(self._f), axis=0).T
        if self.kind == "broyden":
            scale = np.linalg.norm(dF, axis=0)
            scale[scale == 0] = 1.0
            dX, dF = dX / scale, dF / scale
            a = dF.T @ dF + 0.01 ** 2 * np.eye(dF.shape[1])
            gamma = np.linalg.solve(a, dF.T @ f)
        else:
            gamma = np.linalg.lstsq(dF, f, rcond=1e-12)[0]
        return x_in + beta * f - (dX + beta * dF) @ gamma


def make_mixer(kind: str | Mixer = "anderson", weight: float = 0.3, history: int = 8) -> Mixer:
    """A fresh :class:`Mixer` (or the given one, reset)."""
    if isinstance(kind, Mixer):
        kind.reset()
        return kind
    return Mixer(str(kind), weight, history)
