"""Axolotl's experiment-tracker keys as ft's ``logger=`` options (ft-axolotl's ``axolotl_keys`` hook)."""

from __future__ import annotations

from typing import Any


def _loggers(config: dict[str, Any]) -> str | list[str]:
    """Every tracker the file turns on, as one ``logger`` choice (several: a list)."""
    chosen = [name for name, on in (
        ("wandb", config.get("wandb_project") and config.get("use_wandb") is not False),
        ("mlflow", config.get("mlflow_tracking_uri") or config.get("mlflow_experiment_name")),
        ("tensorboard", config.get("use_tensorboard")),
        ("trackio", config.get("trackio_project_name")),
    ) if on]
    return chosen[0] if len(chosen) == 1 else chosen


def _tracker(ft_key: str | None, name: str) -> Any:
    def rule(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
        loggers = _loggers(config)
        if name not in (loggers if isinstance(loggers, list) else [loggers]):
            return f"no effect: {name} is off"
        out: dict[str, Any] = {"logger": loggers}
        if ft_key:
            out[ft_key] = value
        if name == "wandb" and not config.get("wandb_mode"):
            out["logger.wandb.mode"] = "online"  # Axolotl's default; ft's own is offline
        return out
    rule.__doc__ = (f"logger={name}" + (f", {ft_key}" if ft_key else "")
                    + ("; W&B online unless wandb_mode says otherwise (Axolotl's default; ft's is offline)" if name == "wandb" else ""))
    return rule


AXOLOTL_KEYS: dict[str, Any] = {
    "wandb_project": _tracker("logger.wandb.project", "wandb"),
    "wandb_entity": _tracker("logger.wandb.entity", "wandb"),
    "wandb_mode": _tracker("logger.wandb.mode", "wandb"),
    "wandb_name": "no effect: ft names the W&B run after the run folder",
    "wandb_run_id": "no effect: ft names the W&B run after the run folder",
    "wandb_watch": "no effect: ft does not log gradients to W&B",
    "wandb_log_model": "no effect: the model is in the run folder",
    "use_wandb": "no effect: wandb_project turns W&B on",
    "mlflow_tracking_uri": _tracker("logger.mlflow.tracking_uri", "mlflow"),
    "mlflow_experiment_name": _tracker("logger.mlflow.experiment", "mlflow"),
    "use_tensorboard": _tracker(None, "tensorboard"),
    "trackio_project_name": _tracker(None, "trackio"),
    "trackio_run_name": "no effect: ft names the run after the run folder",
    "trackio_space_id": "only false: publishing to a Space",
}
