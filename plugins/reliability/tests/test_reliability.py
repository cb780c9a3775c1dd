"""Real processes killed and stopped: resume reaches the same weights, optimizer state and losses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ft_testing import install_fake_plugin, write_chat_rows

#: A test-only plugin that hurts its own process at a chosen step, from FT_TEST_FAULT="<how>@<step>":
#: kill (SIGKILL in the middle of that step), term / int / usr1 (that signal during that step, once), int2 (two
#: SIGINTs: Ctrl-C twice), or kill_in_save
#: (SIGKILL while the checkpoint of that step is being written, after its weights and before the rest).
FAULTS = '''
import os
import signal

from ft.api import PluginInfo, hookimpl

FT_PLUGIN = PluginInfo(name="faults", description="test only: kills its own process", always_active=True)
FAULT = os.environ.get("FT_TEST_FAULT", "")
HOW, _, STEP = FAULT.partition("@")
STEP = int(STEP or 0)
SENT = []


@hookimpl
def process_batch(ctx, batch, training):
    if not training or ctx.trainer.state.global_step + 1 != STEP:
        return
    if HOW == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    signals = {"term": [signal.SIGTERM], "int": [signal.SIGINT], "usr1": [signal.SIGUSR1],
               "int2": [signal.SIGINT, signal.SIGINT]}.get(HOW, [])
    if signals and not SENT:
        SENT.append(1)
        for number in signals:
            os.kill(os.getpid(), number)


@hookimpl
def post_trainer_create(ctx):
    if HOW != "kill_in_save":
        return
    import torch

    original = torch.save

    def save(obj, path, *args, **kwargs):
        if str(path).endswith("optimizer.pt") and f"checkpoint-{STEP}" in str(path):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(obj, path, *args, **kwargs)

    torch.save = save
'''


@pytest.fixture(scope="module")
def faults_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("faults-site")
    install_fake_plugin(site, "ft-faults", "faults", FAULTS)
    return site


def ft(args: list[str], site: Path, cwd: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "FT_CACHE_DIR": str(cwd / "cache")}
    env.pop("FT_TEST_FAULT", None)
    if fault:
        env["FT_TEST_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "ft.cli", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def losses(run: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def assert_same_state(a: Path, b: Path) -> None:
    """Every tensor of the final checkpoint (weights and optimizer state) bitwise equal."""
    import torch
    from safetensors.torch import load_file

    ca, cb = a / "checkpoints" / "checkpoint-8", b / "checkpoints" / "checkpoint-8"
    weights = sorted(p.name for p in ca.glob("*.safetensors"))
    assert weights and weights == sorted(p.name for p in cb.glob("*.safetensors"))
    for name in weights:
        wa, wb = load_file(ca / name), load_file(cb / name)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
    oa = torch.load(ca / "optimizer.pt", weights_only=True)
    ob = torch.load(cb / "optimizer.pt", weights_only=True)
    assert oa["param_groups"] == ob["param_groups"]
    for key, state in oa["state"].items():
        for field, value in state.items():
            other = ob["state"][key][field]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other, (key, field)


def whole_and_faulted(site: Path, model: Path, tmp_path: Path, name: str, fault: str):
    """An uninterrupted run ``runs/whole`` and the same run with ``fault`` injected (``runs/<name>``)."""
    data = write_chat_rows(tmp_path / "chat.jsonl", n=64)
    whole = ft(["run", *common(model, data, tmp_path / "runs", "whole")], site, tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    faulted = ft(["run", *common(model, data, tmp_path / "runs", name)], site, tmp_path, fault=fault)
    return tmp_path / "runs" / "whole", tmp_path / "runs" / name, faulted


def common(model: Path, data: Path, root: Path, name: str) -> list[str]:
    return [f"model.name_or_path={model}", "data=chat", f"data.path={data}", f"run.root={root}", f"run.name={name}",
            "trainer.micro_batch_size=4", "trainer.max_steps=8", "trainer.save_steps=2", "trainer.logging_steps=1",
            "trainer.save_total_limit=3", "trainer.save_every_minutes=null", "optim.lr=1e-3", "run.plot=false"]


VARIANTS = {
    "full": [],
    "lora": ["+adapter=lora", "adapter.dropout=0.1"],
    "multipack": ["+packing=multipack", "data.sequence_len=128", "trainer.micro_batch_size=1"],
    "dpo": ["+method=dpo", "+adapter=lora", "data.val_size=0", "trainer.micro_batch_size=2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_sigkill_mid_step_then_ft_resume_matches_an_uninterrupted_run(variant, faults_site, tiny_model_dir, tmp_path):
    data = write_chat_rows(tmp_path / "chat.jsonl", n=64)
    if variant == "dpo":
        rows = [{"prompt": f"What is {i} plus 1?", "chosen": f"It is {i + 1}.", "rejected": f"It is {i + 7}."} for i in range(40)]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        extra = [o for o in VARIANTS[variant]]
    else:
        extra = VARIANTS[variant]
    args = lambda name: [a for a in common(tiny_model_dir, data, tmp_path / "runs", name)  # noqa: E731
                         if not (variant == "dpo" and a == "data=chat")] + extra
    whole = ft(["run", *args("whole")], faults_site, tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = ft(["run", *args("killed")], faults_site, tmp_path, fault="kill@5")
    assert killed.returncode == -9, killed.stderr[-3000:]  # SIGKILL: nothing ran after it
    run = tmp_path / "runs" / "killed"
    assert not (run / "summary.json").exists() and (run / "checkpoints" / "checkpoint-4" / "ft-checkpoint.json").is_file()
    resumed = ft(["resume", str(run)], faults_site, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "from checkpoint-4" in resumed.stdout
    assert_same_state(tmp_path / "runs" / "whole", run)
    after = {s: v for s, v in losses(tmp_path / "runs" / "whole").items() if s > 4}
    assert losses(run) == losses(tmp_path / "runs" / "whole") and len(after) == 4  # one record a step, equal values
    assert len(json.loads((run / "run.json").read_text())["resumed"]) == 1


@pytest.mark.slow
def test_sigkill_while_a_checkpoint_is_written_leaves_a_folder_that_resume_ignores(faults_site, tiny_model_dir, tmp_path):
    whole, run, killed = whole_and_faulted(faults_site, tiny_model_dir, tmp_path, "killed", "kill_in_save@6")
    assert killed.returncode == -9
    checkpoints = run / "checkpoints"
    assert (checkpoints / ".staging" / "checkpoint-6").is_dir()  # half-written, never named like a checkpoint
    assert not (checkpoints / "checkpoint-6").exists() and (checkpoints / "checkpoint-4" / "ft-checkpoint.json").is_file()
    resumed = ft(["resume", str(run)], faults_site, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "from checkpoint-4" in resumed.stdout and not (checkpoints / ".staging").exists()
    assert_same_state(whole, run)


@pytest.mark.slow
def test_sigterm_stops_at_a_step_boundary_with_a_checkpoint_exit_0_and_resume_matches(faults_site, tiny_model_dir, tmp_path):
    whole, run, stopped = whole_and_faulted(faults_site, tiny_model_dir, tmp_path, "stopped", "term@3")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert f"interrupted at step 3; resume with: ft resume {run}" in stopped.stdout
    assert (run / "checkpoints" / "checkpoint-3" / "ft-checkpoint.json").is_file()  # saved at the step boundary
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] == "SIGTERM" and summary["step"] == 3
    assert (run / "loss.png").exists() is False  # run.plot=false here; the curve is tested by the default run
    assert not (run / "model").exists()
    resumed = ft(["resume", str(run)], faults_site, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_state(whole, run)
    assert losses(run) == losses(whole)
    assert json.loads((run / "summary.json").read_text()).get("interrupted") is None


def test_resume_refuses_a_config_that_changes_the_trajectory(faults_site, tiny_model_dir, tmp_path):
    data = write_chat_rows(tmp_path / "chat.jsonl", n=32)
    run = tmp_path / "runs" / "r"
    first = ft(["run", *common(tiny_model_dir, data, tmp_path / "runs", "r")], faults_site, tmp_path, fault="term@3")
    assert first.returncode == 0, first.stderr[-3000:]
    changed = ft(["resume", str(run), "optim.lr=5e-4"], faults_site, tmp_path)
    assert changed.returncode == 2
    assert changed.stderr.strip() == ("ft: error: ft resume: the config now differs from the run's in optim.lr: 0.001 -> "
                                      "0.0005, which changes the trajectory; undo it, or pass --force")
    logging_only = ft(["resume", str(run), "trainer.logging_steps=2"], faults_site, tmp_path)
    assert logging_only.returncode == 0, logging_only.stderr[-3000:]
    again = ft(["resume", str(run)], faults_site, tmp_path)
    assert again.returncode == 2 and "the run finished" in again.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "name"), [("int", "SIGINT"), ("usr1", "SIGUSR1")])
def test_sigint_and_sigusr1_stop_gracefully_too(fault, name, faults_site, tiny_model_dir, tmp_path):
    data = write_chat_rows(tmp_path / "chat.jsonl", n=32)
    run = tmp_path / "runs" / "s"
    stopped = ft(["run", *common(tiny_model_dir, data, tmp_path / "runs", "s")], faults_site, tmp_path, fault=f"{fault}@2")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert json.loads((run / "summary.json").read_text())["interrupted"] == name
    assert (run / "checkpoints" / "checkpoint-2" / "ft-checkpoint.json").is_file()


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once(faults_site, tiny_model_dir, tmp_path):
    data = write_chat_rows(tmp_path / "chat.jsonl", n=32)
    run = tmp_path / "runs" / "s"
    stopped = ft(["run", *common(tiny_model_dir, data, tmp_path / "runs", "s")], faults_site, tmp_path, fault="int2@3")
    assert stopped.returncode == 130 and "ft: interrupted" in stopped.stderr
    assert not (run / "checkpoints" / "checkpoint-3").exists()  # no waiting for the step boundary
    assert (run / "checkpoints" / "checkpoint-2" / "ft-checkpoint.json").is_file()


def test_ft_loads_no_pickle_of_untrusted_origin():
    """torch.load only with weights_only=True, no pickle.load, no trust_remote_code by default."""
    import re

    repo = Path(__file__).resolve().parent.parent
    offenders = []
    for path in [*repo.glob("core/**/*.py"), *repo.glob("plugins/*/ft_*/**/*.py"), *repo.glob("kernels/**/*.py")]:
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in match.group(1):
                offenders.append(f"{path.relative_to(repo)}: torch.load without weights_only=True")
        if re.search(r"\bpickle\.loads?\(", text):
            offenders.append(f"{path.relative_to(repo)}: pickle.load")
    assert not offenders, offenders
    from ft_model.schema import ModelConfig

    assert ModelConfig().trust_remote_code is False
