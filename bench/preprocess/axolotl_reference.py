"""Run Axolotl's own dataset pipeline on rows, for the parity check and the side-by-side benchmark.

Runs in a separate virtual environment with ``axolotl==0.19.0`` (never in ft's): it imports Axolotl and
calls its public dataset wrapper (``axolotl.utils.data.wrappers.get_dataset_wrapper``), the code path
``axolotl preprocess`` takes for one dataset, then writes each row's ``input_ids`` and ``labels``.
Nothing of Axolotl is copied into ft.

    /tmp/axolotl-venv/bin/python bench/preprocess/axolotl_reference.py JOB.json OUT.jsonl

JOB.json: {"rows": "rows.jsonl", "tokenizer": DIR, "type": "alpaca" | "chat_template" | "completion" |
"input_output", "sequence_len": 512, "train_on_inputs": false, "dataset": {extra dataset keys},
"num_proc": 1}. Prints one JSON line: {"rows", "seconds", "rows_per_s"}.
"""

from __future__ import annotations

import json
import sys
import time


def main(job_path: str, out_path: str) -> None:
    import logging

    logging.disable(logging.WARNING)
    from datasets import Dataset, disable_caching
    from transformers import AutoTokenizer

    from axolotl.utils.data.wrappers import get_dataset_wrapper
    from axolotl.utils.dict import DictDefault

    disable_caching()
    job = json.loads(open(job_path).read())
    rows = [json.loads(line) for line in open(job["rows"]) if line.strip()]
    tokenizer = AutoTokenizer.from_pretrained(job["tokenizer"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    cfg = DictDefault({"sequence_len": job.get("sequence_len", 512), "train_on_inputs": job.get("train_on_inputs", False),
                       "dataset_num_proc": job.get("num_proc", 1), "chat_template": job.get("chat_template", "tokenizer_default")})
    ds_cfg = DictDefault({"path": "rows.jsonl", "type": job["type"], **job.get("dataset", {})})
    dataset = Dataset.from_list(rows)
    started = time.perf_counter()
    wrapped, _ = get_dataset_wrapper(ds_cfg, tokenizer, cfg, job["type"], dataset)
    seconds = time.perf_counter() - started
    with open(out_path, "w") as handle:
        for row in wrapped:
            handle.write(json.dumps({"input_ids": row["input_ids"], "labels": row["labels"]}) + "\n")
    print(json.dumps({"rows": len(rows), "seconds": round(seconds, 3), "rows_per_s": round(len(rows) / seconds, 1)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
