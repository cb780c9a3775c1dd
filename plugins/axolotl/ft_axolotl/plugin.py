"""ft-axolotl: ``ft run|validate|config show --axolotl FILE`` and ``ft axolotl convert|explain``.

The file is translated key by key through the ``axolotl_keys`` rules of the installed plugins (each
plugin maps its own keys; this plugin maps only Axolotl's own run-environment keys, which have no effect
in ft) into ft overrides, placed before the overrides typed after it. Nothing is dropped silently: a key
no plugin maps stops the command (exit 2) unless ``--axolotl-ignore KEY,...`` or ``--axolotl-lenient``.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from ft.api import Command, FtUserError, PluginInfo, hookimpl
from ft_axolotl import hookspecs as axolotl_hookspecs

FT_PLUGIN = PluginInfo(
    name="axolotl",
    description="Axolotl config files as ft input: ft run --axolotl FILE; ft axolotl convert / explain",
    hookspecs=axolotl_hookspecs,
)

COMMANDS = ("run", "validate", "config show")


def _options(args: list[str]) -> tuple[str | None, set[str], bool, list[str]]:
    """``(file, ignored keys, lenient, the other arguments)`` from a command's arguments."""
    file: str | None = None
    ignore: set[str] = set()
    lenient, rest = False, []
    index = 0
    while index < len(args):
        arg = args[index]
        name, _, inline = arg.partition("=")
        if name in ("--axolotl", "--axolotl-ignore"):
            value = inline if inline else (args[index + 1] if index + 1 < len(args) else "")
            index += 1 if inline else 2
            if not value or value.startswith("-"):
                raise FtUserError(f"{name} needs a value ({name} FILE)" if name == "--axolotl" else
                                  f"{name} needs keys ({name} KEY,KEY)")
            if name == "--axolotl":
                if file is not None:
                    raise FtUserError("--axolotl given twice; translate one Axolotl file per run")
                file = value
            else:
                ignore.update(k for k in value.split(",") if k)
            continue
        if arg == "--axolotl-lenient":
            lenient = True
        else:
            rest.append(arg)
        index += 1
    return file, ignore, lenient, rest


def translation_for(file: str, p_flags: list[str], ignore: set[str] | frozenset[str] = frozenset(),
                    lenient: bool = False) -> tuple[Any, Any]:
    """``(session, translation)`` of an Axolotl file with the rules of the installed plugins."""
    from ft.api import Session
    from ft_axolotl.translate import collect_rules, load_axolotl_file, translate

    config = load_axolotl_file(file)
    session = Session(p_flags)
    return session, translate(config, collect_rules(session.pm_all), file, frozenset(ignore), lenient)


@hookimpl
def command_arguments(command: str, args: list[str], p_flags: list[str]) -> list[str] | None:
    if command not in COMMANDS or not any(a.split("=")[0].startswith("--axolotl") for a in args):
        return None
    file, ignore, lenient, rest = _options(args)
    if file is None:
        raise FtUserError("--axolotl-ignore and --axolotl-lenient need --axolotl FILE")
    from ft_axolotl.translate import refusal

    session, translation = translation_for(file, p_flags, ignore, lenient)
    if translation.unsupported:
        raise FtUserError(refusal(translation))
    overrides = translation.overrides
    if not any(a in ("-m", "--multirun") for a in rest):
        _check(session, translation, overrides, rest)
    return [*overrides, *rest]


def _check(session: Any, translation: Any, overrides: list[str], typed: list[str]) -> None:
    """Validate the translated config now, so that a bad value's line names the Axolotl key it came from
    (not when the key is one the user typed after the file)."""
    from ft.api import validate_all

    typed_keys = {t.lstrip("+~").split("=", 1)[0] for t in typed}
    try:
        validate_all(session, [*overrides, *typed], multirun=False)
    except FtUserError as exc:
        message = str(exc)
        for ft_key in re.findall(r"[A-Za-z_][\w]*(?:\.[\w\[\]]+)+", message):
            if ft_key.split("[")[0] in typed_keys:
                break
            row = translation.origin(ft_key.split("[")[0])
            if row is not None:
                exc.args = (f"{message} (from Axolotl key '{row.key}' in {translation.source})",)
                break
        raise


# -- ft axolotl convert / explain --------------------------------------------------------------------


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    explain = sub.add_parser("explain", help="print the key-by-key table: Axolotl key, value, ft, status")
    convert = sub.add_parser("convert", help="write the translation as an ft experiment preset (YAML)")
    sub.add_parser("keys", help="print every Axolotl key the installed plugins map (Markdown)")
    for each in (explain, convert):
        each.add_argument("file", help="the Axolotl config (YAML)")
        each.add_argument("--ignore", default="", help="keys to leave out: KEY,KEY")
        each.add_argument("--lenient", action="store_true", help="leave out every key no plugin maps")
    convert.add_argument("-o", "--output", help="the preset file (default: conf/experiment/<file name>.yaml)")


def _run(args: argparse.Namespace) -> int:
    from ft_axolotl.report import explain_table, key_table, preset_yaml, write_preset
    from ft_axolotl.translate import collect_rules, refusal

    if args.action == "keys":
        from ft.api import Session

        print(key_table(collect_rules(Session(args.ft_p_flags).pm_all)))
        return 0

    ignore = {k for k in args.ignore.split(",") if k}
    _, translation = translation_for(args.file, args.ft_p_flags, ignore, args.lenient)
    if args.action == "explain":
        print(explain_table(translation))
        return 0
    if translation.unsupported:
        raise FtUserError(refusal(translation))
    path = write_preset(translation, args.output, preset_yaml(translation))
    print(f"wrote {path}; run it with: ft run hydra.searchpath=[file://{path.parent.parent.resolve()}] "
          f"experiment={path.stem}", file=sys.stderr)
    return 0


@hookimpl
def cli_commands() -> list[Command]:
    return [Command("axolotl", "Axolotl configs: explain (key by key), convert (to an ft preset), keys (every key mapped)",
                    _run, _add_arguments)]


@hookimpl
def axolotl_keys() -> dict[str, Any]:
    from ft_axolotl.environment import ENVIRONMENT_KEYS

    return ENVIRONMENT_KEYS
