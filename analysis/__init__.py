"""Sweep analysis: runs -> tidy table -> guards -> pivot -> heatmap, ANOVA, one-page report.

Knows nothing about training (no torch): it reads run configs and summaries, from the local
store or from wandb, and the metric keys in `sweepmap.keys`.
"""

import matplotlib

# Headless by design: reports are drawn on servers and in CI, never in a window.
matplotlib.use("Agg")
