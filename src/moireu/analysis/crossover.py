"""Where does the system cross over from weakly to strongly correlated? Three estimates of U_c.

All three locate a *kink*: the U at which a curve changes slope. The curve is fitted with a
continuous two-segment ("hinge") model, least squares for every candidate breakpoint U₀,

.. math:: y(U) = a + b\\,U + c\\,\\max(U - U_0, 0)

(or, for an order parameter that vanishes below the transition, the onset model
:math:`y = a + c\\,\\max(U - U_0, 0)`), and U_c is the U₀ of least squared error (grid scan,
then bounded refinement). Several curves (e.g. the first PCA projections) are fitted jointly with
a common U₀ after scaling each to unit variance. The uncertainty is the bootstrap standard
deviation of U_c (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993): resampling the
samples within every U (trajectory estimates) or the (U, y) points (order parameter). Whether a
kink is supported at all is judged by ΔBIC = BIC(line) − BIC(hinge) (> 0 favours the kink;
Schwarz, Ann. Stat. 6, 461 (1978)).

1. HF order parameter: mean-field theory gives :math:`m \\propto (U-U_c)^{1/2}` and a gap
   :math:`\\Delta \\propto U m`, so :math:`m^2` and :math:`\\Delta^2` rise linearly from zero at
   U_c; we fit the onset model to them.
2. PCA trajectory: per-U mean projections on the first principal components.
3. Attention shift: per-U mean shares of attribution in the central / Bragg / satellite regions.

U_c/t uses t = 2.7 eV (the graphene nearest-neighbour hopping); the reference study puts the
crossover near U_c/t ≈ 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from moireu.constants import T_NN
from moireu.errors import InputError

from .similarity import unique_u


@dataclass(frozen=True)
class HingeFit:
    """Result of a hinge fit: breakpoint, coefficients (p, m), squared errors and ΔBIC."""

    u_c: float
    coef: np.ndarray
    sse: float
    sse_line: float
    delta_bic: float
    n: int
    flat_left: bool

    def predict(self, x: np.ndarray) -> np.ndarray:
        return _design(np.asarray(x, float), self.u_c, self.flat_left) @ self.coef


def _design(x: np.ndarray, x0: float, flat_left: bool) -> np.ndarray:
    h = np.maximum(x - x0, 0.0)
    cols = [np.ones_like(x)] + ([] if flat_left else [x]) + [h]
    return np.stack(cols, axis=1)


def _sse(x: np.ndarray, Y: np.ndarray, x0: float, flat_left: bool) -> tuple[float, np.ndarray]:
    A = _design(x, x0, flat_left)
    coef, *_ = np.linalg.lstsq(A, Y, rcond=None)
    r = Y - A @ coef
    return float(np.sum(r * r)), coef


def _as_2d(Y: np.ndarray) -> np.ndarray:
    Y = np.asarray(Y, float)
    return Y[:, None] if Y.ndim == 1 else Y


def fit_hinge(x: np.ndarray, Y: np.ndarray, flat_left: bool = False, min_points: int = 2,
              n_grid: int = 400, standardize: bool = True) -> HingeFit:
    """Least-squares continuous two-segment fit with a common breakpoint for every column of Y.

    Parameters
    ----------
    x : (n,) abscissa (U in eV).
    Y : (n,) or (n, m) curves; with ``standardize`` each column is scaled to unit standard deviation
        before the joint fit (curves in different units), otherwise all columns share one overall
        scale (a trajectory in a Euclidean space, e.g. PCA scores: the natural metric).
    flat_left : fit the onset model (constant below the breakpoint) instead of the general hinge.
    min_points : distinct x values required on each side of the breakpoint.

    Returns
    -------
    HingeFit with coefficients in the *scaled* units of Y and ΔBIC against one straight line.
    """
    x = np.asarray(x, float)
    Y = _as_2d(Y)
    if len(x) != len(Y):
        raise InputError(f"x and Y must have the same length, got {len(x)} and {len(Y)}")
    ok = np.isfinite(x) & np.all(np.isfinite(Y), axis=1)
    x, Y = x[ok], Y[ok]
    xs = np.unique(x)
    if len(xs) < 2 * min_points + 1:
        raise InputError(f"a breakpoint fit needs at least {2 * min_points + 1} distinct U values, got {len(xs)}")
    sd = Y.std(axis=0) if standardize else np.full(Y.shape[1], np.sqrt(np.mean(Y.var(axis=0))))
    Y = Y / np.where(sd > 0, sd, 1.0)
    lo, hi = xs[min_points - 1], xs[-min_points]
    grid = np.linspace(lo, hi, n_grid)
    sses = np.array([_sse(x, Y, g, flat_left)[0] for g in grid])
    j = int(np.argmin(sses))
    a, b = grid[max(j - 1, 0)], grid[min(j + 1, n_grid - 1)]
    if b > a:
        res = minimize_scalar(lambda g: _sse(x, Y, g, flat_left)[0], bounds=(a, b), method="bounded",
                              options={"xatol": 1e-6 * max(1.0, abs(hi - lo))})
        x0 = float(res.x) if res.fun <= sses[j] else float(grid[j])
    else:
        x0 = float(grid[j])
    sse, coef = _sse(x, Y, x0, flat_left)
    A0 = np.stack([np.ones_like(x), x], axis=1)
    c0, *_ = np.linalg.lstsq(A0, Y, rcond=None)
    sse_line = float(np.sum((Y - A0 @ c0) ** 2))
    nm = Y.size
    m = Y.shape[1]
    p_h = coef.shape[0] * m + 1
    tiny = 1e-300
    bic_h = nm * math.log(max(sse, tiny) / nm) + p_h * math.log(nm)
    bic_l = nm * math.log(max(sse_line, tiny) / nm) + 2 * m * math.log(nm)
    return HingeFit(x0, coef, sse, sse_line, float(bic_l - bic_h), len(x), flat_left)


@dataclass(frozen=True)
class CrossoverEstimate:
    """One estimate of the crossover U_c (eV) and U_c/t with its method and uncertainty."""

    method: str
    quantity: str
    U_c: float | None
    U_c_err: float | None
    ci68: tuple[float, float] | None
    U_c_over_t: float | None
    U_c_over_t_err: float | None
    delta_bic: float | None
    n_points: int
    n_boot: int
    t: float = T_NN
    note: str = ""
    curve: dict[str, Any] = field(default_factory=dict)
    bracketed: bool = False  # U_c located between two sampled U (order-parameter onset), no fit involved

    @property
    def supported(self) -> bool:
        """An onset is bracketed, or a kink is favoured over a straight line by ΔBIC > 2 (Kass & Raftery, JASA 1995)."""
        if self.U_c is None:
            return False
        return self.bracketed or (self.delta_bic is not None and self.delta_bic > 2.0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci68"] = list(self.ci68) if self.ci68 is not None else None
        d["supported"] = self.supported
        return d


def _bootstrap(fit_fn, resample_fn, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        try:
            out.append(fit_fn(*resample_fn(rng)).u_c)
        except InputError:  # a resample with too few distinct U: skip it
            continue
    return np.asarray(out, float)


def _estimate(method: str, quantity: str, fit: HingeFit, boots: np.ndarray, n_boot: int, t: float,
              note: str, curve: dict[str, Any], lo: float, hi: float) -> CrossoverEstimate:
    if fit.delta_bic <= 2.0:
        note = (note + " " if note else "") + f"no kink: ΔBIC = {fit.delta_bic:.1f} ≤ 2 does not favour it over a line"
    elif min(fit.u_c - lo, hi - fit.u_c) < 1e-6 * max(1.0, hi - lo):
        note = (note + " " if note else "") + "U_c at the edge of the searchable range"
    err = float(boots.std(ddof=1)) if len(boots) > 1 else None
    ci = (float(np.percentile(boots, 16)), float(np.percentile(boots, 84))) if len(boots) > 1 else None
    return CrossoverEstimate(method, quantity, float(fit.u_c), err, ci, float(fit.u_c / t),
                             err / t if err is not None else None, float(fit.delta_bic), fit.n, len(boots),
                             t, note, curve)


def order_parameter_crossover(U: np.ndarray, values: np.ndarray, quantity: str, t: float = T_NN,
                              n_boot: int = 200, seed: int = 0, power: float = 2.0,
                              threshold: float = 1e-4) -> CrossoverEstimate:
    """U_c from the onset of an HF order parameter (moment or gap) vs U.

    Values are averaged per distinct U, raised to ``power`` (2: mean-field, y ∝ U − U_c above U_c)
    and fitted with the onset hinge; the (U, y) points are bootstrapped. When the order parameter
    stays below ``threshold`` over the whole range, no onset is found and U_c is None.
    """
    vals, inv = unique_u(U)
    y = np.array([np.mean(np.asarray(values, float)[inv == j]) for j in range(len(vals))])
    curve = {"U": vals.tolist(), "y": y.tolist(), "power": power}
    method = f"onset of {quantity}^{power:g} (mean-field), onset hinge fit, bootstrap over U points"
    if np.nanmax(np.abs(y)) < threshold:
        return CrossoverEstimate(method, quantity, None, None, None, None, None, None, len(vals), 0, t,
                                 f"{quantity} < {threshold:g} for all U ≤ {vals.max():g} eV: no onset in range",
                                 curve)
    yp = np.abs(y) ** power
    fit = fit_hinge(vals, yp, flat_left=True)

    def resample(rng):
        idx = rng.integers(0, len(vals), len(vals))
        return vals[idx], yp[idx]

    boots = _bootstrap(lambda a, b: fit_hinge(a, b, flat_left=True), resample, n_boot, seed)
    curve["fit"] = (fit.predict(vals)[:, 0] * (yp.std() if yp.std() > 0 else 1.0)).tolist()
    return _estimate(method, quantity, fit, boots, n_boot, t, "", curve, vals[1], vals[-2])


def order_parameter_onset(U: np.ndarray, values: np.ndarray, quantity: str, t: float = T_NN,
                          threshold: float = 1e-3) -> CrossoverEstimate:
    """U_c bracketed by the sampled U: the last U where ``|order parameter|`` < ``threshold`` and the next one.

    The mean-field transition is where the ordered solution first exists, so on a U grid it lies in
    (U_below, U_above]. The estimate is the bracket's midpoint, its uncertainty the standard deviation
    of a uniform distribution on the bracket, (U_above − U_below)/√12, and ``ci68`` the bracket itself.
    Unlike a hinge fit of m² this does not assume the critical law holds across the whole range
    (in TBG the moment first grows slowly on the AA regions, then fast once the whole cell orders).
    """
    vals, inv = unique_u(U)
    y = np.array([np.mean(np.abs(np.asarray(values, float)[inv == j])) for j in range(len(vals))])
    curve = {"U": vals.tolist(), "y": y.tolist(), "threshold": threshold}
    method = f"onset of {quantity}: bracketed between the last U with |{quantity}| < {threshold:g} and the next"
    above = np.flatnonzero(y >= threshold)
    if len(above) == 0 or above[0] == 0:
        note = ("never reaches the threshold in range" if len(above) == 0 else "already ordered at the smallest U")
        return CrossoverEstimate(method, quantity, None, None, None, None, None, None, len(vals), 0, t, note, curve)
    lo, hi = float(vals[above[0] - 1]), float(vals[above[0]])
    note = "" if np.all(y[above[0]:] >= threshold) else "non-monotonic: the order parameter vanishes again at larger U"
    uc, err = 0.5 * (lo + hi), (hi - lo) / math.sqrt(12.0)
    return CrossoverEstimate(method, quantity, uc, err, (lo, hi), uc / t, err / t, None, len(vals), 0, t, note,
                             curve, bracketed=True)


def trajectory_crossover(U: np.ndarray, Y: np.ndarray, method: str, quantity: str, t: float = T_NN,
                         n_boot: int = 200, seed: int = 0, standardize: bool = False) -> CrossoverEstimate:
    """U_c from a slope change of per-U mean curves Y (n samples × m curves), joint hinge fit.

    ``standardize=False`` (default) treats Y as a trajectory in a Euclidean space (PCA scores,
    attribution shares) so that large-variance directions dominate and noise directions do not.

    Bootstrap: resample the samples within every distinct U (stratified), recompute the per-U
    means, refit.
    """
    Y = _as_2d(Y)
    vals, inv = unique_u(U)
    groups = [np.flatnonzero(inv == j) for j in range(len(vals))]

    def means(idx_per_group):
        return np.stack([Y[g].mean(axis=0) for g in idx_per_group])

    M = means(groups)

    def fitter(a, b):
        return fit_hinge(a, b, standardize=standardize)

    fit = fitter(vals, M)

    def resample(rng):
        return vals, means([g[rng.integers(0, len(g), len(g))] for g in groups])

    boots = _bootstrap(fitter, resample, n_boot, seed)
    curve = {"U": vals.tolist(), "y": M.tolist()}
    return _estimate(method, quantity, fit, boots, n_boot, t, "", curve, vals[1], vals[-2])


def _weighted(group: list[CrossoverEstimate], err_floor: float) -> tuple[float, float]:
    """Inverse-variance mean and its error, inflated by the Birge ratio when the members scatter."""
    w = np.array([1.0 / max(e.U_c_err, err_floor) ** 2 for e in group])
    u = np.array([e.U_c for e in group])
    mean = float(np.sum(w * u) / np.sum(w))
    err = 1.0 / math.sqrt(float(np.sum(w)))
    if len(group) > 1:
        chi2 = float(np.sum(w * (u - mean) ** 2))
        err *= math.sqrt(max(chi2 / (len(group) - 1), 1.0))
    return mean, err


def combine_estimates(estimates: list[CrossoverEstimate], err_floor: float = 0.05,
                      resolution: float = 0.0) -> dict[str, Any]:
    """Group the supported estimates into mutually consistent *features* and combine each group.

    Averaging estimates that disagree would produce a U_c that no method supports, so the supported
    estimates (bracketed onset, or kink with ΔBIC > 2) are first grouped: sorted by U_c, an estimate
    joins the current group when it agrees with *every* member at 2σ (complete linkage), where each
    σ² = max(σ_U_c, err_floor)² + h²/12 includes the resolution of the sampled U grid (spacing
    ``resolution`` = h; a kink located on a grid of spacing h is uncertain by h/√12 whatever its
    bootstrap spread). Each feature is the inverse-variance mean of its members (errors floored at
    ``err_floor``, noise-free curves would otherwise take all weight), its error inflated by the Birge
    ratio √(χ²/(n−1)) when the members scatter more than their errors.

    The headline ``U_c`` is the feature that holds the HF moment onset when that estimate is supported
    (the order parameter of the mean-field state is the physical definition of the crossover; the
    image-based estimates are judged against it), else the feature supported by most estimates
    (ties: the lower U); all features are listed under ``features`` and ``consistent`` says whether
    there is only one. ``headline_rule`` names the rule used.
    """
    ok = sorted((e for e in estimates if e.supported and e.U_c_err is not None), key=lambda e: e.U_c)
    if not ok:
        return {"U_c": None, "U_c_err": None, "U_c_over_t": None, "U_c_over_t_err": None, "n": 0,
                "used": [], "features": [], "consistent": None}
    var_res = resolution ** 2 / 12.0

    def agree(a: CrossoverEstimate, b: CrossoverEstimate) -> bool:
        s2 = max(a.U_c_err, err_floor) ** 2 + max(b.U_c_err, err_floor) ** 2 + 2.0 * var_res
        return abs(a.U_c - b.U_c) <= 2.0 * math.sqrt(s2)

    groups: list[list[CrossoverEstimate]] = []
    for e in ok:
        if groups and all(agree(e, m) for m in groups[-1]):
            groups[-1].append(e)
        else:
            groups.append([e])
    t = ok[0].t
    features = []
    for g in groups:
        mean, err = _weighted(g, err_floor)
        features.append({"U_c": mean, "U_c_err": err, "U_c_over_t": mean / t, "U_c_over_t_err": err / t,
                         "n": len(g), "used": [e.quantity for e in g]})
    onset = [f for f in features if any("onset" in q for q in f["used"])]
    if onset:
        head, rule = onset[0], "the group holding the HF moment onset"
    else:
        head, rule = max(features, key=lambda f: (f["n"], -f["U_c"])), "the group with most estimates"
    u = np.array([e.U_c for e in ok])
    return {**head, "spread": float(u.max() - u.min()), "features": features, "consistent": len(features) == 1,
            "resolution": float(resolution), "headline_rule": rule,
            "method": f"supported estimates grouped by 2σ agreement (σ floored at {err_floor} eV, plus the U-grid "
                      f"resolution h/√12, h = {resolution:.3g} eV); inverse-variance mean per group; headline = "
                      f"{rule}"}
