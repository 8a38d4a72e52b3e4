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

:class:`AdaptiveMixer` wraps one of them with the safeguards the SCF driver needs (see its docstring):
a short damped-linear start, a restart from the best iterate when the residual stagnates or blows
up, and a smaller weight after every restart.
"""

from __future__ import annotations

import math

import numpy as np

from moireu.errors import InputError

__all__ = ["AdaptiveMixer", "Mixer", "make_mixer"]


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
        if not (math.isfinite(weight) and 0.0 < weight <= 1.0):
            raise InputError(f"mixing weight must be in (0, 1], got {weight!r}")
        if history < 1:
            raise InputError(f"mixing history must be ≥ 1, got {history!r}")
        self.kind, self.weight, self.history = kind, float(weight), int(history)
        self.reset()

    def reset(self) -> None:
        self._x: list[np.ndarray] = []
        self._f: list[np.ndarray] = []

    def __call__(self, x_in: np.ndarray, x_out: np.ndarray) -> np.ndarray:
        x_in = np.asarray(x_in, float)
        f = np.asarray(x_out, float) - x_in
        beta = self.weight
        if self.kind == "linear":
            return x_in + beta * f
        self._x.append(x_in.copy())
        self._f.append(f.copy())
        if len(self._x) > self.history + 1:
            self._x.pop(0)
            self._f.pop(0)
        if len(self._x) < 2:
            return x_in + beta * f
        dX = np.diff(np.array(self._x), axis=0).T  # (n, h)
        dF = np.diff(np.array(self._f), axis=0).T
        scale = np.linalg.norm(dF, axis=0)
        scale[scale == 0] = 1.0
        dX, dF = dX / scale, dF / scale
        w0 = 0.01 if self.kind == "broyden" else 1e-6
        a = dF.T @ dF + w0 ** 2 * np.eye(dF.shape[1])
        gamma = np.linalg.solve(a, dF.T @ f)
        return x_in + beta * f - (dX + beta * dF) @ gamma


def make_mixer(kind: str | Mixer = "anderson", weight: float = 0.3, history: int = 8) -> Mixer:
    """A fresh :class:`Mixer` (or the given one, reset)."""
    if isinstance(kind, Mixer):
        kind.reset()
        return kind
    return Mixer(str(kind), weight, history)


class AdaptiveMixer:
    r"""The SCF driver's mixing policy around a :class:`Mixer`.

    1. **Start**: damped linear mixing until the residual drops below ``anderson_start`` (∞: quasi-Newton
       from the first step; a quasi-Newton
       step from a far seed can jump to the unstable non-magnetic saddle; the driver also probes
       that case), then the quasi-Newton mixer.
    2. **Best iterate**: the input with the smallest residual so far is remembered.
    3. **Restart on stagnation**: when the best residual has not dropped by a factor
       ``stall_factor`` over the last ``stall_window`` iterations, or a step raises the residual
       above ``blowup`` × best, the history is dropped, the next input is a damped linear step
       from the best iterate and β is halved (down to ``min_weight``). A quasi-Newton history that
       spans a stale region of a nonlinear map (level crossings at E_F, a moment switching on) is
       the usual cause of a residual that oscillates at one level.

    ``restarts`` counts the restarts.
    """

    def __init__(self, kind: str = "anderson", weight: float = 0.3, history: int = 8, anderson_start: float = math.inf,
                 stall_window: int = 8, stall_factor: float = 0.5, blowup: float = 30.0,
                 min_weight: float = 0.05) -> None:
        self.mixer = Mixer(kind, weight, history)
        self.weight0 = self.mixer.weight
        self.anderson_start = float(anderson_start)
        self.stall_window, self.stall_factor, self.blowup = int(stall_window), float(stall_factor), float(blowup)
        self.min_weight = min(float(min_weight), self.weight0)
        self.restarts = 0
        self._hist: list[float] = []
        self._best: tuple[float, np.ndarray, np.ndarray] | None = None
        self._since = 0

    def reset(self, anderson_start: float | None = None) -> None:
        """Forget the history and the best iterate (a new start, e.g. after re-seeding)."""
        self.mixer.reset()
        self._hist, self._best, self._since = [], None, 0
        if anderson_start is not None:
            self.anderson_start = float(anderson_start)

    def __call__(self, x_in: np.ndarray, x_out: np.ndarray, r: float) -> np.ndarray:
        self._hist.append(r)
        self._since += 1
        if self._best is None or r < self._best[0]:
            self._best = (r, x_in.copy(), x_out.copy())
        best = self._best[0]
        if r >= self.anderson_start and self.mixer.kind != "linear" and not self.mixer._x:
            return x_in + self.mixer.weight * (x_out - x_in)
        if self.mixer.kind != "linear":
            w = self.stall_window
            stalled = (self._since > w and len(self._hist) > w
                       and min(self._hist[-w:]) > self.stall_factor * min(self._hist[:-w]))
            if stalled or r > self.blowup * best:
                self.restarts += 1
                self.mixer.reset()
                self.mixer.weight = max(self.min_weight, 0.5 * self.mixer.weight)
                self._since = 0
                _, xb, xbo = self._best
                return xb + self.mixer.weight * (xbo - xb)
        return self.mixer(x_in, x_out)
