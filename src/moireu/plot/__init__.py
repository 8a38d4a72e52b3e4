"""Every figure of moireu: the one home of matplotlib for new code.

Modules
-------
raster
    The reference pipeline's image rasterisation (turbo PNG → 8-bit grayscale → 256², arXiv:2602.18890).
analysis
    Figures of the analysis stage (similarity, PCA, attribution, crossover).

matplotlib is imported inside the functions, with the ``Agg`` backend (no display needed).
"""
