"""What ``ft preprocess`` prints: counts per dataset, examples with trained and masked tokens told
apart, and the JSON-lines export of the tokenized rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from ft_data.formats import IGNORE_INDEX

GREEN, DIM, RESET = "\033[32m", "\033[2m", "\033[0m"
#: Without colour, trained text is wrapped in these markers; masked text is left bare.
TRAIN_OPEN, TRAIN_CLOSE = "[[", "]]"

_DROP_REASONS = (("dropped_bad_row", "malformed"), ("dropped_too_long", "longer than data.sequence_len"),
                 ("dropped_too_short", "shorter than data.min_len"),
                 ("dropped_no_trained_tokens", "no trained token"))


def describe_stats(stats: dict[str, Any]) -> list[str]:
    """Human-readable lines for one dataset's counts."""
    lines = [f"rows in: {stats.get('rows_in', 0)}   examples: {stats.get('examples', stats.get('rows', 0))}   "
             f"kept: {stats.get('rows', 0)}"]
    drops = [f"{stats[key]} {why}" for key, why in _DROP_REASONS if stats.get(key)]
    lines.append("dropped: " + (", ".join(drops) if drops else "none"))
    if stats.get("truncated"):
        lines.append(f"truncated to data.sequence_len: {stats['truncated']}")
    if stats.get("first_bad_row"):
        lines.append(f"first malformed row: {stats['first_bad_row']}")
    tokens, trained = int(stats.get("tokens", 0)), int(stats.get("trained_tokens", 0))
    lines.append(f"tokens: {tokens:,}   trained: {trained:,} ({100 * trained / max(tokens, 1):.1f}%)")
    if "len_p50" in stats:
        lines.append("length: " + "  ".join(f"{k[4:]}={stats[k]}" for k in ("len_min", "len_p50", "len_p90", "len_p99", "len_max")))
    return lines


def print_report(prepared: Any, bundle: Any, out: TextIO) -> None:
    """Counts of every dataset, then the train/eval sizes."""
    if prepared is not None:
        for name, part in prepared.parts.items():
            status = ("from cache" if part.cached else "tokenized, cached") if part.cache_dir else "tokenized (data.cache=false: not cached)"
            print(f"{name} [{part.stats.get('format', '?')}] {status}", file=out)
            if part.cache_dir:
                print(f"  cache: {part.cache_dir}", file=out)
            for line in describe_stats(part.stats):
                print(f"  {line}", file=out)
    sizes = f"train: {len(bundle.train)} examples"
    if bundle.eval is not None:
        sizes += f", eval: {len(bundle.eval)} examples"
    print(sizes, file=out)


def render_example(input_ids: list[int], labels: list[int], tokenizer: Any, colour: bool) -> str:
    """The example's text with trained runs green (or in ``[[ ]]``) and masked runs dim (or bare)."""
    pieces: list[str] = []
    start = 0
    for index in range(1, len(input_ids) + 1):
        if index < len(input_ids) and (labels[index] != IGNORE_INDEX) == (labels[start] != IGNORE_INDEX):
            continue
        text = tokenizer.decode(input_ids[start:index], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        trained = labels[start] != IGNORE_INDEX
        if colour:
            pieces.append(f"{GREEN if trained else DIM}{text}{RESET}")
        else:
            pieces.append(f"{TRAIN_OPEN}{text}{TRAIN_CLOSE}" if trained else text)
        start = index
    return "".join(pieces)


def show_examples(dataset: Any, tokenizer: Any, count: int, out: TextIO, colour: bool) -> None:
    legend = (f"{GREEN}trained{RESET} / {DIM}masked{RESET}" if colour
              else f"{TRAIN_OPEN}trained{TRAIN_CLOSE} / masked text is bare")
    print(f"\n{min(count, len(dataset))} example(s): {legend}", file=out)
    for index in range(min(count, len(dataset))):
        row = dataset[index]
        trained = sum(1 for label in row["labels"] if label != IGNORE_INDEX)
        print(f"--- example {index + 1}: {len(row['input_ids'])} tokens, {trained} trained", file=out)
        print(render_example(list(row["input_ids"]), list(row["labels"]), tokenizer, colour), file=out)


def export_jsonl(dataset: Any, path: str) -> int:
    """Write ``input_ids``, ``labels`` and ``attention_mask`` per line; return the row count."""
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with target.open("w", encoding="utf-8") as handle:
        for row in dataset:
            record = {"input_ids": list(row["input_ids"]), "labels": list(row["labels"]),
                      "attention_mask": list(row.get("attention_mask") or [1] * len(row["input_ids"]))}
            handle.write(json.dumps(record) + "\n")
            count += 1
    return count
