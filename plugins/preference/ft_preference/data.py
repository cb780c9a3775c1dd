"""The data stage of preference methods: sources -> checked rows -> held-out split -> text rows.

Runs in place of ft's SFT data stage (this plugin provides the ``dataset`` capability): the trainers
want preference rows (prompt / chosen / rejected, or prompt / completion / label), not SFT-tokenized
``input_ids`` and ``labels``; TRL tokenizes the text rows itself.

Reading and checking rows is :func:`ft_preference.loader.load_preference_rows`'s job (sources, role
mapping, missing or empty fields, identical pairs, the ``bad_rows`` policy). This module adds what is
specific to preference methods: converting common shapes first (GSM8K solutions, whole-dialogue
pairs split at the last shared assistant turn), pairs -> KTO rows, a held-out split by prompt, the
chat-template rendering and the token limits.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Literal

from ft.api import DataError, DatasetBundle, RunContext, to_plain
from ft_data.api import read_rows
from ft_preference.loader import load_preference_rows, split_by_prompt
from ft_preference.render import Renderer, apply_length_limits
from ft_preference.rows import convert_rows, detect_format, pairs_to_unpaired

log = logging.getLogger("ft")

PREFERENCE_FORMATS = ("auto", "paired", "unpaired", "dialogue", "gsm8k")
#: Shapes this plugin converts before the kernel checks the rows.
CONVERTED = ("gsm8k", "dialogue")


def plain_config(section: Any) -> dict[str, Any]:
    """The typed ``data`` section as a plain dict (the kernel's row loader takes mappings)."""
    return to_plain(section) if not isinstance(section, dict) else dict(section)


def source_shape(data: dict[str, Any], path: str | None) -> str:
    """The shape of ``path``'s rows: ``data.format``, or detected from the first row when ``auto``."""
    fmt = data.get("format") or "auto"
    if fmt not in PREFERENCE_FORMATS:  # an SFT data option (data=chat) chosen with a preference method
        fmt = "auto"
    if fmt != "auto":
        return fmt
    if not path:  # data.datasets: look at the first local dataset; the kernel reads them all
        entries = data.get("datasets") or []
        try:
            rows = read_rows(entries[0]["path"]) if entries else []
        except (DataError, OSError, KeyError):
            rows = []
        return detect_format(rows[0]) if rows else "auto"
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    return detect_format(rows[0])


def load_split(data: dict[str, Any], path: str | None, kind: str, seed: int, which: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Checked canonical rows of ``kind`` from one source (``data.path`` or ``data.val_path``)."""
    shape = source_shape(data, path)
    if shape == "unpaired" and kind == "paired":
        raise DataError(
            f"{path}: rows are unpaired (prompt/completion/label), but this method trains on pairs "
            f"(prompt/chosen/rejected); use method=kto, or pair the completions"
        )
    # The kernel loader splits by row and reads val_path itself; ft-preference splits by prompt.
    loader_cfg = {**data, "val_size": 0.0, "val_path": None, "val_datasets": []}
    stats: dict[str, Any] = {}
    rows = None
    if which == "eval":
        loader_cfg.update(path=path, datasets=[], max_rows=None)
    if shape in CONVERTED and path:
        converted = convert_rows(read_rows(path), shape, kind, bad_rows=data.get("bad_rows") or "error",
                                 max_pairs_per_prompt=int(data.get("max_pairs_per_prompt") or 4), source=str(path))
        rows, stats = converted.rows, {f"source_{k}" if k in ("rows_in", "rows_out") else k: v
                                       for k, v in converted.stats.items()}
    loader_kind: Literal["pairwise", "unpaired"] = (
        "unpaired" if kind == "unpaired" and (shape == "unpaired" or rows is not None) else "pairwise")
    loaded = load_preference_rows(loader_cfg, loader_kind, seed, rows=rows)
    out = loaded.train
    if kind == "unpaired" and loader_kind == "pairwise":
        out = pairs_to_unpaired(out)
    if rows is not None and data.get("max_rows") and which == "train":
        out = out[: int(data["max_rows"])]
    stats.update({k: v for k, v in loaded.stats.items() if k not in ("eval_rows", "rows")})
    return out, stats


def is_embedded_default(data: dict[str, Any]) -> bool:
    """No file and no datasets: train on the pairs ft makes from its default task."""
    return not data.get("path") and not data.get("datasets")


def embedded_pairs(task: dict[str, Any], kind: str) -> tuple[list, list, dict[str, Any], dict[str, Any]]:
    """The embedded default: the default task's pairs (right answer chosen, a plausible wrong one rejected),
    held-out pairs never sharing a set of numbers with training pairs; unpaired rows for KTO."""
    from ft_default_task.task import preference_pairs as default_task_pairs

    train, held_out = default_task_pairs(int(task["train_pairs"]), int(task["eval_pairs"]), int(task["seed"]))
    if kind == "unpaired":
        train, held_out = pairs_to_unpaired(train), pairs_to_unpaired(held_out)
    log.info("data: the embedded default: %d sort-numbers pairs (the right answer chosen, a plausible wrong one "
             "rejected), %d held out; data.path=FILE trains on yours", len(train), len(held_out))
    source = {"source": "embedded default task pairs", "rows_in": len(train)}
    return train, held_out, source, {"source": "embedded default task pairs", "rows_in": len(held_out)}


def split_held_out(data: dict[str, Any], kind: str, seed: int, rows: list) -> tuple[list, list, dict[str, Any]]:
    """``(train, held_out, stats)``: held-out rows from ``data.val_path`` or ``data.val_datasets``, or
    ``data.val_size`` of the prompts split off ``rows``."""
    if data.get("val_path"):
        return (rows, *load_split(data, data["val_path"], kind, seed, "eval"))
    if data.get("val_datasets"):
        loaded = load_preference_rows({**data, "datasets": data["val_datasets"], "path": None, "val_size": 0.0,
                                       "val_datasets": [], "max_rows": None}, "unpaired" if kind == "unpaired" else "pairwise", seed)
        return rows, loaded.train, dict(loaded.stats)
    train, held_out = split_by_prompt(rows, float(data.get("val_size") or 0.0), seed)
    return train, held_out, {"held_out_prompts": len({str(r["prompt"]) for r in held_out})}


def prepare(ctx: RunContext, kind: str) -> DatasetBundle:
    """Build the train (and held-out) datasets of plain-text preference rows for this run."""
    from datasets import Dataset

    data = plain_config(ctx.cfg.data)
    method = ctx.cfg.method
    seed = int(data["seed"]) if data.get("seed") is not None else int(ctx.cfg.seed)
    if is_embedded_default(data):
        train_rows, eval_rows, train_stats, eval_stats = embedded_pairs(data["task"], kind)
    else:
        train_rows, train_stats = load_split(data, data.get("path"), kind, seed, "train")
        train_rows, eval_rows, eval_stats = split_held_out(data, kind, seed, train_rows)
    if data.get("shuffle", True):
        random.Random(seed + 1).shuffle(eval_rows)
    if data.get("max_eval_rows"):
        eval_rows = eval_rows[: int(data["max_eval_rows"])]

    renderer = Renderer(ctx.tokenizer, text_as_chat=bool(data.get("text_as_chat")))

    def finish(canonical: list[dict[str, Any]], split_stats: dict[str, Any]) -> Any:
        text_rows = apply_length_limits([renderer.row(r) for r in canonical], ctx.tokenizer,
                                        method.max_prompt_length, method.max_completion_length,
                                        split_stats)
        split_stats["rows"] = len(text_rows)
        return Dataset.from_list(text_rows) if text_rows else None

    train = finish(train_rows, train_stats)
    if train is None:
        raise DataError(f"no training rows remain after the length limits ({train_stats})")
    bundle = DatasetBundle(train, stats={"train": train_stats})
    if eval_rows:
        bundle.eval = finish(eval_rows, eval_stats)
        bundle.stats["eval"] = eval_stats
    return bundle
