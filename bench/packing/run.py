"""Benchmark: multipack packing efficiency on real rows, against Axolotl 0.19, and what it buys in training.

    .venv/bin/python bench/packing/run.py [--axolotl-python PATH | AXOLOTL_PYTHON=PATH | --no-axolotl]
        [--capacities 2048 4096] [--train-sequence-len 2048] [--steps 8] [--repeat 3] [--smoke]

The mix: ../shared/data/gpteacher/toolformer.json and roleplay.json (alpaca rows) and GSM8K train
(question -> instruction, answer -> output), tokenized by ft's own data stage (``ft_data.api.prepare_data``,
the alpaca format, SmolLM2-135M-Instruct's tokenizer, ``sequence_len`` 4096 so no row is dropped). The
row lengths are cached as .npy under the benchmark cache (``FT_BENCH_CACHE``, default ~/.cache/ft-bench).

1. Efficiency = real tokens / (packs x capacity), at each capacity: ft's ``pack_rows`` (default group
   size; 3 seeds x 2 epochs), Axolotl 0.19's ``MultipackBatchSampler`` in its own venv on the same length
   array (``axolotl_multipack.py``; 6 seeds), and plain padded batches of 8 (``padded_efficiency``), with
   the seconds each packer takes for the whole mix. Targets: ft >= 0.995 and above Axolotl.
2. Training throughput: a random-initialised Llama with the harness's ``tiny`` shape (hidden 256, 4
   layers) but SmolLM2's tokenizer and 49,152-token vocabulary, so that ``ft run`` tokenizes the rows to
   exactly the lengths above (``--model-dir`` trains another saved model), trained by the real ``ft run`` on the same
   mix, ``+packing=multipack`` with one pack of ``--train-sequence-len`` tokens per step against plain
   padded batches of N rows per step (N = ft's average rows per pack, so both arms train about the same
   tokens a step), same optimizer, schedule, seed and threads, each run in a fresh process, rounds
   interleaved (padded, packed, then packed, padded...). The figure is trained tokens (labels the loss
   uses) per second over the steps after the in-process warm-up. The timed steps hold a small sample of
   rows, and rows differ a lot in their trained share (18% of a toolformer row, about 60% of the
   others), so the run also prints token slots per second times the share of a whole epoch's slots
   that is trained (``epoch_tokens_per_s``: the same measured speed, without the sampling luck of which
   rows were timed). Target: packed >= 1.5x padded.
   One torch thread by default: on a shared machine two OpenMP threads that wait for each other run
   slower and far less steadily than one (``--threads`` changes it, for both arms alike).

Results are printed and appended to bench/results/packing.jsonl (see bench/_harness).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._harness import (REPO, SHARED_DATA, SideFailed, add_common_args, add_device_args, child_env,  # noqa: E402
                            interleave, load_average, print_table, record, run_timed, summarize, versions)

HERE = Path(__file__).resolve().parent
EFFICIENCY_TARGET = 0.995
SPEEDUP_TARGET = 1.5
#: The sources of the mix, in the order they are concatenated (GSM8K is converted to alpaca rows first).
SOURCES = ("gpteacher/toolformer.json", "gpteacher/roleplay.json", "gsm8k/train.jsonl")
LENGTHS_SEQUENCE_LEN = 4096


# -- the mix and its lengths --------------------------------------------------------------------------


def mix_datasets(max_rows: int | None) -> list[dict[str, Any]]:
    """``data.datasets`` entries for the mix (GSM8K written once as alpaca rows into the bench cache)."""
    from bench._harness.workload import cache_dir

    for source in SOURCES:
        if not (SHARED_DATA / source).is_file():
            raise SystemExit(f"{SHARED_DATA / source} not found (set FT_BENCH_DATA to the shared data folder)")
    gsm8k = cache_dir() / "packing" / "gsm8k_train_alpaca.jsonl"
    if not gsm8k.is_file() or gsm8k.stat().st_mtime < (SHARED_DATA / SOURCES[2]).stat().st_mtime:
        gsm8k.parent.mkdir(parents=True, exist_ok=True)
        rows = [json.loads(line) for line in (SHARED_DATA / SOURCES[2]).open() if line.strip()]
        partial = gsm8k.with_name(gsm8k.name + f".partial-{os.getpid()}")
        partial.write_text("".join(json.dumps({"instruction": r["question"], "input": "", "output": r["answer"]}) + "\n"
                                   for r in rows))
        partial.rename(gsm8k)
    paths = [SHARED_DATA / SOURCES[0], SHARED_DATA / SOURCES[1], gsm8k]
    return [{"path": str(p), "format": "alpaca", **({"max_rows": max_rows} if max_rows else {})} for p in paths]


def trained_counts(dataset: Any) -> np.ndarray:
    """Trained tokens (labels other than -100) of every row, from the Arrow list offsets."""
    table = getattr(dataset, "data", None)
    if table is not None and hasattr(table, "column") and getattr(dataset, "_indices", None) is None:
        labels = table.column("labels").combine_chunks()
        offsets = labels.offsets.to_numpy()
        kept = np.concatenate([[0], np.cumsum(labels.values.to_numpy() != -100)])
        return (kept[offsets[1:]] - kept[offsets[:-1]]).astype(np.int64)
    return np.array([sum(1 for label in row if label != -100) for row in dataset["labels"]], dtype=np.int64)


def mix_lengths(datasets: list[dict[str, Any]], tokenizer_dir: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Token count and trained-token count of every row of the mix, through ft's data stage; cached
    as .npz by what made it."""
    from bench._harness.workload import cache_dir

    import ft

    key_parts = ["2", str(LENGTHS_SEQUENCE_LEN), str(tokenizer_dir), getattr(ft, "__version__", "")]
    for entry in datasets:
        stat = Path(entry["path"]).stat()
        key_parts += [entry["path"], str(stat.st_size), str(entry.get("max_rows"))]
    key = hashlib.sha256("\n".join(key_parts).encode()).hexdigest()[:16]
    path = cache_dir() / "packing" / f"lengths-{key}.npz"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        arrays = np.load(path)
        return arrays["lengths"], arrays["trained"], json.loads(meta_path.read_text())
    from transformers import AutoTokenizer

    from ft_data.api import BUILTIN_FORMATS, prepare_data
    from ft_multipack.sampler import row_lengths

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = {"datasets": datasets, "sequence_len": LENGTHS_SEQUENCE_LEN, "shuffle": False}
    prepared = prepare_data(cfg, tokenizer, dict(BUILTIN_FORMATS), progress=False)
    lengths = row_lengths(prepared.train)
    trained = trained_counts(prepared.train)
    per_source = {Path(name).name: {k: part.stats[k] for k in ("rows_in", "rows", "tokens", "trained_tokens",
                                                              "dropped_too_long", "len_p50", "len_max")}
                  for name, part in prepared.parts.items()}
    dropped = sum(s["rows_in"] - s["rows"] for s in per_source.values())
    if dropped:
        print(f"warning: ft's data stage dropped {dropped} rows of the mix", file=sys.stderr)
    meta = {"sources": per_source, "tokenizer": str(tokenizer_dir), "sequence_len": LENGTHS_SEQUENCE_LEN}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, lengths=lengths, trained=trained)
    meta_path.write_text(json.dumps(meta, indent=2))
    return lengths, trained, meta


# -- efficiency -----------------------------------------------------------------------------------------


def ft_packing(lengths: np.ndarray, capacity: int, seeds: int) -> dict[str, Any]:
    """ft's packer over ``seeds`` seeds x 2 epochs: efficiencies, packs, seconds per whole-mix packing."""
    from ft_multipack.packing import pack_rows, report

    efficiencies, packs, seconds, rows_per_pack = [], [], [], []
    for seed in range(seeds):
        for epoch in (0, 1):
            started = time.perf_counter()
            result = pack_rows(lengths, capacity, seed=seed, epoch=epoch)
            seconds.append(time.perf_counter() - started)
            rows = sorted(row for pack in result for row in pack)
            if rows != list(range(len(lengths))):
                raise SystemExit(f"ft's pack_rows lost or repeated rows (capacity {capacity}, seed {seed}, epoch {epoch})")
            summary = report(result, lengths, capacity)
            if max(int(lengths[pack].sum()) for pack in result) > capacity:
                raise SystemExit(f"ft's pack_rows overfilled a pack (capacity {capacity})")
            efficiencies.append(summary.efficiency)
            packs.append(summary.packs)
            rows_per_pack.append(summary.rows_per_pack)
    return {"efficiency": efficiencies, "packs": packs, "seconds": seconds, "rows_per_pack": rows_per_pack}


def axolotl_packing(python: str, lengths_path: Path, capacities: list[int], draws: int) -> dict[int, dict[str, Any]]:
    done = subprocess.run([python, str(HERE / "axolotl_multipack.py"), str(lengths_path),
                           ",".join(map(str, capacities)), ",".join(map(str, range(draws)))],
                          capture_output=True, text=True, env=child_env("cpu"), timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"Axolotl's sampler failed ({python}):\n{done.stderr[-3000:]}")
    out: dict[int, dict[str, Any]] = {}
    for line in done.stdout.splitlines():
        if not line.startswith("{"):
            continue
        item = json.loads(line)
        if not item["rows_once"] or item["rows"] != int(np.load(lengths_path).shape[0]):
            raise SystemExit(f"Axolotl's sampler lost or repeated rows: {item}")
        side = out.setdefault(item["capacity"], {"efficiency": [], "axolotl_efficiency": [], "packs": [],
                                                  "seconds": [], "compile_s": item["compile_s"]})
        for key in ("efficiency", "axolotl_efficiency", "packs", "seconds"):
            side[key].append(item[key])
    return out


def efficiency_section(lengths: np.ndarray, capacities: list[int], seeds: int, axolotl: str | None,
                       lengths_path: Path) -> dict[str, Any]:
    from ft_multipack.packing import padded_efficiency

    tokens = int(lengths.sum())
    draws = seeds * 2
    theirs = axolotl_packing(axolotl, lengths_path, capacities, draws) if axolotl else {}
    table: dict[str, Any] = {}
    print(f"\npacking efficiency = real tokens / (packs x capacity); {len(lengths):,} rows, {tokens:,} tokens, "
          f"mean {lengths.mean():.1f}, max {int(lengths.max())}")
    print(f"  {'capacity':>8}  {'side':<34} {'min':>7} {'median':>7} {'packs':>6} {'rows/pack':>9} {'pack s':>8}")
    for capacity in capacities:
        ours = ft_packing(lengths, capacity, seeds)
        padded = [padded_efficiency(lengths, 8, seed=seed) for seed in range(draws)]
        bound = tokens / (math.ceil(tokens / capacity) * capacity)
        entry: dict[str, Any] = {
            "ft": {"min": min(ours["efficiency"]), "median": statistics.median(ours["efficiency"]),
                   "packs_median": statistics.median(ours["packs"]), "rows_per_pack": statistics.median(ours["rows_per_pack"]),
                   "seconds_median": statistics.median(ours["seconds"]), "n": len(ours["efficiency"])},
            "padded_8": {"min": min(padded), "median": statistics.median(padded)},
            "bound": bound,
        }
        rows = [("ft multipack (pack_rows)", entry["ft"]["min"], entry["ft"]["median"], entry["ft"]["packs_median"],
                 entry["ft"]["rows_per_pack"], f"{entry['ft']['seconds_median']:.3f}")]
        if capacity in theirs:
            side = theirs[capacity]
            entry["axolotl"] = {"min": min(side["efficiency"]), "median": statistics.median(side["efficiency"]),
                                "own_efficiency_median": statistics.median(side["axolotl_efficiency"]),
                                "packs_median": statistics.median(side["packs"]),
                                "rows_per_pack": len(lengths) / statistics.median(side["packs"]),
                                "seconds_median": statistics.median(side["seconds"]), "numba_compile_s": side["compile_s"],
                                "n": len(side["efficiency"])}
            ax = entry["axolotl"]
            rows.append(("Axolotl 0.19 MultipackBatchSampler", ax["min"], ax["median"], ax["packs_median"],
                         ax["rows_per_pack"], f"{ax['seconds_median']:.3f}"))
        rows.append(("padded batches of 8", entry["padded_8"]["min"], entry["padded_8"]["median"], None, 8.0, "-"))
        rows.append(("lower bound: ceil(tokens / capacity)", bound, bound, math.ceil(tokens / capacity),
                     len(lengths) / math.ceil(tokens / capacity), "-"))
        for label, low, mid, packs, per, secs in rows:
            shown_packs = f"{packs:>6.0f}" if packs is not None else f"{'-':>6}"
            print(f"  {capacity:>8}  {label:<34} {low:>7.4f} {mid:>7.4f} {shown_packs} {per:>9.1f} {secs:>8}")
        line = f"  {capacity:>8}  ratios (median): ft / padded-8 {entry['ft']['median'] / entry['padded_8']['median']:.3f}"
        if "axolotl" in entry:
            entry["ft_over_axolotl"] = entry["ft"]["median"] / entry["axolotl"]["median"]
            line += (f", ft / Axolotl {entry['ft_over_axolotl']:.4f}; Axolotl's own efficiency() "
                     f"{entry['axolotl']['own_efficiency_median']:.4f}; packing time ft / Axolotl "
                     f"{entry['ft']['seconds_median'] / entry['axolotl']['seconds_median']:.2f} "
                     f"(Axolotl's first call also compiles numba: +{entry['axolotl']['numba_compile_s']:.2f} s)")
        print(line)
        verdict = "met" if entry["ft"]["min"] >= EFFICIENCY_TARGET else "MISSED"
        if entry["ft"]["min"] < EFFICIENCY_TARGET and entry["ft"]["min"] >= bound:
            verdict += " (no packing can: ft reaches the lower bound on these rows)"
        beats = "" if "axolotl" not in entry else (", above Axolotl: " + ("met" if entry["ft"]["min"] > entry["axolotl"]["median"] else "MISSED"))
        print(f"  {capacity:>8}  target ft >= {EFFICIENCY_TARGET}: {verdict}{beats}")
        table[str(capacity)] = entry
    return table


# -- training throughput ----------------------------------------------------------------------------------


def build_bench_model(seed: int = 0) -> Path:
    """The harness's ``tiny`` Llama shape with SmolLM2's tokenizer and vocabulary (built once, then reused)."""
    from bench._harness.workload import MODEL_CONFIGS, cache_dir

    out = cache_dir() / "models" / f"packing-tiny-smollm2-vocab-seed{seed}"
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    import shutil

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ft_model.smollm2 import ensure_smollm2

    tokenizer = AutoTokenizer.from_pretrained(ensure_smollm2())
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=4096, rms_norm_eps=1e-5,
                         rope_theta=100000.0, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         **MODEL_CONFIGS["tiny"])
    torch.manual_seed(seed)
    partial = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    LlamaForCausalLM(config).save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out


def datasets_override(datasets: list[dict[str, Any]]) -> str:
    """``+data.datasets=[...]`` in Hydra's override grammar."""
    items = []
    for entry in datasets:
        fields = [f"path: '{entry['path']}'", f"format: {entry['format']}"]
        if entry.get("max_rows"):
            fields.append(f"max_rows: {entry['max_rows']}")
        items.append("{" + ", ".join(fields) + "}")
    return "+data.datasets=[" + ", ".join(items) + "]"


def ft_command(arm: str, model: Path, datasets: list[dict[str, Any]], root: Path, args: argparse.Namespace,
               padded_batch: int, precision: str) -> list[str]:
    command = [sys.executable, "-m", "bench.packing.ft_launch", "run", "data=alpaca", "data.path=null",
               datasets_override(datasets), f"data.sequence_len={args.train_sequence_len}",
               f"model.name_or_path={model}", f"trainer.max_steps={args.total_steps}",
               f"trainer.logging_steps={args.total_steps}", f"trainer.save_steps={args.total_steps + 1}",
               f"trainer.precision={precision}", "optim.lr=2e-5", "optim.warmup_steps=0", "seed=42",
               f"run.root={root}", "run.save_final_model=false", "run.plot=false"]
    if arm == "packed":
        return command + ["+packing=multipack", "trainer.micro_batch_size=1",
                          f"packing.attention={args.packed_attention}"]
    return command + [f"trainer.micro_batch_size={padded_batch}"]


def epoch_trained_share(lengths: np.ndarray, trained: np.ndarray, capacity: int, batch: int,
                        pad_to_multiple_of: int = 8, draws: int = 5) -> dict[str, float]:
    """Trained tokens per computed token slot over a whole epoch, for each arm.

    Packed: ft's epoch-0 packs (seed 42, as the runs use), each padded to a multiple of 8 as the
    collator does. Padded: batches of ``batch`` shuffled rows padded to their longest (mean of
    ``draws`` shuffles). The timed steps hold only a sample of rows, and rows differ a lot in how much
    of them is trained (18% for toolformer, about 60% for roleplay and GSM8K), so this share is what
    a whole epoch gets where the timed steps get a noisy sample of it.
    """
    from ft_multipack.packing import pack_rows

    packs = pack_rows(lengths, capacity, seed=42)
    slots = sum(-(-int(lengths[pack].sum()) // pad_to_multiple_of) * pad_to_multiple_of for pack in packs)
    padded = []
    for seed in range(draws):
        order = np.random.default_rng(seed).permutation(len(lengths))
        padded_slots = sum(len(order[i:i + batch]) * int(lengths[order[i:i + batch]].max())
                           for i in range(0, len(order), batch))
        padded.append(int(trained.sum()) / padded_slots)
    return {"packed": int(trained.sum()) / slots, "padded": statistics.mean(padded)}


def measure_arm(command: list[str], env: dict[str, str], scratch: Path, skip: int, epoch_share: float) -> dict[str, Any]:
    """One ``ft run``: trained tokens per second over the steps after ``skip`` warm-up steps, and
    the same speed in token slots per second times the epoch's trained share (``epoch_tokens_per_s``)."""
    tokens_path = scratch / f"tokens-{time.monotonic_ns()}.json"
    run = run_timed(command, env={**env, "FT_BENCH_TOKENS": str(tokens_path)}, cwd=REPO, timing_file=True)
    if not tokens_path.is_file():
        raise SideFailed(f"the run wrote no token counts:\n{run['output_tail']}")
    counts = json.loads(tokens_path.read_text())
    steps = run["step_times"]  # steps[i]: from the end of step i + 1 to the end of step i + 2 (batch i + 1)
    times = steps[skip:]
    trained = counts["trained"][skip + 1:len(steps) + 1]
    slots = counts["slots"][skip + 1:len(steps) + 1]
    if not times or len(trained) != len(times):
        raise SideFailed(f"{len(times)} timed steps but {len(trained)} counted batches; raise --steps")
    slots_per_s = sum(slots) / sum(times)
    return {"tokens_per_s": sum(trained) / sum(times), "epoch_tokens_per_s": slots_per_s * epoch_share,
            "slots_per_s": slots_per_s, "step_s": sum(times) / len(times),
            "trained_per_step": sum(trained) / len(trained), "slots_per_step": sum(slots) / len(slots),
            "trained_per_slot": sum(trained) / sum(slots), "wall_s": run["wall_s"], "peak_rss_mb": run["peak_rss_mb"]}


def training_section(datasets: list[dict[str, Any]], lengths: np.ndarray, trained: np.ndarray,
                     args: argparse.Namespace, precision: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from bench._harness.workload import parameter_count

    from ft_multipack.packing import pack_rows, report

    if int(lengths.max()) > args.train_sequence_len:
        print(f"note: {(lengths > args.train_sequence_len).sum()} rows are longer than --train-sequence-len "
              f"{args.train_sequence_len}; both arms drop them (data.too_long=drop)")
    per_pack = report(pack_rows(lengths, args.train_sequence_len, seed=42), lengths, args.train_sequence_len).rows_per_pack
    padded_batch = args.padded_batch or max(1, round(per_pack))
    share = epoch_trained_share(lengths, trained, args.train_sequence_len, padded_batch)
    model = Path(args.model_dir) if args.model_dir else build_bench_model()
    params = parameter_count(model)
    env = child_env(args.device, args.threads)
    print(f"\ntraining throughput: {model.name} ({params / 1e6:.1f} M parameters), "
          f"{args.device}, {precision}, {args.threads} threads; packed: 1 pack of {args.train_sequence_len} tokens "
          f"a step ({per_pack:.1f} rows on average); padded: {padded_batch} rows a step, padded to the longest; "
          f"{args.steps} timed steps after {args.warmup_steps} per run")
    with tempfile.TemporaryDirectory(prefix="bench-packing-") as scratch_name:
        scratch = Path(scratch_name)
        counter = iter(range(10**6))

        def side(arm: str):
            return lambda: measure_arm(ft_command(arm, model, datasets, scratch / f"runs{next(counter)}", args,
                                                  padded_batch, precision), env, scratch, args.warmup_steps, share[arm])

        results = interleave({"padded": side("padded"), "packed": side("packed")}, args.repeat, args.warmup)
    metrics = ["tokens_per_s", "epoch_tokens_per_s", "slots_per_s", "step_s", "trained_per_step", "slots_per_step",
               "trained_per_slot", "wall_s", "peak_rss_mb"]
    summaries = summarize(results, metrics)
    print_table("training (median of rounds; ratio = packed / padded)", summaries, "padded",
                [("tokens_per_s", "trained tokens/s"), ("epoch_tokens_per_s", "epoch-share tokens/s"),
                 ("slots_per_s", "token slots/s"), ("step_s", "step (s)"), ("trained_per_step", "trained tokens/step"),
                 ("slots_per_step", "token slots/step"), ("trained_per_slot", "trained/slots"),
                 ("peak_rss_mb", "peak RSS (MiB)")])
    print(f"  trained tokens per token slot over a whole epoch: packed {share['packed']:.3f}, padded {share['padded']:.3f} "
          f"(ratio {share['packed'] / share['padded']:.3f}); in the timed steps: packed "
          f"{summaries['packed']['trained_per_slot']['median']:.3f}, padded {summaries['padded']['trained_per_slot']['median']:.3f}")
    config = {"model": model.name, "parameters": params, "epoch_trained_per_slot": share,
              "train_sequence_len": args.train_sequence_len, "padded_batch": padded_batch,
              "rows_per_pack": per_pack, "steps": args.steps, "warmup_steps": args.warmup_steps,
              "precision": precision, "device": args.device, "threads": args.threads}
    return summaries, config


# -- main ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    add_common_args(parser, repeat=3, warmup=0)
    add_device_args(parser)
    parser.set_defaults(threads=1)
    next(a for a in parser._actions if a.dest == "threads").help = "torch CPU threads in both arms (default 1, see the notes below)"
    parser.add_argument("--axolotl-python", default=os.environ.get("AXOLOTL_PYTHON"),
                        help="python of a separate venv with axolotl==0.19.0 (or set AXOLOTL_PYTHON)")
    parser.add_argument("--no-axolotl", action="store_true", help="skip the Axolotl comparison")
    parser.add_argument("--capacities", type=int, nargs="+", default=[2048, 4096],
                        help="pack capacities (sequence_len) for the efficiency table (default 2048 4096)")
    parser.add_argument("--seeds", type=int, default=3, help="ft: seeds x 2 epochs; Axolotl: 2x as many seeds (default 3)")
    parser.add_argument("--max-rows", type=int, default=None, help="rows per source (default: all)")
    parser.add_argument("--no-train", action="store_true", help="efficiency only, no training runs")
    parser.add_argument("--model-dir", default=None,
                        help="train this saved model folder (with its own tokenizer) instead of the tiny SmolLM2-vocab Llama")
    parser.add_argument("--train-sequence-len", type=int, default=2048, help="pack size of the packed arm (default 2048)")
    parser.add_argument("--padded-batch", type=int, default=None,
                        help="rows per padded step (default: ft's average rows per pack at --train-sequence-len)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run (default 8)")
    parser.add_argument("--warmup-steps", type=int, default=2, help="steps run first in each process, not timed (default 2)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None, help="default: fp32 on cpu, bf16 on cuda")
    parser.add_argument("--packed-attention", choices=("auto", "per_row", "position_ids", "block_mask"), default="auto",
                        help="packing.attention for the packed arm (default auto: per_row for sdpa models on CPU)")
    parser.add_argument("--smoke", action="store_true",
                        help="a start-up check: 100 rows per source, capacity 2048, one seed, no Axolotl, packs of 512, "
                             "one timed step per arm, not recorded")
    args = parser.parse_args(argv)
    if args.smoke:
        args.max_rows, args.capacities, args.seeds, args.no_axolotl = 100, [2048], 1, True
        args.train_sequence_len, args.steps, args.warmup_steps = 512, 1, 0
        args.repeat, args.warmup, args.no_record = 1, 0, True
    if not args.no_axolotl and not args.axolotl_python:
        parser.error("name the Axolotl venv's python: --axolotl-python PATH or AXOLOTL_PYTHON=PATH, or pass --no-axolotl")
    if args.axolotl_python and not args.no_axolotl and not Path(args.axolotl_python).exists():
        parser.error(f"--axolotl-python {args.axolotl_python} does not exist")
    args.total_steps = args.steps + args.warmup_steps + 1  # the first step has no interval before it
    precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from ft_model.smollm2 import ensure_smollm2

    load_before = load_average()
    datasets = mix_datasets(args.max_rows)
    started = time.perf_counter()
    lengths, trained, meta = mix_lengths(datasets, ensure_smollm2())
    parts = ", ".join(f"{name} {stats['rows']:,} rows" for name, stats in meta["sources"].items())
    print(f"mix: {parts} -> {len(lengths):,} rows, "
          f"{int(lengths.sum()):,} tokens (SmolLM2 tokenizer, ft's alpaca format; {time.perf_counter() - started:.1f} s)")
    with tempfile.TemporaryDirectory(prefix="bench-packing-") as scratch:
        lengths_path = Path(scratch) / "lengths.npy"
        np.save(lengths_path, lengths)
        efficiency = efficiency_section(lengths, args.capacities, args.seeds,
                                        None if args.no_axolotl else args.axolotl_python, lengths_path)
    summaries: dict[str, Any] = {"padded": {}}
    train_config: dict[str, Any] = {}
    if not args.no_train:
        summaries, train_config = training_section(datasets, lengths, trained, args, precision)
    headline: list[tuple[str, str]] = []
    for capacity, entry in efficiency.items():
        text = f"ft {entry['ft']['median']:.4f} (min {entry['ft']['min']:.4f})"
        if "axolotl" in entry:
            text += f", Axolotl 0.19 {entry['axolotl']['median']:.4f}, ratio {entry['ft_over_axolotl']:.4f}"
        text += f", padded-8 {entry['padded_8']['median']:.3f}"
        headline.append((f"efficiency at {capacity}", text))
    if "packed" in summaries and "tokens_per_s" in summaries["packed"]:
        packed, padded = summaries["packed"]["tokens_per_s"], summaries["padded"]["tokens_per_s"]
        ratio = packed["median"] / padded["median"]
        epoch_ratio = summaries["packed"]["epoch_tokens_per_s"]["median"] / summaries["padded"]["epoch_tokens_per_s"]["median"]
        verdict = "met" if min(ratio, epoch_ratio) >= SPEEDUP_TARGET else "MISSED"
        headline += [("trained tokens/s, padded", f"{padded['median']:.0f} (spread {100 * padded['spread']:.0f}%)"),
                     ("trained tokens/s, packed", f"{packed['median']:.0f} (spread {100 * packed['spread']:.0f}%)"),
                     ("speedup packed / padded", f"{ratio:.2f}x in the timed steps, {epoch_ratio:.2f}x at the epoch's "
                                                 f"trained share (target >= {SPEEDUP_TARGET}x: {verdict})")]
    config = {"mix": [d["path"] for d in datasets], "max_rows": args.max_rows, "rows": len(lengths),
              "tokens": int(lengths.sum()), "capacities": args.capacities, "seeds": args.seeds, **train_config}
    side_versions = {"ft": versions(packages=("ft", "ft-multipack", "torch", "transformers", "numpy"))}
    if not args.no_axolotl:
        side_versions["axolotl"] = versions(args.axolotl_python, ("axolotl", "torch", "transformers", "numba", "numpy"))
    record("packing", args, config, summaries, "padded", headline, load_before, side_versions, device=args.device,
           extra={"efficiency": efficiency, "mix": meta})
    return 0


if __name__ == "__main__":
    sys.exit(main())
