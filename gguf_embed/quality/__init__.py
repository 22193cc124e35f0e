"""Measured quality: agreement with a reference and human benchmarks (``evaluate``), and the
built-in multilingual text set (``texts``)."""
