"""Plugin discovery, activation and conflict detection.

Order of loading (as in pytest's ``default_plugins``): the kernel's builtin plugins, then every
module named in the ``ft`` entry-point group. Each plugin may name a config package in the data-only
``ft.conf`` entry-point group (same entry-point name); its ``<group>/<option>.yaml`` files are the
options it provides. Controls:

* ``FT_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry-point plugin except those named with ``-p NAME``
  or in ``FT_PLUGINS``.
* ``FT_PLUGINS=a,b``: an allow-list; only these entry-point plugins load.
* ``-p no:NAME``: block one plugin (builtins included, except the kernel's core ones).

An installed plugin that fails to import is a hard error naming its distribution.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from ft.errors import PluginError

ENTRY_POINT_GROUP = "ft"
CONF_ENTRY_POINT_GROUP = "ft.conf"

#: The kernel's own features, registered exactly like outside plugins.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "ft.builtin.model",
    "ft.builtin.data",
    "ft.builtin.sft",
    "ft.builtin.outputs",
    "ft.builtin.default_task",
    "ft.builtin.generate",
)


@dataclass(frozen=True)
class PluginInfo:
    """What a plugin declares in its module-level ``FT_PLUGIN``.

    name: the plugin's short name, used by ``-p no:NAME`` and in messages.
    description: one line for ``ft plugins``.
    capabilities: exclusive "who builds X" roles it takes over (``trainer``, ``loss``, ``dataset``,
        ``collator``, ``batch_sampler``, ``optimizer``, ``scheduler``, ``model_loader``). Two active
        plugins with the same capability is a config error.
    requires: names of plugins that must be installed; they become active with this one.
    conflicts: plugin names or ``group/option`` selections this plugin cannot run with.
    always_active: active in every run, even if the config selects none of its options. Plugins
        that provide config options should leave this off: unselected, they have no effect at all.
    """

    name: str
    description: str = ""
    capabilities: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    always_active: bool = False


@dataclass
class LoadedPlugin:
    """One discovered plugin: its module, declaration, distribution and config options."""

    info: PluginInfo
    module: ModuleType
    distribution: str
    version: str
    builtin: bool
    conf_dir: Path | None = None
    options: dict[str, list[str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.info.name

    def provides_option(self, group: str, option: str | None) -> bool:
        return option is not None and option in self.options.get(group, [])


def _parse_p_flags(p_flags: list[str]) -> tuple[set[str], list[str]]:
    blocked = {p[3:] for p in p_flags if p.startswith("no:")}
    enabled = [p for p in p_flags if not p.startswith("no:")]
    return blocked, enabled


def scan_conf_dir(conf_dir: Path) -> dict[str, list[str]]:
    """Return ``{group: [options]}`` for the ``<group>/<option>.yaml`` files in a config folder."""
    options: dict[str, list[str]] = {}
    if not conf_dir.is_dir():
        return options
    for group_dir in sorted(p for p in conf_dir.iterdir() if p.is_dir() and not p.name.startswith("_")):
        names = sorted(f.stem for f in group_dir.glob("*.yaml"))
        if names:
            options[group_dir.name] = names
    return options


def _module_dir(module_name: str) -> Path | None:
    """Locate a package's folder without importing its submodules (only its parents' ``__init__``)."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _plugin_info(module: ModuleType, fallback_name: str) -> PluginInfo:
    info = getattr(module, "FT_PLUGIN", None)
    if info is None:
        return PluginInfo(name=fallback_name)
    if isinstance(info, dict):
        info = PluginInfo(**{"name": fallback_name, **info})
    if not isinstance(info, PluginInfo):
        raise PluginError(f"plugin module '{module.__name__}' has an FT_PLUGIN that is not a PluginInfo")
    return info


def _dist_of(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("unknown", "?")
    return (dist.metadata["Name"], dist.version)


def discover(p_flags: list[str] | None = None) -> list[LoadedPlugin]:
    """Import the builtin plugins and the installed entry-point plugins, honouring the controls.

    Raises :class:`PluginError` when an installed plugin fails to import (never skipped silently).
    """
    blocked, enabled = _parse_p_flags(list(p_flags or []))
    autoload = os.environ.get("FT_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower() not in ("1", "true", "yes")
    allow_env = os.environ.get("FT_PLUGINS", "").strip()
    allow = {n.strip() for n in allow_env.split(",") if n.strip()} if allow_env else None

    import ft

    ft_conf = kernel_conf_dir()
    plugins: list[LoadedPlugin] = []
    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        info = _plugin_info(module, module_name.rsplit(".", 1)[-1])
        if info.name in blocked and not info.always_active:
            continue
        # A builtin names the kernel options it serves in ``BUILTIN_OPTIONS`` ("group/option").
        options: dict[str, list[str]] = {}
        for ref in getattr(module, "BUILTIN_OPTIONS", ()):
            group, option = ref.split("/", 1)
            options.setdefault(group, []).append(option)
        plugins.append(LoadedPlugin(info, module, "ft", ft.__version__, True, ft_conf, options))

    conf_eps = {ep.name: ep for ep in md.entry_points(group=CONF_ENTRY_POINT_GROUP)}
    seen: set[str] = {p.name for p in plugins}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in blocked or ep.name in seen:
            continue
        wanted = ep.name in enabled or (autoload and (allow is None or ep.name in allow))
        if not autoload and allow is not None and ep.name in allow:
            wanted = True
        if not wanted:
            continue
        dist_name, version = _dist_of(ep)
        try:
            module = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure is reported, never skipped
            raise PluginError(
                f"plugin '{ep.name}' from distribution '{dist_name}' failed to import: "
                f"{type(exc).__name__}: {exc}. Fix or uninstall it (pip uninstall {dist_name}), "
                f"or skip it with -p no:{ep.name}"
            ) from exc
        info = _plugin_info(module, ep.name)
        conf_dir = None
        options: dict[str, list[str]] = {}
        if ep.name in conf_eps:
            conf_dir = _module_dir(conf_eps[ep.name].value)
            if conf_dir is None:
                raise PluginError(
                    f"plugin '{ep.name}' ({dist_name}) names config package "
                    f"'{conf_eps[ep.name].value}' which cannot be found; reinstall {dist_name}"
                )
            options = scan_conf_dir(conf_dir)
        plugins.append(LoadedPlugin(info, module, dist_name, version, False, conf_dir, options))
        seen.add(ep.name)

    missing = [name for name in enabled if name not in seen]
    if missing:
        raise PluginError(
            f"-p {missing[0]}: no installed plugin is named '{missing[0]}' "
            f"(installed: {', '.join(sorted(seen))})"
        )
    return plugins


def kernel_conf_dir() -> Path:
    """The kernel's Hydra config folder (``conf/`` in a checkout, ``ft/conf`` when installed)."""
    here = Path(__file__).resolve().parent.parent / "conf"
    if here.is_dir() and (here / "ft.yaml").is_file():
        return here
    found = _module_dir("ft.conf")
    if found is None:
        raise PluginError("ft's own config package 'ft.conf' is missing; reinstall ft")
    return found


def active_plugins(plugins: list[LoadedPlugin], choices: dict[str, str | None]) -> list[LoadedPlugin]:
    """Select the plugins that take part in a run with these group choices.

    Active: declared ``always_active``, or providing a selected option, plus everything an active
    plugin requires. Raises :class:`PluginError` on a missing requirement, a declared conflict, or two
    active plugins claiming the same capability.
    """
    by_name = {p.name: p for p in plugins}
    active: dict[str, LoadedPlugin] = {}
    for plugin in plugins:
        if plugin.info.always_active or any(
            plugin.provides_option(group, option) for group, option in choices.items()
        ):
            active[plugin.name] = plugin
    queue = list(active.values())
    while queue:
        plugin = queue.pop()
        for required in plugin.info.requires:
            if required not in by_name:
                raise PluginError(
                    f"plugin '{plugin.name}' requires plugin '{required}', which is not installed "
                    f"or is disabled; install it (pip install ft-{required}) or drop "
                    f"the option that selects '{plugin.name}'"
                )
            if required not in active:
                active[required] = by_name[required]
                queue.append(by_name[required])
    selected = {f"{g}/{o}" for g, o in choices.items() if o is not None}
    for plugin in active.values():
        for conflict in plugin.info.conflicts:
            if conflict in active or conflict in selected:
                raise PluginError(
                    f"plugin '{plugin.name}' conflicts with '{conflict}'; they cannot be used in "
                    f"the same run: drop one of them"
                )
    claims: dict[str, str] = {}
    for plugin in active.values():
        for capability in plugin.info.capabilities:
            if capability in claims:
                raise PluginError(
                    f"plugins '{claims[capability]}' and '{plugin.name}' both provide the "
                    f"'{capability}' capability; select only one of them"
                )
            claims[capability] = plugin.name
    return [p for p in plugins if p.name in active]


def make_plugin_manager(plugins: list[LoadedPlugin]) -> pluggy.PluginManager:
    """A fresh pluggy manager with these plugins registered and checked against the hook specs."""
    from ft import hookspecs

    pm = pluggy.PluginManager("ft")
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        pm.register(plugin.module, name=plugin.name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin '{exc.plugin}' implements a hook that ft does not define: {exc}") from exc
    return pm


def hook_names(module: Any) -> list[str]:
    """The hook names a plugin module implements (for ``ft plugins``)."""
    from ft import hookspecs

    specs = {n for n in dir(hookspecs) if callable(getattr(hookspecs, n)) and hasattr(getattr(hookspecs, n), "ft_spec")}
    return sorted(n for n in dir(module) if n in specs and hasattr(getattr(module, n), "ft_impl"))
