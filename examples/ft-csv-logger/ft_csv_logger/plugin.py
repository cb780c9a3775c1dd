"""Hook implementations of the CSV logger plugin.

Only imports what ``ft validate`` can afford at module level; transformers is imported lazily.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any

from ft.api import ConfigError, PluginInfo, bounded, hookimpl

FT_PLUGIN = PluginInfo(name="csv_logger", contract="3.0", description="Writes every logged metric to a CSV file (logger=csv)")


@dataclass
class CsvLoggerConfig:
    """Schema of ``logger=csv``: ft rejects unknown keys and wrong types before a run starts."""

    file: str = "metrics.csv"
    every_n_steps: int = bounded(1, ge=1)  # ft validate refuses 0 or less with one line


@hookimpl
def config_schemas() -> dict[str, type]:
    return {"logger/csv": CsvLoggerConfig}


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    """Cross-field rule the schema cannot say: the file is a plain name inside the run folder."""
    if choices.get("logger") == "csv" and ("/" in cfg.logger.file or "\\" in cfg.logger.file):
        raise ConfigError(f"logger.file={cfg.logger.file!r} is not valid: expected a file name inside the run "
                          "folder, without a path (e.g. metrics.csv)")


@hookimpl
def callbacks(ctx: Any) -> list[Any]:
    from transformers import TrainerCallback

    path = ctx.run_dir / ctx.cfg.logger.file
    every = ctx.cfg.logger.every_n_steps

    class CsvCallback(TrainerCallback):
        """Appends one row per log event; the header grows as new metric names appear."""

        def __init__(self) -> None:
            self.rows: list[dict[str, Any]] = []

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if not logs or not state.is_world_process_zero or (state.global_step % every and state.global_step != state.max_steps):
                return
            self.rows.append({"step": state.global_step, **logs})
            names = list(dict.fromkeys(k for row in self.rows for k in row))
            with path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=names)
                writer.writeheader()
                writer.writerows(self.rows)

    return [CsvCallback()]


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """This plugin's keys in an Axolotl config (``ft run --axolotl FILE``, when ft-axolotl is installed;
    ``optionalhook``: without ft-axolotl the hook is simply not called)."""

    def csv_logger_steps(value: Any, config: dict[str, Any]) -> dict[str, Any]:
        """Selects logger=csv, writing every N steps."""
        return {"logger": "csv", "logger.every_n_steps": int(value)}

    return {"csv_logger_steps": csv_logger_steps, "csv_logger_color": "no effect: a CSV file has no colours"}
