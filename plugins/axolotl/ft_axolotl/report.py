"""What ``ft axolotl explain`` prints and ``ft axolotl convert`` writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ft_axolotl.translate import NO_EFFECT, ONLY_FALSE, Row, Rule, Translation, _short, hydra_value


def ft_column(row: Row) -> str:
    """The ft side of a row: the overrides it became, or what was done instead."""
    if row.overrides:
        return " ".join(f"{key}={hydra_value(value)}" for key, value in row.overrides.items())
    return "-"


def explain_table(translation: Translation) -> str:
    """The key-by-key table: Axolotl key, value, ft, status, note (and the plugin that mapped it)."""
    rows = [("Axolotl key", "value", "ft", "status", "note")]
    for row in translation.rows:
        note = " ".join(part for part in (row.note, f"[{row.plugin}]" if row.plugin else "") if part)
        rows.append((row.key, _short(row.value, 36), _short(ft_column(row), 60), row.status, note))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  ----")
    counts: dict[str, int] = {}
    for row in translation.rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    lines.append("")
    lines.append(f"{translation.source}: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    return "\n".join(lines)


def preset_yaml(translation: Translation) -> str:
    """An ft ``experiment`` preset (``# @package _global_``): groups in its defaults list, values below,
    and a comment for every Axolotl key (what it became, or why nothing)."""
    import yaml

    groups = {k: v for row in translation.rows for k, v in row.overrides.items() if "." not in k and isinstance(v, str)
              and k not in ("seed",)}
    values: dict[str, Any] = {}
    for row in translation.rows:
        for key, value in row.overrides.items():
            if key in groups:
                continue
            node = values
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    header = [
        "# @package _global_",
        f"# ft experiment preset translated from {translation.source} by `ft axolotl convert` (ft-axolotl).",
        "# Every Axolotl key of the file, and what ft made of it:",
    ]
    for row in translation.rows:
        target = ft_column(row) if row.overrides else row.status
        note = f" ({row.note})" if row.note else ""
        header.append(f"#   {row.key}: {_short(row.value, 50)} -> {target}{note}".rstrip())
    body: dict[str, Any] = {"defaults": [{f"override /{g}": o} for g, o in groups.items()] + ["_self_"]}
    body.update(values)
    return "\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=120)


def write_preset(translation: Translation, output: str | None, text: str) -> Path:
    """Write the preset: ``output``, or ``conf/experiment/<Axolotl file name>.yaml``; never over another file."""
    from ft.api import FtUserError

    path = Path(output) if output else Path("conf") / "experiment" / f"{Path(translation.source).stem}.yaml"
    if path.exists():
        raise FtUserError(f"{path} exists; give another file with -o (ft axolotl convert never overwrites)")
    if path.parent.name != "experiment":
        raise FtUserError(f"-o {path}: put the preset in a folder named 'experiment' (DIR/experiment/NAME.yaml), "
                          f"so that ft finds it with hydra.searchpath=[file://DIR] experiment=NAME")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def key_table(rules: list[tuple[str, str, Rule]]) -> str:
    """Every Axolotl key the installed plugins map, as a Markdown table (docs/axolotl.md is generated from it)."""
    rows = []
    for key, plugin, rule in sorted(rules, key=lambda r: (r[0], r[1])):
        if isinstance(rule, str) and rule.startswith(NO_EFFECT):
            ft, note = "no effect", rule[len(NO_EFFECT):].strip()
        elif isinstance(rule, str) and rule.startswith(ONLY_FALSE):
            ft, note = "off only", f"on: {rule[len(ONLY_FALSE):].strip()} is not in ft"
        elif isinstance(rule, str):
            ft, note = f"`{rule}`", ""
        else:
            doc = (getattr(rule, "__doc__", None) or "").strip()
            ft, note = "by value", doc.splitlines()[0] if doc else ""
        rows.append(f"| `{key}` | {plugin} | {ft} | {note.replace('|', '/')} |")
    return "\n".join(["| Axolotl key | plugin | ft | note |", "| --- | --- | --- | --- |", *rows])
