"""Builtin plugin: lose no work to a crash, a pre-emption or a keystroke.

* Graceful stop: SIGTERM, SIGINT and SIGUSR1 (what schedulers send before pre-emption) only set a flag;
  at the next step boundary every rank saves a complete checkpoint together and training ends; the
  run folder gets its loss curve and a summary marked interrupted, and ``ft run`` exits 0 with the
  ``ft resume`` line. A second Ctrl-C stops at once.
* Periodic checkpoints: every ``trainer.save_every_minutes`` of training (and ``trainer.save_steps``),
  crash-safe (:mod:`ft.checkpoints`), keeping ``trainer.save_total_limit``.
* ``run.resume_from``: a checkpoint folder, a run folder (its last complete checkpoint), or ``last``
  (the newest run under ``run.root`` with a complete checkpoint); checked at ``ft validate``.
* ``ft resume RUN_DIR``: continues an interrupted run in its own folder from its last complete
  checkpoint, appending to its metrics and log, after checking that the config would follow the same
  trajectory.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

from ft.api import ConfigError, FtUserError, PluginInfo, RunContext, hookimpl

FT_PLUGIN = PluginInfo(
    name="reliability", contract="3.0",
    description="Graceful stop on SIGTERM/SIGINT/SIGUSR1, periodic crash-safe checkpoints, ft resume",
    always_active=True,
)

log = logging.getLogger("ft")
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")
#: Keys that may differ between a run and its resume without changing the trajectory.
RESUMABLE_CHANGES = ("run.", "trainer.logging_steps", "trainer.save_steps", "trainer.save_total_limit",
                     "trainer.save_every_minutes", "trainer.eval_steps", "trainer.dataloader_num_workers",
                     "trainer.report_to", "logger.")


# -- run.resume_from -------------------------------------------------------------------------------


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    if cfg.run.resume_from:
        from ft.api import resolve_resume_from

        resolve_resume_from(cfg.run.resume_from, cfg.run.root)


# -- graceful stop and periodic checkpoints --------------------------------------------------------


class StopState:
    """What the signal handlers and the callback share within one run."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self.last_save = time.monotonic()


def stop_callback(ctx: RunContext, state: StopState) -> Any:
    from transformers import TrainerCallback

    from ft.api import any_rank

    every = ctx.cfg.trainer.save_every_minutes
    ranks = ctx.ranks

    class StopAndSave(TrainerCallback):
        """Saves at step boundaries: on a stop request (then ends training), and every N minutes."""

        def on_step_end(self, args, state_, control, **kwargs):  # noqa: ANN001
            if any_rank(state.requested is not None, ranks):
                control.should_save = True
                control.should_training_stop = True
                ctx.interrupted = state.requested or "a signal on another rank"
            elif every and any_rank(time.monotonic() - state.last_save >= every * 60, ranks):
                control.should_save = True
            return control

        def on_save(self, args, state_, control, **kwargs):  # noqa: ANN001
            state.last_save = time.monotonic()

    return StopAndSave()


@hookimpl
def callbacks(ctx: RunContext) -> list[Any]:
    state = ctx.state(StopState)
    return [stop_callback(ctx, state)]


@hookimpl(wrapper=True)
def run_training(ctx: RunContext) -> Any:
    """Turn stop signals into a flag while training runs; a second Ctrl-C stops at once."""
    state: StopState = ctx.state(StopState)

    def request_stop(signum: int, frame: Any) -> None:  # noqa: ARG001
        name = signal.Signals(signum).name
        if state.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        state.requested = name
        if ctx.is_main:
            log.info("%s: stopping at the end of this step with a checkpoint (Ctrl-C again stops at once)", name)

    previous = {}
    for name in STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None:
            try:
                previous[number] = signal.signal(number, request_stop)
            except ValueError:  # not the main thread (a notebook's worker): leave the defaults
                pass
    try:
        return (yield)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


# -- ft resume -------------------------------------------------------------------------------------


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): node}


def trajectory_differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every config value that differs and may change the trajectory."""
    old, new = _flatten(recorded), _flatten(now)
    changes = []
    for key in sorted(set(old) | set(new)):
        if key.startswith(RESUMABLE_CHANGES) or old.get(key) == "***":
            continue
        if old.get(key) != new.get(key):
            changes.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return changes


def truncate_metrics(path: Path, step: int) -> int:
    """Drop the metric records logged after ``step`` (they are logged again on resume); return how many."""
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def _add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the run folder to continue (runs/<date>_<time>)")
    parser.add_argument("overrides", nargs="*", help="overrides to apply on top of the run's own (secrets, logging)")
    parser.add_argument("--force", action="store_true", help="resume even if the config now differs in a way that "
                        "changes the trajectory")


def _run_resume(args: argparse.Namespace) -> int:
    import shutil

    import yaml

    from ft.api import (
        incomplete_checkpoints,
        last_complete_checkpoint,
        launch,
        prepare_run,
        ranks_from_env,
        redact,
        run_prepared,
        under_launcher,
        wants_processes,
    )

    run_dir = Path(args.run_dir)
    record_path, config_path = run_dir / "run.json", run_dir / "config.yaml"
    if not record_path.is_file() or not config_path.is_file():
        raise FtUserError(f"{run_dir}: not an ft run folder (no run.json and config.yaml)")
    summary = run_dir / "summary.json"
    if summary.is_file() and not json.loads(summary.read_text()).get("interrupted"):
        raise FtUserError(f"{run_dir}: the run finished; start a new one from it with ft run run.resume_from={run_dir}")
    record = json.loads(record_path.read_text())
    recorded = list(record.get("overrides", []))
    secret = next((o for o in recorded if o.endswith("=***")), None)
    extra_keys = {o.split("=", 1)[0] for o in args.overrides}
    if secret and secret.split("=", 1)[0] not in extra_keys:
        raise FtUserError(f"the run was started with a secret ({secret}); pass it again: ft resume {run_dir} "
                          f"{secret.split('=', 1)[0]}=...")
    overrides = [o for o in recorded if o.split("=", 1)[0] not in extra_keys] + list(args.overrides)
    prepared = prepare_run(overrides, list(getattr(args, "ft_p_flags", [])))
    changes = trajectory_differences(yaml.safe_load(config_path.read_text()) or {}, redact(prepared.composed.container))
    if changes and not args.force:
        raise ConfigError(f"ft resume: the config now differs from the run's in {changes[0]}"
                          f"{f' (and {len(changes) - 1} more)' if len(changes) > 1 else ''}, which changes the "
                          f"trajectory; undo it, or pass --force")
    checkpoints = run_dir / "checkpoints"
    checkpoint = last_complete_checkpoint(checkpoints)
    if checkpoint is None:
        raise FtUserError(f"{run_dir}: no complete checkpoint to resume from; start the run again with ft run")
    if wants_processes(prepared.cfg) and not under_launcher():  # the run had several processes: so does its resume
        arguments = ["resume", str(run_dir), *args.overrides, *(["--force"] if args.force else [])]
        launch(prepared.cfg, arguments, list(getattr(args, "ft_p_flags", [])))
        return 0
    main = ranks_from_env().is_main  # one rank tidies the folder; every rank reads the same checkpoint
    if main:
        for partial in incomplete_checkpoints(checkpoints):
            log.info("resume: removing incomplete checkpoint %s", partial)
            shutil.rmtree(partial, ignore_errors=True)
    step = json.loads((checkpoint / "trainer_state.json").read_text()).get("global_step", 0)
    dropped = truncate_metrics(run_dir / "metrics.jsonl", step) if main else 0
    if main:
        (run_dir / "summary.json").unlink(missing_ok=True)
        print(f"[ft] resuming {run_dir} from {checkpoint.name} (step {step}"
              f"{f'; {dropped} metric records after it dropped' if dropped else ''})")
    prepared.composed.cfg.run.resume_from = str(checkpoint)
    metrics = run_prepared(prepared, run_dir, resume=True)
    return 0 if metrics is not None else 1


@hookimpl
def cli_commands() -> list[Any]:
    from ft.api import Command

    return [Command(name="resume", help="continue an interrupted run in its own folder from its last complete checkpoint",
                    run=_run_resume, add_arguments=_add_resume_arguments)]
