"""``ft kd dump`` and ``ft kd make-student``."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

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
    from tqdm.auto import tqdm

    from ft.api import prepare_run
    from ft_kd.plugin import check_same_tokenizer, local_vocab_size
    from ft_kd.store import teacher_topk, write_dump
    from ft_model.api import from_pretrained_offline_first, resolve_model_path

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
        teacher = ctx.pm.hook.load_reference_model(ctx=ctx, role="teacher", source=source, load_kwargs=None)
        if args.top_k > teacher.config.vocab_size:
            raise ConfigError(f"--top-k {args.top_k} is larger than the teacher's vocabulary ({teacher.config.vocab_size} tokens)")
        splits = [bundle.train] + ([bundle.eval] if bundle.eval is not None else [])
        with tqdm(total=sum(len(s) for s in splits), desc="teacher top-k", unit="row", disable=None, file=sys.stderr) as bar:
            store = teacher_topk(teacher, splits, args.top_k, args.batch_size, bar)
        write_dump(out, store, {"teacher": args.teacher})
    print(f"wrote the teacher's top-{args.top_k} logprobs of {len(store.rows)} rows ({store.meta['positions']:,} "
          f"trained positions) to {out}")
    print(f"  train with: ft run +method=kd method.logprobs={out} ...with the same data and tokenizer overrides")
    return 0


def make_student(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ft.api import DataError
    from ft_kd.store import cut_layers
    from ft_model.api import from_pretrained_offline_first, resolve_model_path

    out = _fresh(args.out)
    source = resolve_model_path(args.teacher)
    model = from_pretrained_offline_first(AutoModelForCausalLM, source, dtype=torch.float32)
    total = model.config.num_hidden_layers
    try:
        keep = cut_layers(model, args.layers)
    except DataError as exc:
        raise ConfigError(f"--layers {args.layers}: {exc}") from exc
    partial = out.with_name(out.name + ".partial")
    model.save_pretrained(partial, safe_serialization=True)
    from_pretrained_offline_first(AutoTokenizer, source).save_pretrained(partial)
    partial.rename(out)
    params = sum(p.numel() for p in model.parameters())
    print(f"student: {out} ({len(keep)} of {total} layers: {keep}; {params:,} parameters; the teacher's tokenizer)")
    return 0
