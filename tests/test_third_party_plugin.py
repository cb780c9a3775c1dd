"""The example third-party plugin, installed with pip the way an outsider would install it."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ft_testing import run_ft

REPO = Path(__file__).resolve().parent.parent

EXAMPLE = REPO / "examples" / "ft-csv-logger"


def pip_install(example: Path, tmp_path_factory) -> Path:
    """pip-install an example plugin into a folder of its own; tests put it on PYTHONPATH."""
    import shutil

    target = tmp_path_factory.mktemp("site")
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources, and a test must leave
    # nothing behind in the repository.
    source = tmp_path_factory.mktemp("source") / example.name
    shutil.copytree(example, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    package = example.name.replace("-", "_")
    assert list(target.glob(f"{package}-*.dist-info"))
    assert not {"build", f"{package}.egg-info"} & {p.name for p in example.iterdir()}  # nothing left in the repo
    return target


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return pip_install(EXAMPLE, tmp_path_factory)


@pytest.fixture(scope="module")
def reward_site(tmp_path_factory) -> Path:
    return pip_install(REPO / "examples" / "ft-reward-brevity", tmp_path_factory)


def test_a_rewards_only_plugin_makes_its_rewards_available_to_grpo(reward_site, tiny_model_dir, tmp_path):
    listed = run_ft(["plugins"], env=env(reward_site))
    assert "reward_brevity 0.1.0 (ft-reward-brevity)" in listed.stdout and "reward_functions" in listed.stdout
    rewards = "method.rewards=[{name: sort_partial}, {name: brevity, weight: 0.5, args: {words: 3}}, {name: no_apology}]"
    assert run_ft(["validate", "+method=grpo", rewards], env=env(reward_site)).returncode == 0
    typo = run_ft(["validate", "+method=grpo", "method.rewards=[{name: brevty}]"], env=env(reward_site))
    assert typo.returncode == 2 and "did you mean 'brevity'" in typo.stderr
    assert run_ft(["validate", "+method=grpo", "method.rewards=[{name: brevity}]"]).returncode == 2  # not installed
    run = run_ft(["run", "+method=grpo", f"model.name_or_path={tiny_model_dir}", "data.task.train_rows=16",
                  "data.task.eval_rows=4", "method.max_completion_length=4", "trainer.max_steps=2",
                  "trainer.logging_steps=1", rewards, f"run.root={tmp_path}", "run.name=r"], env=env(reward_site))
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    logged = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in logged if "rewards/brevity/mean" in r)
    assert {"rewards/sort_partial/mean", "rewards/no_apology/mean"} <= set(step)
    assert 0.0 <= step["rewards/brevity/mean"] <= 1.0


def env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def run_args(tiny_model_dir: Path, chat_file: Path, root: Path, name: str) -> list[str]:
    return ["run", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={chat_file}",
            "trainer.max_steps=4", "trainer.logging_steps=1", f"run.root={root}", f"run.name={name}"]


def test_ft_plugins_lists_it_with_its_hooks_and_option(site):
    result = run_ft(["plugins"], env=env(site))
    assert result.returncode == 0, result.stderr
    block = result.stdout.split("csv_logger 0.1.0 (ft-csv-logger)")[1].split("\n\n")[0]
    assert "axolotl_keys, callbacks, config_schemas, validate_config" in block
    assert "logger=csv" in block


def test_its_option_composes_in_both_forms_and_its_schema_is_enforced(site):
    for form in ("+logger=csv", "logger=csv"):
        shown = run_ft(["config", "show", form, "logger.every_n_steps=3"], env=env(site))
        assert shown.returncode == 0, shown.stderr
        assert "every_n_steps: 3" in shown.stdout and "file: metrics.csv" in shown.stdout
    typo = run_ft(["validate", "+logger=csv", "logger.evry_n_steps=3"], env=env(site))
    assert typo.returncode == 2 and "did you mean 'every_n_steps'" in typo.stderr
    rule = run_ft(["validate", "+logger=csv", "logger.every_n_steps=0"], env=env(site))
    assert rule.returncode == 2 and "expected an integer >= 1" in rule.stderr


def test_it_maps_its_own_axolotl_keys(site, tiny_model_dir, tmp_path):
    axolotl = tmp_path / "axolotl.yml"
    axolotl.write_text(f"base_model: {tiny_model_dir}\ncsv_logger_steps: 3\ncsv_logger_color: blue\n")
    shown = run_ft(["config", "show", "--axolotl", str(axolotl)], env=env(site))
    assert shown.returncode == 0, shown.stderr
    assert "every_n_steps: 3" in shown.stdout and "file: metrics.csv" in shown.stdout
    explained = run_ft(["axolotl", "explain", str(axolotl)], env=env(site)).stdout
    assert any(line.startswith("csv_logger_color") and "no effect" in line and "[csv_logger]" in line
               for line in explained.splitlines()), explained
    without = run_ft(["-p", "no:axolotl", "plugins"], env=env(site))  # its optional hook is no load error
    assert without.returncode == 0 and "csv_logger 0.1.0 (ft-csv-logger)" in without.stdout, without.stderr


def test_its_hook_fires_only_when_selected(site, tiny_model_dir, chat_file, tmp_path):
    selected = run_ft([*run_args(tiny_model_dir, chat_file, tmp_path, "with"), "+logger=csv"], env=env(site))
    assert selected.returncode == 0, selected.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "with" / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows if r.get("loss")] == [1, 2, 3, 4]
    unselected = run_ft(run_args(tiny_model_dir, chat_file, tmp_path, "without"), env=env(site))
    assert unselected.returncode == 0, unselected.stderr[-2000:]
    assert not (tmp_path / "without" / "metrics.csv").exists()


def test_p_no_turns_it_off(site):
    listed = run_ft(["-p", "no:csv_logger", "plugins"], env=env(site))
    assert "csv_logger" not in listed.stdout
    result = run_ft(["-p", "no:csv_logger", "validate", "+logger=csv"], env=env(site))
    assert result.returncode == 2
    assert "logger=csv is provided by the plugin 'csv_logger', which is installed but disabled" in result.stderr
