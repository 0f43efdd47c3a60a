"""Metric and summary keys: train.py logs them, localsweep stores them, analysis reads them.

Kept free of heavy imports so that the analysis can use them without loading torch.
"""

from typing import Final

EPOCH: Final = "epoch"
TRAIN_LOSS: Final = "train/loss"
VAL_LOSS: Final = "val/loss"
VAL_ACCURACY: Final = "val/accuracy"
VAL_F1: Final = "val/f1"

# Summary keys beyond the last value of each metric above.
BEST_VAL_ACCURACY: Final = "best/val/accuracy"
BEST_VAL_F1: Final = "best/val/f1"
BEST_VAL_LOSS: Final = "best/val/loss"
EPOCHS_COMPLETED: Final = "epochs_completed"
PARAMETERS: Final = "parameters"
RUNTIME: Final = "runtime"
TRAIN_TIME: Final = "train_time"
FAILURE: Final = "failure"
STOPPED: Final = "stopped"  # why a scan's early_terminate rule stopped the run
STACKED: Final = "stacked"  # k: trained as one of k runs in a stacked model (--stack)

# What the final model got wrong on the validation split (lists, so the analysis' table of
# scalars leaves them out). Positions index `load_dataset(name, split_seed).valid`, which
# split_seed fixes, so the analysis finds the samples again without the model.
VAL_CONFUSION: Final = "val/confusion_matrix"  # [true][predicted] counts
VAL_MISCLASSIFIED: Final = "val/misclassified"  # valid positions, ascending (capped)
VAL_MISCLASSIFIED_PRED: Final = "val/misclassified_pred"  # their predicted labels
# The same matrix as wandb.plot.confusion_matrix, logged once: the web UI's panel.
VAL_CONFUSION_CHART: Final = "val/confusion_chart"

# Logged each epoch, in this order.
EPOCH_METRICS: Final = (TRAIN_LOSS, VAL_LOSS, VAL_ACCURACY, VAL_F1)
# Which way is better, for summaries ("max"/"min") and for colour maps.
GOALS: Final = {TRAIN_LOSS: "min", VAL_LOSS: "min", VAL_ACCURACY: "max", VAL_F1: "max"}
BEST_OF: Final = {VAL_ACCURACY: BEST_VAL_ACCURACY, VAL_F1: BEST_VAL_F1, VAL_LOSS: BEST_VAL_LOSS}


def goal_of(metric: str) -> str:
    """'max' or 'min' for a logged or summary key (best/x follows x)."""
    base = metric.removeprefix("best/")
    return GOALS.get(base, "min" if "loss" in base else "max")
