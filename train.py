"""One training run, started the way `wandb agent` starts it.

    python train.py --lr=0.01 --optimizer=adam          # or: wandb agent ENTITY/PROJECT/ID

Values come as `--key=value` (the agent's `${args}`) and, under an agent, also as the YAML file
in WANDB_SWEEP_PARAM_PATH, which `wandb.init` locks into `run.config`. Both are validated before
any run exists: a bad value exits with code 2 and one line, leaving nothing "running".
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import wandb
import yaml
from dotenv import load_dotenv

from data import Dataset, DataUnavailable, load_dataset
from models import build_model, count_parameters
from sweepmap import keys
from sweepmap.config import Config, ConfigError, field_docs, parse_args
from sweepmap.loop import FitResult, fit
from sweepmap.record import Record, record_from_env
from sweepmap.runtime import pick_device, seed_everything, set_threads

EpochFn = Callable[[dict[str, Any]], None]


@functools.lru_cache(maxsize=4)
def load_data(name: str, split_seed: int, as_sequence: bool, device: str) -> Dataset:
    """Loaded once per process: an in-process agent trains many grid points on one copy."""
    return load_dataset(name, split_seed, as_sequence=as_sequence).to(torch.device(device))


def train(cfg: Config, run: Any, on_epoch: EpochFn | None = None) -> FitResult:
    """Train one model on `cfg`, logging each epoch to `run` (a wandb Run) and `on_epoch`."""
    start = time.perf_counter()
    device = pick_device(cfg)
    threads = set_threads(cfg)
    data = load_data(cfg.dataset, cfg.split_seed, cfg.as_sequence, str(device))
    generator = seed_everything(cfg.seed)
    model = build_model(cfg, data.info).to(device)
    n_params = count_parameters(model)
    print(f"{cfg.model} on {cfg.dataset}: {n_params:,} parameters, {device}, {threads} thread(s)")
    _define_metrics(run)

    def log(metrics: dict[str, Any]) -> None:
        run.log(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
        print(_epoch_line(metrics, cfg.epochs), flush=True)

    result = fit(model, data, cfg, device, generator, log)
    result.summary[keys.PARAMETERS] = n_params
    result.summary[keys.RUNTIME] = time.perf_counter() - start
    run.summary.update(result.summary)
    if cfg.save_model and result.best_state is not None:
        _save_artifact(run, result.best_state)
    return result


def _define_metrics(run: Any) -> None:
    run.define_metric(keys.EPOCH)
    for key in keys.EPOCH_METRICS:
        run.define_metric(key, step_metric=keys.EPOCH)
    for key, best in keys.BEST_OF.items():
        # The running best is logged each epoch, so its summary is its extreme.
        run.define_metric(best, step_metric=keys.EPOCH, summary=keys.goal_of(key))


def _epoch_line(m: Mapping[str, Any], epochs: int) -> str:
    return (
        f"epoch {m[keys.EPOCH]}/{epochs}  train/loss {m[keys.TRAIN_LOSS]:.4f}  "
        f"val/loss {m[keys.VAL_LOSS]:.4f}  val/accuracy {m[keys.VAL_ACCURACY]:.4f}  "
        f"val/f1 {m[keys.VAL_F1]:.4f}"
    )


def _save_artifact(run: Any, state: dict[str, torch.Tensor]) -> None:
    path = Path(run.dir) / "best-model.pt"
    torch.save(state, path)
    artifact = wandb.Artifact(f"model-{run.id}", type="model")
    artifact.add_file(str(path))
    run.log_artifact(artifact)


def sweep_params() -> dict[str, Any]:
    """The agent's param file (WANDB_SWEEP_PARAM_PATH), flattened to {key: value}."""
    path = os.environ.get("WANDB_SWEEP_PARAM_PATH")
    if not path:
        return {}
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return {
        k: v["value"] if isinstance(v, dict) and "value" in v else v
        for k, v in raw.items()
        if k != "wandb_version"
    }


def run_once(
    cfg: Config, on_epoch: EpochFn | None = None, **init: Any
) -> tuple[str, dict[str, Any]]:
    """wandb.init, train, finish: returns the run's final state and summary.

    Shared by `main()` (one process per run), `python -m agents --inprocess`
    (`wandb.agent(function=...)`, which tears wandb down between runs) and localsweep's
    in-process agent, which keeps wandb's service alive and so passes the run's id, group and
    param file in `init`: wandb reads WANDB_* variables only when it is set up.
    """
    run = wandb.init(config=cfg.to_dict(), job_type="train", **init)
    try:
        # Under an agent, the locked sweep values win over our defaults: read them back.
        cfg = Config.from_mapping(dict(run.config))
        result = train(cfg, run, on_epoch)
    except BaseException:
        run.finish(exit_code=1)
        raise
    if result.failure:
        print(f"run failed: {result.failure}", file=sys.stderr, flush=True)
        run.finish(exit_code=1)
        return "failed", result.summary
    run.finish()
    return "finished", result.summary


def prepare(values: Mapping[str, Any]) -> Config:
    """Validate and load the data, before wandb.init: bad input or missing data creates no run.

    Raises ConfigError (exit 2) or DataUnavailable (exit 1).
    """
    cfg = Config.from_mapping(values)
    device = pick_device(cfg)
    load_data(cfg.dataset, cfg.split_seed, cfg.as_sequence, str(device))
    return cfg


def _interrupt(signum: int, frame: Any) -> None:
    # SIGTERM (a second Ctrl-C to `wandb agent`, a scheduler's preemption) ends the run like
    # Ctrl-C does: finished with a non-zero exit code, not left "running".
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        for name, doc in field_docs().items():
            print(f"  --{name:<14} {doc} (default {getattr(Config(), name)!r})")
        return 0
    load_dotenv(Path(__file__).with_name(".env"), override=False)
    try:
        cfg = prepare({**sweep_params(), **parse_args(argv)})
    except ConfigError as err:
        print(f"train.py: config error: {err}", file=sys.stderr)
        return 2
    except DataUnavailable as err:
        print(f"train.py: {err}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    record = record_from_env()
    try:
        state, summary = run_once(cfg, record.epoch if record else None)
    except KeyboardInterrupt:
        _end(record, "crashed", {keys.FAILURE: "interrupted"})
        return 130
    except Exception as err:
        _end(record, "failed", {keys.FAILURE: f"{type(err).__name__}: {err}"})
        raise
    _end(record, state, summary)
    return 0 if state == "finished" else 1


def _end(record: Record | None, state: str, summary: dict[str, Any]) -> None:
    if record is not None:
        record.end(state, summary)


if __name__ == "__main__":
    sys.exit(main())
