"""The hook ft-axolotl adds to ft's contract (``FT_PLUGIN.hookspecs``): which Axolotl keys a plugin translates.

Any installed plugin may implement it with ``@hookimpl(optionalhook=True)``, so the plugin still loads
when ft-axolotl is not installed. The rules are plain data and functions: a plugin imports nothing from
ft-axolotl to implement it.
"""

from __future__ import annotations

from typing import Any

from ft.api import hookspec


@hookspec
def axolotl_keys() -> dict[str, Any]:
    """The top-level Axolotl config keys this plugin translates into ft's config.

    When: ``ft run/validate/config show --axolotl FILE``, ``ft axolotl convert|explain`` (asked of every
    installed plugin). Returns: ``{key: rule}``; a key ending in ``*`` is a prefix (``wandb_*``). A rule is
    one of:

    - ``"section.key"``: the value is copied to this ft key (``"adapter.r"``);
    - ``"no effect: why"``: accepted, changes nothing in ft (Axolotl-only logging, cloud, kernel-speed
      keys); the explain table lists the key with ``why``;
    - ``"only false: what"``: a switch of a feature ft lacks: off is accepted (no effect), on is refused
      (``what is not in ft``);
    - a callable ``(value, config) -> dict | str | None`` (``config``: the whole Axolotl file):
      a dict of ft overrides (``{"adapter": "lora", "adapter.r": 16}``: a group's key selects an option),
      a ``"no effect: why"`` string, or ``None`` when the value is not this plugin's (another plugin's
      rule for the same key may take it: ``adapter: lora`` is ft-lora's, ``adapter: qlora`` ft-qlora's).
      The first line of its docstring is the note the explain table shows (what was done where Axolotl
      and ft differ). A value ft cannot honour raises ``ValueError("what is wrong; what to do")``.

    Combine: collected; several plugins may claim one key (their callables are tried in turn).
    Must not import torch or other heavy libraries.
    """
