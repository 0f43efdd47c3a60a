"""One Optuna worker for `bench/peers.py`: a sweep's grid through `GridSampler`, trials shared
with the other workers through one `JournalStorage` file, each trial train.py's own training
function (`train.prepare`, then `train.train`), with no wandb at all, as Optuna's users run it.

    python -m bench.optuna_trial --sweep sweeps/lr_optimizer.yaml --journal J --study S

Start several with the same journal and study: together they run the grid exactly once.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import MaxTrialsCallback
from optuna.trial import Trial

from localsweep.grid import all_points, load_sweep
from sweepmap import keys

# What each trial keeps besides its value, for the bench's comparison and its phases.
KEPT = (keys.VAL_ACCURACY, keys.VAL_LOSS, keys.TRAIN_TIME, keys.FAILURE)
POINT = "point"  # user attr: the grid point as JSON, sorted keys (the store's own key)


def point_key(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True)


def search_space(points: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """The axes that vary over `points`, each level in first-seen order.

    GridSampler runs the product of its axes: refuse a grid that is not exactly that product
    (a `run_cap`, say), since Optuna would then run other points than sweepmap does.
    """
    levels: dict[str, list[Any]] = {}
    for point in points:
        for name, value in point.items():
            seen = levels.setdefault(name, [])
            if value not in seen:
                seen.append(value)
    space = {name: values for name, values in levels.items() if len(values) > 1}
    fixed = {name: values[0] for name, values in levels.items() if len(values) == 1}
    product = {
        point_key({**fixed, **dict(zip(space, combo, strict=True))})
        for combo in itertools.product(*space.values())
    }
    if product != {point_key(p) for p in points} or len(product) != len(points):
        raise SystemExit(
            f"the grid's {len(points)} points are not the product of their axes "
            f"({len(product)} combinations): GridSampler would run other points"
        )
    return space


class NoWandb:
    """What `train.train` logs to when there is no wandb run: nothing is sent anywhere."""

    disabled = True  # as a disabled wandb run: train.train skips the wandb confusion chart

    def __init__(self) -> None:
        self.summary: dict[str, Any] = {}

    def log(self, metrics: dict[str, Any]) -> None:
        pass

    def define_metric(self, *args: Any, **kwargs: Any) -> None:
        pass


def objective(points: Sequence[dict[str, Any]], metric: str) -> Callable[[Trial], float]:
    import train  # after optuna: train.py defers torch and the data to the first trial

    space = search_space(points)
    by_axes = {tuple(p[name] for name in space): p for p in points}

    def run(trial: Trial) -> float:
        values = tuple(trial.suggest_categorical(name, levels) for name, levels in space.items())
        point = by_axes[values]
        trial.set_user_attr(POINT, point_key(point))
        cfg = train.prepare(point)
        result = train.train(cfg, NoWandb())
        for key in KEPT:
            if key in result.summary:
                trial.set_user_attr(key, result.summary[key])
        # A failed run (a non-finite loss) returns nan: Optuna records the trial as failed.
        return float(result.summary.get(metric, float("nan")))

    return run


def storage(journal: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(journal)))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.optuna_trial", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--sweep", type=Path, required=True)
    p.add_argument("--journal", type=Path, required=True, help="the shared journal file")
    p.add_argument("--study", required=True, help="the study's name, the same in every worker")
    args = p.parse_args(argv)
    _, config = load_sweep(args.sweep)
    points = all_points(config)
    metric = config.get("metric", {}).get("name", keys.VAL_ACCURACY)
    goal = config.get("metric", {}).get("goal", "maximize")
    study = optuna.create_study(
        storage=storage(args.journal),
        # One seed in every worker: GridSampler shuffles its grid with it, and trial k runs
        # grid entry k, so the workers must share the shuffle to cover the grid exactly once.
        sampler=optuna.samplers.GridSampler(search_space(points), seed=0),
        study_name=args.study,
        direction=goal,
        load_if_exists=True,  # whichever worker comes first creates it
    )
    # n_trials in total, not per worker: the callback counts every worker's trials, running
    # ones included, so a fast worker takes more of the grid and none is run twice.
    total = len(points)
    study.optimize(
        objective(points, metric),
        n_trials=total,
        callbacks=[MaxTrialsCallback(total, states=None)],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
