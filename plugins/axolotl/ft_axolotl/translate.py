"""An Axolotl config file as ft overrides, key by key, through the ``axolotl_keys`` rules of the installed plugins.

Every top-level key ends in one row of the explain table: ``mapped`` (the ft overrides it became),
``no effect`` (accepted, nothing to do in ft, with why), ``unset`` (null: Axolotl's default),
``ignored`` (``--axolotl-ignore`` / ``--axolotl-lenient``) or ``unsupported`` (no installed plugin maps it).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ft.api import FtUserError

NO_EFFECT = "no effect:"
ONLY_FALSE = "only false:"

#: Keys of first-party plugins, so that a refusal can say which distribution to install or enable.
KNOWN_OWNERS: dict[str, str] = {
    "adapter": "ft-lora or ft-qlora", "lora_*": "ft-lora", "peft_*": "ft-lora", "load_in_4bit": "ft-qlora",
    "load_in_8bit": "ft-qlora", "bnb_*": "ft-qlora", "rl": "ft-preference or ft-grpo", "dpo_*": "ft-preference",
    "kto_*": "ft-preference", "orpo_alpha": "ft-preference", "rl_beta": "ft-preference", "trl": "ft-grpo",
    "sample_packing": "ft-multipack", "eval_sample_packing": "ft-multipack", "plugins": "ft-cce or ft-liger",
    "liger_*": "ft-liger", "cut_cross_entropy": "ft-cce", "fsdp*": "ft-fsdp", "deepspeed": "ft-deepspeed",
    "wandb_*": "ft-trackers", "mlflow_*": "ft-trackers", "use_tensorboard": "ft-trackers", "trackio_*": "ft-trackers",
    "diffusion": "ft-diffusion", "kd_*": "ft-kd",
}


@dataclass
class Row:
    """One Axolotl key: what ft made of it."""

    key: str
    value: Any
    status: str                      # mapped | no effect | unset | ignored | unsupported
    overrides: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    plugin: str = ""


@dataclass
class Translation:
    source: str
    rows: list[Row]

    @property
    def overrides(self) -> list[str]:
        """The ft overrides, groups first (the order Hydra applies them in does not matter; this reads best)."""
        merged: dict[str, Any] = {}
        for row in self.rows:
            merged.update(row.overrides)
        keys = sorted(merged, key=lambda k: "." in k)
        # ++key=value: set whether or not the selected option's YAML lists the key (the schema still checks it)
        return [f"{'++' if '.' in key else ''}{key}={hydra_value(merged[key])}" for key in keys]

    @property
    def unsupported(self) -> list[Row]:
        return [row for row in self.rows if row.status == "unsupported"]

    def origin(self, ft_key: str) -> Row | None:
        """The Axolotl row whose overrides set ``ft_key`` (or a key inside it)."""
        best: tuple[int, Row] | None = None
        for row in self.rows:
            for key in row.overrides:
                if ft_key == key:
                    return row
                if (ft_key.startswith(key + ".") or key.startswith(ft_key + ".")) and (best is None or len(key) > best[0]):
                    best = (len(key), row)
        return best[1] if best else None


Rule = str | Callable[[Any, dict[str, Any]], Any]


def load_axolotl_file(path: str) -> dict[str, Any]:
    """The Axolotl YAML file as a dict; a missing or malformed file is one line."""
    import yaml

    file = Path(path).expanduser()
    if not file.is_file():
        raise FtUserError(f"--axolotl {path}: no such file; give the path of an Axolotl config (YAML)")
    try:
        config = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise FtUserError(f"--axolotl {path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(config, dict):
        raise FtUserError(f"--axolotl {path}: expected a mapping of Axolotl keys, got {type(config).__name__}")
    return config


def collect_rules(pm: Any) -> list[tuple[str, str, Rule]]:
    """``(key pattern, plugin name, rule)`` from every installed plugin's ``axolotl_keys``."""
    hook = getattr(pm.hook, "axolotl_keys", None)
    rules: list[tuple[str, str, Rule]] = []
    for impl in reversed(hook.get_hookimpls() if hook is not None else []):
        for key, rule in (impl.function() or {}).items():
            rules.append((key, impl.plugin_name, rule))
    return rules


def rules_for(key: str, rules: list[tuple[str, str, Rule]]) -> list[tuple[str, Rule]]:
    """The rules for ``key``: exact keys first, then prefix patterns."""
    exact = [(plugin, rule) for pattern, plugin, rule in rules if pattern == key]
    return exact or [(plugin, rule) for pattern, plugin, rule in rules if "*" in pattern and fnmatch.fnmatchcase(key, pattern)]


def _note(rule: Any) -> str:
    doc = getattr(rule, "__doc__", None) if callable(rule) else None
    return doc.strip().splitlines()[0] if doc else ""


def translate(config: dict[str, Any], rules: list[tuple[str, str, Rule]], source: str = "",
              ignore: frozenset[str] = frozenset(), lenient: bool = False) -> Translation:
    """Each key of ``config`` through its rules, one row a key (an entry of ``plugins:``); a rule's ``ValueError``
    and a clash with an earlier key make the row ``unsupported`` (``lenient``: ``ignored``)."""
    rows: list[Row] = []
    for key, value in config.items():
        key = str(key)
        if key in ignore:
            rows.append(Row(key, value, "ignored", note="--axolotl-ignore"))
            continue
        if value is None:
            rows.append(Row(key, value, "unset", note="null: Axolotl's default"))
            continue
        # Axolotl's `plugins:` list names features of several ft plugins: one row an entry.
        items = value if key == "plugins" and isinstance(value, list) else [value]
        for item in items:
            rows.append(_apply(key, item, config, rules_for(key, rules)))
    translation = Translation(source, rows)
    _check_clashes(translation)
    if lenient:
        for row in translation.unsupported:
            row.status, row.note = "ignored", f"--axolotl-lenient; {row.note}"
    return translation


def _apply(key: str, value: Any, config: dict[str, Any], candidates: list[tuple[str, Rule]]) -> Row:
    for plugin, rule in candidates:
        if isinstance(rule, str):
            if rule.startswith(ONLY_FALSE):
                what = rule[len(ONLY_FALSE):].strip()
                if value:
                    return Row(key, value, "unsupported", note=f"{what} is not in ft", plugin=plugin)
                return Row(key, value, "no effect", note="off, as in ft", plugin=plugin)
            if rule.startswith(NO_EFFECT):
                return Row(key, value, "no effect", note=rule[len(NO_EFFECT):].strip(), plugin=plugin)
            return Row(key, value, "mapped", {rule: value}, plugin=plugin)
        try:
            result = rule(value, config)
        except ValueError as exc:  # a value ft cannot honour: listed with the unmapped keys, all at once
            return Row(key, value, "unsupported", note=str(exc), plugin=plugin)
        if result is None:
            continue
        if isinstance(result, str):
            return Row(key, value, "no effect", note=result.removeprefix(NO_EFFECT).strip(), plugin=plugin)
        return Row(key, value, "mapped", dict(result), note=_note(rule), plugin=plugin)
    if candidates:
        owners = sorted({plugin for plugin, _ in candidates})
        return Row(key, value, "unsupported", note=f"this value is not one {', '.join(owners)} can translate")
    owner = next((owner for pattern, owner in KNOWN_OWNERS.items() if fnmatch.fnmatchcase(key, pattern)), None)
    return Row(key, value, "unsupported", note=f"belongs to {owner}, which is not installed or not enabled" if owner
               else "no installed plugin maps it")


def _check_clashes(translation: Translation) -> None:
    """Two keys setting one ft key to different values: the later one is refused (named in the one line)."""
    seen: dict[str, tuple[Row, Any]] = {}
    for row in translation.rows:
        clash = next((k for k, v in row.overrides.items() if k in seen and seen[k][1] != v), None)
        if clash is not None:
            other, value = seen[clash]
            row.status, row.overrides = "unsupported", {}
            row.note = (f"sets {clash}, which '{other.key}: {_short(other.value, 30)}' sets to {_short(value)}; "
                        f"ft takes one value: keep one of the two")
            continue
        for ft_key, value in row.overrides.items():
            seen.setdefault(ft_key, (row, value))


def refusal(translation: Translation) -> str:
    """The one line for keys no plugin maps."""
    rows = translation.unsupported
    names = "; ".join(f"'{row.key}: {_short(row.value, 30)}' ({row.note})" for row in rows)
    return (f"{translation.source}: {len(rows)} Axolotl key{'s' if len(rows) != 1 else ''} ft cannot translate: {names}. "
            f"Leave them out with --axolotl-ignore {','.join(row.key for row in rows)} or --axolotl-lenient "
            f"(`ft axolotl explain {translation.source}` shows every key)")


def _short(value: Any, width: int = 40) -> str:
    text = repr(value) if not isinstance(value, str) else value
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


_BARE = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./:@+-]*$")
_KEYWORDS = {"true", "false", "null", "none", "nan", "inf", "yes", "no", "on", "off"}


def hydra_value(value: Any) -> str:
    """``value`` as a Hydra override value: simple words bare (``adapter=lora``), the rest as ft writes them."""
    from ft.api import override_value

    if isinstance(value, str) and _BARE.match(value) and value.lower() not in _KEYWORDS:
        return value
    if isinstance(value, dict):
        for key in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", str(key)):
                raise FtUserError(f"the key '{key}' in an Axolotl mapping cannot be written as an ft override; rename it")
    return override_value(value)
