"""The benchmark harness: run each side in its own process, interleaved, and report ratios.

Every benchmark under ``bench/`` measures a candidate (ft) against a baseline measured in the same
run: the machines are shared and noisy, so absolute times mean little and ratios mean more. The
harness runs rounds of ``A, B`` then ``B, A`` (alternating the order cancels a slow drift in load),
drops the warm-up rounds, and reports the median and spread of each metric, the ratio of medians to
the baseline, the machine (cores, device, load average before and after) and package versions. It
appends one JSON line per run to ``bench/results/<benchmark>.jsonl``; ``bench/render.py`` turns those
into the history tables of BENCHMARKS.md.

Standard library only: the timing callback next to it is also imported in Axolotl's own venv.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
#: The project's real data sets (../shared/data next to a checkout); override with FT_BENCH_DATA.
SHARED_DATA = Path(os.environ.get("FT_BENCH_DATA", REPO.parent / "shared" / "data"))
#: Where the Axolotl comparisons find (or create) Axolotl's own venv: AXOLOTL_VENV, else the bench cache.
DEFAULT_AXOLOTL_VENV = Path(os.environ.get(
    "AXOLOTL_VENV", Path(os.environ.get("FT_BENCH_CACHE", Path.home() / ".cache" / "ft-bench")) / "axolotl-venv"))


# -- command-line options every benchmark shares ---------------------------------------------------


def add_common_args(parser: argparse.ArgumentParser, repeat: int = 3, warmup: int = 1) -> None:
    parser.add_argument("--repeat", type=int, default=repeat, help=f"measured rounds per side (default {repeat})")
    parser.add_argument("--warmup", type=int, default=warmup,
                        help=f"rounds run first and discarded (default {warmup}): file cache, lazy compiles")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to bench/results/")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON lines go (default bench/results)")
    parser.add_argument("--note", default="", help="a free-text note stored with the results")


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu (default; hides any GPU from the runs) or cuda")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads in every side (OMP_NUM_THREADS; default 1: on a shared 2-core "
                             "machine, two OpenMP threads competing with other jobs for the cores make step "
                             "times swing several-fold, one thread a side does not)")


def add_workload_args(parser: argparse.ArgumentParser, steps: int, steps_help: str, warmup_steps_help: str) -> None:
    """The training workload both framework comparisons share: model, steps, batch, length, precision."""
    parser.add_argument("--model-config", default="tiny", help="tiny (default), smollm2-135m, llama-1b (GPU)")
    parser.add_argument("--steps", type=int, default=steps, help=f"{steps_help} (default {steps})")
    parser.add_argument("--warmup-steps", type=int, default=5, help=f"{warmup_steps_help} (default 5)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--sequence-len", type=int, default=1024)
    parser.add_argument("--logging-steps", type=int, default=5)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None, help="default: fp32 on cpu, bf16 on cuda")


def require_device(device: str) -> None:
    """Refuse ``--device cuda`` without a visible GPU: the runs would silently train on the CPU."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is visible to torch on this machine")


def child_env(device: str = "cpu", threads: int | None = None, **extra: str) -> dict[str, str]:
    """The environment every side runs with: offline, quiet, same threads, same device."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "AXOLOTL_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1",
           "TRL_EXPERIMENTAL_SILENCE": "1", "WANDB_DISABLED": "true", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(extra)
    return env


# -- running one side: wall time and peak memory ------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(c) for c in handle.read().split()]
    except OSError:
        pass
    return found


def _memory_mb(pid: int, path: str, field: str) -> float:
    try:
        with open(f"/proc/{pid}/{path}") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _rss_mb(pid: int) -> float:
    return _memory_mb(pid, "status", "VmRSS:")


def _pss_mb(pid: int) -> float:
    """Proportional set size: pages shared between processes (forked workers) counted once in all."""
    return _memory_mb(pid, "smaps_rollup", "Pss:") or _rss_mb(pid)


class MemoryPoller:
    """Peak memory of a process tree, polled from /proc (Linux): the sum of proportional set sizes
    over the tree (what the command costs the machine; shared pages counted once) and the largest
    resident set of a single process.

    Reading a process's proportional set size walks its page tables (about 80 ms for a 3 GB training
    process here) and holds its memory map's lock meanwhile, so polling every 0.1 s would take half a core
    from the measured command on a 2-core machine. The wait between polls is therefore at least nine
    times the last poll's own duration: polling costs at most a tenth of one core."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.peak_tree_mb = 0.0
        self.peak_process_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> MemoryPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            began = time.perf_counter()
            pending, seen, total = [self.pid], set(), 0.0
            while pending:
                pid = pending.pop()
                if pid in seen:
                    continue
                seen.add(pid)
                total += _pss_mb(pid)
                self.peak_process_mb = max(self.peak_process_mb, _rss_mb(pid))
                pending += _children(pid)
            self.peak_tree_mb = max(self.peak_tree_mb, total)
            self._stop.wait(max(self.interval, 9 * (time.perf_counter() - began)))


class SideFailed(RuntimeError):
    """One side of a benchmark exited with an error."""


def run_timed(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 3600, timing_file: bool = False) -> dict[str, Any]:
    """Run ``cmd``; return wall seconds, peak memory and, with ``timing_file``, what the step timer
    wrote (``FT_BENCH_TIMING``), with ``first_step_s`` measured from the moment the process started."""
    env = dict(env or os.environ)
    with tempfile.TemporaryDirectory(prefix="ft-bench-") as scratch:
        timing_path = Path(scratch) / "timing.json"
        if timing_file:
            env["FT_BENCH_TIMING"] = str(timing_path)
        log_path = Path(scratch) / "output.log"
        with open(log_path, "w") as log:
            started_unix, started = time.time(), time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
            with MemoryPoller(proc.pid) as memory:
                try:
                    rc = proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    rc = -9
            wall = time.perf_counter() - started
        output = log_path.read_text(errors="replace")
        if rc != 0:
            raise SideFailed(f"{' '.join(cmd[:4])} ... exited {rc}:\n{output[-3000:]}")
        result: dict[str, Any] = {"wall_s": wall, "peak_rss_mb": memory.peak_tree_mb,
                                  "peak_process_rss_mb": memory.peak_process_mb}
        if timing_file:
            if not timing_path.is_file():
                raise SideFailed(f"{' '.join(cmd[:4])} ... wrote no step timings:\n{output[-3000:]}")
            timing = json.loads(timing_path.read_text())
            result["first_step_s"] = timing["first_step_end_unix"] - started_unix
            result["train_begin_s"] = timing["train_begin_unix"] - started_unix
            result["step_times"] = timing["step_s"]
            result["step_cpu_times"] = timing.get("step_cpu_s", [])
            result["steps"] = timing["steps"]
            if timing.get("cuda_peak_mb") is not None:
                result["cuda_peak_mb"] = timing["cuda_peak_mb"]
        result["output_tail"] = output[-2000:]
        return result


# -- rounds, summaries, ratios ----------------------------------------------------------------------------


def interleave(sides: dict[str, Callable[[], dict[str, Any]]], repeat: int, warmup: int,
               verbose: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Run every side once per round, in alternating order (A B, B A, ...); drop warm-up rounds."""
    names = list(sides)
    kept: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_index in range(warmup + repeat):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            result = sides[name]()
            label = "warm-up" if round_index < warmup else f"round {round_index - warmup + 1}/{repeat}"
            if verbose:
                shown = ", ".join(f"{k}={v:.3f}" for k, v in result.items() if isinstance(v, float))
                print(f"  [{label}] {name}: {shown}", flush=True)
            if round_index >= warmup:
                kept[name].append(result)
    return kept


def summary(values: list[float]) -> dict[str, float]:
    """Median, min, max and spread ((max - min) / median) of one metric's measurements."""
    values = [float(v) for v in values]
    median = statistics.median(values)
    return {"median": median, "min": min(values), "max": max(values), "n": len(values),
            "spread": (max(values) - min(values)) / median if median else 0.0}


def summarize(results: dict[str, list[dict[str, Any]]], metrics: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    return {side: {m: summary([r[m] for r in runs]) for m in metrics if runs and all(m in r for r in runs)}
            for side, runs in results.items()}


def ratios(summaries: dict[str, dict[str, dict[str, float]]], baseline: str) -> dict[str, dict[str, float]]:
    """Median of each side over the baseline's median, metric by metric."""
    base = summaries[baseline]
    return {side: {m: s["median"] / base[m]["median"] for m, s in metrics.items()
                   if m in base and base[m]["median"]}
            for side, metrics in summaries.items() if side != baseline}


def print_table(title: str, summaries: dict[str, dict[str, dict[str, float]]], baseline: str,
                metrics: list[tuple[str, str]]) -> None:
    """One row per side and metric: median, spread, ratio to the baseline."""
    print(f"\n{title}")
    print(f"  {'side':<26} {'metric':<22} {'median':>10} {'spread':>8} {'ratio':>7}")
    rel = ratios(summaries, baseline)
    for side, values in summaries.items():
        for metric, label in metrics:
            if metric not in values:
                continue
            s = values[metric]
            ratio = 1.0 if side == baseline else rel[side].get(metric)
            shown = f"{ratio:.3f}" if ratio is not None else "-"
            print(f"  {side:<26} {label:<22} {s['median']:>10.4g} {100 * s['spread']:>7.1f}% {shown:>7}")


# -- the record ---------------------------------------------------------------------------------------------


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux
        return []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(device: str = "cpu") -> dict[str, Any]:
    """Cores, CPU, memory, device and OS of this machine."""
    info: dict[str, Any] = {"cores": os.cpu_count(), "cpu": _cpu_model(), "arch": platform.machine(),
                            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
                            "device": device}
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):  # pragma: no cover
        pass
    if device == "cuda":
        try:
            names = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                   capture_output=True, text=True, timeout=30).stdout.strip()
            info["gpu"] = names
        except (OSError, subprocess.SubprocessError):
            info["gpu"] = "unknown"
    return info


def versions(python: str | None = None, packages: tuple[str, ...] = ("ft", "torch", "transformers", "accelerate",
                                                                  "datasets", "trl", "peft")) -> dict[str, str]:
    """Installed versions of ``packages`` in the interpreter ``python`` (default: this one)."""
    code = ("import importlib.metadata as md, json, platform, sys\n"
            "out = {'python': platform.python_version()}\n"
            "for name in sys.argv[1:]:\n"
            "    try: out[name] = md.version(name)\n"
            "    except md.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    done = subprocess.run([python or sys.executable, "-c", code, *packages], capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def commit() -> str:
    """The checked-out commit, ``+dirty`` when a tracked file other than documentation (``*.md``) differs from
    it: the code the figures were measured on."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                               text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = [line[3:] for line in dirty.splitlines() if not line[3:].endswith(".md")]
    return (head or "unknown") + ("+dirty" if changed else "")


def record(benchmark: str, args: argparse.Namespace, config: dict[str, Any], summaries: dict[str, Any],
           baseline: str, headline: list[tuple[str, str]], load_before: list[float],
           versions_by_side: dict[str, dict[str, str]], device: str = "cpu", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the result record, print where it went, and append it to ``<results>/<benchmark>.jsonl``."""
    entry = {
        "benchmark": benchmark,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": commit(),
        "machine": machine(device),
        "load_avg": {"before": load_before, "after": load_average()},
        "versions": versions_by_side,
        "config": config,
        "repeat": args.repeat, "warmup": args.warmup,
        "baseline": baseline,
        "results": summaries,
        "ratios": ratios(summaries, baseline),
        "headline": [list(pair) for pair in headline],
        "note": args.note,
        **(extra or {}),
    }
    print("\n" + "\n".join(f"  {label}: {value}" for label, value in headline))
    m = entry["machine"]
    print(f"  machine: {m['cores']} cores ({m['cpu']}), {m.get('memory_gib', '?')} GiB, {m['os']}, device {m['device']}"
          + (f" ({m['gpu']})" if m.get("gpu") else ""))
    print("  versions: " + "; ".join(f"{side}: " + ", ".join(f"{k} {v}" for k, v in found.items())
                                     for side, found in versions_by_side.items()))
    print(f"  load average before {load_before}, after {entry['load_avg']['after']}")
    if args.no_record:
        print("  (not recorded: --no-record)")
        return entry
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{benchmark}.jsonl"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, default=float) + "\n")
    print(f"  recorded in {path} (render BENCHMARKS.md with: .venv/bin/python bench/render.py)")
    return entry


def mean_step(result: dict[str, Any], skip: int, key: str = "step_times") -> float:
    """Mean step time (``key``: step_times for wall, step_cpu_times for CPU) after dropping the first
    ``skip`` measured intervals (warm-up steps)."""
    steps = result[key][skip:]
    if not steps:
        raise SideFailed(f"no timed steps left after skipping {skip} warm-up steps; raise --steps")
    return sum(steps) / len(steps)
