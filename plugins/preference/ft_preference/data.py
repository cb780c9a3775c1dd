"""The data stage of preference methods: file -> checked canonical rows -> held-out split -> text.

Runs in place of ft's SFT data stage (this plugin provides the ``dataset`` capability): the trainers
want preference rows (prompt / chosen / rejected, or prompt / completion / label), not SFT-tokenized
``input_ids`` and ``labels``. TRL tokenizes the text rows itself.
"""

from __future__ import annotations

import random
from typing import Any

from ft.context import DatasetBundle, RunContext
from ft.errors import DataError
from ft_preference.render import Renderer, apply_length_limits
from ft_preference.rows import convert_rows, split_by_prompt

PREFERENCE_FORMATS = ("auto", "paired", "unpaired", "dialogue", "gsm8k")


def option(section: Any, key: str, default: Any) -> Any:
    """``section.key`` when the selected data option has that key (``data=chat`` has fewer)."""
    value = section.get(key, default) if hasattr(section, "get") else getattr(section, key, default)
    return default if value is None and default is not None else value


def load_rows(path: str, fmt: str, kind: str, data_cfg: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Read one file and convert it into checked canonical rows of ``kind`` (paired or unpaired)."""
    from ft.data import read_rows

    converted = convert_rows(
        read_rows(path), fmt, kind,
        bad_rows=option(data_cfg, "bad_rows", "error"),
        max_pairs_per_prompt=int(option(data_cfg, "max_pairs_per_prompt", 4)),
        source=str(path),
    )
    return converted.rows, converted.stats


def prepare(ctx: RunContext, kind: str) -> DatasetBundle:
    """Build the train (and held-out) datasets of plain-text preference rows for this run."""
    from datasets import Dataset

    data_cfg, method_cfg = ctx.cfg.data, ctx.cfg.method
    path = option(data_cfg, "path", None)
    if not path:
        raise DataError("data.path is not set: point it at a file of preference rows (data.path=...)")
    fmt = option(data_cfg, "format", "auto")
    if fmt not in PREFERENCE_FORMATS:  # an SFT data option (data=chat) chosen with a preference method
        fmt = "auto"
    seed = int(ctx.cfg.seed)
    rows, stats = load_rows(str(path), fmt, kind, data_cfg)
    val_path = option(data_cfg, "val_path", None)
    if val_path:
        eval_rows, eval_stats = load_rows(str(val_path), fmt, kind, data_cfg)
        train_rows = rows
    else:
        train_rows, eval_rows = split_by_prompt(rows, float(option(data_cfg, "val_size", 0.0)), seed)
        eval_stats = {"rows_in": len(eval_rows)}
    if option(data_cfg, "shuffle", True):
        random.Random(seed).shuffle(train_rows)
        random.Random(seed + 1).shuffle(eval_rows)
    if option(data_cfg, "max_rows", None):
        train_rows = train_rows[: int(data_cfg.max_rows)]
    if option(data_cfg, "max_eval_rows", None):
        eval_rows = eval_rows[: int(data_cfg.max_eval_rows)]

    renderer = Renderer(ctx.tokenizer, text_as_chat=bool(option(data_cfg, "text_as_chat", False)))
    max_prompt = option(method_cfg, "max_prompt_length", None)
    max_completion = option(method_cfg, "max_completion_length", None)

    def finish(canonical: list[dict[str, Any]], split_stats: dict[str, int]) -> Any:
        text_rows = apply_length_limits([renderer.row(r) for r in canonical], ctx.tokenizer,
                                        max_prompt, max_completion, split_stats)
        split_stats["rows"] = len(text_rows)
        return Dataset.from_list(text_rows) if text_rows else None

    train_stats = {**stats, "rows_train": len(train_rows)}
    train = finish(train_rows, train_stats)
    if train is None:
        raise DataError(f"{path}: no training rows remain after the length limits ({train_stats})")
    bundle = DatasetBundle(train, stats={"train": train_stats})
    if eval_rows:
        bundle.eval = finish(eval_rows, eval_stats)
        bundle.stats["eval"] = eval_stats
    ctx.extras.setdefault("preference", {})["kind"] = kind
    return bundle
