"""The benchmarks start and their harness works (bench/; never timed here: speed is not asserted).

Only ft's side runs; nothing needs Axolotl's venv. Each benchmark's real run is a command in
BENCHMARKS.md, not a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SCRIPTS = ["bench/overhead/run.py", "bench/startup/run.py", "bench/vs-axolotl/run.py", "bench/kernels/run.py",
           "bench/distributed/run.py", "bench/grpo/run.py", "bench/diffusion/run.py", "bench/kd/run.py",
           "bench/preprocess/run.py", "bench/packing/run.py", "bench/defaults/run.py", "bench/lora-sft/run.py",
           "bench/gpu/run.py", "bench/qlora/run.py", "bench/axolotl-examples/run.py", "bench/render.py"]


def test_every_benchmark_folder_is_started_here():
    """Each folder under bench/ (but the shared harness and the records) has its run.py in SCRIPTS."""
    folders = {p.name for p in (REPO / "bench").iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    folders -= {"results", "__pycache__"}
    assert {f"bench/{name}/run.py" for name in folders} <= set(SCRIPTS), sorted(folders)


def test_run_all_runs_existing_benchmarks_one_at_a_time():
    """bench/run_all: executable, each line a benchmark that exists, the tables rendered at the end."""
    import re

    script = REPO / "bench" / "run_all"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    started = re.findall(r"^run (bench/\S+)", text, re.MULTILINE)
    assert started and all((REPO / path).is_file() for path in started) and "&" not in text.replace("&&", "")
    assert text.rstrip().endswith('"$PY" bench/render.py')


def bench(*args: str, timeout: int = 600, data: Path | None = None) -> subprocess.CompletedProcess:
    """Run a benchmark script; ``data`` stands in for the shared data folder (the test kit's slices)."""
    env = {**os.environ, **({"FT_BENCH_DATA": str(data)} if data is not None else {})}
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_benchmark_has_help(script):
    done = bench(script, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_axolotl_venv_plan_pins_torch_before_axolotl(tmp_path):
    from bench._harness.axolotl import venv_plan

    commands, constraints = venv_plan(tmp_path / "ax", base_python="/usr/bin/python3")
    assert commands[0] == ["/usr/bin/python3", "-m", "venv", str(tmp_path / "ax")]
    torch_at = next(i for i, c in enumerate(commands) if "torch==2.13.0" in c)
    axolotl = next(c for c in commands if "axolotl==0.19.0" in c)
    assert torch_at < commands.index(axolotl)
    assert axolotl[axolotl.index("-c") + 1] == str(tmp_path / "ax" / "ft-bench-constraints.txt")
    assert constraints.strip() == "torch==2.13.0"
    printed = bench("bench/vs-axolotl/run.py", "--print-venv-plan", "--axolotl-venv", str(tmp_path / "ax"))
    assert printed.returncode == 0 and "axolotl==0.19.0" in printed.stdout
    assert not (tmp_path / "ax").exists()  # printing the plan creates nothing


def test_axolotl_examples_check_sorts_files_into_valid_and_refused(tmp_path):
    """bench/axolotl-examples on the Axolotl examples ft-axolotl keeps as test data: no traceback, each file one status."""
    import shutil

    shutil.copytree(REPO / "plugins" / "axolotl" / "tests" / "axolotl_examples", tmp_path / "examples")
    table = tmp_path / "table.md"
    done = bench("bench/axolotl-examples/run.py", "--checkout", str(tmp_path), "--commit", "test", "--write", str(table))
    lines = done.stdout.splitlines()
    assert any(line.startswith("valid") and line.endswith("llama-3/lora-1b.yml  ") for line in lines), done.stdout
    refused = next(line for line in lines if "instruct-dpo-lora-8b.yml" in line)
    assert refused.startswith("refused") and "chat_template.default" in refused
    assert "text-only valid 6 (75.0%), refused 2, failed 0; tracebacks in all files: 0" in lines[-1], lines[-1]
    assert done.returncode == 1 and "| examples/llama-3/lora-1b.yml | text | valid |" in table.read_text()


def test_memory_poller_sees_a_child_allocation():
    from bench._harness import run_timed

    code = "import time; block = bytearray(300 * 2**20); block[::4096] = b'x' * len(block[::4096]); time.sleep(1)"
    result = run_timed([sys.executable, "-c", code])
    assert result["peak_rss_mb"] > 250
    assert result["wall_s"] >= 1


def test_summary_and_ratios():
    from bench._harness import ratios, summarize

    runs = {"base": [{"t": 2.0}, {"t": 4.0}, {"t": 3.0}], "ft": [{"t": 3.0}, {"t": 3.3}, {"t": 2.7}]}
    summaries = summarize(runs, ["t"])
    assert summaries["base"]["t"]["median"] == 3.0
    assert summaries["base"]["t"]["spread"] == pytest.approx(2 / 3)
    assert ratios(summaries, "base") == {"ft": {"t": 1.0}}


def test_startup_smoke_times_ft_commands():
    done = bench("bench/startup/run.py", "--smoke")
    assert done.returncode == 0, done.stdout + done.stderr
    for command in ("ft --help", "ft validate", "ft plugins"):
        assert command in done.stdout
    assert "not recorded" in done.stdout


@pytest.mark.slow  # two training processes: the full tier
def test_overhead_smoke_runs_both_sides(test_data):
    done = bench("bench/overhead/run.py", "--smoke", data=test_data)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ft / transformers.Trainer step time:" in done.stdout
    assert "not recorded" in done.stdout


def test_vs_axolotl_smoke_runs_ft_side_without_axolotl(test_data, tmp_path):
    done = bench("bench/vs-axolotl/run.py", "--smoke", "--axolotl-venv", str(tmp_path / "no-venv"), data=test_data)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ft only (--smoke)" in done.stdout
    assert not (tmp_path / "no-venv").exists()  # the smoke run never creates Axolotl's venv


def test_render_rewrites_only_between_markers(tmp_path):
    from bench.render import render

    results = tmp_path / "results"
    results.mkdir()
    entry = {"benchmark": "demo", "date": "2026-11-22T10:00:00+00:00", "machine": {"cores": 2, "arch": "x86_64",
             "device": "cpu", "python": "3.11.7"}, "load_avg": {"before": [1.5], "after": [2.0]},
             "versions": {"ft": {"ft": "0.1.0", "torch": "2.13.0"}}, "repeat": 3, "warmup": 1,
             "headline": [["ft / baseline", "0.99"]], "note": ""}
    (results / "demo.jsonl").write_text(json.dumps(entry) + "\n")
    doc = "## other\nkept\n\n## demo\nwhy\n<!-- bench-history:demo -->\nold table\n<!-- /bench-history:demo -->\nafter\n"
    out = render(doc, results)
    assert out.startswith("## other\nkept\n\n## demo\nwhy\n<!-- bench-history:demo -->\n| date (UTC)")
    assert "old table" not in out and "| 0.99 |" in out and out.endswith("<!-- /bench-history:demo -->\nafter\n")
    assert render(out, results) == out
    skipped: list[str] = []
    assert render("no markers\n", results, skipped) == "no markers\n" and skipped == ["demo"]


def test_benchmarks_md_is_rendered_from_the_results():
    done = bench("bench/render.py", "--check")
    assert done.returncode == 0, done.stdout


def test_gpu_check_is_a_dry_run_without_cuda_and_names_every_step(tmp_path):
    """On this CPU machine the GPU check prints its plan, exits 0 and writes no report; the files it
    would run exist."""
    from bench.gpu.run import GPU_TESTS, plan

    report = tmp_path / "gpu-check.md"
    done = bench("bench/gpu/run.py", "--report", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dry run (no CUDA device visible)" in done.stdout
    steps = plan(480)
    assert [s.name for s in steps] == ["tests", "kernels", "overhead", "lora-sft", "grpo-vllm"]
    for step in steps:
        assert f"  {step.name} " in done.stdout
    assert not report.exists()
    assert all((REPO / path).is_file() for path in GPU_TESTS)
    scripts = [arg for step in steps for arg in step.command if arg.startswith("bench/")]
    assert scripts and all((REPO / script).is_file() for script in scripts)
    assert sum(step.timeout_s for step in steps if step.needs is None) <= 8 * 60
    assert bench("bench/gpu/run.py", "--dry-run", "--only", "tests,nope").returncode == 2


def test_defaults_bench_runs_the_commands_the_readme_prints():
    from bench.defaults.run import CASES, score_pairs

    readme = (REPO / "README.md").read_text()
    for name in ("make-run", "dpo-qlora", "grpo", "kd", "diffusion"):
        assert f"ft run {' '.join(CASES[name])}".rstrip() in readme, name
    listed = bench("bench/defaults/run.py", "--list", "--cases", "all")
    assert listed.returncode == 0 and "dpo-qlora: ft run +adapter=qlora +method=dpo" in listed.stdout
    assert score_pairs({"task_accuracy_before": 0.0, "task_accuracy_after": 0.5, "heldout_kl_before": 2,
                        "train_loss": 1.0, "x_before": "n/a", "x_after": 1}) == {
        "task_accuracy": (0.0, 0.5)}


def test_render_check_finds_a_figure_without_its_record(tmp_path):
    from bench.render import unrecorded_figures

    doc = tmp_path / "README.md"
    doc.write_text("Fast: 1.8x the baseline.\n\nFast: 1.8x (bench/results/overhead.jsonl).\n\n"
                   "    ft run trainer.max_steps=10   # 10 s\n\nSettings: every 10 minutes. <!-- figures: not measured -->\n\n"
                   "Lean: 0.53 of Axolotl's peak memory.\n")
    import bench.render as render_module

    original = render_module.REPO
    render_module.REPO = tmp_path
    try:
        assert unrecorded_figures(doc) == ["README.md:1: '1.8x' names no record",
                                           "README.md:9: '0.53 of Axolotl' names no record"]
    finally:
        render_module.REPO = original


@pytest.mark.slow  # two LoRA training processes: the full tier
def test_lora_sft_smoke_runs_ft_and_trl(test_data):
    done = bench("bench/lora-sft/run.py", "--smoke", data=test_data)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ft / TRL, tokens/s" in done.stdout and "not recorded" in done.stdout
