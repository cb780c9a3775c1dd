"""``ft eval PATH [data overrides]``, a model's held-out loss, perplexity and exact match.

``PATH`` is a run folder (its final model: full weights or an adapter on its base), a merged model, a
checkpoint or any model folder, loaded the way ``ft generate`` loads it. The rows evaluated:

* with data overrides (``data=chat data.path=test.jsonl``): every row of that data, tokenized by ft's
  data pipeline exactly as training would (the run's own data option is the starting point, so a
  run trained with ``data=chat`` needs only ``data.path=...``);
* without: the run's held-out rows: ``task/heldout.jsonl`` of a default-task run, else the file of
  the run's ``data.val_path``.

Loss is the mean cross entropy over the tokens training would learn (labels, not prompts), summed
over the whole set and divided by the token count (so batching does not change it); perplexity is its
exponential. Rows that are conversations ending in an assistant answer are also answered greedily
and compared by exact match (whitespace-tolerant, like the default task's score). The result prints
as a table; ``--json FILE`` also writes it as JSON (``-`` for stdout, instead of the table).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ft.api import Command, ConfigError, DataError


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="an ft run folder, or a model / adapter / merged / checkpoint folder")
    parser.add_argument("overrides", nargs="*", help="data overrides as for ft run (data=chat data.path=test.jsonl)")
    parser.add_argument("--max-rows", type=int, default=None, help="evaluate only the first N rows")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per forward pass (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="longest generated answer (default 64)")
    parser.add_argument("--no-generate", action="store_true", help="loss and perplexity only, no exact match")
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON (- prints JSON instead of the table)")
    parser.add_argument("--base", help="for an adapter: the base model (default: the run's model)")


def _run_record(folder: Path) -> tuple[Path | None, dict[str, Any]]:
    """The run folder ``folder`` belongs to (itself, or the parent of model/, merged/, a checkpoint) and its run.json."""
    for candidate in (folder, folder.parent, folder.parent.parent):
        if (candidate / "run.json").is_file() and (candidate / "config.yaml").is_file():
            return candidate, json.loads((candidate / "run.json").read_text())
    return None, {}


def _data_overrides(run_overrides: list[str]) -> list[str]:
    """The data choices of the run's command line (its format, its options), which ``ft eval`` starts from."""
    keep = []
    for item in run_overrides:
        key = item.lstrip("+~").split("=", 1)[0]
        if key == "data" or key.startswith("data.") or key == "seed":
            keep.append(item)
    return keep


def choose_rows(path: Path, overrides: list[str], p_flags: list[str]) -> tuple[Any, list[dict[str, Any]], str]:
    """The prepared (composed, validated) config, the raw rows to evaluate and a line saying where they come from."""
    from ft.api import prepare_run
    from ft_data.api import read_rows

    run_dir, record = _run_record(path)
    for item in overrides:
        if item.startswith("-") or "=" not in item:
            raise ConfigError(f"'{item}' is not an override; data overrides look like key=value (data.path=test.jsonl)")
        key = item.lstrip("+~").split("=", 1)[0]
        if not (key == "data" or key.startswith("data.")):
            raise ConfigError(f"ft eval takes data overrides only (data=..., data.*=...), not '{item}'")
    base = _data_overrides(record.get("overrides", [])) if run_dir else []
    user_path = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("data.path=")), None)
    if user_path is None and run_dir is None:
        raise ConfigError(f"{path} is not an ft run folder, so it has no held-out rows; name some: "
                          f"ft eval {path} data=chat data.path=FILE")
    if user_path is None and any(o.lstrip("+").startswith("data.val_path=") for o in overrides):
        raise ConfigError("ft eval evaluates data.path; pass the file as data.path=FILE")
    prepared = prepare_run([*base, *overrides], p_flags)
    cfg = prepared.cfg
    if user_path is not None or run_dir is None:
        return prepared, read_rows(cfg.data.path), f"{cfg.data.path} (every row)"
    heldout = run_dir / "task" / "heldout.jsonl"
    if heldout.is_file():
        return prepared, read_rows(heldout), f"the run's held-out rows ({heldout})"
    if cfg.data.val_path:
        return prepared, read_rows(cfg.data.val_path), f"the run's data.val_path ({cfg.data.val_path})"
    raise ConfigError(f"the run {run_dir} kept no held-out file (no data.val_path, no default-task rows); name one: "
                      f"ft eval {path} data.path=FILE")


def _plain_data(cfg: Any) -> dict[str, Any]:
    from ft.api import to_plain

    data = to_plain(cfg.data)
    # every row is evaluated: no split, no sampling, no other sources
    return {**data, "val_size": 0, "val_path": None, "datasets": None, "val_datasets": None, "max_rows": None,
            "path": None, "shuffle": False}


def token_loss(model: Any, dataset: Any, tokenizer: Any, batch_size: int) -> tuple[float, int]:
    """Summed cross entropy over every labelled token of ``dataset`` and the number of those tokens."""
    import torch
    from tqdm.auto import tqdm

    from ft.api import IGNORE_INDEX

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, count = 0.0, 0
    device = next(model.parameters()).device
    with torch.inference_mode(), tqdm(total=len(dataset), desc="loss", unit="row", file=sys.stderr, leave=False,
                                      disable=None) as bar:
        for start in range(0, len(dataset), batch_size):
            rows = dataset[start : start + batch_size]
            width = max(len(ids) for ids in rows["input_ids"])
            ids = torch.full((len(rows["input_ids"]), width), pad_id, dtype=torch.long)
            labels = torch.full_like(ids, IGNORE_INDEX)
            mask = torch.zeros_like(ids)
            for i, (row_ids, row_labels) in enumerate(zip(rows["input_ids"], rows["labels"])):
                ids[i, : len(row_ids)] = torch.tensor(row_ids)
                labels[i, : len(row_labels)] = torch.tensor(row_labels)
                mask[i, : len(row_ids)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            shifted = labels[:, 1:].to(device)
            losses = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), shifted.reshape(-1),
                                                       ignore_index=IGNORE_INDEX, reduction="sum")
            total += float(losses)
            count += int((shifted != IGNORE_INDEX).sum())
            bar.update(len(rows["input_ids"]))
    return total, count


def evaluate(path: Path, overrides: list[str], p_flags: list[str], max_rows: int | None = None, batch_size: int = 8,
             max_new_tokens: int = 64, generate: bool = True, base: str | None = None) -> dict[str, Any]:
    """Load the model at ``path``, evaluate it on the chosen rows; return the result as a dict."""
    from ft_data.api import prepare_data, resolve_formats
    from ft_default_task.task import score
    from ft_generate.plugin import load_for_generation

    prepared_run, rows, where = choose_rows(path, overrides, p_flags)
    cfg = prepared_run.cfg
    if max_rows is not None:
        rows = rows[:max_rows]
    if not rows:
        raise DataError(f"{where}: no rows to evaluate")
    loaded = load_for_generation(path, base)
    print(f"[ft] {loaded.description}; data: {where}, {len(rows)} rows", file=sys.stderr)
    formats = resolve_formats(prepared_run.session.pm_all.hook.dataset_formats())
    prepared = prepare_data(_plain_data(cfg), loaded.tokenizer, formats, seed=cfg.seed, rows=rows, source="eval rows",
                            use_cache=False)
    total, count = token_loss(loaded.model, prepared.train, loaded.tokenizer, batch_size)
    if count == 0:
        raise DataError(f"{where}: no trained tokens (labels) in any row, so there is no loss to measure")
    loss = total / count
    result: dict[str, Any] = {
        "model": loaded.description, "data": where, "rows": len(rows), "examples": len(prepared.train),
        "tokens": count, "loss": loss, "perplexity": math.exp(min(loss, 700.0)),
    }
    answerable = [r for r in rows if isinstance(r.get("messages"), list) and r["messages"]
                  and r["messages"][-1].get("role") == "assistant"]
    if generate and answerable:
        scored = score(loaded.model, loaded.tokenizer, answerable, max_new_tokens=max_new_tokens, batch_size=batch_size,
                       progress="exact match")
        result.update(exact_match=scored.accuracy, answered=scored.n,
                      samples=[{"prompt": p, "expected": e, "generated": g} for p, e, g in scored.samples[:5]])
    elif generate:
        result["exact_match"] = None
        result["exact_match_note"] = "rows are not conversations ending in an assistant answer: no reference to match"
    return result


def format_table(result: dict[str, Any]) -> str:
    """The result as a two-column text table."""
    rows = [("model", result["model"]), ("data", result["data"]),
            ("rows", f"{result['rows']} ({result['examples']} kept, {result['tokens']} answer tokens)"),
            ("loss", f"{result['loss']:.4f}"), ("perplexity", f"{result['perplexity']:.3f}")]
    if result.get("exact_match") is not None:
        rows.append(("exact match", f"{result['exact_match']:.3f} ({round(result['exact_match'] * result['answered'])}"
                                    f" of {result['answered']})"))
    elif "exact_match_note" in result:
        rows.append(("exact match", f"n/a: {result['exact_match_note']}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _run(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.max_new_tokens < 1 or (args.max_rows is not None and args.max_rows < 1):
        raise ConfigError("--batch-size, --max-new-tokens and --max-rows take numbers of at least 1")
    path = Path(args.path).expanduser()
    if not path.exists():
        raise ConfigError(f"{path}: no such folder; pass an ft run folder or a model folder")
    if args.json and args.json != "-" and Path(args.json).exists():
        raise ConfigError(f"--json {args.json}: the file exists; ft does not overwrite it, choose another name")
    result = evaluate(path, list(args.overrides), list(getattr(args, "ft_p_flags", [])), args.max_rows, args.batch_size,
                      args.max_new_tokens, not args.no_generate, args.base)
    text = json.dumps(result, indent=2) + "\n"
    if args.json == "-":
        sys.stdout.write(text)
        return 0
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(text)
    return 0


def eval_command() -> Command:
    return Command(name="eval", help="held-out loss, perplexity and exact match of a run's (or any) model",
                   run=_run, add_arguments=_add_arguments)
