"""One training run, started the way `wandb agent` starts it.

    python train.py --lr=0.01 --optimizer=adam          # or: wandb agent ENTITY/PROJECT/ID

Values come as `--key=value` (the agent's `${args}`, or any other of its macros) and, under an
agent, also as the YAML file in WANDB_SWEEP_PARAM_PATH, which `wandb.init` locks into
`run.config`. Both are validated before any run exists: a bad value exits with code 2 and one
line, leaving nothing "running". Exit codes: sweepmap/outcome.py.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweepmap import keys
from sweepmap.args import cli_values
from sweepmap.config import Config, ConfigError, field_docs
from sweepmap.envfile import load_env_file
from sweepmap.faults import crash_point
from sweepmap.outcome import (
    ENVIRONMENT_ERRORS,
    EXIT_ENVIRONMENT,
    EXIT_FAILED,
    EXIT_USAGE,
    Outcome,
    StopEarly,
    interrupt_on,
    one_line,
)
from sweepmap.record import (
    CLAIM_ENV,
    STOP_ENV,
    VERDICT_ENV,
    Record,
    await_verdict,
    record_from_env,
)
from sweepmap.wandb_exit import close_wandb, wandb_error

if TYPE_CHECKING:  # torch, wandb and the data load on demand: --help and bad input are instant
    from data import Dataset
    from sweepmap.loop import FitResult

EpochFn = Callable[[dict[str, Any]], None]


@functools.lru_cache(maxsize=4)
def load_data(name: str, split_seed: int, as_sequence: bool, device: str) -> Dataset:
    """Loaded once per process: an in-process agent trains many grid points on one copy."""
    import torch

    from data import load_dataset

    return load_dataset(name, split_seed, as_sequence=as_sequence).to(torch.device(device))


def train(cfg: Config, run: Any, on_epoch: EpochFn | None = None) -> FitResult:
    """Train one model on `cfg`, logging each epoch to `run` (a wandb Run) and `on_epoch`."""
    from models import build_model, count_parameters
    from sweepmap.loop import fit
    from sweepmap.runtime import pick_device, seed_everything, set_threads

    start = time.perf_counter()
    device = pick_device(cfg)
    threads = set_threads(cfg)
    data = load_data(cfg.dataset, cfg.split_seed, cfg.as_sequence, str(device))
    generator = seed_everything(cfg.seed)
    model = build_model(cfg, data.info).to(device)
    n_params = count_parameters(model)
    print(f"{cfg.model} on {cfg.dataset}: {n_params:,} parameters, {device}, {threads} thread(s)")
    result = fit(model, data, cfg, device, generator, epoch_logger(cfg, run, on_epoch))
    conclude(cfg, run, result, n_params, start)
    return result


def epoch_logger(cfg: Config, run: Any, on_epoch: EpochFn | None) -> EpochFn:
    """What each epoch's metrics go to: the wandb run, the terminal, then `on_epoch`."""
    _define_metrics(run)

    def log(metrics: dict[str, Any]) -> None:
        run.log(metrics)
        print(_epoch_line(metrics, cfg.epochs), flush=True)
        if on_epoch is not None:
            on_epoch(metrics)  # last: it may stop the run (StopEarly) after this epoch

    return log


def conclude(cfg: Config, run: Any, result: FitResult, n_params: int, start: float) -> None:
    """A trained run's summary, confusion chart and (save_model) artifact, into its wandb run."""
    confusion = result.summary.get(keys.VAL_CONFUSION)
    # The web UI's panel of the summary's matrix; wandb's table checks each of its rows' types
    # (about 15 ms a run for 10 classes), which a disabled run need not pay.
    if confusion is not None and not getattr(run, "disabled", False):
        import wandb

        # wandb.plot counts (true, predicted) pairs itself: the matrix's cells, expanded.
        cells = [(t, p, n) for t, row in enumerate(confusion) for p, n in enumerate(row)]
        true = [t for t, _, n in cells for _ in range(n)]
        pred = [p for _, p, n in cells for _ in range(n)]
        names = [str(c) for c in range(len(confusion))]
        chart = wandb.plot.confusion_matrix(
            y_true=true, preds=pred, class_names=names, title="validation, final model"
        )
        run.log({keys.VAL_CONFUSION_CHART: chart})
    result.summary[keys.PARAMETERS] = n_params
    result.summary[keys.RUNTIME] = time.perf_counter() - start
    run.summary.update(result.summary)
    if cfg.save_model and result.best_state is not None:
        _save_artifact(run, result.best_state)


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


def _save_artifact(run: Any, state: dict[str, Any]) -> None:
    import torch
    import wandb

    path = Path(run.dir) / "best-model.pt"
    torch.save(state, path)
    artifact = wandb.Artifact(f"model-{run.id}", type="model")
    artifact.add_file(str(path))
    run.log_artifact(artifact)


def prepare(values: Mapping[str, Any]) -> Config:
    """Validate, then load the data: bad input or missing data creates no run.

    Raises ConfigError (bad input) or DataUnavailable (the environment).
    """
    cfg = Config.from_mapping(values)
    from sweepmap.runtime import pick_device

    load_data(cfg.dataset, cfg.split_seed, cfg.as_sequence, str(pick_device(cfg)))
    return cfg


def run_point(
    values: Mapping[str, Any],
    *,
    init: Mapping[str, Any] | None = None,
    on_epoch: EpochFn | None = None,
    record: Record | None = None,
    claim: Path | None = None,
    stop: Path | None = None,
    verdict: Path | None = None,
) -> Outcome:
    """One grid point: validate -> load data -> wandb.init -> train -> finish.

    The one mapping from what went wrong to the run's state and exit code (sweepmap/outcome.py),
    for `main()`, the in-process wandb agent and the local agent alike. `init` is passed to
    `wandb.init` (an in-process agent's run identity); `claim`, a file that exists while the
    run's claim holds, is checked before the run is finished; `stop`, a file its agent writes
    when the sweep stops the run early, after each epoch (once `verdict`, when given, says its
    agent has judged that epoch). A KeyboardInterrupt (Ctrl-C, or
    SIGTERM through `interrupt_on`) ends the record and the wandb run, then propagates: the
    caller stops (`Outcome.interrupted` gives its outcome).
    """
    from data import DataUnavailable

    try:
        cfg = prepare(values)
    except ConfigError as err:
        return end_run(None, record, Outcome.failure("invalid", f"config error: {err}", EXIT_USAGE))
    except DataUnavailable as err:
        return end_run(None, record, Outcome.failure("error", str(err), EXIT_ENVIRONMENT))
    import wandb

    try:
        run = wandb.init(config=cfg.to_dict(), job_type="train", **(init or {}))
    except Exception as err:  # no server, no credentials, a full disk: nothing trained
        failed = Outcome.failure("error", f"wandb.init: {wandb_error(err)}", EXIT_ENVIRONMENT)
        return end_run(None, record, failed)
    epoch = epoch_fn(record, on_epoch, stop, verdict)
    try:
        locked = Config.from_mapping(dict(run.config))
        if locked != cfg:  # the value that trains must be the value that was validated
            failed = Outcome.failure("error", differences(cfg, locked), EXIT_ENVIRONMENT)
            return end_run(run, record, failed)
        result = train(cfg, run, epoch)
    except KeyboardInterrupt as err:
        end_run(run, record, Outcome.interrupted(err))
        raise
    except Exception as err:
        if type(err) is Exception and not err.args:
            # `wandb.agent` stops a run's thread on Ctrl-C by raising a bare Exception in it
            # (its agent module's _terminate_thread): an interruption, not a failure.
            end_run(run, record, Outcome.failure("crashed", "stopped by its agent", 130))
            raise
        traceback.print_exc()
        return end_run(run, record, outcome_of_exception(err))
    return end_run(run, record, outcome_of(result, run, claim))


def outcome_of(result: FitResult, run: Any, claim: Path | None) -> Outcome:
    """A trained run's outcome: finished, failed, stopped, or superseded if its claim went."""
    if result.failure:
        print(f"run failed: {result.failure}", file=sys.stderr, flush=True)
    state = "failed" if result.failure else "stopped" if result.stopped else "finished"
    outcome = Outcome(state, result.summary, EXIT_FAILED if result.failure else 0)
    if result.stopped:
        print(f"run stopped early: {result.stopped}", flush=True)
    if claim is not None and not claim.exists():
        # Stalled past the heartbeat timeout, its point went to another agent: not a result.
        run.summary["superseded"] = True
        why = "superseded: its claim was reaped while it ran; another agent has the point"
        outcome = Outcome("superseded", {**result.summary, keys.FAILURE: why}, EXIT_FAILED)
    return outcome


def epoch_fn(
    record: Record | None, on_epoch: EpochFn | None, stop: Path | None, verdict: Path | None = None
) -> EpochFn | None:
    """Each epoch into the run's record first, then `on_epoch`, then the stop file's check."""
    epoch = on_epoch if record is None else _both(record.epoch, on_epoch)
    if stop is not None:
        epoch = _both(epoch or _nothing, functools.partial(_stop_if_asked, stop, verdict))
    return epoch


def end_run(run: Any, record: Record | None, outcome: Outcome) -> Outcome:
    """The outcome goes into the record before the wandb run is finished, and again after:
    a run killed in between is adopted on resume if wandb's files show it finished, and runs
    again if they do not (localsweep's reaper), so a point never has two finished runs."""
    if record is not None and run is not None:
        record.ending(outcome.state, outcome.summary)
    crash_point("before-wandb-finish")
    if run is not None:
        run.finish(exit_code=outcome.exit_code if outcome.exit_code < 128 else EXIT_FAILED)
    crash_point("after-wandb-finish")
    if record is not None:
        record.end(outcome.state, outcome.summary)
    return outcome


def outcome_of_exception(err: Exception) -> Outcome:
    """An exception in training: the environment's (an import, the disk) or the run's own."""
    if isinstance(err, ENVIRONMENT_ERRORS):
        return Outcome.failure("error", one_line(err), EXIT_ENVIRONMENT)
    return Outcome.failure("failed", one_line(err), EXIT_FAILED)


def _nothing(metrics: dict[str, Any]) -> None:
    pass


def _stop_if_asked(stop: Path, verdict: Path | None, metrics: dict[str, Any]) -> None:
    """The agent's file that says why the sweep stops this run (process mode), read once the
    agent has judged this epoch when it keeps a verdict file."""
    if verdict is not None:
        await_verdict(verdict, int(metrics[keys.EPOCH]))
    if stop.exists():
        raise StopEarly(stop.read_text(encoding="utf-8").strip() or "stopped by its agent")


def _both(first: EpochFn, second: EpochFn | None) -> EpochFn:
    def call(metrics: dict[str, Any]) -> None:
        first(metrics)
        if second is not None:
            second(metrics)

    return call


def differences(validated: Config, locked: Config) -> str:
    a, b = validated.to_dict(), locked.to_dict()
    diff = ", ".join(f"{k}: {a[k]!r} validated, {b[k]!r} in run.config" for k in a if a[k] != b[k])
    return f"run.config differs from the validated values ({diff})"


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        for name, doc in field_docs().items():
            print(f"  --{name:<14} {doc} (default {getattr(Config(), name)!r})")
        return 0
    load_env_file()
    try:
        values = cli_values(argv, os.environ.get("WANDB_SWEEP_PARAM_PATH"))
        Config.from_mapping(values)  # before anything heavy is imported
    except ConfigError as err:
        print(f"train.py: config error: {err}", file=sys.stderr)
        return EXIT_USAGE
    interrupt_on()
    try:
        claim, stop, verdict = (os.environ.get(k) for k in (CLAIM_ENV, STOP_ENV, VERDICT_ENV))
        outcome = run_point(values, record=record_from_env(),
                            claim=Path(claim) if claim else None,
                            stop=Path(stop) if stop else None,
                            verdict=Path(verdict) if verdict else None)  # fmt: skip
    except KeyboardInterrupt as err:
        return Outcome.interrupted(err).exit_code
    finally:
        # `wandb agent` waits for this process: a teardown that hangs would stall its sweep.
        close_wandb()
    if outcome.state in ("invalid", "error"):
        print(f"train.py: {outcome.reason}", file=sys.stderr)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
