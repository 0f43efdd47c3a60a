"""The inspect page: where the errors go (matrix and the most-confused pairs), then the
misclassified validation samples themselves, each with its true and predicted label."""

from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from analysis.inspect_runs import Errors

COLUMNS = 8
TOP_PAIRS = 8
TRACES = ("x", "y", "z")  # the watch's three accelerometer axes


def inspect_figure(errors: Errors) -> Figure:
    n = 0 if errors.samples is None else len(errors.samples)
    rows = max(1, math.ceil(n / COLUMNS))
    fig = plt.figure(figsize=(12, 5.2 + 1.55 * rows), layout="constrained")
    grid = fig.add_gridspec(2, 1, height_ratios=[4.4, 1.55 * rows + 0.5])
    top, bottom = fig.add_subfigure(grid[0]), fig.add_subfigure(grid[1])
    left, right = top.subplots(1, 2, width_ratios=[1, 1.15])
    _matrix(left, errors)
    _pairs(right, errors)
    _samples(bottom, errors)
    runs = len(errors.runs)
    over = f"final models, summed over {runs} runs" if runs > 1 else "final model of one run"
    head = f"What the network got wrong: {errors.title}"
    sub = f"{errors.dataset} validation split (split_seed {errors.split_seed}), {over}"
    top.suptitle("\n".join([*textwrap.wrap(head, 110), sub, *errors.notes]), fontsize=10)
    return fig


def _matrix(ax: Axes, errors: Errors) -> None:
    """Each true class's share predicted as each class; the diagonal (right) and empty cells
    are left blank, so the colour is spent on the errors; counts are written where they fit."""
    m = errors.confusion.astype(float)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    # Blank (white) where nothing went wrong: the diagonal and the empty cells.
    off = np.ma.masked_where(np.eye(len(m), dtype=bool) | (m == 0), share)
    image = ax.imshow(off, cmap="Reds", vmin=0, vmax=max(float(off.max() or 0), 1e-9))
    k = len(m)
    names = [errors.class_name(c) for c in range(k)]
    ax.set_xticks(range(k), names, rotation=90 if k > 10 or errors.dataset == "fashion" else 0)
    ax.set_yticks(range(k), names)
    ax.tick_params(labelsize=7 if k > 10 else 8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    right = int(np.trace(m))
    title = f"confusion matrix: {right} of {int(m.sum())} right (diagonal left blank)"
    ax.set_title(title, fontsize=9)
    if k <= 12:
        for t in range(k):
            for p in range(k):
                if m[t, p] and t != p:
                    dark = share[t, p] > 0.6 * float(off.max())
                    ax.text(p, t, f"{int(m[t, p])}", ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")  # fmt: skip
    ax.figure.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")


def _pairs(ax: Axes, errors: Errors) -> None:
    pairs = errors.pairs(TOP_PAIRS)
    if not pairs:
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    rows = errors.confusion.sum(axis=1)
    labels = [f"{errors.class_name(t)} → {errors.class_name(p)}" for t, p, _ in pairs]
    counts = [c for _, _, c in pairs]
    y = np.arange(len(pairs))[::-1]  # the largest on top
    ax.barh(y, counts, color="tab:red")
    ax.set_yticks(y, labels)
    for yi, (t, _, c) in zip(y, pairs, strict=True):
        share = f"{c / max(rows[t], 1):.1%} of the {int(rows[t])} samples of {errors.class_name(t)}"
        ax.text(c, yi, f" {c}  ({share})", va="center", fontsize=8)
    ax.set_xlim(0, max(counts) * 1.7)
    ax.set_xlabel("misclassified samples")
    total = int(errors.confusion.sum() - np.trace(errors.confusion))
    ax.set_title(f"most-confused pairs, true → predicted ({total} mistakes)", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)


def _samples(fig: SubFigure, errors: Errors) -> None:
    n = 0 if errors.samples is None else len(errors.samples)
    if n == 0:
        fig.suptitle("no misclassified sample", fontsize=9)
        return
    rows = math.ceil(n / COLUMNS)
    axes = fig.subplots(rows, COLUMNS, squeeze=False)
    runs = len(errors.runs)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_axis_off()
            continue
        m, x = errors.mistakes[i], errors.samples[i]
        if errors.lengths is None:  # (C, H, W), one channel
            ax.imshow(x[0], cmap="gray_r", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        else:  # (T, 3) standardised, padded past its length
            steps = x[: int(errors.lengths[i])]
            for f in range(steps.shape[1]):
                ax.plot(steps[:, f], lw=0.8, label=TRACES[f] if f < len(TRACES) else str(f))
            ax.set_xticks([])
            ax.tick_params(labelsize=6)
            if i == 0:
                ax.legend(fontsize=6, loc="upper right", handlelength=1)
        label = f"{errors.class_name(m.true)} → {errors.class_name(m.predicted)}"
        if runs > 1:
            label += f"  ({m.wrong_in}/{runs})"
        ax.set_title(f"#{m.position}: {label}", fontsize=8)
    shown = f"{n} of {len(errors.mistakes)} misclassified samples"
    order = "missed by the most runs first" if runs > 1 else "by position"
    kind = "images" if errors.lengths is None else "accelerometer x, y, z (standardised)"
    how = " (n/runs: runs that missed it; → its most common wrong label)" if runs > 1 else ""
    fig.suptitle(f"{shown}, {order}: #valid position: true → predicted{how}; {kind}", fontsize=9)
