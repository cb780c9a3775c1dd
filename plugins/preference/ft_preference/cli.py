"""``ft prefs``: convert common preference data shapes into rows ft trains on, and check files.

    ft prefs convert --from hh-rlhf harmless-base-test.jsonl.gz hh_pairs.jsonl
    ft prefs convert --from gsm8k --to kto example_model_solutions.jsonl gsm8k_kto.jsonl
    ft prefs check my_pairs.jsonl
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

#: ``--from`` names (``hh-rlhf`` is the ``dialogue`` shape under the name users know it by).
SOURCES = {"auto": "auto", "paired": "paired", "unpaired": "unpaired", "dialogue": "dialogue",
           "hh-rlhf": "dialogue", "gsm8k": "gsm8k"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    convert = sub.add_parser("convert", help="convert a file into prompt/chosen/rejected (or KTO) rows")
    convert.add_argument("input", help="source file (.json / .jsonl, gzip allowed)")
    convert.add_argument("output", help="output .jsonl file (.jsonl.gz to compress)")
    convert.add_argument("--from", dest="source", choices=sorted(SOURCES), default="auto",
                         help="shape of the input (default: detect it from the first row)")
    convert.add_argument("--to", choices=("pairs", "kto"), default="pairs",
                         help="pairs: prompt/chosen/rejected; kto: prompt/completion/label")
    convert.add_argument("--style", choices=("messages", "text", "keep"), default="messages",
                         help="messages: chat messages (rendered with the chat template at training); "
                              "text: plain text; keep: as the source has it (default: messages)")
    convert.add_argument("--max-pairs", type=int, default=4, help="gsm8k: pairs per question (default: 4)")
    convert.add_argument("--bad-rows", choices=("error", "drop"), default="error",
                         help="malformed rows stop the conversion (error) or are skipped and counted (drop)")
    check = sub.add_parser("check", help="check a preference file and count its rows")
    check.add_argument("input")
    check.add_argument("--from", dest="source", choices=sorted(SOURCES), default="auto")
    check.add_argument("--kto", action="store_true", help="check as KTO rows (prompt/completion/label)")
    check.add_argument("--bad-rows", choices=("error", "drop"), default="drop")


def run(args: argparse.Namespace) -> int:
    from ft_data.api import read_rows
    from ft_preference.rows import convert_rows

    kind = "unpaired" if getattr(args, "to", "pairs") == "kto" or getattr(args, "kto", False) else "paired"
    style = getattr(args, "style", "keep")
    converted = convert_rows(
        read_rows(args.input), SOURCES[args.source], kind, bad_rows=args.bad_rows,
        max_pairs_per_prompt=getattr(args, "max_pairs", 4), source=args.input,
        style=style,
    )
    counts = ", ".join(f"{k}={v}" for k, v in converted.stats.items())
    if args.action == "check":
        prompts = len({json.dumps(r["prompt"], sort_keys=True) for r in converted.rows})
        print(f"{args.input}: OK as {kind} rows ({counts}, prompts={prompts})")
        return 0
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if out.suffix == ".gz" else open
    with opener(out, "wt", encoding="utf-8") as handle:
        for row in converted.rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(converted.rows)} {kind} rows to {out} ({counts})")
    return 0
