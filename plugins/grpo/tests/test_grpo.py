"""ft-grpo on a tiny model: rewards reach TRL with the data's columns, the losses are TRL's formulas,
zero-spread groups teach nothing, LoRA trains only the adapter, beta > 0 logs KL to a frozen reference, bad
configs fail at validate, it learns."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from ft.api import hookimpl
from ft.cli import main
from ft_testing import WeightsSpy, build_context, install_fake_plugin, run_ft, run_lifecycle


def tiny_grpo(model_dir: Path, *extra: str) -> list[str]:
    return ["+method=grpo", f"model.name_or_path={model_dir}", "data.task.train_rows=32", "data.task.eval_rows=4",
            "method.max_completion_length=6", "trainer.max_steps=2", "trainer.logging_steps=1", *extra]


# -- the reward library ------------------------------------------------------------------------------


def test_library_rewards_score_as_documented():
    from ft_grpo.rewards import exact_match, length_penalty, numeric_match, regex_format, sort_partial

    chat = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
    assert exact_match([None] * 2, ["7, 19,42", chat("7, 42, 19")], answer=["7, 19, 42", "7, 19, 42"]) == [1.0, 0.0]
    gsm = ["Natalia sold 48/2 = 24 clips.\n#### 72", "#### 1,200"]
    assert numeric_match([None] * 3, ["so 72 in all", "The answer is #### 72", "1200"], answer=[gsm[0], gsm[0], gsm[1]]) == [1.0, 1.0, 1.0]
    assert numeric_match([None], ["71"], answer=[gsm[0]]) == [0.0]
    assert sort_partial([None] * 4, ["7, 19, 42", "7, 42, 19", "19, 7, 42, 1", "no"], answer=["7, 19, 42"] * 4) == [
        1.0, 0.5 * 1 / 3, 0.5 * 1 / 4, 0.0]
    assert regex_format([None] * 2, ["<a>1</a>", "1"], pattern=r"<a>\d+</a>") == [1.0, 0.0]
    assert length_penalty([None] * 2, ["", ""], completion_ids=[[1] * 4, [1] * 12], target=8) == [0.0, -0.5]


def test_prompt_formats_become_trl_rows_with_their_columns():
    from ft_grpo.data import detect_format, normalise

    gsm = {"question": "2+2?", "answer": "#### 4"}
    assert detect_format(gsm, "prompt") == "gsm8k"
    assert normalise(gsm, "gsm8k", "prompt", "Be brief.") == {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}], "answer": "#### 4"}
    task = {"messages": [{"role": "user", "content": "Sort: 3, 1"}, {"role": "assistant", "content": "1, 3"}], "id": 7}
    assert normalise(task, detect_format(task, "prompt"), "prompt", None) == {
        "prompt": [{"role": "user", "content": "Sort: 3, 1"}], "answer": "1, 3", "id": 7}
    assert normalise({"q": "hi", "ref": "x"}, "plain", "q", None) == {"prompt": "hi", "ref": "x"}


def test_an_instruction_goes_on_a_new_line_after_the_last_user_turn():
    from ft.api import DataError
    from ft_grpo.data import normalise

    task = {"messages": [{"role": "user", "content": "Sort: 3, 1"}, {"role": "assistant", "content": "1, 3"}]}
    assert normalise(task, "default_task", "prompt", "Be brief.", "Numbers only.") == {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sort: 3, 1\nNumbers only."}],
        "answer": "1, 3"}
    turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert normalise({"prompt": turns}, "chat", "prompt", None, "Be short.")["prompt"] == [
        *turns[:2], {"role": "user", "content": "c\nBe short."}]
    assert normalise({"prompt": turns}, "chat", "prompt", None, None)["prompt"] == turns  # the row is not changed
    assert normalise({"prompt": "Translate: chat"}, "plain", "prompt", None, "French.") == {"prompt": "Translate: chat\nFrench."}
    with pytest.raises(DataError, match="data.instruction needs a user turn"):
        normalise({"prompt": [{"role": "system", "content": "x"}]}, "chat", "prompt", None, "Numbers only.")


# -- rewards as an ecosystem -----------------------------------------------------------------------------

SPY_PLUGIN = '''
import json, os
from ft.api import PluginInfo, hookimpl

FT_PLUGIN = PluginInfo(name="spyrewards")


def spy_reward(prompts, completions, completion_ids, **columns):
    with open(os.environ["SPY_LOG"], "a") as handle:
        handle.write(json.dumps({"from": "plugin", "columns": sorted(columns), "n": len(completions)}) + "\\n")
    return [0.5] * len(completions)


@hookimpl
def reward_functions():
    return {"spy_reward": spy_reward}
'''

USER_REWARDS = '''
import json, os


def score(prompts, completions, completion_ids, bonus=0.0, **columns):
    with open(os.environ["SPY_LOG"], "a") as handle:
        handle.write(json.dumps({"from": "path", "columns": sorted(columns), "bonus": bonus}) + "\\n")
    return [bonus] * len(completions)
'''


def test_rewards_from_a_plugin_an_import_path_and_the_library_reach_the_trainer_with_the_columns(tiny_model_dir, tmp_path):
    site = tmp_path / "site"
    install_fake_plugin(site, "ft-spyrewards", "spyrewards", SPY_PLUGIN)
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent(USER_REWARDS))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Say {i}", "answer": str(i), "topic": "numbers"}) + "\n"
                               for i in range(12)))
    log = tmp_path / "spy.jsonl"
    rewards = "method.rewards=[{name: exact_match}, {name: spy_reward, weight: 2}, {name: 'my_rewards:score', args: {bonus: 0.25}}]"
    result = run_ft(["run", *tiny_grpo(tiny_model_dir, f"data.path={prompts}", "data.val_size=4", rewards,
                                       "method.log_completions_every=1", f"run.root={tmp_path}", "run.name=run")],
                    cwd=tmp_path, site=site, env={"SPY_LOG": str(log)})
    assert result.returncode == 0, result.stderr[-3000:]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    # every training batch called both, with the dataset's other columns (and TRL's trainer_state)
    assert {c["from"] for c in calls} == {"plugin", "path"}
    assert all({"answer", "topic"} <= set(c["columns"]) for c in calls)
    assert all(c["bonus"] == 0.25 for c in calls if c["from"] == "path")
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = next(m for m in metrics if "reward" in m)
    assert logged["rewards/spy_reward/mean"] == 0.5 and logged["rewards/score/mean"] == 0.25
    assert "rewards/exact_match/mean" in logged
    completions = [json.loads(line) for line in (tmp_path / "run" / "completions.jsonl").read_text().splitlines()]
    assert completions and set(completions[0]["rewards"]) == {"exact_match", "spy_reward", "score"}
    assert (tmp_path / "run" / "rewards.png").is_file()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["heldout_reward_after"] == pytest.approx(2 * 0.5 + 0.25 + summary["heldout_exact_match_after"])


def test_bad_rewards_batches_and_vllm_fail_at_validate_with_one_line(tmp_path, capsys, monkeypatch):
    assert main(["validate", "+method=grpo", "method.rewards=[{name: exact_macth}]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such reward function (did you mean 'exact_match'?)" in err
    assert "available: exact_match, length_penalty, numeric_match, regex_format, sort_partial" in err
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "+method=grpo", "method.rewards=[{name: 'nowhere:score'}]"]) == 2
    assert "cannot import 'nowhere:score' (ModuleNotFoundError" in capsys.readouterr().err
    assert main(["validate", "+method=grpo", "trainer.micro_batch_size=6"]) == 2
    assert "must divide processes x trainer.micro_batch_size x trainer.gradient_accumulation_steps = 1 x 6 x 1 = 6" in (
        capsys.readouterr().err)
    assert main(["validate", "+method=grpo", "method.use_vllm=true"]) == 2
    assert "needs vLLM, which is not installed" in capsys.readouterr().err
    assert main(["validate", "+method=grpo", "+packing=multipack"]) == 2
    assert "needs a method that is packable" in capsys.readouterr().err


# -- the losses are TRL's formulas -------------------------------------------------------------------


def reference_loss(loss_type: str, logps, old, advantages, mask, epsilon: float, max_len: int, num_items: float):
    """The clipped surrogate by hand, aggregated per loss_type (GRPO, BNPO, Dr. GRPO, DAPO papers)."""
    import torch

    ratio = torch.exp(logps - old)
    per_token = -torch.min(ratio * advantages[:, None], torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantages[:, None])
    if loss_type == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1)).mean()
    if loss_type == "bnpo":
        return (per_token * mask).sum() / mask.sum()
    if loss_type == "dr_grpo":
        return (per_token * mask).sum() / (per_token.shape[0] * max_len)
    return (per_token * mask).sum() / num_items  # dapo: the tokens of the whole (accumulated) batch


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_each_loss_type_equals_its_formula_on_fixed_tensors(loss_type, tiny_model_dir, tmp_path):
    import torch

    ctx = build_context(tiny_grpo(tiny_model_dir, f"method.loss_type={loss_type}", "method.epsilon=0.2",
                                  "method.max_completion_length=5", "method.eval_before=false"), tmp_path / "run")
    trainer = ctx.trainer
    generator = torch.Generator().manual_seed(0)
    logps = -torch.rand(4, 5, generator=generator) * 2
    old = logps + (torch.rand(4, 5, generator=generator) - 0.5) * 0.8  # ratios both inside and outside the clip
    advantages = torch.tensor([1.0, -0.5, 0.25, -1.5])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.float32)
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (logps, torch.zeros_like(logps), None)
    inputs = {"prompt_ids": torch.ones(4, 3, dtype=torch.long), "prompt_mask": torch.ones(4, 3, dtype=torch.long),
              "completion_ids": torch.ones(4, 5, dtype=torch.long), "completion_mask": mask.long(),
              "advantages": advantages, "old_per_token_logps": old, "num_items_in_batch": mask.sum()}
    trainer.model.eval()  # no accumulation divisor: the formula itself
    loss = trainer._compute_loss(trainer.model, inputs)
    expected = reference_loss(loss_type, logps, old, advantages, mask, 0.2, 5, float(mask.sum()))
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)


# -- what training does ------------------------------------------------------------------------------


def test_groups_with_identical_rewards_have_zero_advantage_and_teach_nothing(tiny_model_dir, tmp_path):
    spy = WeightsSpy()
    run_lifecycle(tiny_grpo(tiny_model_dir, "method.rewards=[{name: regex_format, args: {pattern: '.*'}}]",
                            "optim.lr=1e-1", "trainer.max_steps=3", "method.eval_before=false",
                            "method.log_completions_every=1"), tmp_path / "run", spy)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "frac_reward_zero_std" in r]
    assert steps and all(r["frac_reward_zero_std"] == 1.0 and r["reward"] == 1.0 for r in steps)
    sampled = [json.loads(line) for line in (tmp_path / "run" / "completions.jsonl").read_text().splitlines()]
    assert sampled and all(r["advantage"] == 0.0 for r in sampled)
    assert all(torch_equal(spy.before[n], spy.after[n]) for n in spy.before), "a zero advantage moved the weights"


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def low_ids_reward(folder: Path, monkeypatch) -> None:
    """``lowids:score`` importable from the working directory: the share of the 6 completion tokens below id 60."""
    (folder / "lowids.py").write_text("def score(prompts, completions, completion_ids, **kw):\n"
                                      "    return [sum(t < 60 for t in ids) / 6 for ids in completion_ids]\n")
    monkeypatch.chdir(folder)


def test_lora_with_grpo_trains_only_the_adapter(tiny_model_dir, tmp_path, monkeypatch):
    spy = WeightsSpy()
    low_ids_reward(tmp_path, monkeypatch)
    run_lifecycle(tiny_grpo(tiny_model_dir, "+adapter=lora", "method.rewards=[{name: 'lowids:score'}]",
                            "optim.lr=1e-2", "trainer.max_steps=3", "method.eval_before=false"), tmp_path / "run", spy)
    assert spy.trainable and all("lora_" in n for n in spy.trainable)
    changed = {n for n in spy.before if not torch_equal(spy.before[n], spy.after[n])}
    assert changed and changed <= spy.trainable
    assert (tmp_path / "run" / "model" / "adapter_config.json").is_file()


def test_a_tiny_model_learns_a_verifiable_reward(tiny_model_dir, tmp_path, monkeypatch):
    """Reward: the share of the completion spent on token ids below 60 (a tenth of the vocabulary); a random
    policy earns about 0.1."""
    (tmp_path / "synth.py").write_text("def low_ids(prompts, completions, completion_ids, **kw):\n"
                                       "    return [sum(t < 60 for t in ids) / 8 for ids in completion_ids]\n")
    monkeypatch.chdir(tmp_path)
    run_lifecycle(["+method=grpo", f"model.name_or_path={tiny_model_dir}", "trainer.max_steps=40",
                   "trainer.logging_steps=1", "data.task.train_rows=256", "data.task.eval_rows=0",
                   "method.max_completion_length=8", "method.num_generations=8", "trainer.micro_batch_size=16",
                   "optim.lr=1e-2", "method.rewards=[{name: 'synth:low_ids'}]", "run.save_final_model=false"],
                  tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rewards = [r["reward"] for r in records if "reward" in r]
    first, last = sum(rewards[:10]) / 10, sum(rewards[-10:]) / 10
    assert len(rewards) == 40 and last >= 3 * first and last >= 0.5, (first, last)


class ReferenceSpy(WeightsSpy):
    """Also the trainer's reference model (a frozen copy, or None with an adapter) and its weights at the start."""

    @hookimpl
    def post_trainer_create(self, ctx):
        super().post_trainer_create(ctx)
        self.trainer = ctx.trainer
        self.reference = ctx.trainer.ref_model
        self.reference_before = {} if self.reference is None else {
            n: p.detach().clone() for n, p in self.reference.named_parameters()}


@pytest.mark.parametrize("adapter", [[], ["+adapter=lora"]], ids=["full", "lora"])
def test_beta_logs_kl_from_zero_against_the_frozen_starting_model(adapter, tiny_model_dir, tmp_path, monkeypatch):
    """beta > 0: KL to the starting model is in every logged step, exactly 0 before the first update and
    positive once the policy moved; the reference (a frozen copy, or the base under the adapter) never moves."""
    spy = ReferenceSpy()
    low_ids_reward(tmp_path, monkeypatch)
    run_lifecycle(tiny_grpo(tiny_model_dir, *adapter, "method.beta=0.1", "method.rewards=[{name: 'lowids:score'}]",
                            "optim.lr=1e-2", "trainer.max_steps=4", "method.eval_before=false"), tmp_path / "run", spy)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    kl = [r["kl"] for r in records if "reward" in r]
    assert len(kl) == 4 and kl[0] == 0.0 and all(value > 0 for value in kl[1:]), kl
    if adapter:
        assert spy.reference is None  # TRL disables the adapter instead of copying the model
        base = [n for n in spy.before if "lora_" not in n]
        assert base and all(torch_equal(spy.before[n], spy.after[n]) for n in base)
    else:
        assert spy.reference is not None and spy.reference is not spy.trainer.model
        after = dict(spy.reference.named_parameters())
        assert all(torch_equal(value, after[n].detach()) for n, value in spy.reference_before.items())
        assert all(torch_equal(spy.reference_before[n], spy.before[n]) for n in spy.reference_before)
        assert any(not torch_equal(spy.before[n], spy.after[n]) for n in spy.before)
