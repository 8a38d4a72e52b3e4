"""Physical constants and default model parameters, in the package's one unit system.

Lengths are in Å, energies in eV, wave vectors in Å⁻¹, temperatures as k_B T in eV.
Every constant carries its unit in a comment.
"""

import math

# --- graphene lattice --------------------------------------------------------------------------
A_LAT = 2.46  # Å, graphene lattice constant (the value used by the Slater–Koster literature)
A_CC = A_LAT / math.sqrt(3.0)  # Å, carbon–carbon bond length a/√3 = 1.420281 Å (derived, never set apart)
D_INTERLAYER = 3.35  # Å, equilibrium interlayer distance of AB graphite
POISSON_GRAPHENE = 0.16  # dimensionless, Poisson ratio of graphene (uniaxial heterostrain tensor diag(1, −ν))

# --- Slater–Koster pz parameters (Moon & Koshino, PRB 87, 205404 (2013);
#     Trambly de Laissardière, Mayou & Magaud, Nano Lett. 10, 804 (2010)) ------------------------
VPP_PI0 = -2.7  # eV, in-plane π hopping at d = A_CC
VPP_SIGMA0 = 0.48  # eV, interlayer σ hopping at d = D_INTERLAYER
DELTA0 = 0.184 * A_LAT  # Å, decay length of the hoppings (0.453 Å)
T_NN = 2.7  # eV, |nearest-neighbour hopping| (the t of U/t)

# --- Coulomb ------------------------------------------------------------------------------------
COULOMB_K = 14.399645  # eV·Å, e²/(4π ε₀)
EPS_DEFAULT = 10.0  # dimensionless relative permittivity (hBN + screening by remote bands)
GATE_DISTANCE = 100.0  # Å, gate-to-gate distance ξ of the double-gate geometry

# --- derived ------------------------------------------------------------------------------------
SQRT3 = math.sqrt(3.0)  # dimensionless
