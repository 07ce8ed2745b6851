"""Sweeps: a base experiment crossed with axes over dotted config paths, run and reported as one study.

`spec.py` owns the sweep file (axes, the operating-point criterion) and its expansion into cells;
`runner.py` runs the cells with skip-if-done and failure isolation. Reports live in `reports/`.
"""
