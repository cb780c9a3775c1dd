"""dist=fsdp on 2 CPU ranks (gloo): FSDP2 trains like 1 process, saves a plain model, resumes from its shards."""

from __future__ import annotations

import json

import pytest

from ft_testing import (
    assert_loads_without_ft,
    assert_same_run,
    install_fake_plugin,
    logged_losses,
    run_ft,
    run_lifecycle,
    saved_weights,
)

FSDP = ("dist=fsdp", "dist.nproc_per_node=2", "trainer.micro_batch_size=2")


@pytest.mark.slow
def test_fsdp_on_two_ranks_trains_like_one_process_and_saves_a_plain_model(ft_job, one_process_run, tiny_model_dir):
    run = ft_job.finished(*FSDP)
    log = (run / "ft.log").read_text()
    assert "fsdp: FSDP2 over 2 ranks, 2 LlamaDecoderLayer units" in log
    assert_same_run(one_process_run, run, start=tiny_model_dir)
    assert_loads_without_ft(run / "model")


STOPPER = '''
import os
import signal

from ft.api import PluginInfo, hookimpl

FT_PLUGIN = PluginInfo(name="stopper", description="a scheduler's pre-emption signal before a step", always_active=True)


@hookimpl
def callbacks(ctx):
    from transformers import TrainerCallback

    at = os.environ.get("FT_TEST_STOP_BEFORE_STEP")
    if at is None:
        return []

    class Stop(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == int(at) - 1:
                os.kill(os.getpid(), signal.SIGUSR1)

    return [Stop()]
'''


@pytest.mark.slow
def test_a_two_rank_fsdp_run_resumes_from_its_sharded_checkpoint_to_the_same_weights(ft_job, tmp_path):
    site = tmp_path / "site"
    install_fake_plugin(site, "ft-stopper", "stopper", STOPPER)
    whole = ft_job.finished(*FSDP, steps=6)
    root, result = ft_job(*FSDP, steps=6, site=site, env={"FT_TEST_STOP_BEFORE_STEP": "3"})
    assert result.returncode == 0, result.stderr[-4000:]
    assert "interrupted at step 3; resume with: ft resume" in result.stdout
    stopped = next(root.iterdir())
    checkpoint = stopped / "checkpoints" / "checkpoint-3"
    assert (checkpoint / "pytorch_model_fsdp_0").is_dir() and (checkpoint / "optimizer_0").is_dir()  # sharded
    assert not (checkpoint / "model.safetensors").exists() and not (stopped / "model").exists()

    resumed = run_ft(["resume", str(stopped)], env=ft_job.env, site=site, timeout=900, cwd=ft_job.base)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming" in resumed.stdout and json.loads((stopped / "run.json").read_text())["resumed"]
    assert logged_losses(stopped) == pytest.approx(logged_losses(whole), abs=1e-6)
    mine, theirs = saved_weights(whole / "model"), saved_weights(stopped / "model")
    assert max((mine[n] - theirs[n]).abs().max().item() for n in mine) <= 1e-6


@pytest.mark.parametrize("overrides, expected", [
    (["+adapter=qlora", "dist=fsdp"], "adapter.quant_storage=uint8 packs the 4-bit base in integers"),
    (["dist=fsdp", "dist.activation_checkpointing=true", "trainer.gradient_checkpointing=true"],
     "keep dist.activation_checkpointing only"),
    (["dist=fsdp", "dist.checkpoint_format=zip"], "dist.checkpoint_format"),
    (["dist=[fsdp,zero2]"], "conflict"),
])
def test_combinations_that_cannot_work_fail_at_validate_with_one_line(overrides, expected, tmp_path):
    result = run_ft(["validate", *overrides], cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_wrap_class_the_model_lacks_is_one_clear_error(tiny_model_dir, chat_file, tmp_path):
    from ft.api import ConfigError

    with pytest.raises(ConfigError, match="dist.wrap names GPT2Block, which LlamaForCausalLM does not contain"):
        run_lifecycle([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={chat_file}", "dist=fsdp",
                       "dist.wrap=[GPT2Block]", "trainer.max_steps=1"], tmp_path / "run")
