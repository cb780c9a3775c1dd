"""transformers' tracker callbacks, extended with ft's config, run record and final metrics.

Imported only when a run selects a tracker (it imports transformers and the tracker's library).
Every class keeps its tracker run open past the end of the training loop (``on_train_end``) so the
final evaluation and ``summary.json`` land in it; ``ft_finish`` (a run cleanup) closes it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from transformers.integrations import MLflowCallback, TensorBoardCallback, TrackioCallback, WandbCallback

from ft.api import RunContext

RECORD_FILES = ("config.yaml", "run.json")


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optim.lr": 3e-4, ...}`` from a nested config; lists as their JSON text."""
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    if isinstance(node, list):
        return {prefix.rstrip("."): json.dumps(node)}
    return {prefix.rstrip("."): node}


class FtRecord:
    """What ft adds to each tracker: the run's config and record, and its final metrics."""

    def __init__(self, run_dir: Path) -> None:
        import yaml

        self.run_dir = run_dir
        self.config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        self.files = [run_dir / name for name in RECORD_FILES if (run_dir / name).is_file()]

    @property
    def summary(self) -> dict[str, float] | None:
        """The run's final scalar metrics, or ``None`` when it did not finish (no ``summary.json``)."""
        path = self.run_dir / "summary.json"
        if not path.is_file():
            return None
        values = json.loads(path.read_text())
        return {k: float(v) for k, v in values.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class FtTensorBoard(TensorBoardCallback):
    """Event files in ``logger.tensorboard.dir``; ft's config and record as text, final metrics as scalars."""

    def __init__(self, record: FtRecord, log_dir: Path) -> None:
        super().__init__()
        self.logging_dir = str(log_dir)
        self.record = record
        self.last_step = 0

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        super().on_train_begin(args, state, control, **kwargs)
        if self.tb_writer is not None and state.is_world_process_zero:
            for path in self.record.files:
                self.tb_writer.add_text(f"ft/{path.name}", f"```\n{path.read_text()}\n```")

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        self.last_step = state.global_step
        super().on_log(args, state, control, logs=logs, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.tb_writer is not None:
            self.tb_writer.flush()

    def ft_finish(self) -> None:
        if self.tb_writer is None:
            return
        for key, value in (self.record.summary or {}).items():
            self.tb_writer.add_scalar(f"final/{key}", value, self.last_step)
        self.tb_writer.close()
        self.tb_writer = None


class FtWandb(WandbCallback):
    """A W&B run (offline by default); ft's config under ``ft``, the record files saved, final metrics in the summary."""

    def __init__(self, record: FtRecord) -> None:
        super().__init__()
        self.record = record

    def setup(self, args, state, model, **kwargs):  # noqa: ANN001
        super().setup(args, state, model, **kwargs)
        run = self._wandb.run
        if run is not None and state.is_world_process_zero and "ft" not in run.config:
            run.config.update({"ft": self.record.config}, allow_val_change=True)
            for path in self.record.files:
                # under <run name>/ in the W&B run's files: wandb keeps a config.yaml of its own
                run.save(str(path), base_path=str(self.record.run_dir.parent), policy="now")

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        super().on_train_end(args, state, control, **kwargs)  # logs the model when WANDB_LOG_MODEL asks; keeps the run

    def ft_finish(self) -> None:
        run = self._wandb.run if self._wandb is not None else None
        if run is None:
            return
        summary = self.record.summary
        for key, value in (summary or {}).items():
            run.summary[f"final/{key}"] = value
        run.finish(exit_code=0 if summary is not None else 1)


class FtMlflow(MLflowCallback):
    """An MLflow run; ft's config as ``ft.*`` params, the record files as artifacts, final metrics as ``final_*``."""

    def __init__(self, record: FtRecord, artifact_root: Path | None) -> None:
        super().__init__()
        self.record = record
        self.artifact_root = artifact_root
        self.ft_logged = False

    def setup(self, args, state, model):  # noqa: ANN001
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
        if self.artifact_root is not None and name and state.is_world_process_zero:
            # A new experiment in a SQLite store would keep its artifacts in ./mlruns of whatever folder the
            # run started in; keep them next to the database instead.
            client = self._ml_flow.MlflowClient()
            if client.get_experiment_by_name(name) is None:
                client.create_experiment(name, artifact_location=self.artifact_root.resolve().as_uri())
        super().setup(args, state, model)
        if self.ft_logged or not state.is_world_process_zero or self._ml_flow.active_run() is None:
            return
        self.ft_logged = True
        params = {f"ft.{k}": str(v)[: self._MAX_PARAM_VAL_LENGTH] for k, v in flatten(self.record.config).items()}
        items = list(params.items())
        for start in range(0, len(items), self._MAX_PARAMS_TAGS_PER_BATCH):
            self._ml_flow.log_params(dict(items[start : start + self._MAX_PARAMS_TAGS_PER_BATCH]))
        for path in self.record.files:
            self._ml_flow.log_artifact(str(path))

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        """Keep the run open: the final evaluation and summary follow the training loop."""

    def ft_finish(self) -> None:
        if not self._initialized or self._ml_flow.active_run() is None:
            return
        summary = self.record.summary
        if summary:
            self._ml_flow.log_metrics({f"final_{k}": v for k, v in summary.items()})
            self._ml_flow.log_artifact(str(self.record.run_dir / "summary.json"))
        if self._auto_end_run:
            self._ml_flow.end_run(status="FINISHED" if summary is not None else "FAILED")


class FtTrackio(TrackioCallback):
    """A trackio run in ``logger.trackio.project``; ft's config under ``ft``, record files as an artifact."""

    def __init__(self, record: FtRecord) -> None:
        super().__init__()
        self.record = record

    def setup(self, args, state, model, **kwargs):  # noqa: ANN001
        super().setup(args, state, model, **kwargs)
        if state.is_world_process_zero and "ft" not in self._trackio.config:
            self._trackio.config.update({"ft": self.record.config}, allow_val_change=True)
            for path in self.record.files:
                self._trackio.log_artifact(str(path), name=f"{self.record.run_dir.name}-{path.stem}", type="ft-record")

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        """Keep the run open: the final evaluation and summary follow the training loop."""

    def ft_finish(self) -> None:
        if not self._initialized:
            return
        summary = self.record.summary
        if summary:
            self._trackio.log({f"final/{k}": v for k, v in summary.items()})
        self._trackio.finish()
        self._initialized = False


def make_callback(name: str, ctx: RunContext) -> Any:
    """The callback of tracker ``name`` for this run."""
    record = FtRecord(ctx.run_dir)
    if name == "tensorboard":
        directory = Path(ctx.cfg.logger.tensorboard.dir).expanduser()
        return FtTensorBoard(record, directory if directory.is_absolute() else ctx.run_dir / directory)
    if name == "mlflow":
        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        database = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
        return FtMlflow(record, database.parent / "mlartifacts" if database is not None else None)
    return {"wandb": FtWandb, "trackio": FtTrackio}[name](record)
