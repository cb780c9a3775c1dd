"""``ft new-plugin``: every group's generated distribution installs, is discovered, and its own tests pass."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ft.cli import main
from ft_scaffold.templates import GROUPS
from ft_testing import run_ft


@pytest.mark.slow
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_a_generated_plugin_installs_and_its_own_tests_pass(group, tmp_path):
    name = f"my_{group}"
    output, site = tmp_path / f"ft-{name}", tmp_path / "site"
    created = run_ft(["new-plugin", name, "--group", group, "--output", str(output)])
    assert created.returncode == 0, created.stderr
    for relative in ("pyproject.toml", "README.md", f"ft_{name}/plugin.py", f"ft_{name}/conf/{group}/{name}.yaml",
                     f"tests/test_{name}.py"):
        assert (output / relative).is_file(), relative
    # A real build and install (pip, setuptools, the entry points), into a folder of its own.
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--target", str(site), str(output)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-2000:]
    listed = run_ft(["plugins"], site=site)
    assert listed.returncode == 0 and f"{name} 0.1.0 (ft-{name})" in listed.stdout
    assert f"options:      {group}={name}" in listed.stdout
    assert run_ft(["validate", f"{group}={name}", *(["data.path=x.jsonl"] if group == "data" else [])],
                  site=site).returncode in (0, 2)
    # Its own tests, as generated, from its own folder.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"], cwd=output,
                           env=env, capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout


def test_new_plugin_refuses_bad_names_taken_names_and_existing_folders(tmp_path, capsys):
    assert main(["new-plugin", "My-Plugin", "--group", "logger", "--output", str(tmp_path / "a")]) == 2
    assert "not a valid plugin name" in capsys.readouterr().err
    assert main(["new-plugin", "lora", "--group", "adapter", "--output", str(tmp_path / "b")]) == 2
    assert "already installed" in capsys.readouterr().err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert main(["new-plugin", "fresh", "--group", "logger", "--output", str(taken)]) == 2
    assert "never overwrites" in capsys.readouterr().err and (taken / "keep.txt").read_text() == "mine"
    assert main(["new-plugin", "fresh", "--group", "nope", "--output", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
