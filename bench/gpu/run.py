"""The GPU check: one command for the day a GPU is lent. GPU tests, then the GPU benchmarks, one report.

    .venv/bin/python bench/gpu/run.py                 # on a CUDA machine: runs everything (at most 8 minutes)
    .venv/bin/python bench/gpu/run.py --dry-run       # anywhere: prints what it would run, exits 0

On a machine without CUDA it is always a dry run. Steps, in order, each a separate process under one
deadline (``--budget-s``, 480 s): a step that no longer fits is reported as not run rather than cut off:

1. ``tests``: the tests that take the GPU path when one is visible: ft's Triton linear cross entropy
   (multi-block vocabularies, compiled, not interpreted), Cut Cross Entropy's Triton kernels, Liger's
   parts, QLoRA on bitsandbytes' CUDA kernels, the fused-loss training runs.
2. ``kernels``: ``bench/kernels --device cuda --part loss``: ft's Triton kernel against CCE and Liger.
3. ``overhead``: ``bench/overhead --device cuda --model-config llama-1b``: ft's step against
   ``transformers.Trainer`` on a 1.1 B Llama-shaped model.
4. ``lora-sft``: ``bench/lora-sft --device cuda --model-config llama-1b``: LoRA SFT tokens/s and MFU, ft
   against TRL's ``SFTTrainer``.
5. ``grpo-vllm``: two GRPO steps generating with vLLM (``method.use_vllm=true``), only when vLLM is installed.

The benchmarks append their records to ``bench/results/*.jsonl`` as usual (machine column: the GPU's
name); the report (``--report``, default ``bench/results/gpu-check.md``) lists each step's command,
outcome, time and output tail, and the headline of each record written. Put its summary into
BENCHMARKS.md ("GPU check") and render the tables with ``bench/render.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
PY = sys.executable

GPU_TESTS = ["kernels/tests/test_linear_ce.py", "kernels/tests/test_fused_training.py", "plugins/cce/tests/test_cce.py",
             "plugins/liger/tests/test_liger.py", "plugins/qlora/tests/test_qlora.py"]


@dataclass
class Step:
    name: str
    command: list[str]
    timeout_s: int
    why: str
    needs: str | None = None  # a module that must be importable, else the step is skipped
    outcome: str = "not run"
    seconds: float = 0.0
    tail: str = ""
    records: list[str] = field(default_factory=list)


def plan(budget_s: int) -> list[Step]:
    """The steps, with each one's own time limit (the shared deadline cuts them further)."""
    bench = lambda name, *args: [PY, f"bench/{name}/run.py", "--device", "cuda", *args]  # noqa: E731
    return [
        Step("tests", [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *GPU_TESTS], 180,
             "the GPU paths of the loss kernels, CCE, Liger and QLoRA (bitsandbytes on CUDA)"),
        Step("kernels", bench("kernels", "--part", "loss", "--repeat", "1", "--note", "gpu check"), 80,
             "ft's Triton kernel against CCE and Liger: peak memory and time at SmolLM2's head"),
        Step("overhead", bench("overhead", "--model-config", "llama-1b", "--repeat", "1", "--warmup", "0",
                               "--steps", "10", "--warmup-steps", "3", "--note", "gpu check"), 100,
             "ft's step against transformers.Trainer on a 1.1 B Llama-shaped model, bf16"),
        Step("lora-sft", bench("lora-sft", "--model-config", "llama-1b", "--repeat", "1", "--warmup", "0",
                               "--steps", "10", "--warmup-steps", "3", "--note", "gpu check"), 100,
             "LoRA SFT tokens/s and MFU against TRL's SFTTrainer on the 1.1 B model"),
        Step("grpo-vllm", [PY, "-m", "ft.cli", "run", "+method=grpo", "method.use_vllm=true", "trainer.max_steps=2",
                           "run.root=/tmp/ft-gpu-check", "run.save_final_model=false"], 90,
             "GRPO generating with vLLM", needs="vllm"),
    ]


def records_since(stamp: str) -> list[str]:
    """``benchmark: label value; ...`` of every record appended to bench/results after ``stamp``."""
    lines = []
    for path in sorted(RESULTS.glob("*.jsonl")):
        for text in path.read_text().splitlines():
            if text.strip() and (entry := json.loads(text)).get("date", "") >= stamp:
                lines.append(f"{entry['benchmark']}: " + "; ".join(f"{k} {v}" for k, v in entry.get("headline", [])))
    return lines


def run(steps: list[Step], budget_s: int) -> None:
    deadline = time.monotonic() + budget_s
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    for step in steps:
        left = deadline - time.monotonic()
        if step.needs and importlib.util.find_spec(step.needs) is None:
            step.outcome = f"skipped: {step.needs} is not installed"
            continue
        if left < min(step.timeout_s, 30):
            step.outcome = f"not run: {left:.0f} s of the {budget_s} s budget left"
            continue
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        started = time.monotonic()
        print(f"[gpu-check] {step.name}: {' '.join(step.command[1:])}", flush=True)
        try:
            done = subprocess.run(step.command, cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=min(step.timeout_s, left))
            step.outcome = "passed" if done.returncode == 0 else f"failed (exit {done.returncode})"
            step.tail = (done.stdout + done.stderr)[-2500:]
        except subprocess.TimeoutExpired as exc:
            step.outcome = f"timed out after {min(step.timeout_s, left):.0f} s"
            step.tail = ((exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or ""))[-2500:]
        step.seconds = time.monotonic() - started
        step.records = records_since(stamp)
        print(f"[gpu-check] {step.name}: {step.outcome} in {step.seconds:.0f} s", flush=True)


def gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def report(steps: list[Step], path: Path, commit: str) -> None:
    lines = [f"# GPU check, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"GPU: {gpu_name()}; commit {commit}; `python bench/gpu/run.py`", "",
             "| step | outcome | seconds | what |", "|---|---|---|---|"]
    lines += [f"| {s.name} | {s.outcome} | {s.seconds:.0f} | {s.why} |" for s in steps]
    for step in steps:
        lines += ["", f"## {step.name}", "", f"    {' '.join(step.command[1:])}", ""]
        lines += [f"- record {r}" for r in step.records]
        if step.tail:
            lines += ["", "```", step.tail.strip(), "```"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit 0 (always, without CUDA)")
    parser.add_argument("--budget-s", type=int, default=480, help="the whole check's time limit (default 480 s)")
    parser.add_argument("--report", type=Path, default=RESULTS / "gpu-check.md", help="the report file to write")
    parser.add_argument("--only", help="comma-separated step names to run (default: all)")
    args = parser.parse_args(argv)
    steps = plan(args.budget_s)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {s.name for s in steps}
        if unknown:
            parser.error(f"unknown step {sorted(unknown)[0]!r}; steps: {', '.join(s.name for s in steps)}")
        steps = [s for s in steps if s.name in wanted]
    import torch

    cuda = torch.cuda.is_available()
    if args.dry_run or not cuda:
        print(f"gpu check: dry run ({'asked for' if args.dry_run else 'no CUDA device visible'}); on a CUDA GPU it "
              f"would run, within {args.budget_s} s, and write {args.report}:")
        for step in steps:
            condition = f" (only if {step.needs} is installed)" if step.needs else ""
            print(f"  {step.name:<10} up to {step.timeout_s:>3} s{condition}: {step.why}\n"
                  f"             {' '.join(step.command[1:])}")
        return 0
    run(steps, args.budget_s)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    report(steps, args.report, commit or "unknown")
    print(f"[gpu-check] report: {args.report}")
    return 0 if all(s.outcome == "passed" or s.outcome.startswith("skipped") for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
