"""The ``ft`` command: ``run``, ``validate``, ``config show``, ``plugins`` and plugin subcommands.

Global option (anywhere before the overrides): ``-p NAME`` loads an entry-point plugin that autoload
would skip, ``-p no:NAME`` blocks one. A user mistake prints ``ft: error: ...`` and exits 2.
This module imports nothing heavy: ``ft validate`` and ``ft config show`` never import torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

from ft.errors import EXIT_USER_ERROR, FtUserError, PluginError

USAGE = """ft <command> [options] [overrides...]

commands:
  run [-m] [overrides]      train (the embedded default when no overrides are given); -m: a sweep
  validate [overrides]      compose and check the config, load nothing
  config show [overrides]   print the composed config
{extra}
global options:
  -p NAME / -p no:NAME      load / block a plugin
overrides are Hydra overrides: key=value, group=option (+group=option works too), key=a,b with -m
"""


@dataclass
class Command:
    """A subcommand contributed by a plugin through the ``cli_commands`` hook.

    ``run`` receives the parsed arguments plus ``args.ft_p_flags``: the global ``-p`` flags, so a
    command that composes a config (``ft preprocess``) loads the same plugins as ``ft run`` would.
    """

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


def split_p_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """Pull ``-p X`` / ``-pX`` pairs out of argv (pytest style)."""
    flags: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "-p":
            if index + 1 >= len(argv):
                raise FtUserError("-p needs a plugin name (-p NAME or -p no:NAME)")
            flags.append(argv[index + 1])
            index += 2
            continue
        if arg.startswith("-p") and len(arg) > 2 and not arg.startswith("--"):
            flags.append(arg[2:])
        else:
            rest.append(arg)
        index += 1
    return flags, rest


def plugin_commands(p_flags: list[str], strict: bool = True) -> dict[str, Command]:
    """Subcommands contributed by every installed plugin. Not ``strict`` (``ft --help``): a broken
    plugin is skipped with a warning line instead of stopping the command."""
    from ft.plugins import discover, make_plugin_manager, merge_contributions

    found = discover(p_flags)
    if strict:
        found.raise_if_broken()
    else:
        for plugin in found.broken:
            print(f"ft: warning: {plugin.error}", file=sys.stderr)
    pm = make_plugin_manager(found.usable)
    commands = merge_contributions(
        [{c.name: c for c in contribution or []} for contribution in pm.hook.cli_commands()],
        "cli_commands", same=lambda a, b: a is b)
    clash = sorted(set(commands) & BUILTIN_COMMANDS)
    if clash:
        raise PluginError(f"a plugin defines the command 'ft {clash[0]}', which is ft's own")
    return commands


def expand_arguments(p_flags: list[str], command: str, args: list[str]) -> list[str]:
    """Options that plugins add to ``ft run``/``validate``/``config show`` (``--mytool FILE``), replaced by
    the overrides they mean: the ``command_arguments`` hook, asked until no plugin changes anything."""
    if not any(a.startswith("--") and a != "--multirun" for a in args):
        return args
    from ft.plugins import discover, make_plugin_manager

    found = discover(p_flags)
    found.raise_if_broken()
    pm = make_plugin_manager(found.usable)
    for _ in range(16):
        answers = pm.hook.command_arguments(command=command, args=args, p_flags=p_flags)
        if not answers:
            return args
        args = list(answers[0])
    raise PluginError(f"the command_arguments hook keeps rewriting 'ft {command}' arguments: {' '.join(args)}")


def cmd_validate(p_flags: list[str], overrides: list[str]) -> int:
    from ft.runner import Session, validate_all

    multirun = any(o in ("-m", "--multirun") for o in overrides)
    overrides = [o for o in overrides if o not in ("-m", "--multirun")]
    _reject_flags(overrides)
    _, jobs = validate_all(Session(p_flags), overrides, multirun)
    from ft.config import describe_selection

    selected = describe_selection(jobs[0].choices, jobs[0].cfg.model.name_or_path)
    print(f"config OK ({len(jobs)} job{'s' if len(jobs) != 1 else ''}; {selected})")
    return 0


def cmd_config_show(p_flags: list[str], overrides: list[str]) -> int:
    from omegaconf import OmegaConf

    from ft.config import redact
    from ft.runner import Session, validate_all

    _reject_flags(overrides)
    _, jobs = validate_all(Session(p_flags), overrides, multirun=False)
    container = redact(jobs[0].composed.container)
    from ft.config import describe_selection

    print("# selected: " + describe_selection(jobs[0].choices, jobs[0].cfg.model.name_or_path))
    print(OmegaConf.to_yaml(OmegaConf.create(container)), end="")
    return 0


def _reject_flags(overrides: list[str]) -> None:
    for item in overrides:
        if item.startswith("-"):
            raise FtUserError(f"unknown option '{item}'; overrides look like key=value")


BUILTIN_COMMANDS = {"run", "validate", "config"}


def _main(argv: list[str]) -> int:
    p_flags, rest = split_p_flags(argv)
    if not rest or rest[0] in ("-h", "--help", "help"):
        extra = "".join(f"  {c.name:<25} {c.help}\n" for c in plugin_commands(p_flags, strict=False).values())
        print(USAGE.format(extra=extra), end="")
        return 0
    command, args = rest[0], rest[1:]
    if command == "--version":
        from ft import __version__

        print(f"ft {__version__}")
        return 0
    if command == "run":
        from ft.runner import run_command

        if any(a in ("-h", "--help") for a in args):
            print("usage: ft run [-m|--multirun] [overrides...]")
            return 0
        args = expand_arguments(p_flags, "run", args)
        multirun = any(a in ("-m", "--multirun") for a in args)
        overrides = [a for a in args if a not in ("-m", "--multirun")]
        _reject_flags(overrides)
        return run_command(overrides, multirun, p_flags)
    if command == "validate":
        return cmd_validate(p_flags, expand_arguments(p_flags, "validate", args))
    if command == "config":
        if not args or args[0] != "show":
            raise FtUserError("usage: ft config show [overrides...]")
        return cmd_config_show(p_flags, expand_arguments(p_flags, "config show", args[1:]))
    commands = plugin_commands(p_flags, strict=False)  # `ft plugins` lists broken plugins; Session refuses them
    if command not in commands:
        from ft.errors import did_you_mean

        known = sorted(BUILTIN_COMMANDS | set(commands))
        raise FtUserError(f"unknown command '{command}'{did_you_mean(command, known)}; commands: {', '.join(known)}")
    spec = commands[command]
    parser = argparse.ArgumentParser(prog=f"ft {command}", description=spec.help)
    if spec.add_arguments is not None:
        spec.add_arguments(parser)
    try:
        parsed = parser.parse_args(args)
    except SystemExit as exc:  # argparse already printed its message
        return EXIT_USER_ERROR if exc.code else 0
    parsed.ft_p_flags = p_flags
    return int(spec.run(parsed) or 0)


def entry() -> None:
    """The ``ft`` executable and ``python -m ft``: :func:`main`, then the process ends the way a rank must
    (:func:`ft.distributed.exit_process`). In-process callers (tests, scripts) use :func:`main`."""
    from ft.distributed import exit_process

    exit_process(main())


def main(argv: list[str] | None = None) -> int:
    """Console entry point; user mistakes become one line on stderr and exit code 2."""
    import logging

    logging.getLogger("bitsandbytes.cextension").setLevel(logging.ERROR)
    # bitsandbytes (imported by transformers when installed) warns on every import that it cannot
    # fetch an optional CPU kernel from the hub; ft never downloads at run time, so keep it quiet.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # Library loading bars ("Loading weights", downloads, datasets' map) off unless the user asks for them
    # (HF_HUB_DISABLE_PROGRESS_BARS=0); ft's own bars (tokenizing, scoring, training) stay.
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except FtUserError as exc:
        print(f"ft: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ft: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ft config show | head`: the reader left; nothing more to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        from ft.launch import LAUNCH_DIR_VARIABLE, failure_recorded, report_failure

        if not os.environ.get(LAUNCH_DIR_VARIABLE):
            raise
        # A rank that `ft run` launched: a failure inside the run has its traceback in the run folder
        # (error.txt, error.rank<N>.txt) and the launching process prints the first failure as one line.
        rank = int(os.environ.get("RANK", "0"))
        if not failure_recorded(rank):  # failed before the run started: record it, keep the traceback
            report_failure(rank, exc)
            import traceback

            traceback.print_exc()
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
