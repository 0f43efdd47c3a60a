"""Sweep analysis: runs -> tidy table (table) -> axes and metrics (design) -> counts and guards
(counts, guards) -> cells, ANOVA (stats) -> colour range, ties, scale check, finding (reading)
-> heatmaps (figures), the one-page report (report) -> one folder per call (output).

Knows nothing about training (no torch): it reads run configs and summaries, from the local
store or from wandb, and the metric keys in `sweepmap.keys`.
"""

import matplotlib

# Headless by design: reports are drawn on servers and in CI, never in a window.
matplotlib.use("Agg")
