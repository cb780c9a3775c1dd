"""From a command line to runs: :func:`prepare_run` once per job, then the lifecycle.

``prepare_run`` is the one path from overrides to a ready run (compose once, validate, activate the
selected plugins, build their plugin manager); ``ft run``, ``ft preprocess``, the testing helpers
and every job of a sweep use it. ``ft run -m`` is the ``run_sweep`` hook's (a builtin plugin's).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ft.config import Composed, compose, expand_sweeps, normalise_overrides
from ft.context import RunContext
from ft.errors import PluginError
from ft.hookspecs import CAPABILITIES, REQUIRED_HOOKS
from ft.launch import check_launch_config, run_job
from ft.plugins import (
    LoadedPlugin,
    active_plugins,
    discover,
    make_plugin_manager,
    merge_contributions,
    selected_traits,
    skipped_loss_wrappers,
)


def registry_names(schemas: dict[str, type]) -> set[str]:
    """The registries (collected hooks) that ``named(registry=...)`` fields of these schemas refer to,
    nested schemas (``list[DatasetConfig]``) included."""
    import dataclasses
    import typing

    names: set[str] = set()
    pending, seen = list(schemas.values()), set()
    while pending:
        schema = pending.pop()
        if schema in seen:
            continue
        seen.add(schema)
        hints = typing.get_type_hints(schema)
        for fld in dataclasses.fields(schema):
            if fld.metadata.get("registry"):
                names.add(fld.metadata["registry"])
            stack = [hints[fld.name]]
            while stack:
                tp = stack.pop()
                if isinstance(tp, type) and dataclasses.is_dataclass(tp):
                    pending.append(tp)
                stack.extend(typing.get_args(tp))
    return names


class Session:
    """The installed plugins, their schemas and registries, discovered once per ``ft`` invocation."""

    def __init__(self, p_flags: list[str] | None = None) -> None:
        from ft.schema import KERNEL_SCHEMAS

        found = discover(p_flags)
        found.raise_if_broken()
        self.plugins: list[LoadedPlugin] = found.usable
        self.disabled: list[LoadedPlugin] = found.disabled
        self.broken: list[LoadedPlugin] = found.broken
        self.pm_all = make_plugin_manager(self.plugins)
        self.schemas: dict[str, type] = merge_contributions(
            [KERNEL_SCHEMAS, *self.pm_all.hook.config_schemas()], "config_schemas", same=lambda a, b: a is b)
        self.registries: dict[str, set[str]] = {name: set(self.registry(name)) for name in registry_names(self.schemas)}

    def registry(self, name: str) -> dict[str, Any]:
        """The merged result of the collected hook ``name`` over every installed plugin (``dataset_formats``);
        empty when no installed plugin defines that hook."""
        hook = getattr(self.pm_all.hook, name, None)
        return merge_contributions(hook(), name, same=lambda a, b: a is b) if hook is not None else {}

    def plugin_defaults(self, choices: dict[str, str | None], config: dict[str, Any]) -> dict[str, Any]:
        """The ``config_defaults`` of the plugins these choices activate, merged (one key, one value)."""
        active = {p.module for p in active_plugins(self.plugins, choices)}
        inactive = [p.module for p in self.plugins if p.module not in active]
        hook = self.pm_all.subset_hook_caller("config_defaults", remove_plugins=inactive)
        return merge_contributions(hook(choices=choices, config=config), "config_defaults")

    def normalise(self, overrides: list[str]) -> list[str]:
        return normalise_overrides(overrides, self.plugins, self.disabled, self.broken)

    def prepare(self, overrides: list[str], spies: tuple[object, ...] = ()) -> PreparedRun:
        """One job from its normalised overrides: compose once, activate the plugins it selects, build
        their plugin manager and run their ``validate_config`` hooks. ``spies`` are extra plugin objects
        registered afterwards, for this run only (tests watch the lifecycle with them)."""
        composed = compose(overrides, self.plugins, self.schemas, self.registries, self.plugin_defaults)
        active = active_plugins(self.plugins, composed.choices)
        # Every installed plugin's own hooks exist in the run, selected or not (a rewards-only plugin is active
        # through its option while the plugin defining reward_functions may not be).
        pm = make_plugin_manager(active, [p.info.hookspecs for p in self.plugins if p.info.hookspecs is not None])
        for hook in REQUIRED_HOOKS:  # a builtin left out with -p no:NAME: one line now, not a traceback mid-run
            if not getattr(pm.hook, hook).get_hookimpls():
                raise PluginError(f"no active plugin implements '{hook}' (capability '{CAPABILITIES[hook]}'), which every "
                                  f"run needs; was a builtin plugin left out with -p no:NAME? (`ft plugins --all` lists them)")
        pm.hook.validate_config(cfg=composed.cfg, choices=composed.choices)
        check_launch_config(composed.cfg)
        for index, spy in enumerate(spies):
            if spy is not None:
                pm.register(spy, name=f"spy-{index}")
        return PreparedRun(self, composed, active, pm)


@dataclass
class PreparedRun:
    """A validated job, ready for the lifecycle: its config, active plugins and their plugin manager."""

    session: Session
    composed: Composed
    active: list[LoadedPlugin]
    pm: Any

    @property
    def cfg(self) -> Any:
        return self.composed.cfg

    @property
    def choices(self) -> dict[str, str | None]:
        return self.composed.choices

    def context(self, run_dir: Path, ranks: Any = None) -> RunContext:
        """A fresh :class:`RunContext` for this run in ``run_dir``."""
        from ft.distributed import ranks_from_env

        ranks = ranks or ranks_from_env()
        traits = selected_traits(self.active, self.composed.choices)
        method_traits = traits.get(f"method/{self.composed.choices.get('method')}", ())
        skipped = skipped_loss_wrappers(self.active, method_traits)
        loss_hook = self.pm.subset_hook_caller("loss", [p.module for p in skipped]) if skipped else self.pm.hook.loss
        for plugin in skipped:
            logging.getLogger("ft").info(
                "plugin '%s': its loss wrapper is not called, method=%s is not %s (PluginInfo.loss_wrapper_traits)",
                plugin.name, self.composed.choices.get("method"), " and ".join(plugin.info.loss_wrapper_traits))
        return RunContext(cfg=self.composed.cfg, choices=self.composed.choices, run_dir=run_dir, pm=self.pm,
                          installed_pm=self.session.pm_all, traits=traits, rank=ranks.rank,
                          world_size=ranks.world_size, local_rank=ranks.local_rank, loss_hook=loss_hook)


def prepare_run(overrides: list[str] | None = None, p_flags: list[str] | None = None, *,
                session: Session | None = None, spies: tuple[object, ...] = ()) -> PreparedRun:
    """One run from ``overrides`` as typed after ``ft run``: see :meth:`Session.prepare`."""
    session = session or Session(p_flags)
    return session.prepare(session.normalise(list(overrides or [])), spies)


def validate_all(session: Session, overrides: list[str], multirun: bool) -> tuple[list[str], list[PreparedRun]]:
    """Normalise overrides and prepare (compose, validate) every job; raises on the first bad one."""
    normalised = session.normalise(overrides)
    combos = expand_sweeps(normalised) if multirun else [normalised]
    return normalised, [session.prepare(combo) for combo in combos]


def run_command(overrides: list[str], multirun: bool, p_flags: list[str]) -> int:
    """Entry of ``ft run``: validate the job and run it; with ``-m`` the plugin that runs a sweep takes over."""
    session = Session(p_flags)
    if multirun:
        code = session.pm_all.hook.run_sweep(session=session, overrides=overrides, p_flags=p_flags)
        if code is None:
            raise PluginError("ft run -m: no installed plugin runs a sweep (the run_sweep hook); `ft plugins --all` "
                              "lists the installed ones, disabled included")
        return int(code)
    _, jobs = validate_all(session, overrides, multirun=False)
    # Hydra's own folder override keeps working: hydra.run.dir names the run folder.
    run_dir = next((Path(o.split("=", 1)[1]) for o in reversed(overrides) if o.startswith("hydra.run.dir=")), None)
    run_job(jobs[0], run_dir, p_flags, overrides)
    return 0


def run_lifecycle(overrides: list[str], run_dir: Path, *spies: object, p_flags: list[str] | None = None) -> dict[str, Any]:
    """Run ``overrides`` exactly like ``ft run`` (the same :func:`prepare_run`), in this process, into
    ``run_dir``; ``spies`` are extra plugin objects registered for the run (tests and notebooks watch the
    model, the trainer or the batches with them). Returns the run's final metrics."""
    from ft import lifecycle

    return lifecycle.run(prepare_run(overrides, p_flags, spies=spies), run_dir)
