"""Builtin plugin: ``ft new-plugin NAME --group GROUP``, a complete plugin distribution to start from, and
``ft plugins`` (``ft_scaffold/listing.py``): the installed plugins.

It writes ``ft-NAME/``: ``pyproject.toml`` with both entry points, the hook module with ``FT_PLUGIN`` and
a typed schema, the option's YAML, a README and tests built on ``ft_testing``. Each group gets a small
working feature (a JSON-lines logger, partial fine-tuning, NEFTune SFT, a chunked loss kernel, a
question/answer format) whose tests pass as generated: edit from something that runs.
"""

from __future__ import annotations

import argparse
import keyword
import re
from pathlib import Path
from string import Template
from typing import Any

from ft.api import ConfigError, PluginInfo, hookimpl

FT_PLUGIN = PluginInfo(name="scaffold", description="ft new-plugin (a plugin distribution to start from) and ft plugins (the installed ones)")

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,39}$")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from ft_scaffold.templates import GROUPS

    parser.add_argument("name", help="the plugin's name: lower case letters, digits and _ (it names the option too)")
    parser.add_argument("--group", required=True, choices=sorted(GROUPS), help="the config group its option joins")
    parser.add_argument("--output", help="where to write the distribution (default: ./ft-NAME)")


def files_for(name: str, group: str) -> dict[str, str]:
    """Relative path -> text of every file of the plugin ``name`` in ``group``."""
    from ft_scaffold.templates import GROUPS, PYPROJECT, README

    description, plugin, test, option_yaml, options_doc, example = GROUPS[group]
    values = {"name": name, "group": group, "Class": "".join(part.title() for part in name.split("_")),
              "description": f"{description} ({group}={name})", "select": f"{group}={name}"}
    fill = lambda text: Template(text).substitute(values)  # noqa: E731
    values.update(options_doc=fill(options_doc), example_overrides=fill(example))
    package = f"ft_{name}"
    pyproject = fill(PYPROJECT)
    builds_on = {"kernels": "ft-kernels", "method": "ft-trainer"}  # fused_token_loss; the hook-aware trainer class
    if group in builds_on:
        pyproject = pyproject.replace('dependencies = ["ft"]', f'dependencies = ["ft", "{builds_on[group]}"]')
    return {
        "pyproject.toml": pyproject,
        "README.md": fill(README),
        f"{package}/__init__.py": f'"""ft-{name}: {values["description"]}."""\n',
        f"{package}/plugin.py": fill(plugin),
        f"{package}/conf/__init__.py": "",
        f"{package}/conf/{group}/{name}.yaml": fill(option_yaml),
        f"tests/test_{name}.py": fill(test),
    }


def check_name(name: str, group: str) -> None:
    """A name that is a valid identifier, and neither a plugin nor a ``group`` option already installed."""
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise ConfigError(f"'{name}' is not a valid plugin name: use 2-40 lower case letters, digits and _, "
                          "starting with a letter (it becomes the package ft_NAME and the option GROUP=NAME)")
    from ft.api import available_options, discover

    found = discover([])
    if name in {p.name for p in [*found.plugins, *found.disabled]}:
        raise ConfigError(f"a plugin named '{name}' is already installed; choose another name")
    if name in available_options(found.plugins).get(group, {}):
        raise ConfigError(f"{group}={name} already exists; choose another name")


def write_plugin(name: str, group: str, output: Path) -> list[Path]:
    """Write the distribution into ``output`` (which must not hold anything); return the files written."""
    check_name(name, group)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"{output} already exists and is not empty; ft never overwrites it: choose another --output")
    written = []
    for relative, text in files_for(name, group).items():
        path = output / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def _run(args: argparse.Namespace) -> int:
    output = Path(args.output or f"ft-{args.name}").expanduser()
    written = write_plugin(args.name, args.group, output)
    print(f"wrote the plugin distribution ft-{args.name} ({args.group}={args.name}) in {output}:")
    for path in written:
        print(f"  {path.relative_to(output)}")
    print(f"next:\n  pip install -e '{output}[test]'\n  ft plugins            # {args.name} is listed\n"
          f"  (cd {output} && pytest)\n  ft run {args.group}={args.name} ...")
    return 0


@hookimpl
def cli_commands() -> list[Any]:
    from ft.api import Command
    from ft_scaffold.listing import add_arguments, run_plugins

    return [Command(name="new-plugin", help="write a complete plugin distribution to start from (--group ...)",
                    run=_run, add_arguments=_add_arguments),
            Command(name="plugins", help="list installed plugins (--json, --all: disabled too, --matrix); exit 2 if "
                    "one is broken", run=run_plugins, add_arguments=add_arguments)]
