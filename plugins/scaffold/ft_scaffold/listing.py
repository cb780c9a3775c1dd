"""Builtin plugin command ``ft plugins``: the installed plugins (version, hooks, options, capabilities,
traits), as text, JSON, or the method-by-option compatibility matrix docs/compatibility.md is generated from."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="the listing as JSON")
    parser.add_argument("--all", action="store_true", help="disabled plugins too")
    parser.add_argument("--matrix", action="store_true", help="which option works with which method (Markdown)")


def plugin_listing(p_flags: list[str], include_disabled: bool = False) -> list[dict[str, Any]]:
    """What ``ft plugins`` shows, as data (the docs' compatibility matrix is generated from it).
    Disabled plugins (``-p no:``, ``FT_PLUGINS``, autoload off) only with ``include_disabled``."""
    from ft.api import discover

    found = discover(p_flags)
    listing = []
    for plugin in [*found.plugins, *(found.disabled if include_disabled else [])]:
        info = plugin.info
        listing.append({
            "name": plugin.name,
            "distribution": plugin.distribution,
            "version": plugin.version,
            "builtin": plugin.builtin,
            "status": "broken" if plugin.error else "disabled" if plugin.disabled else "ok",
            "error": plugin.error,
            "description": info.description,
            "hooks": sorted(n for n, fn in inspect.getmembers(plugin.module) if hasattr(fn, "ft_impl"))
            if plugin.module is not None else [],
            "options": [f"{g}={o}" for g, names in sorted(plugin.options.items()) for o in names],
            "capabilities": list(info.capabilities),
            "traits": {k: list(v) for k, v in info.traits.items()},
            "requires_traits": list(info.requires_traits),
            "requires": list(info.requires),
            "conflicts": list(info.conflicts),
            "always_active": info.always_active,
        })
    return listing


def compatibility_matrix(listing: list[dict[str, Any]]) -> str:
    """A Markdown table from ``ft plugins --json`` data: each method (row) against each other option
    (column), "yes" or why not, by the rules ``ft validate`` applies to plugins: a plugin's
    ``requires_traits`` against the method's traits, declared ``conflicts`` and the exclusive capabilities."""
    entries = [e for e in listing if e["status"] == "ok"]
    owner = {option: e for e in entries for option in e["options"]}
    methods = sorted(o for o in owner if o.startswith("method="))
    features = sorted((o for o in owner if o.split("=")[0] not in ("method", "data", "experiment", "model")),
                      key=lambda o: (o.split("=")[0], o))

    def verdict(method: str, feature: str) -> str:
        m, f = owner[method], owner[feature]
        traits = set(m["traits"].get(method.replace("=", "/"), []))
        missing = [t for t in f["requires_traits"] if t not in traits]
        if missing:
            return f"no: needs {' and '.join(missing)}"
        if {m["name"], method.replace("=", "/")} & set(f["conflicts"]) or {f["name"], feature.replace("=", "/")} & set(m["conflicts"]):
            return "no: declared conflict"
        clash = sorted(set(m["capabilities"]) & set(f["capabilities"])) if m["name"] != f["name"] else []
        return f"no: both build {clash[0]}" if clash else "yes"

    header = ["method", *features]
    rows = [[method.split("=")[1], *[verdict(method, feature) for feature in features]] for method in methods]
    line = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def run_plugins(args: argparse.Namespace) -> int:
    """List installed plugins; exit 2 when one is broken (its problem is shown in its entry)."""
    listing = plugin_listing(args.ft_p_flags, include_disabled=args.all)
    broken = [e for e in listing if e["status"] == "broken"]
    if args.matrix:
        print(compatibility_matrix(listing))
        return 2 if broken else 0
    if args.json:
        print(json.dumps(listing, indent=2))
        return 2 if broken else 0
    for entry in listing:
        origin = "builtin" if entry["builtin"] else entry["distribution"]
        status = "" if entry["status"] == "ok" else f" [{entry['status'].upper()}]"
        print(f"{entry['name']} {entry['version']} ({origin}){status}"
              f"{' - ' + entry['description'] if entry['description'] else ''}")
        if entry["error"]:
            print(f"  error:        {entry['error']}")
        print(f"  hooks:        {', '.join(entry['hooks']) or '-'}")
        print(f"  options:      {', '.join(entry['options']) or '-'}")
        if entry["always_active"]:
            print("  active:       always")
        for key in ("capabilities", "requires", "conflicts", "requires_traits"):
            if entry[key] or key != "requires_traits":
                print(f"  {key + ':':<13} {', '.join(entry[key]) or '-'}")
        for ref, traits in entry["traits"].items():
            print(f"  traits:       {ref}: {', '.join(traits)}")
    if broken:
        print(f"ft: error: {broken[0]['error']}", file=sys.stderr)
    return 2 if broken else 0
