"""``ft kd dump`` and ``ft kd make-student``."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from ft.api import ConfigError, FtUserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    dump = sub.add_parser("dump", help="run the teacher once over a config's data and write its top-k logprobs")
    dump.add_argument("--teacher", required=True, help="the teacher: a model folder or a cached hub id")
    dump.add_argument("--out", required=True, help="the folder to write (must not exist)")
    dump.add_argument("--top-k", type=int, default=32, help="teacher log-probabilities kept per position (default 32)")
    dump.add_argument("--batch-size", type=int, default=8, help="rows per teacher forward pass (default 8)")
    dump.add_argument("overrides", nargs="*", help="data and model overrides, as for ft run (data=chat data.path=...)")
    student = sub.add_parser("make-student", help="a smaller student: the teacher with fewer decoder layers")
    student.add_argument("teacher", help="the teacher: a model folder, a cached hub id, or builtin:smollm2-135m-instruct")
    student.add_argument("--layers", type=int, required=True, help="decoder layers to keep (evenly spaced, first and last kept)")
    student.add_argument("--out", required=True, help="the folder to write (must not exist)")


def run(args: argparse.Namespace) -> int:
    if args.action == "dump":
        return dump(args)
    return make_student(args)


def _fresh(out: str) -> Path:
    path = Path(out)
    if path.exists():
        raise FtUserError(f"--out {out}: already exists; ft never overwrites, choose another folder")
    return path


def dump(args: argparse.Namespace) -> int:
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from ft.api import from_pretrained_offline_first, prepare_run, resolve_model_path
    from ft_kd.plugin import check_same_tokenizer, local_vocab_size
    from ft_kd.store import row_hash, trained_mask, write_dump

    out = _fresh(args.out)
    if args.top_k < 1:
        raise ConfigError(f"--top-k {args.top_k}: expected at least 1")
    vocab = local_vocab_size(args.teacher)
    if vocab is not None and args.top_k > vocab:
        raise ConfigError(f"--top-k {args.top_k} is larger than the teacher's vocabulary ({vocab} tokens)")
    prepared = prepare_run(list(args.overrides), list(getattr(args, "ft_p_flags", [])))
    with tempfile.TemporaryDirectory(prefix="ft-kd-dump-") as scratch:
        ctx = prepared.context(Path(scratch))
        ctx.tokenizer = ctx.pm.hook.load_tokenizer(ctx=ctx)
        bundle = ctx.pm.hook.prepare_dataset(ctx=ctx)
        source = resolve_model_path(args.teacher)
        from transformers import AutoTokenizer

        check_same_tokenizer(from_pretrained_offline_first(AutoTokenizer, source), ctx.tokenizer, args.teacher)
        teacher = ctx.pm.hook.load_reference_model(ctx=ctx, role="teacher", source=source)
        vocab = teacher.config.vocab_size
        if args.top_k > vocab:
            raise ConfigError(f"--top-k {args.top_k} is larger than the teacher's vocabulary ({vocab} tokens)")
        ids_parts: list[torch.Tensor] = []
        logprob_parts: list[torch.Tensor] = []
        rows: dict[str, tuple[int, int]] = {}
        offset = 0
        splits = [bundle.train] + ([bundle.eval] if bundle.eval is not None else [])
        total = sum(len(s) for s in splits)
        with tqdm(total=total, desc="teacher top-k", unit="row", disable=None, file=sys.stderr) as progress:
            for split in splits:
                for start in range(0, len(split), args.batch_size):
                    chunk = [split[i] for i in range(start, min(start + args.batch_size, len(split)))]
                    for row, (ids, logprobs) in zip(chunk, _teacher_topk(teacher, chunk, args.top_k, F, torch)):
                        key = row_hash(row["input_ids"])
                        if key in rows:
                            continue  # the same tokens twice: one entry serves both
                        mask = trained_mask(torch.as_tensor(row["labels"]))
                        ids_parts.append(ids[mask])
                        logprob_parts.append(logprobs[mask])
                        rows[key] = (offset, int(mask.sum()))
                        offset += int(mask.sum())
                    progress.update(len(chunk))
        write_dump(out, ids_parts, logprob_parts, rows, {"k": args.top_k, "teacher": args.teacher, "vocab_size": vocab,
                                                         "rows": len(rows)} | {"positions": offset})
    print(f"wrote the teacher's top-{args.top_k} logprobs of {len(rows)} rows ({offset:,} trained positions) to {out}")
    print(f"  train with: ft run +method=kd method.logprobs={out} ...the same data and tokenizer overrides")
    return 0


def _teacher_topk(teacher: Any, rows: list[dict[str, Any]], k: int, F: Any, torch: Any) -> list[tuple[Any, Any]]:
    """Top-k log-probabilities (T = 1) at every position of each row, one padded forward pass."""
    longest = max(len(r["input_ids"]) for r in rows)
    pad = teacher.config.pad_token_id or 0
    input_ids = torch.full((len(rows), longest), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row["input_ids"])] = torch.as_tensor(row["input_ids"])
        attention[i, : len(row["input_ids"])] = 1
    device = next(teacher.parameters()).device
    with torch.no_grad():
        logits = teacher(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits.float()
    out = []
    for i, row in enumerate(rows):
        logp = F.log_softmax(logits[i, : len(row["input_ids"])], dim=-1)
        values, indices = logp.topk(k, dim=-1)
        out.append((indices.cpu(), values.cpu()))
    return out


def make_student(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ft.api import from_pretrained_offline_first, resolve_model_path

    out = _fresh(args.out)
    source = resolve_model_path(args.teacher)
    teacher = from_pretrained_offline_first(AutoModelForCausalLM, source, dtype=torch.float32)
    body = getattr(teacher, teacher.base_model_prefix)
    layers = getattr(body, "layers", None)
    if layers is None:
        raise FtUserError(f"{args.teacher}: ft kd make-student knows decoder stacks under .layers (Llama, Qwen, "
                          f"Mistral...); {type(teacher).__name__} has none")
    total = len(layers)
    if not 1 <= args.layers <= total:
        raise ConfigError(f"--layers {args.layers}: expected 1 to {total} (the teacher has {total} layers)")
    keep = sorted({round(i * (total - 1) / max(args.layers - 1, 1)) for i in range(args.layers)}) if args.layers > 1 else [0]
    body.layers = torch.nn.ModuleList([layers[i] for i in keep])
    for index, layer in enumerate(body.layers):
        attention = getattr(layer, "self_attn", None)
        if attention is not None and hasattr(attention, "layer_idx"):
            attention.layer_idx = index
    teacher.config.num_hidden_layers = len(keep)
    if getattr(teacher.config, "layer_types", None):
        teacher.config.layer_types = [teacher.config.layer_types[i] for i in keep]
    partial = out.with_name(out.name + ".partial")
    teacher.save_pretrained(partial, safe_serialization=True)
    from_pretrained_offline_first(AutoTokenizer, source).save_pretrained(partial)
    partial.rename(out)
    params = sum(p.numel() for p in teacher.parameters())
    print(f"student: {out} ({len(keep)} of {total} layers: {keep}; {params:,} parameters; the teacher's tokenizer)")
    return 0
