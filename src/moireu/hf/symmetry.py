r"""C₃ reduction of a k-mesh: fewer eigensolves when the Hamiltonian keeps the threefold rotation.

The commensurate TBG cell (:func:`moireu.lattice.geometry.tbg_geometry`) has an atom of each layer at
the origin (an AA site), and the rotation :math:`g` by 120° about the z axis through it maps each
layer's honeycomb onto itself (sublattices included). It permutes the atoms up to lattice vectors,
:math:`g\,\mathbf r_i = \mathbf r_{\pi(i)} + \mathbf T_i`, maps a pair :math:`(i, j, \mathbf R)` to
:math:`(\pi(i), \pi(j), \mathbf R G + \mathbf T_j - \mathbf T_i)` (integer lattice coordinates, ``G``
the rotation in the lattice basis) and a k-point to :math:`G^{-1}\mathbf k`.

If the mean-field Hamiltonian is invariant (tight-binding hoppings, Coulomb kernels *and* the
current potential — the state keeps the symmetry), :math:`H_\sigma(g\mathbf k)` is unitarily equivalent
to :math:`H_\sigma(\mathbf k)` and the contribution of :math:`g\mathbf k` to every real-space quantity
(occupations, pair density, LDOS) is that of :math:`\mathbf k` carried by the permutation. A sum over
the full (time-reversal-reduced) mesh is then the group average of a sum over one representative
per orbit with the orbit's weight:

.. math::  X = \tfrac13\sum_{m=0}^{2} g^m\Big[\sum_{\text{orbits } O} w_O\, X_{\mathbf k_O}\Big].

Nothing is assumed: :class:`C3Reduction` is built only when the geometry, the TB hoppings and the
Coulomb kernels map onto themselves (to 1e-9 relative) and the mesh is closed under the rotation;
each use checks the potential (:meth:`C3Reduction.is_symmetric`, to ``SYM_TOL``) and falls back to
the full mesh when it is not symmetric. Eigenvalues at the images equal those of the representative,
so μ and the band energy from the reduced mesh with orbit weights are those of the full mesh.
"""

from __future__ import annotations

import math

import numpy as np

from moireu.lattice.geometry import rotation

__all__ = ["C3Reduction", "LDOS_SYM_TOL", "SYM_TOL"]

#: largest ``|potential − its rotated image|`` (eV) for which the state counts as C₃ symmetric. A
#: solution converged on the full mesh keeps an asymmetric remainder of the size of its convergence
#: error (paper preset, U = 2.5 eV, residual 1.5e-7: 7e-9 in the occupations, 1.9e-7 eV in the
#: potential), far below kT and the SCF tolerance; a state that breaks the rotation (an order
#: parameter) exceeds this by orders of magnitude and is solved on the full mesh. The reduced mesh
#: symmetrises its output exactly.
SYM_TOL = 1e-6
#: the same for the LDOS of a given solution (:func:`moireu.stm.ldos_at`): only a state symmetric to
#: rounding — one solved with the reduction — is evaluated on the reduced mesh, so the LDOS of any
#: solution equals its full-mesh LDOS to 1e-10 (a full-mesh solution with a 1e-7 eV asymmetric
#: remainder would otherwise come out symmetrised, 1e-7 from its full-mesh LDOS)
LDOS_SYM_TOL = 1e-9


class C3Reduction:
    """The C₃ map of a model, its action on sites and exchange pairs, and the reduced k-mesh.

    Build with :meth:`build` (returns ``None`` when the model or the mesh does not have the symmetry).

    Attributes
    ----------
    perm : (N,) π: site i → π(i)
    pair_perm : (npair,) half-list pair p → its image (None without exchange pairs)
    G : (2, 2) int, the rotation in the lattice basis (n → n G)
    reps, rep_weights, orbit_of : the orbits of the mesh given to :meth:`build`
        (:meth:`mesh_orbits`)
    """

    def __init__(self, perm: np.ndarray, pair_perm: np.ndarray | None, G: np.ndarray,
                 orbits: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        self.perm, self.pair_perm, self.G = perm, pair_perm, G
        self.reps, self.rep_weights, self.orbit_of = orbits
        inv = np.empty_like(perm)
        inv[perm] = np.arange(len(perm))
        self._inv = inv
        if pair_perm is not None:
            pinv = np.empty_like(pair_perm)
            pinv[pair_perm] = np.arange(len(pair_perm))
            self._pinv = pinv

    # ------------------------------------------------------------------ construction
    @staticmethod
    def site_map(model, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(π, T (N, 2) int, G (2, 2) int) of the 120° rotation about the origin, or None."""
        cell = np.asarray(model.cell, float)
        pos = np.asarray(model.positions, float)
        inv = np.linalg.inv(cell)
        g = rotation(math.radians(120.0))
        Gf = cell @ g.T @ inv  # n @ cell rotated = (n @ Gf) @ cell
        G = np.round(Gf)
        if np.abs(Gf - G).max() > tol:
            return None
        frac = pos[:, :2] @ inv
        rfrac = (pos[:, :2] @ g.T) @ inv
        key = {}
        for i, (f, z) in enumerate(zip(np.round(frac - np.floor(frac + 1e-9), 6) % 1.0, np.round(pos[:, 2], 6))):
            key[(round(float(f[0]), 5) % 1.0, round(float(f[1]), 5) % 1.0, float(z))] = i
        perm = np.empty(len(pos), np.int64)
        T = np.empty((len(pos), 2), np.int64)
        for i in range(len(pos)):
            f = rfrac[i] - np.floor(rfrac[i] + 1e-9)
            f = np.round(f, 6) % 1.0
            j = key.get((round(float(f[0]), 5) % 1.0, round(float(f[1]), 5) % 1.0, float(np.round(pos[i, 2], 6))))
            if j is None:
                return None
            t = rfrac[i] - frac[j]
            if np.abs(t - np.round(t)).max() > tol:
                return None
            perm[i], T[i] = j, np.round(t).astype(np.int64)
        if len(np.unique(perm)) != len(perm):
            return None
        return perm, T, G.astype(np.int64)

    @staticmethod
    def pair_map(pl, perm: np.ndarray, T: np.ndarray, G: np.ndarray) -> np.ndarray | None:
        """Index of the image of every pair of the list ``pl`` (a PairList closed under C₃), or None."""
        n = len(perm)
        R2 = pl.R @ G + T[pl.j] - T[pl.i]
        i2, j2 = perm[pl.i], perm[pl.j]
        rmax = int(max(np.abs(pl.R).max(initial=0), np.abs(R2).max(initial=0))) + 1
        w = 2 * rmax + 1

        def keyof(i, j, R):
            return ((i * n + j) * w + (R[:, 0] + rmax)) * w + (R[:, 1] + rmax)

        key = keyof(pl.i, pl.j, pl.R)
        order = np.argsort(key)
        k2 = keyof(i2, j2, R2)
        pos = np.clip(np.searchsorted(key[order], k2), 0, len(key) - 1)
        img = order[pos]
        if len(key) and not np.array_equal(key[img], k2):
            return None
        return img

    @staticmethod
    def mesh_orbits(k_frac: np.ndarray, weights: np.ndarray, G: np.ndarray,
                    tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Orbits of a mesh under C₃ and time reversal: (representatives (indices into the mesh),
        orbit weights, orbit index of every mesh point), or None when the mesh is not closed under
        them with equal weights.

        The mesh may be time-reversal reduced (a point standing for ±k carries both weights): it is
        first expanded to the full zone (weights split between k and −k), then orbits of the group
        generated by k → G⁻¹k and k → −k are formed; every member of an orbit must carry the same
        weight, and the orbit's weight is their sum. Time reversal acts trivially on the real-space
        quantities of this code (real density matrix), so a sum over the mesh is
        ⅓ Σ_m g^m [Σ_orbits w_O X_{k_O}].
        """
        k = np.atleast_2d(np.asarray(k_frac, float))
        w = np.asarray(weights, float)
        # the full-zone points (mod 1) with weights, each remembering the mesh point it came from
        pts: list[np.ndarray] = []
        pw: list[float] = []
        src: list[int] = []
        where: dict[tuple[int, int], int] = {}
        scale = 1e7  # keys: k mod 1 on a 1e-7 grid (mesh points are far coarser)

        def key(q):
            f = np.round((q - np.floor(q)) * scale).astype(np.int64) % int(scale)
            return int(f[0]), int(f[1])

        def index(q):
            return where.get(key(q))

        for a in range(len(k)):
            trim = np.abs(2 * k[a] - np.round(2 * k[a])).max() < tol
            for q, wq in ([(k[a], w[a])] if trim else [(k[a], 0.5 * w[a]), (-k[a], 0.5 * w[a])]):
                b = index(q)
                if b is None:
                    where[key(q)] = len(pts)
                    pts.append(q - np.floor(q + tol))
                    pw.append(float(wq))
                    src.append(a)
                else:
                    pw[b] += float(wq)
        Ginv = np.linalg.inv(G.astype(float))
        orbit = -np.ones(len(pts), np.int64)
        reps, wts = [], []
        for b in range(len(pts)):
            if orbit[b] >= 0:
                continue
            members, todo = {b}, [b]
            while todo:
                q = pts[todo.pop()]
                for img in (Ginv @ q, -q):
                    c = index(img)
                    if c is None:
                        return None  # the mesh is not closed under the rotation
                    if c not in members:
                        members.add(c)
                        todo.append(c)
            mw = np.array([pw[c] for c in members])
            if np.abs(mw - mw[0]).max() > 1e-12 * max(1.0, abs(mw[0])):
                return None  # the weights are not symmetric
            for c in members:
                orbit[c] = len(reps)
            reps.append(src[b])
            wts.append(float(mw.sum()))
        orbit_of = np.empty(len(k), np.int64)
        for a in range(len(k)):
            orbit_of[a] = orbit[index(k[a])]
        return np.asarray(reps, np.int64), np.asarray(wts), orbit_of

    @classmethod
    def build(cls, model, k_frac, weights, exchange_pairs=None, hartree_W: np.ndarray | None = None,
              tol: float = 1e-9) -> "C3Reduction | None":
        """The reduction of ``model`` on the mesh, or None when anything lacks the symmetry."""
        sm = cls.site_map(model)
        if sm is None:
            return None
        perm, T, G = sm
        # TB hoppings: t(image pair) = t(pair)
        hop = model.hoppings
        himg = cls.pair_map(hop, perm, T, G)
        t = np.asarray(model.t, float)
        scale = max(1.0, float(np.abs(t).max(initial=0.0)))
        if himg is None or np.abs(t[himg] - t).max(initial=0.0) > tol * scale:
            return None
        onsite = getattr(model, "onsite", None)
        if onsite is not None and np.abs(np.asarray(onsite)[perm] - np.asarray(onsite)).max(initial=0.0) > tol:
            return None
        if hartree_W is not None:
            W = np.asarray(hartree_W, float)
            if np.abs(W[np.ix_(perm, perm)] - W).max() > tol * max(1.0, float(np.abs(W).max())):
                return None
        pair_perm = None
        if exchange_pairs is not None and len(exchange_pairs):
            full = exchange_pairs.full
            fimg = cls.pair_map(full, perm, T, G)
            if fimg is None:
                return None
            h = exchange_pairs.half_of_full
            # half-list image: the half index of the image of the full-list pair that the half pair is
            half_pos = np.empty(len(exchange_pairs), np.int64)
            half_pos[h] = np.arange(len(h))  # one full pair per half pair (either orientation)
            pair_perm = h[fimg[half_pos]]
            if len(np.unique(pair_perm)) != len(pair_perm):
                return None
            V = exchange_pairs.V
            if np.abs(V[pair_perm] - V).max() > tol * max(1.0, float(np.abs(V).max())):
                return None
        orb = cls.mesh_orbits(k_frac, weights, G)
        if orb is None or len(orb[0]) == len(np.atleast_2d(k_frac)):
            return None  # not closed under C₃, or nothing to gain
        return cls(perm, pair_perm, G, orb)

    def orbits(self, k_frac, weights):
        """:meth:`mesh_orbits` of another mesh (e.g. the LDOS mesh), or None."""
        return self.mesh_orbits(np.atleast_2d(np.asarray(k_frac, float)), np.asarray(weights, float), self.G)

    # ------------------------------------------------------------------ action
    def rotate_sites(self, x: np.ndarray, m: int = 1) -> np.ndarray:
        """g^m acting on a site array (..., N) (last axis): (g x)[π(i)] = x[i]."""
        out = np.asarray(x)
        for _ in range(m % 3):
            out = out[..., self._inv]
        return out

    def rotate_pairs(self, x: np.ndarray, m: int = 1) -> np.ndarray:
        """g^m acting on a half-list pair array (..., npair)."""
        out = np.asarray(x)
        for _ in range(m % 3):
            out = out[..., self._pinv]
        return out

    def average_sites(self, x: np.ndarray) -> np.ndarray:
        return (x + self.rotate_sites(x, 1) + self.rotate_sites(x, 2)) / 3.0

    def average_pairs(self, x: np.ndarray) -> np.ndarray:
        return (x + self.rotate_pairs(x, 1) + self.rotate_pairs(x, 2)) / 3.0

    def asymmetry(self, diag: np.ndarray, pair: np.ndarray | None) -> float:
        """max ``|X − g X|`` over the site part ``diag`` (..., N) and the pair part (..., npair)."""
        a = float(np.abs(diag - self.rotate_sites(diag)).max(initial=0.0))
        if pair is not None and self.pair_perm is not None and pair.size:
            a = max(a, float(np.abs(pair - self.rotate_pairs(pair)).max(initial=0.0)))
        return a

    def is_symmetric(self, diag: np.ndarray, pair: np.ndarray | None, tol: float = SYM_TOL) -> bool:
        return self.asymmetry(diag, pair) <= tol
