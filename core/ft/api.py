"""``ft.api``: everything a plugin author imports from ft, and nothing else.

First-party plugins import only this module from ft (a test enforces it), besides the public module of a
distribution they depend on. Names resolve lazily, so ``import ft.api`` stays cheap and torch-free (``ft
validate`` imports it); type checkers and editors see every name with its type through the ``TYPE_CHECKING``
imports below.

Writing a plugin: docs/plugins.md. The contract: :mod:`ft.hookspecs`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what editors and type checkers see: the real objects, typed (resolved lazily below)
    from ft import __version__ as FT_VERSION
    from ft import hookimpl
    from ft.checkpoints import STAGING as CHECKPOINT_STAGING
    from ft.checkpoints import incomplete_checkpoints, last_complete_checkpoint, publish_checkpoint, resolve_resume_from
    from ft.cli import Command
    from ft.cli import main as cli_main
    from ft.config import PRIMARY_CONFIG, available_options, override_value, redact, searchpath_override
    from ft.context import IGNORE_INDEX, Batching, DatasetBundle, LossCall, LossResult, RunContext
    from ft.distributed import Ranks, any_rank, barrier, broadcast_from_main, gathered_weights, ranks_from_env
    from ft.errors import ConfigError, DataError, FtUserError, PluginError, did_you_mean
    from ft.hookspecs import CAPABILITIES, CONTRACT_VERSION, METHOD_TRAITS, hookspec
    from ft.launch import launch, planned_world_size, run_job, under_launcher, wants_processes
    from ft.lifecycle import build_trainer, claim_run_dir
    from ft.lifecycle import run as run_prepared
    from ft.plugins import PluginInfo, discover, kernel_conf_dir, merge_contributions, selected_options
    from ft.records import plot_curves, read_metrics
    from ft.runner import Session, prepare_run, run_lifecycle, validate_all
    from ft.schema import ConfigSection, DistConfig, bounded, named, path_exists, path_field, to_plain, validate_node
    from ft.training import base_training_args


#: public name -> "module:attribute"
_EXPORTS: dict[str, str] = {
    # declaring a plugin and its hooks
    "hookimpl": "ft:hookimpl",
    "FT_VERSION": "ft:__version__",
    "hookspec": "ft.hookspecs:hookspec",
    "PluginInfo": "ft.plugins:PluginInfo",
    "CAPABILITIES": "ft.hookspecs:CAPABILITIES",
    "CONTRACT_VERSION": "ft.hookspecs:CONTRACT_VERSION",
    "METHOD_TRAITS": "ft.hookspecs:METHOD_TRAITS",
    "Command": "ft.cli:Command",
    "discover": "ft.plugins:discover",
    "available_options": "ft.config:available_options",
    # errors (one line, exit code 2)
    "FtUserError": "ft.errors:FtUserError",
    "ConfigError": "ft.errors:ConfigError",
    "PluginError": "ft.errors:PluginError",
    "DataError": "ft.errors:DataError",
    "did_you_mean": "ft.errors:did_you_mean",
    # config schemas
    "path_field": "ft.schema:path_field",
    "bounded": "ft.schema:bounded",
    "named": "ft.schema:named",
    "to_plain": "ft.schema:to_plain",
    "validate_node": "ft.schema:validate_node",
    "ConfigSection": "ft.schema:ConfigSection",
    "DistConfig": "ft.schema:DistConfig",
    # the run and what hooks exchange
    "RunContext": "ft.context:RunContext",
    "DatasetBundle": "ft.context:DatasetBundle",
    "Batching": "ft.context:Batching",
    "LossCall": "ft.context:LossCall",
    "LossResult": "ft.context:LossResult",
    "merge_contributions": "ft.plugins:merge_contributions",
    "selected_options": "ft.plugins:selected_options",
    # runs, checkpoints and resuming
    "run_prepared": "ft.lifecycle:run",
    "redact": "ft.config:redact",
    "override_value": "ft.config:override_value",
    "resolve_resume_from": "ft.checkpoints:resolve_resume_from",
    "last_complete_checkpoint": "ft.checkpoints:last_complete_checkpoint",
    "publish_checkpoint": "ft.checkpoints:publish_checkpoint",
    "CHECKPOINT_STAGING": "ft.checkpoints:STAGING",
    "incomplete_checkpoints": "ft.checkpoints:incomplete_checkpoints",
    "launch": "ft.launch:launch",
    "run_job": "ft.launch:run_job",
    "claim_run_dir": "ft.lifecycle:claim_run_dir",
    "under_launcher": "ft.launch:under_launcher",
    "wants_processes": "ft.launch:wants_processes",
    "ranks_from_env": "ft.distributed:ranks_from_env",
    "any_rank": "ft.distributed:any_rank",
    # processes
    "Ranks": "ft.distributed:Ranks",
    "broadcast_from_main": "ft.distributed:broadcast_from_main",
    "barrier": "ft.distributed:barrier",
    "planned_world_size": "ft.launch:planned_world_size",
    "gathered_weights": "ft.distributed:gathered_weights",
    # trainers
    "base_training_args": "ft.training:base_training_args",
    # models
    "path_exists": "ft.schema:path_exists",
    # data
    "IGNORE_INDEX": "ft.context:IGNORE_INDEX",
    # run outputs
    "read_metrics": "ft.records:read_metrics",
    "plot_curves": "ft.records:plot_curves",
    # running a lifecycle from code (tests, notebooks)
    "prepare_run": "ft.runner:prepare_run",
    "build_trainer": "ft.lifecycle:build_trainer",
    "cli_main": "ft.cli:main",
    "Session": "ft.runner:Session",
    "validate_all": "ft.runner:validate_all",
    # Hydra, for plugins that hand ft's config to Hydra's own machinery (sweepers, launchers)
    "PRIMARY_CONFIG": "ft.config:PRIMARY_CONFIG",
    "kernel_conf_dir": "ft.plugins:kernel_conf_dir",
    "searchpath_override": "ft.config:searchpath_override",
    "run_lifecycle": "ft.runner:run_lifecycle",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"ft.api has no '{name}'; public names: {', '.join(__all__)}")
    module, attribute = target.split(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
