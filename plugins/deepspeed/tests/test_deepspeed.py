"""dist=zero1|zero2|zero3 on 2 CPU ranks (gloo): DeepSpeed ZeRO trains like 1 process and saves a plain model."""

from __future__ import annotations

import json

import pytest

from ft_deepspeed.plugin import deepspeed_config
from ft_deepspeed.schema import ZeroConfig
from ft_testing import assert_loads_without_ft, assert_same_run, run_ft


@pytest.mark.slow
@pytest.mark.parametrize("option", ["zero2", "zero3"])
def test_zero_on_two_ranks_trains_like_one_process_and_saves_a_plain_model(option, ft_job, one_process_run, tiny_model_dir):
    run = ft_job.finished(f"dist={option}", "dist.nproc_per_node=2", "trainer.micro_batch_size=2")
    written = json.loads((run / "deepspeed.json").read_text())
    assert written["zero_optimization"]["stage"] == int(option[-1])
    assert f"deepspeed: ZeRO stage {option[-1]} over 2 ranks" in (run / "ft.log").read_text()
    assert sorted(p.name for p in (run / "model").glob("*.safetensors")) == ["model.safetensors"]
    assert not list((run / "model").glob("global_step*"))  # ZeRO-3's weights were gathered, not left in shards
    assert_same_run(one_process_run, run, start=tiny_model_dir)
    assert_loads_without_ft(run / "model")


@pytest.mark.slow
def test_optimizer_offload_runs_deepspeeds_cpu_adam_and_follows_the_same_curve(ft_job, one_process_run):
    """DeepSpeed compiles its CPU Adam on first use (about 100 s; cached in ~/.cache/torch_extensions)."""
    run = ft_job.finished("dist=zero2", "dist.offload_optimizer=cpu", "dist.nproc_per_node=2", "trainer.micro_batch_size=2")
    written = json.loads((run / "deepspeed.json").read_text())
    assert written["zero_optimization"]["offload_optimizer"]["device"] == "cpu" and written["optimizer"]["type"] == "AdamW"
    assert "optimizer offloaded to CPU" in (run / "ft.log").read_text()
    assert_same_run(one_process_run, run, tol=1e-4)  # a different Adam implementation: equal to rounding


def test_the_generated_config_leaves_what_the_trainer_knows_to_the_trainer():
    config = deepspeed_config(ZeroConfig(), 3)
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size", "gradient_clipping"):
        assert config[key] == "auto"
    assert config["bf16"] == {"enabled": "auto"} and "optimizer" not in config  # ft's optimizer, wrapped by ZeRO
    assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    offloaded = deepspeed_config(ZeroConfig(offload_optimizer="cpu", offload_param="cpu"), 3)["zero_optimization"]
    assert offloaded["offload_optimizer"]["device"] == offloaded["offload_param"]["device"] == "cpu"
    assert "stage3_gather_16bit_weights_on_model_save" not in deepspeed_config(ZeroConfig(), 2)["zero_optimization"]


@pytest.mark.parametrize("overrides, expected", [
    (["dist=zero2", "dist.offload_param=cpu"], "dist.offload_param=cpu needs parameters to be partitioned: use dist=zero3"),
    (["+adapter=qlora", "dist=zero3"], "adapter.quant_storage=uint8 packs the 4-bit base in integers"),
    (["dist=zero1", "dist.offload_optimizer=disk"], "dist.offload_optimizer"),
    (["dist=zero2", "dist.config_file=missing.json"], "dist.config_file"),
])
def test_bad_zero_settings_fail_at_validate_with_one_line(overrides, expected, tmp_path):
    result = run_ft(["validate", *overrides], cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_users_config_file_must_match_the_selected_stage_and_be_json(tmp_path):
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    (tmp_path / "broken.json").write_text("{stage: 2")
    mismatch = run_ft(["validate", "dist=zero2", "dist.config_file=ds.json"], cwd=tmp_path, timeout=120)
    assert mismatch.returncode == 2 and "sets ZeRO stage 3, but dist=zero2 is selected" in mismatch.stderr
    broken = run_ft(["validate", "dist=zero2", "dist.config_file=broken.json"], cwd=tmp_path, timeout=120)
    assert broken.returncode == 2 and "is not a readable DeepSpeed JSON" in broken.stderr
    matching = run_ft(["validate", "dist=zero3", "dist.config_file=ds.json"], cwd=tmp_path, timeout=120)
    assert matching.returncode == 0, matching.stderr


@pytest.mark.slow
def test_the_default_task_scores_before_and_after_under_zero3(ft_job):
    """Scoring outside training runs on every rank with ZeRO-3's partitioned weights gathered (ft.api.gathered_weights)."""
    root, result = ft_job(command=["run", f"model.name_or_path={ft_job.model_dir}", f"run.root={ft_job.base / 'zero3-task'}",
                                   "trainer.max_steps=2", "data.task.eval_rows=8", "dist=zero3", "dist.nproc_per_node=2",
                                   "run.plot=false"])
    assert result.returncode == 0, result.stderr[-4000:]
    run = next((ft_job.base / "zero3-task").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert {"task_accuracy_before", "task_accuracy_after"} <= summary.keys()
    assert "before:" in (run / "task_report.txt").read_text() and "held-out accuracy before training" in (run / "ft.log").read_text()


@pytest.mark.slow
def test_multipack_under_zero3_equals_one_process(ft_job):
    """Multipack's two-row isolation check runs on the gathered weights; 6 packs divide over 2 ranks."""
    packing = ("+packing=multipack", "data.sequence_len=192")
    plain = ft_job.finished(*packing, "trainer.micro_batch_size=2", steps=3)
    ranks = ft_job.finished(*packing, "dist=zero3", "dist.nproc_per_node=2", "trainer.micro_batch_size=1", steps=3)
    assert "packing: attention=" in (ranks / "ft.log").read_text()
    assert_same_run(plain, ranks)
