"""moireu: the atomistic Hubbard U of twisted bilayer graphene from STM maps.

Stages (data flows one way): ``lattice → hf → stm → data → ml → analysis``.
Units: Å and eV throughout (see :mod:`moireu.constants`).
"""

__version__ = "0.1.0"
