"""ft-trackers: experiment trackers as ``logger=`` options, through transformers' own integrations.

``logger=tensorboard``, ``logger=wandb``, ``logger=mlflow``, ``logger=trackio``, or several at once
(``logger=[tensorboard,mlflow]``). Each is transformers' callback for that tracker (the metrics the
trainer logs, the training arguments and model config as parameters), extended with what ft knows:

* the run's resolved ``config.yaml`` (secrets redacted) as parameters/config under ``ft``, and
  ``config.yaml`` and ``run.json`` as files/artifacts of the tracker's run;
* the final metrics (``summary.json``: eval loss, held-out scores...) under ``final/``, logged when
  the run ends; the tracker's run is closed then (marked failed when the run did not finish), not at
  the end of the training loop, so the final evaluation lands in the same tracker run.

Only rank 0 logs. Trackers are configured through the environment variables their transformers
integration reads (``WANDB_*``, ``MLFLOW_*``); ft sets them for the run and restores them afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ft.api import ConfigError, PluginInfo, RunContext, hookimpl, selected_options

FT_PLUGIN = PluginInfo(
    name="trackers", contract="3.0",
    description="Experiment trackers: logger=tensorboard|wandb|mlflow|trackio (several: logger=[a,b])",
)

log = logging.getLogger("ft")
#: logger option -> the module its library provides (checked at ft validate, never imported there)
LIBRARIES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}


@dataclass
class TensorboardOptions:
    dir: str = "tensorboard"


@dataclass
class WandbOptions:
    project: str = "ft"
    mode: Literal["offline", "online", "disabled"] = "offline"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)
    dir: str | None = None


@dataclass
class MlflowOptions:
    tracking_uri: str | None = None
    experiment: str = "ft"
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class TrackioOptions:
    project: str = "ft"
    dir: str | None = None
    space_id: str | None = None


# One schema per option, each owning one key of the ``logger`` section, so that several options merge.
@dataclass
class TensorboardLogger:
    tensorboard: TensorboardOptions = field(default_factory=TensorboardOptions)


@dataclass
class WandbLogger:
    wandb: WandbOptions = field(default_factory=WandbOptions)


@dataclass
class MlflowLogger:
    mlflow: MlflowOptions = field(default_factory=MlflowOptions)


@dataclass
class TrackioLogger:
    trackio: TrackioOptions = field(default_factory=TrackioOptions)


@hookimpl
def config_schemas() -> dict[str, type]:
    return {"logger/tensorboard": TensorboardLogger, "logger/wandb": WandbLogger, "logger/mlflow": MlflowLogger,
            "logger/trackio": TrackioLogger}


def trackers(choices: dict[str, str | None]) -> list[str]:
    """The trackers this run selected, in the order given."""
    return [name for name in selected_options(choices, "logger") if name in LIBRARIES]


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    """Each selected tracker's library must be installed, and not selected twice (also in trainer.report_to)."""
    report_to = set(cfg.trainer.report_to or [])
    for name in trackers(choices):
        if importlib.util.find_spec(LIBRARIES[name]) is None:
            raise ConfigError(f"logger={name} needs the {name} package, which is not installed: "
                              f"pip install 'ft-trackers[{name}]'")
        if name == "mlflow" and (cfg.logger.mlflow.tracking_uri or "sqlite:").startswith("sqlite:"):
            missing = [m for m in ("sqlalchemy", "alembic") if importlib.util.find_spec(m) is None]
            if missing:
                raise ConfigError(f"logger=mlflow stores runs in SQLite, which needs {' and '.join(missing)}: "
                                  f"pip install 'ft-trackers[mlflow]' (or set logger.mlflow.tracking_uri to a server)")
        if name in report_to:
            raise ConfigError(f"logger={name} and trainer.report_to=[{name}] both log to {name}; keep logger={name} "
                              f"(it also records ft's config) and drop it from trainer.report_to")
    if "trackio" in trackers(choices) and cfg.logger.trackio.dir and "trackio" in sys.modules:
        from trackio.utils import TRACKIO_DIR

        if Path(cfg.logger.trackio.dir).expanduser().resolve() != Path(TRACKIO_DIR).resolve():
            raise ConfigError(f"logger.trackio.dir={cfg.logger.trackio.dir!r}: trackio was already imported in this "
                              f"process with its database in {TRACKIO_DIR}; run in a new process (or leave dir unset)")


@hookimpl
def training_args(ctx: RunContext) -> dict[str, Any]:
    """Name the tracker runs after the run folder; trackio reads its project from the arguments."""
    if not trackers(ctx.choices):
        return {}
    args: dict[str, Any] = {"run_name": ctx.run_dir.name}
    if "trackio" in trackers(ctx.choices):
        args.update(project=ctx.cfg.logger.trackio.project, trackio_space_id=ctx.cfg.logger.trackio.space_id)
    return args


def mlflow_default_uri(root: str) -> str:
    """The store every run under ``run.root`` shares: ``sqlite:///<run.root>/mlflow.db`` (MLflow 3 refuses new
    file stores): ``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`` shows them side by side."""
    return "sqlite:///" + str(Path(root).expanduser().resolve() / "mlflow.db")


def _set_env(ctx: RunContext, values: dict[str, str | None]) -> None:
    """Set environment variables for this run; the previous values come back when it ends."""
    previous = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

    def restore() -> None:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    ctx.add_cleanup(restore)


def _within(run_dir: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else run_dir / candidate


@hookimpl
def callbacks(ctx: RunContext) -> list[Any]:
    selected = trackers(ctx.choices)
    if not selected or not ctx.is_main:
        return []
    from ft_trackers.callbacks import make_callback

    options = ctx.cfg.logger
    env: dict[str, str | None] = {}
    if "wandb" in selected:
        wandb = options.wandb
        env.update(WANDB_PROJECT=wandb.project, WANDB_MODE=wandb.mode, WANDB_ENTITY=wandb.entity,
                   WANDB_TAGS=",".join(wandb.tags) or None,
                   WANDB_DIR=str(_within(ctx.run_dir, wandb.dir) if wandb.dir else ctx.run_dir))
    if "mlflow" in selected:
        uri = options.mlflow.tracking_uri or mlflow_default_uri(ctx.cfg.run.root)
        env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME=options.mlflow.experiment,
                   MLFLOW_TAGS=json.dumps(dict(options.mlflow.tags)) if options.mlflow.tags else None)
    if "trackio" in selected and options.trackio.dir:
        env["TRACKIO_DIR"] = str(Path(options.trackio.dir).expanduser().resolve())
    _set_env(ctx, env)
    made = [make_callback(name, ctx) for name in selected]
    for callback in made:
        ctx.add_cleanup(callback.ft_finish)
    where = {"tensorboard": lambda: str(_within(ctx.run_dir, options.tensorboard.dir)),
             "wandb": lambda: f"{env['WANDB_DIR']}/wandb ({options.wandb.mode})",
             "mlflow": lambda: env["MLFLOW_TRACKING_URI"], "trackio": lambda: f"project {options.trackio.project}"}
    log.info("trackers: %s", ", ".join(f"{name} -> {where[name]()}" for name in selected))
    return made


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """Axolotl's keys for this plugin (ft-axolotl): ``ft_trackers/axolotl.py``."""
    from ft_trackers.axolotl import AXOLOTL_KEYS

    return AXOLOTL_KEYS
