"""Compare ft's formats with Axolotl 0.19 token for token on real rows from ../shared/data.

    .venv/bin/python bench/preprocess/parity.py [--axolotl-python PATH | AXOLOTL_PYTHON=PATH]
        [--rows 200] [--golden tests/test_data_fixtures/axolotl_0.19_golden.json.gz]

For each case it writes the rows, runs ``axolotl_reference.py`` in Axolotl's own virtual environment,
formats the same rows with ft (same tokenizer: SmolLM2-135M-Instruct) and counts rows whose
``input_ids`` or ``labels`` differ. ``--golden`` also stores a few rows of every case with Axolotl's
output, which tests/test_data_axolotl_parity.py checks without needing Axolotl installed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DATA = Path(os.environ.get("FT_BENCH_DATA", REPO.parent / "shared" / "data"))


def gsm8k(n: int) -> list[dict[str, Any]]:
    with (DATA / "gsm8k" / "train.jsonl").open() as handle:
        return [json.loads(line) for _, line in zip(range(n), handle)]


def hh_messages(n: int) -> list[list[dict[str, str]]]:
    from ft_preference.loader import parse_hh_dialogue

    out = []
    with gzip.open(DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz", "rt") as handle:
        for line in handle:
            try:
                out.append(parse_hh_dialogue(json.loads(line)["chosen"]))
            except Exception:  # noqa: BLE001 - a few dialogues are malformed; skip them here
                continue
            if len(out) >= n:
                break
    return out


def cases(n: int) -> dict[str, dict[str, Any]]:
    """Name -> {rows, ft format + options, axolotl type + dataset keys}."""
    toolformer = json.loads((DATA / "gpteacher" / "toolformer.json").read_text())[:n]
    with_input = [r for r in toolformer if r.get("input")][: n // 2] + [r for r in toolformer if not r.get("input")][: n // 2]
    math = gsm8k(n)
    chats = hh_messages(n)
    chat_rows = [{"messages": m} for m in chats]
    sharegpt = [{"conversations": [{"from": {"user": "human", "assistant": "gpt"}[m["role"]], "value": m["content"]} for m in c]}
                for c in chats]
    flagged = []
    for index, chat in enumerate(chats):
        messages = [{"role": "system", "content": "You are a careful assistant."}] + [dict(m) for m in chat]
        assistants = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if assistants and index % 2 == 0:
            messages[assistants[0]]["train"] = False
        flagged.append({"messages": messages})
    segments = [{"segments": [
        {"label": False, "text": f"<|im_start|>user\n{r['question']}<|im_end|>\n<|im_start|>assistant\n"},
        {"label": True, "text": f"{r['answer']}<|im_end|>"}]} for r in math]
    alpaca_math = [{"instruction": r["question"], "output": r["answer"]} for r in math]
    out: dict[str, dict[str, Any]] = {
        "alpaca_toolformer": {"rows": with_input, "format": "alpaca", "type": "alpaca"},
        "alpaca_gsm8k_no_input": {"rows": alpaca_math, "format": "alpaca", "type": "alpaca"},
        "alpaca_train_on_inputs": {"rows": with_input[:50], "format": "alpaca", "type": "alpaca", "train_on_inputs": True},
        "completion_chunks": {"rows": [{"text": r["question"] + "\n" + r["answer"]} for r in math], "format": "completion",
                              "type": "completion", "sequence_len": 48},
        "input_output": {"rows": segments, "format": "input_output", "type": "input_output"},
        "sharegpt_mapping": {"rows": sharegpt, "format": "chat_template", "type": "chat_template",
                             "options": {"field_messages": "conversations",
                                         "message_property_mappings": {"role": "from", "content": "value"}}},
        "chat_two_roles": {"rows": chat_rows, "format": "chat_template", "type": "chat_template",
                           "options": {"roles_to_train": ["assistant", "user"]}},
        "chat_train_flags": {"rows": flagged, "format": "chat_template", "type": "chat_template",
                             "options": {"message_field_training": "train"}},
    }
    for mode in ("turn", "all", "last", "none"):
        out[f"chat_eos_{mode}"] = {"rows": chat_rows, "format": "chat_template", "type": "chat_template",
                                   "options": {"train_on_eos": mode}}
    return out


def run_axolotl(python: str, case: dict[str, Any], tokenizer_dir: str, workdir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows_path, job_path, out_path = workdir / "rows.jsonl", workdir / "job.json", workdir / "out.jsonl"
    rows_path.write_text("".join(json.dumps(r) + "\n" for r in case["rows"]))
    job = {"rows": str(rows_path), "tokenizer": tokenizer_dir, "type": case["type"],
           "sequence_len": case.get("sequence_len", 2048), "train_on_inputs": case.get("train_on_inputs", False),
           "dataset": {k: v for k, v in case.get("options", {}).items()}}
    if case["format"] == "completion":
        job["dataset"]["field"] = "text"
    job_path.write_text(json.dumps(job))
    done = subprocess.run([python, str(HERE / "axolotl_reference.py"), str(job_path), str(out_path)],
                          capture_output=True, text=True, env={**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1"})
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    timing = json.loads(done.stdout.strip().splitlines()[-1])
    return [json.loads(line) for line in out_path.read_text().splitlines()], timing


def run_ft(case: dict[str, Any], tokenizer: Any) -> list[dict[str, Any]]:
    from ft_data.api import BUILTIN_FORMATS, FormatOptions, run_format

    options = FormatOptions(sequence_len=case.get("sequence_len", 2048), train_on_inputs=case.get("train_on_inputs", False),
                            **case.get("options", {}))
    results = run_format(BUILTIN_FORMATS[case["format"]], case["rows"], tokenizer, options)
    flat = []
    for result in results:
        for example in (result if isinstance(result, list) else [result]):
            flat.append({"input_ids": example["input_ids"], "labels": example["labels"]})
    return flat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--axolotl-python", default=os.environ.get("AXOLOTL_PYTHON"),
                        help="python of a separate venv with axolotl==0.19.0 (or set AXOLOTL_PYTHON)")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--golden", help="write a few rows of every case with Axolotl's output to this .json.gz")
    parser.add_argument("--golden-rows", type=int, default=4)
    args = parser.parse_args()
    if not args.axolotl_python:
        parser.error("name the Axolotl venv's python: --axolotl-python PATH or AXOLOTL_PYTHON=PATH (see BENCHMARKS.md)")
    from transformers import AutoTokenizer

    from ft_model.smollm2 import ensure_smollm2

    tokenizer_dir = str(ensure_smollm2())
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    golden: dict[str, Any] = {"axolotl": "0.19.0", "tokenizer": "SmolLM2-135M-Instruct", "cases": {}}
    failures = 0
    with tempfile.TemporaryDirectory() as scratch:
        for name, case in cases(args.rows).items():
            reference, _ = run_axolotl(args.axolotl_python, case, tokenizer_dir, Path(scratch))
            ours = run_ft(case, tokenizer)
            same_ids = sum(1 for a, b in zip(reference, ours) if a["input_ids"] == b["input_ids"])
            same = sum(1 for a, b in zip(reference, ours) if a == b)
            ok = len(reference) == len(ours) and same == len(reference)
            failures += not ok
            print(f"{name:24s} rows={len(case['rows']):4d} examples={len(reference):4d}/{len(ours):4d} "
                  f"same input_ids={same_ids} same input_ids+labels={same} {'OK' if ok else 'DIFFERENT'}")
            if args.golden:
                keep = case["rows"][: args.golden_rows] if case["format"] != "completion" else case["rows"][:2]
                n_out = len(run_ft({**case, "rows": keep}, tokenizer))  # Axolotl's rows come out in order
                golden["cases"][name] = {k: v for k, v in case.items() if k != "rows"} | {
                    "rows": keep, "expected": reference[:n_out]}
    if args.golden:
        with gzip.open(args.golden, "wt") as handle:
            json.dump(golden, handle)
        print(f"golden file: {args.golden}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
