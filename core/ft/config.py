"""Hydra composition of the ft config, override normalisation, and validation.

Hydra composes; OmegaConf resolves; :mod:`ft.schema` checks. Everything here runs without torch so
that ``ft validate`` and ``ft config show`` answer in well under two seconds.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ft.errors import ConfigError, did_you_mean
from ft.plugins import LoadedPlugin, kernel_conf_dir, scan_conf_dir

PRIMARY_CONFIG = "ft"
_GROUP_OVERRIDE = re.compile(r"^(?P<prefix>\+{0,2}|~)(?P<group>[A-Za-z_][\w]*)(?P<rest>(@[\w.]+)?=.*)?$")
#: Keys whose values are replaced by ``***`` in records: credentials, but not a tokenizer's special tokens
#: (``mask_token``, ``pad_token``...), whose names say "token" too.
_SECRET_KEY = re.compile(r"^(?!.*\b(?:(?:mask|pad|eos|bos|unk|sep|cls)_token(?:_id)?|(?:special|added|eot)_tokens)$)"
                         r".*(token|secret|password|api_key|apikey|access_key)",
                         re.IGNORECASE)


@dataclass
class Composed:
    """A composed, resolved and validated config: typed for hooks, plain for records."""

    cfg: Any  # ft.schema.FtConfig: one schema dataclass instance per section
    container: dict[str, Any]  # the resolved config as plain data (config.yaml, ft config show)
    choices: dict[str, str | None]
    overrides: list[str]
    #: Values the active plugins' ``config_defaults`` set (already in ``cfg`` and ``container``).
    plugin_defaults: dict[str, Any] = field(default_factory=dict)


def describe_selection(choices: dict[str, str | None], model_name_or_path: str | None) -> str:
    """``method=M, data=D, model=/models/x, ...``: the selected options; the model is named by the
    folder or hub id it loads (an option's own scheme, ``builtin:...``, keeps the option's name)."""
    parts = []
    for group, option in choices.items():
        if not option:
            continue
        if group == "model" and model_name_or_path and ":" not in model_name_or_path:
            option = model_name_or_path
        parts.append(f"{group}={option}")
    return ", ".join(parts)


def search_path(plugins: list[LoadedPlugin]) -> list[Path]:
    """Config folders of the loaded plugins (the kernel's own is the primary config dir)."""
    kernel = kernel_conf_dir().resolve()
    dirs: list[Path] = []
    for plugin in plugins:
        if plugin.conf_dir is not None and plugin.conf_dir.resolve() != kernel:
            dirs.append(plugin.conf_dir.resolve())
    return dirs


def user_searchpath(overrides: list[str]) -> list[str]:
    """The entries of a ``hydra.searchpath=[file://DIR,...]`` override: the user's own config folders."""
    return [p for o in overrides if o.startswith("hydra.searchpath=") for p in o[17:].strip("[]").split(",") if p]


def searchpath_override(plugins: list[LoadedPlugin], user: list[str] | tuple[str, ...] = ()) -> str:
    """The ``hydra.searchpath=[...]`` override that adds every plugin's config folder after the user's own
    (``hydra.searchpath=[file://myconf]`` on the command line: presets of your own)."""
    return "hydra.searchpath=[" + ",".join([*user, *(f"file://{d}" for d in search_path(plugins))]) + "]"


@functools.cache
def _primary_defaults() -> dict[str, str | None]:
    """``{group: default option}`` of the primary config's defaults list (these groups take ``group=option``)."""
    import yaml

    data = yaml.safe_load((kernel_conf_dir() / f"{PRIMARY_CONFIG}.yaml").read_text())
    defaults: dict[str, str | None] = {}
    for entry in data.get("defaults", []):
        if isinstance(entry, dict):
            for key, value in entry.items():
                key = key.removeprefix("optional ")
                if not key.startswith("override ") and "/" not in key:
                    defaults[key] = value if isinstance(value, str) and "${" not in value else None
    return defaults


def _primary_default_groups() -> frozenset[str]:
    return frozenset(_primary_defaults())


def available_options(plugins: list[LoadedPlugin]) -> dict[str, dict[str, str]]:
    """``{group: {option: plugin name}}`` for every option of the kernel and the loaded plugins."""
    options: dict[str, dict[str, str]] = {}
    for group, names in scan_conf_dir(kernel_conf_dir()).items():
        for name in names:
            options.setdefault(group, {})[name] = "ft"
    for plugin in plugins:
        for group, names in plugin.options.items():
            for name in names:
                options.setdefault(group, {})[name] = plugin.name
    return options


def _catalog() -> dict[str, str]:
    """Known first-party options -> the distribution that provides them (data, not code)."""
    import yaml

    path = kernel_conf_dir() / "catalog.yaml"
    if not path.is_file():
        return {}
    return (yaml.safe_load(path.read_text()) or {}).get("options", {})


def normalise_overrides(overrides: list[str], plugins: list[LoadedPlugin],
                        disabled: list[LoadedPlugin] | None = None, broken: list[LoadedPlugin] | None = None) -> list[str]:
    """Make ``+group=option`` and ``group=option`` both work, and check group options exist.

    Hydra accepts only one of the two forms, depending on whether the group is in the primary
    defaults list. ``experiment=null`` becomes ``~experiment`` (the default experiment is chosen by
    interpolation, which ``null`` cannot override). Raises :class:`ConfigError` for an unknown option,
    naming the plugin that is installed but disabled, or the distribution to install, and the broken
    plugin's own error for an option of a plugin that cannot load.
    """
    defaults_groups = _primary_default_groups()
    options = available_options(plugins)
    for folder in user_searchpath(overrides):
        for group, names in scan_conf_dir(Path(folder.removeprefix("file://"))).items():
            options.setdefault(group, {}).update(dict.fromkeys(names, "your config folder"))
    disabled_options: dict[str, dict[str, str]] = {}
    for plugin in disabled or []:
        for group, names in plugin.options.items():
            for name in names:
                disabled_options.setdefault(group, {})[name] = plugin.name
    for plugin in broken or []:
        for group, names in plugin.options.items():
            for name in names:
                disabled_options.setdefault(group, {})[name] = plugin.name
    errors = {p.name: p.error or "" for p in broken or []}
    catalog = _catalog()
    result: list[str] = []
    for override in overrides:
        match = _GROUP_OVERRIDE.match(override)
        if not match or "." in match.group("group") or not match.group("rest"):
            result.append(override)
            continue
        prefix, group = match.group("prefix"), match.group("group")
        rest = match.group("rest")
        value = rest.split("=", 1)[1]
        is_group = group in options or group in defaults_groups
        if not is_group and group in disabled_options:
            _check_option(group, value, options, catalog, disabled_options, errors)
        if not is_group:
            if prefix in ("+", "++") and _looks_like_option(value):
                known = sorted(set(options) | defaults_groups)
                raise ConfigError(
                    f"unknown config group '{group}' in '{override}'{did_you_mean(group, known)}; "
                    f"groups: {', '.join(known)}"
                )
            result.append(override)
            continue
        if prefix == "~":
            result.append(override)
            continue
        if group == "experiment" and value in ("null", "None"):
            result.append("~experiment")
            continue
        for choice in _sweep_values(value):
            _check_option(group, choice, options, catalog, disabled_options, errors)
        if group in defaults_groups:
            result.append(f"{group}{rest}")
        else:
            result.append(f"+{group}{rest}")
    chosen = {m.group("group") for o in overrides if (m := _GROUP_OVERRIDE.match(o)) and m.group("rest")}
    for group, option in _primary_defaults().items():  # a default whose plugin is disabled: say so, not Hydra's line
        if option and group not in chosen and option not in options.get(group, {}):
            _check_option(group, option, options, catalog, disabled_options, errors)
    return result


def _looks_like_option(value: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_][\w\-]*(,[A-Za-z_][\w\-]*)*", value))


def _sweep_values(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("choice(") and value.endswith(")"):
        value = value[len("choice(") : -1]
    if value.startswith("[") and value.endswith("]"):  # several options at once: logger=[a,b]
        value = value[1:-1]
    return [v.strip().strip("'\"") for v in value.split(",") if v.strip()]


def _check_option(group: str, option: str, options: dict[str, dict[str, str]], catalog: dict[str, str],
                  disabled: dict[str, dict[str, str]] | None = None, broken: dict[str, str] | None = None) -> None:
    if option in ("null", "None"):
        return
    if option in options.get(group, {}):
        return
    owner = (disabled or {}).get(group, {}).get(option)
    if owner and owner in (broken or {}):
        from ft.errors import PluginError

        raise PluginError((broken or {})[owner])
    if owner:
        raise ConfigError(
            f"{group}={option} is provided by the plugin '{owner}', which is installed but disabled "
            f"(-p no:{owner}, FT_PLUGINS or FT_DISABLE_PLUGIN_AUTOLOAD); enable it with -p {owner}")
    ref = f"{group}/{option}"
    if ref in catalog:
        dist = catalog[ref]
        raise ConfigError(f"{group}={option} is provided by the plugin '{dist}', which is not installed or is "
                          f"disabled; install it with: {install_command(dist)}")
    known = sorted(options.get(group, {}))
    listed = ", ".join(known) if known else "none installed"
    raise ConfigError(f"{group}={option}: no such option{did_you_mean(option, known)}; available: {listed}")


def install_command(dist: str) -> str:
    """How to install a first-party distribution: from this checkout when ft runs from one (its folder under
    ``plugins/``), else from the package index."""
    import tomllib

    plugins = kernel_conf_dir().parent / "plugins"
    for pyproject in sorted(plugins.glob("*/pyproject.toml")) if plugins.is_dir() else []:
        if tomllib.loads(pyproject.read_text()).get("project", {}).get("name") == dist:
            return f"pip install -e {pyproject.parent} (from this checkout; from the package index: pip install {dist})"
    return f"pip install {dist}"


def expand_sweeps(overrides: list[str]) -> list[list[str]]:
    """All override combinations of a multirun (``a=1,2 b=x,y`` gives four)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except Exception as exc:  # noqa: BLE001 - Hydra's parse errors become one line
        raise ConfigError(f"cannot parse overrides: {_one_line(exc)}") from exc
    axes: list[list[str]] = []
    for item, text in zip(parsed, overrides):
        if item.is_sweep_override():
            key = text.split("=", 1)[0]
            axes.append([f"{key}={v}" for v in item.sweep_string_iterator()])
        else:
            axes.append([text])
    return [list(combo) for combo in itertools.product(*axes)]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


#: ``(choices, plain config) -> {dotted key: value}``: the active plugins' ``config_defaults``.
DefaultsProvider = Callable[[dict[str, "str | None"], dict[str, Any]], dict[str, Any]]


def _hydra_compose(overrides: list[str], plugins: list[LoadedPlugin], schemas: dict[str, type],
                   user_overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(kernel_conf_dir()), version_base="1.3"):
            user, overrides = user_searchpath(overrides), [o for o in overrides if not o.startswith("hydra.searchpath=")]
            return hydra_compose(PRIMARY_CONFIG, overrides=[*overrides, searchpath_override(plugins, user)],
                                 return_hydra_config=True)
    except Exception as exc:  # noqa: BLE001 - composition errors are user errors
        raise ConfigError(_explain_hydra_error(exc, plugins, schemas, user_overrides)) from exc
    finally:
        GlobalHydra.instance().clear()


def override_value(value: Any) -> str:
    """A Python value written in Hydra's override grammar (``1e-3``, ``true``, ``null``, ``'text'``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"a plugin default of type {type(value).__name__} cannot be written as config: {value!r}")


def compose(overrides: list[str], plugins: list[LoadedPlugin], schemas: dict[str, type] | None = None,
            registries: dict[str, set[str]] | None = None, defaults_for: DefaultsProvider | None = None) -> Composed:
    """Compose and resolve the config for these normalised overrides, then validate it.

    ``defaults_for`` gives the active plugins' ``config_defaults`` for the composition's choices; each is set
    on the composed config unless the command line set that key (a layer above every config file and below
    the command line), and they are kept in :attr:`Composed.plugin_defaults` for the record.
    """

    from omegaconf import OmegaConf, open_dict

    cfg = _hydra_compose(overrides, plugins, schemas or {}, overrides)
    choices = _choices(cfg, overrides, plugins)
    plugin_defaults: dict[str, Any] = {}
    if defaults_for is not None:
        plain = _plain(cfg, resolve=False)
        plain.pop("hydra", None)
        plugin_defaults = defaults_for(choices, plain)
        typed = {o.lstrip("+~").split("=", 1)[0] for o in overrides} - set(choices)  # values, not group options
        with open_dict(cfg):
            for key, value in plugin_defaults.items():
                if not any(key == t or key.startswith(t + ".") for t in typed):
                    OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    composed = finish(cfg, choices, overrides, plugins, schemas, registries)
    composed.plugin_defaults = plugin_defaults
    return composed


def _plain(node: Any, resolve: bool = False) -> dict[str, Any]:
    """A composed config node as plain data (a mapping, as every node ft composes is)."""
    from omegaconf import OmegaConf

    return cast(dict[str, Any], OmegaConf.to_container(node, resolve=resolve, throw_on_missing=False))


def _choices(cfg: Any, overrides: list[str], plugins: list[LoadedPlugin]) -> dict[str, str | None]:
    """The selected option of every group (``None``: none), lists included."""

    options = available_options(plugins)
    choices: dict[str, str | None] = {}
    for group, value in _plain(cfg.hydra.runtime.choices).items():
        if group.startswith("hydra/"):
            continue
        value = None if value in (None, "null") else str(value)
        if group == "experiment" and value not in options.get("experiment", {}):
            value = None  # the optional per-data preset (experiment: ${data}) that does not exist
        choices[group] = value
    choices.update({g: v for g, v in _list_choices(overrides).items() if g in options})
    return choices


def _list_choices(overrides: list[str]) -> dict[str, str]:
    """Groups given a list of options (``logger=[a,b]``), which Hydra merges but leaves out
    of its recorded choices: recorded here as ``"a,b"`` (see :func:`ft.plugins.split_choice`)."""
    found: dict[str, str] = {}
    for override in overrides:
        match = _GROUP_OVERRIDE.match(override)
        if not match or not match.group("rest") or match.group("prefix") == "~":
            continue
        value = match.group("rest").split("=", 1)[1].strip()
        if value.startswith("[") and value.endswith("]"):
            names = [v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()]
            found[match.group("group")] = ",".join(names)
    return found


def finish(cfg: Any, choices: dict[str, str | None], overrides: list[str], plugins: list[LoadedPlugin],
           schemas: dict[str, type] | None, registries: dict[str, set[str]] | None = None) -> Composed:
    """Drop the hydra node, resolve interpolations, validate against the schemas and type the result."""
    from omegaconf import OmegaConf

    from ft.schema import build_typed, validate_config

    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    try:
        container = _plain(cfg, resolve=True)
    except Exception as exc:  # noqa: BLE001 - a bad interpolation is a config error
        raise ConfigError(f"cannot resolve the config: {_one_line(exc)}") from exc
    groups = set(available_options(plugins)) | _primary_default_groups()
    from ft.plugins import active_plugins

    active_plugins(plugins, choices)  # a declared conflict is named before the options' schemas are merged
    validate_config(container, choices, schemas or {}, groups, registries)
    return Composed(build_typed(container, choices, schemas or {}), container, choices, overrides)


def _selected_option(group: str, overrides: list[str]) -> str | None:
    """The option a group gets from these overrides, else from the primary defaults list."""
    import yaml

    for override in reversed(overrides):
        match = _GROUP_OVERRIDE.match(override)
        if match and match.group("group") == group and match.group("rest"):
            return match.group("rest").split("=", 1)[1]
    data = yaml.safe_load((kernel_conf_dir() / f"{PRIMARY_CONFIG}.yaml").read_text())
    for entry in data.get("defaults", []):
        if isinstance(entry, dict) and group in entry:
            return entry[group]
    return None


def _explain_hydra_error(exc: BaseException, plugins: list[LoadedPlugin], schemas: dict[str, type],
                         overrides: list[str] | None = None) -> str:
    """Turn Hydra's composition errors into one line that says what to change."""
    text = _one_line(exc)
    key_match = re.search(r"Could not override '([^']+)'", str(exc)) or re.search(
        r"Key '([^']+)' is not in struct", str(exc)
    )
    if key_match:
        key = key_match.group(1)
        top = key.split(".")[0]
        groups = sorted(set(available_options(plugins)) | _primary_default_groups() | {"seed", "run"})
        if "." not in key:
            return f"unknown config key '{key}'{did_you_mean(key, groups)}; top-level keys: {', '.join(groups)}"
        import dataclasses

        leaf = key.split(".")[-1]
        option = _selected_option(top, overrides or [])
        schema = schemas.get(f"{top}/{option}") or schemas.get(top)
        known = {f.name for f in dataclasses.fields(schema)} if schema else set()
        if leaf in known and key.count(".") == 1:
            return (f"'{key}' is a valid key that the selected {top}={option} config does not set, so Hydra needs "
                    f"it added: write +{key}=... instead of {key}=...")
        hint = did_you_mean(leaf, known)
        return f"unknown config key '{key}'{hint}" + (f"; valid keys under '{top}': {', '.join(sorted(known))}" if known else "")
    if "LexerNoViableAltException" in text or "mismatched input" in text:
        bad = text.split(":", 1)[-1].strip()
        return (f"cannot parse the override '{bad}': quote a value that holds special characters, "
                f"as in key='<|value|>' (in a shell: \"key='<|value|>'\")")
    return f"invalid config: {text}"


def redact(container: Any) -> Any:
    """A copy of a plain config container with secret-looking values replaced by ``***``."""
    if isinstance(container, dict):
        return {
            k: ("***" if _SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v))
            for k, v in container.items()
        }
    if isinstance(container, list):
        return [redact(v) for v in container]
    return container
