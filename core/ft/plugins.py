"""Plugin discovery, checking, activation and the plugin manager.

Order of loading (as in pytest's ``default_plugins``): the builtin plugins (the distributions ft
requires), then every other module named in the ``ft`` entry-point group. A plugin's name is its entry-point name, which must
equal ``FT_PLUGIN.name``; that one name is what ``ft plugins`` shows and what ``-p``, ``FT_PLUGINS``,
``requires`` and ``conflicts`` take. A distribution may name a config package in the data-only
``ft.conf`` group under the same entry-point name; its ``<group>/<option>.yaml`` files are the options
the plugin provides. Controls:

* ``FT_DISABLE_PLUGIN_AUTOLOAD=1``: load no other plugin except those named with ``-p NAME`` or in
  ``FT_PLUGINS`` (the builtin plugins still load).
* ``FT_PLUGINS=a,b``: an allow-list of the other plugins; the builtin plugins still load.
* ``-p no:NAME``: block one plugin, a builtin one too.

A plugin that fails to import, implements a hook ft does not define or with arguments its spec does not
pass, targets another contract major, or claims a "who builds X" hook without declaring its capability
is *broken*: see :meth:`PluginSet.raise_if_broken` for which commands it stops.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import inspect
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from ft.errors import PluginError, did_you_mean

ENTRY_POINT_GROUP = "ft"
CONF_ENTRY_POINT_GROUP = "ft.conf"

@dataclass(frozen=True)
class PluginInfo:
    """What a plugin declares in its module-level ``FT_PLUGIN`` (see docs/plugins.md).

    name: the plugin's one name: its entry-point name, shown by ``ft plugins``, taken by ``-p``,
        ``FT_PLUGINS``, ``requires`` and ``conflicts``.
    description: one line for ``ft plugins``.
    capabilities: the exclusive "who builds X" roles it takes over. They follow from the
        ``firstresult`` hooks it implements (``ft.hookspecs.CAPABILITIES``): implementing
        ``loss`` without declaring ``loss`` (or the reverse) is a load error. Two active plugins
        with the same capability is a config error.
    requires: plugins that must be installed; they become active with this one.
    conflicts: plugin names or ``group/option`` selections this plugin cannot run with.
    always_active: active in every run, even if the config selects none of its options. Plugins
        that provide config options should leave this off: unselected, they have no effect at all.
    traits: what each option this plugin provides *is*, keyed ``"group/option"``; methods declare
        traits from ``ft.hookspecs.METHOD_TRAITS`` (``{"method/mymethod": ("computes_own_logits", ...)}``).
    requires_traits: traits the selected method must have for this plugin to work (a fused loss
        kernel needs ``token_loss``, packing needs ``packable``); checked at ``ft validate``.
    hookspecs: a module or class of ``@ft.api.hookspec`` functions: new hooks this plugin calls on
        plugins after it (pytest's ``pytest_addhooks``).
    loss_wrapper_traits: the traits a method must have for this plugin's ``loss`` wrapper to be called;
        by default ``("token_loss",)``: a wrapper that reads labels or logits is skipped for pairwise or online-RL methods
        instead of crashing them. ``()`` declares that it serves every method.
    contract: the version of ft's hook contract the plugin was written for (``ft.api.CONTRACT_VERSION``,
        ``"3.0"``); another major version marks the plugin broken with a line saying what to do.
    """

    name: str
    description: str = ""
    capabilities: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    always_active: bool = False
    traits: dict[str, tuple[str, ...]] = field(default_factory=dict)
    requires_traits: tuple[str, ...] = ()
    hookspecs: Any = None
    loss_wrapper_traits: tuple[str, ...] = ("token_loss",)
    contract: str | None = None


@dataclass
class LoadedPlugin:
    """One discovered plugin: its module, declaration, distribution, config options and problems."""

    info: PluginInfo
    module: ModuleType | None
    distribution: str
    version: str
    builtin: bool
    conf_dir: Path | None = None
    options: dict[str, list[str]] = field(default_factory=dict)
    #: Why the plugin cannot be used (one line), or ``None``.
    error: str | None = None
    #: Blocked with ``-p no:NAME`` or left out by ``FT_PLUGINS``/autoload: listed, never registered.
    disabled: bool = False

    @property
    def name(self) -> str:
        return self.info.name

    def provides_option(self, group: str, option: str | None) -> bool:
        """Whether this plugin provides ``group=option`` (or one of several: ``"a,b"``)."""
        return any(name in self.options.get(group, []) for name in split_choice(option))


@dataclass
class PluginSet:
    """What :func:`discover` found: usable plugins, plus disabled and broken ones for messages."""

    plugins: list[LoadedPlugin]
    disabled: list[LoadedPlugin] = field(default_factory=list)

    def __iter__(self):  # iterating a PluginSet gives the usable plugins
        return iter(self.plugins)

    @property
    def broken(self) -> list[LoadedPlugin]:
        return [p for p in self.plugins if p.error]

    @property
    def usable(self) -> list[LoadedPlugin]:
        return [p for p in self.plugins if not p.error]

    def raise_if_broken(self) -> None:
        """Stop with the first broken plugin that every run would need (commands that use plugins call this):
        one that failed to import (what it provides is unknown), a builtin, or one declared always active.
        A plugin that imported but breaks the contract only stops a run that selects one of its options;
        other commands go on and say once, on stderr, that it is left out."""
        import sys

        for plugin in self.broken:
            if plugin.module is None or plugin.builtin or plugin.info.always_active or not plugin.options:
                raise PluginError(plugin.error or "")
        for plugin in self.broken:
            print(f"ft: warning: {plugin.error} (left out: no option of it is selected)", file=sys.stderr)


def merge_contributions(contributions: Iterable[dict[str, Any] | None], what: str, base: dict[str, Any] | None = None,
                        same: Callable[[Any, Any], bool] = lambda a, b: a is b or a == b,
                        error: type[Exception] = PluginError) -> dict[str, Any]:
    """Merge the dicts a collected hook returned; one key with two different values is an ``error``.

    ``base`` is a starting dict whose keys the contributions may override (the kernel's defaults);
    ``what`` names the hook or thing for the message. The one merge rule of ft's collected hooks.
    """
    merged = dict(base or {})
    owners: dict[str, Any] = {}
    for contribution in contributions:
        for key, value in (contribution or {}).items():
            if key in owners and not same(owners[key], value):
                plain = all(isinstance(v, (str, int, float, bool, type(None))) for v in (owners[key], value))
                values = f" to different values ({owners[key]!r} and {value!r})" if plain else ""
                raise error(f"two plugins provide '{key}' in {what}{values}")
            owners[key] = value
            merged[key] = value
    return merged


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


def kernel_conf_dir() -> Path:
    """The kernel's Hydra config folder (``conf/`` in a checkout, ``ft/conf`` when installed)."""
    here = Path(__file__).resolve().parents[2] / "conf"
    if here.is_dir() and (here / "ft.yaml").is_file():
        return here
    found = _module_dir("ft.conf")
    if found is None:
        raise PluginError("ft's own config package 'ft.conf' is missing; reinstall ft")
    return found


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The distribution a requirement string names (``"numpy>=2; extra == 'x'"`` -> ``"numpy"``)."""
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0]


def default_distributions() -> set[str]:
    """The plugin distributions installed with ft by default (its own requirements): their plugins are
    builtin, so their ``trylast`` fallbacks claim no capability and ``ft plugins`` says "builtin"."""
    try:
        requirements = md.requires("ft") or []
    except md.PackageNotFoundError:  # pragma: no cover - ft run from a source tree without metadata
        return set()
    return {_canonical(requirement_name(r)) for r in requirements if "extra ==" not in r}


def _dist_of(ep: md.EntryPoint) -> tuple[str, str]:
    """The distribution's name and version, from the head of its METADATA (``dist.metadata`` parses it all
    with the e-mail parser, which is most of the time ``ft validate`` spends finding plugins)."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("unknown", "?")
    head = dict(re.findall(r"^(Name|Version): *(.+?) *$", (dist.read_text("METADATA") or "")[:2000], re.MULTILINE))
    return (head.get("Name") or dist.metadata["Name"], head.get("Version") or dist.version)


def _plugin_info(module: ModuleType, fallback_name: str) -> PluginInfo:
    info = getattr(module, "FT_PLUGIN", None)
    if info is None:
        return PluginInfo(name=fallback_name)
    if isinstance(info, dict):
        info = PluginInfo(**{"name": fallback_name, **info})
    if not isinstance(info, PluginInfo):
        raise PluginError(f"plugin module '{module.__name__}' has an FT_PLUGIN that is not a ft.api.PluginInfo")
    return info


def _conf_options(name: str, dist: str, conf_ep: md.EntryPoint | None) -> tuple[Path | None, dict[str, list[str]], str | None]:
    """The config folder and options a plugin's ``ft.conf`` entry point names, and a problem if any."""
    if conf_ep is None:
        return None, {}, None
    conf_dir = _module_dir(conf_ep.value)
    if conf_dir is None:
        return None, {}, (f"plugin '{name}' ({dist}) names config package '{conf_ep.value}' in [ft.conf], which "
                          f"cannot be found; reinstall {dist}")
    options = scan_conf_dir(conf_dir)
    if not options:
        return conf_dir, {}, (
            f"plugin '{name}' ({dist}): its config package '{conf_ep.value}' ({conf_dir}) holds no "
            f"<group>/<option>.yaml files; ship them as package data (tool.setuptools.package-data: "
            f"\"{conf_ep.value}\" = [\"**/*.yaml\"]) and reinstall")
    return conf_dir, options, None


def discover(p_flags: list[str] | None = None) -> PluginSet:
    """Import the builtin plugins and the installed entry-point plugins, honouring the controls.

    Never raises for one plugin's problem: a broken plugin carries its one-line ``error`` (see
    :meth:`PluginSet.raise_if_broken`). Raises :class:`PluginError` for a ``-p`` or ``FT_PLUGINS``
    name that no installed plugin has.
    """
    flags = list(p_flags or [])
    blocked = {p[3:] for p in flags if p.startswith("no:")}
    enabled = [p for p in flags if not p.startswith("no:")]
    autoload = os.environ.get("FT_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower() not in ("1", "true", "yes")
    allow_env = os.environ.get("FT_PLUGINS", "").strip()
    allow = {n.strip() for n in allow_env.split(",") if n.strip()} if allow_env else None

    found = PluginSet(plugins=[])
    defaults = default_distributions()
    # Registration order is hook-call order within a phase: the builtin plugins first (as pytest's
    # default_plugins), then the others, each by name, so it never depends on the file system.
    every = md.entry_points()  # one scan of the installed distributions for both groups
    dists = {ep: _dist_of(ep) for ep in every.select(group=ENTRY_POINT_GROUP)}  # reading metadata is slow: once
    entry_points = sorted(dists, key=lambda ep: (_canonical(dists[ep][0]) not in defaults, ep.name))
    conf_eps = list(every.select(group=CONF_ENTRY_POINT_GROUP))
    names = {p.name for p in found.plugins + found.disabled} | {ep.name for ep in entry_points}
    for name in [*blocked, *enabled, *(allow or ())]:
        if name not in names:
            raise PluginError(f"no installed plugin is named '{name}'{did_you_mean(name, names)} "
                              f"(installed: {', '.join(sorted(names))}; `ft plugins` lists them)")
    seen = {p.name for p in found.plugins + found.disabled}
    for ep in entry_points:
        if ep.name in seen:
            continue
        seen.add(ep.name)
        dist, version = dists[ep]
        conf_ep = next((c for c in conf_eps if c.name == ep.name), None)
        conf_dir, options, problem = _conf_options(ep.name, dist, conf_ep)
        builtin = _canonical(dist) in defaults  # installed with ft: only -p no:NAME leaves it out (pytest's defaults)
        wanted = builtin or ep.name in enabled or (autoload and (allow is None or ep.name in allow)) or \
            (not autoload and allow is not None and ep.name in allow)
        if ep.name in blocked or not wanted:
            found.disabled.append(LoadedPlugin(PluginInfo(name=ep.name), None, dist, version, builtin, conf_dir, options,
                                               disabled=True))
            continue
        plugin = LoadedPlugin(PluginInfo(name=ep.name), None, dist, version, builtin, conf_dir, options, problem)
        found.plugins.append(plugin)
        try:
            plugin.module = ep.load()
            plugin.info = _plugin_info(plugin.module, ep.name)
        except Exception as exc:  # noqa: BLE001 - any import failure is reported, never skipped
            plugin.error = (f"plugin '{ep.name}' from distribution '{dist}' failed to import: "
                            f"{type(exc).__name__}: {exc}. Fix or uninstall it (pip uninstall {dist}), "
                            f"or skip it with -p no:{ep.name}")
            continue
        if plugin.info.name != ep.name:
            plugin.error = (f"plugin '{ep.name}' ({dist}): FT_PLUGIN.name is '{plugin.info.name}' but its entry point "
                            f"is named '{ep.name}'; make them the same (the name -p, FT_PLUGINS and requires use)")
    for conf_ep in conf_eps:  # a config package whose entry-point name matches no plugin: options would vanish
        if conf_ep.name not in seen:
            dist, _ = _dist_of(conf_ep)
            raise PluginError(
                f"distribution '{dist}' names config package '{conf_ep.value}' under [ft.conf] as '{conf_ep.name}', "
                f"but no [ft] entry point has that name; use the plugin's entry-point name for both")
    _check_plugins(found.plugins)
    return found


def _hookspec_functions(plugins: list[LoadedPlugin]) -> dict[str, Any]:
    """``{hook name: spec function}`` for ft's hooks and every plugin-defined hookspec (its options are
    the function's ``ft_spec``)."""
    from ft import hookspecs

    specs: dict[str, Any] = {}
    sources = [hookspecs, *(p.info.hookspecs for p in plugins if p.info.hookspecs is not None and not p.error)]
    for source in sources:
        for name, fn in inspect.getmembers(source):
            if getattr(fn, "ft_spec", None) is not None:
                specs[name] = fn
    return specs


def _arguments(fn: Any) -> list[str]:
    """A hook function's argument names, without ``self``."""
    return [name for name in inspect.signature(fn).parameters if name != "self"]


def _contract_problem(plugin: LoadedPlugin, impls: dict[str, Any], specs: dict[str, Any]) -> str | None:
    """Why a plugin written against another contract cannot load (a major version, a hook's arguments)."""
    from ft.hookspecs import CONTRACT_VERSION

    where = f"plugin '{plugin.name}' ({plugin.distribution})"
    fix = f"update it (pip install -U {plugin.distribution}) or skip it with -p no:{plugin.name}"
    declared = plugin.info.contract
    if declared and str(declared).split(".")[0] != CONTRACT_VERSION.split(".")[0]:
        return (f"{where} was written for ft's hook contract {declared}, and this ft has contract {CONTRACT_VERSION} "
                f"(docs/plugins.md, 'Contract versions'); {fix}")
    for name in sorted(impls):
        fn = getattr(plugin.module, name)
        extra = [a for a in _arguments(fn) if a not in _arguments(specs[name])]
        if extra:
            expected = f"{name}({', '.join(_arguments(specs[name]))})"
            return (f"{where}: hook '{name}' takes ({', '.join(_arguments(fn))}), but ft's contract {CONTRACT_VERSION} "
                    f"calls {expected}; write it as {expected} (docs/plugins.md), or {fix}")
    return None


def hook_impls(module: Any) -> dict[str, dict[str, Any]]:
    """``{hook name: hookimpl options}`` of the functions a plugin module marks with ``@hookimpl``."""
    return {name: fn.ft_impl for name, fn in inspect.getmembers(module) if hasattr(fn, "ft_impl")}


def _check_plugins(plugins: list[LoadedPlugin]) -> None:
    """Give each plugin that breaks the contract its one-line error (hooks, capabilities)."""
    from ft.hookspecs import CAPABILITIES

    specs = _hookspec_functions(plugins)
    for plugin in plugins:
        if plugin.error or plugin.module is None:
            continue
        where = f"plugin '{plugin.name}' ({plugin.distribution})"
        impls = hook_impls(plugin.module)
        # optionalhook: a hook that a plugin which may not be installed defines (its hookspecs)
        impls = {name: opts for name, opts in impls.items() if name in specs or not opts.get("optionalhook")}
        unknown = sorted(set(impls) - set(specs))
        if unknown:
            name = unknown[0]
            plugin.error = (f"{where} implements hook '{name}', which ft does not define{did_you_mean(name, specs)}; "
                            f"the hooks are listed in docs/plugins.md")
            continue
        plugin.error = _contract_problem(plugin, impls, specs)
        if plugin.error:
            continue
        claimed = set()
        for name, opts in impls.items():
            if not specs[name].ft_spec.get("firstresult") or opts.get("wrapper") or opts.get("hookwrapper"):
                continue
            if plugin.builtin and opts.get("trylast"):
                continue  # a builtin plugin's fallbacks claim nothing
            claimed.add(CAPABILITIES.get(name, name))
        declared = set(plugin.info.capabilities)
        if claimed - declared:
            capability = sorted(claimed - declared)[0]
            hooks = sorted(h for h, c in CAPABILITIES.items() if c == capability and h in impls)
            plugin.error = (f"{where} implements {', '.join(hooks)} (who builds it: capability '{capability}') without "
                            f"declaring it; add '{capability}' to FT_PLUGIN.capabilities, or make the hook a wrapper")
        elif declared - claimed:
            capability = sorted(declared - claimed)[0]
            hooks = sorted(h for h, c in CAPABILITIES.items() if c == capability)
            plugin.error = (f"{where} declares capability '{capability}' but implements none of its hooks "
                            f"({', '.join(hooks) or 'unknown capability'}); drop it from FT_PLUGIN.capabilities")


def split_choice(option: str | None) -> tuple[str, ...]:
    """The options of one group's choice: none, one, or several. A group given a list
    (``logger=[a,b]``, Hydra's multi-select) is recorded as ``"a,b"``."""
    return tuple(name for name in option.split(",") if name) if option else ()


def selected_options(choices: dict[str, str | None], group: str) -> tuple[str, ...]:
    """The options selected in ``group`` (several for a list: ``logger=[a,b]``)."""
    return split_choice(choices.get(group))


def selected_traits(plugins: list[LoadedPlugin], choices: dict[str, str | None]) -> dict[str, tuple[str, ...]]:
    """``{"group/option": traits}`` of the selected options, as their plugins declare them."""
    traits: dict[str, tuple[str, ...]] = {}
    for plugin in plugins:
        for ref, declared in plugin.info.traits.items():
            group, option = ref.split("/", 1)
            if option in selected_options(choices, group):
                traits[ref] = tuple(declared)
    return traits


def active_plugins(plugins: list[LoadedPlugin], choices: dict[str, str | None]) -> list[LoadedPlugin]:
    """Select the plugins that take part in a run with these group choices.

    Active: declared ``always_active``, or providing a selected option, plus everything an active
    plugin requires. Raises :class:`PluginError` on a missing requirement, a declared conflict, two
    active plugins claiming the same capability, or a method lacking a trait an active plugin needs.
    """
    by_name = {p.name: p for p in plugins}
    active: dict[str, LoadedPlugin] = {}
    for plugin in plugins:
        if plugin.info.always_active or any(plugin.provides_option(g, o) for g, o in choices.items()):
            active[plugin.name] = plugin
    queue = list(active.values())
    while queue:
        plugin = queue.pop()
        for required in plugin.info.requires:
            if required not in by_name:
                raise PluginError(
                    f"plugin '{plugin.name}' requires plugin '{required}', which is not installed "
                    f"or is disabled; install it (pip install ft-{required}) or drop the option that selects '{plugin.name}'")
            if required not in active:
                active[required] = by_name[required]
                queue.append(by_name[required])
    selected = {f"{g}/{o}" for g in choices for o in selected_options(choices, g)}
    for plugin in active.values():
        for conflict in plugin.info.conflicts:
            if conflict in active or conflict in selected:
                raise PluginError(f"plugin '{plugin.name}' conflicts with '{conflict}'; they cannot be used in "
                                  f"the same run: drop one of them")
    claims: dict[str, str] = {}
    for plugin in active.values():
        for capability in plugin.info.capabilities:
            if capability in claims:
                raise PluginError(f"plugins '{claims[capability]}' and '{plugin.name}' both provide the "
                                  f"'{capability}' capability; select only one of them")
            claims[capability] = plugin.name
    method = choices.get("method")
    method_traits = selected_traits(list(active.values()), choices).get(f"method/{method}", ())
    for plugin in active.values():
        missing = [t for t in required_traits(plugin.info) if t not in method_traits]
        if missing:
            who = next((f"{g}={o}" for g, o in choices.items() if plugin.provides_option(g, o)), f"plugin '{plugin.name}'")
            raise PluginError(
                f"{who} needs a method that is {' and '.join(missing)}, but method={method} is "
                f"{', '.join(method_traits) or 'declared with no traits'}; drop {who} or choose another method")
    return [p for p in plugins if p.name in active]


def required_traits(info: PluginInfo) -> tuple[str, ...]:
    """The traits the selected method must have for this plugin: its declared ``requires_traits``, and
    ``token_loss`` for a plugin that replaces the method's loss (capability ``loss``) without saying so."""
    if "loss" in info.capabilities and "token_loss" not in info.requires_traits:
        return (*info.requires_traits, "token_loss")
    return info.requires_traits


def skipped_loss_wrappers(plugins: list[LoadedPlugin], method_traits: tuple[str, ...]) -> list[LoadedPlugin]:
    """The active plugins whose ``loss`` wrapper must not be called for a method with these traits
    (``PluginInfo.loss_wrapper_traits``)."""
    skipped = []
    for plugin in plugins:
        opts = hook_impls(plugin.module).get("loss") if plugin.module is not None else None
        if opts and (opts.get("wrapper") or opts.get("hookwrapper")):
            if any(t not in method_traits for t in plugin.info.loss_wrapper_traits):
                skipped.append(plugin)
    return skipped


def make_plugin_manager(plugins: list[LoadedPlugin], extra_specs: Iterable[Any] = ()) -> pluggy.PluginManager:
    """A fresh pluggy manager with these plugins (and their own hookspecs) registered and checked."""
    from ft import hookspecs

    pm = pluggy.PluginManager("ft")
    pm.add_hookspecs(hookspecs)
    sources = [*extra_specs, *(p.info.hookspecs for p in plugins if p.info.hookspecs is not None)]
    for source in {id(s): s for s in sources}.values():
        pm.add_hookspecs(source)
    for plugin in plugins:
        if plugin.error:
            raise PluginError(plugin.error)
        pm.register(plugin.module, name=plugin.name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin '{exc.plugin}' implements a hook that ft does not define: {exc}") from exc
    return pm
