"""Builtin plugin: the data stage for supervised fine-tuning (formats, tokenization, batching)."""

from __future__ import annotations

import random
from typing import Any

from ft import hookimpl
from ft.context import DatasetBundle, RunContext
from ft.errors import DataError
from ft.plugins import PluginInfo

FT_PLUGIN = PluginInfo(
    name="data",
    description="Loads local json/jsonl data, formats it (alpaca, chat_template), tokenizes and pads",
    always_active=True,
)


@hookimpl
def dataset_formats() -> dict[str, Any]:
    from ft.data import BUILTIN_FORMATS

    return dict(BUILTIN_FORMATS)


def resolve_format(ctx: RunContext, name: str) -> Any:
    """The format callable named ``name`` among every plugin's ``dataset_formats``."""
    formats: dict[str, Any] = {}
    for contribution in ctx.pm.hook.dataset_formats():
        for key, fn in (contribution or {}).items():
            if key in formats and formats[key] is not fn:
                raise DataError(f"two plugins provide the dataset format '{key}'")
            formats[key] = fn
    if name not in formats:
        from ft.errors import did_you_mean

        raise DataError(f"data.format={name!r}: unknown format{did_you_mean(name, formats)}; available: {', '.join(sorted(formats))}")
    return formats[name]


def bundle_from_rows(ctx: RunContext, rows: list[dict[str, Any]], source: str,
                     eval_rows: list[dict[str, Any]] | None = None) -> DatasetBundle:
    """Split (when ``data.val_size`` > 0), tokenize and wrap rows as a :class:`DatasetBundle`."""
    from datasets import Dataset

    from ft.data import tokenize_rows

    data_cfg = ctx.cfg.data
    rows = list(rows)
    if data_cfg.shuffle:
        random.Random(int(ctx.cfg.seed)).shuffle(rows)
    if data_cfg.max_rows:
        rows = rows[: int(data_cfg.max_rows)]
    if eval_rows is None and float(data_cfg.val_size) > 0:
        n_eval = max(1, int(round(len(rows) * float(data_cfg.val_size))))
        if n_eval >= len(rows):
            raise DataError(f"data.val_size={data_cfg.val_size} leaves no training rows out of {len(rows)}")
        eval_rows, rows = rows[:n_eval], rows[n_eval:]
    formatter = resolve_format(ctx, data_cfg.format)
    train, stats = tokenize_rows(rows, formatter, ctx.tokenizer, data_cfg, source=source)
    bundle = DatasetBundle(Dataset.from_list(train), stats={"train": stats})
    if eval_rows:
        evaluated, eval_stats = tokenize_rows(eval_rows, formatter, ctx.tokenizer, data_cfg, source=f"{source} (eval)")
        bundle.eval = Dataset.from_list(evaluated)
        bundle.stats["eval"] = eval_stats
    return bundle


@hookimpl(trylast=True)
def prepare_dataset(ctx: RunContext) -> DatasetBundle:
    from ft.data import read_rows

    path = ctx.cfg.data.path
    if not path:
        raise DataError("data.path is not set: point it at a .json or .jsonl file (data.path=...)")
    return bundle_from_rows(ctx, read_rows(path), source=str(path))


@hookimpl(trylast=True)
def collator(ctx: RunContext) -> Any:
    from ft.data import PaddingCollator

    return PaddingCollator(pad_token_id=ctx.tokenizer.pad_token_id)
