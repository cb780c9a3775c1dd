"""Each preference method trains on a tiny model; references, TRL defaults, sweeps and errors."""

from __future__ import annotations

import json
import math

import pytest
from pref_helpers import build_ctx, live_instances, read_jsonl, run_args, write_pairs

from ft.cli import main
from ft_testing import run_ft

PAIRED = ("dpo", "ipo", "orpo", "simpo")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("prefs") / "pairs.jsonl")


@pytest.mark.parametrize("method", ["dpo", "ipo", "kto", "orpo", "simpo"])
def test_each_method_trains_with_finite_loss_and_reward_metrics_logged(method, tiny_model_dir, pairs, tmp_path):
    assert main(["run", f"+method={method}", *run_args(tiny_model_dir, pairs, tmp_path, method)]) == 0
    run = tmp_path / method
    records = read_jsonl(run / "metrics.jsonl")
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss"]) for r in train)
    evals = [r for r in records if "eval_loss" in r]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == 4  # held-out split before and after training
    if method in PAIRED:
        assert all("rewards/accuracies" in r and "rewards/margins" in r for r in train)
        assert all("eval_rewards/accuracies" in r and "eval_rewards/margins" in r for r in evals)
    else:  # KTO's rows are unpaired: rewards of desirable and undesirable rows, their margin and the KL term
        assert all("kl" in r for r in train) and all("eval_rewards/margins" in r for r in evals)
    summary = json.loads((run / "summary.json").read_text())
    # The chosen replies always answer, the rejected ones refuse: a few steps separate them on held-out prompts.
    assert summary["heldout_reward_margin_after"] > summary["heldout_reward_margin_before"]
    if method in PAIRED:
        assert summary["heldout_reward_accuracy_after"] > summary["heldout_reward_accuracy_before"]
        assert summary["heldout_reward_accuracy_after"] >= 0.75
    assert (run / "rewards.png").is_file() and (run / "loss.png").is_file()
    assert (run / "model" / "model.safetensors").is_file()


def _llama():
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM


def test_dpo_with_lora_uses_the_base_with_the_adapter_disabled_and_no_second_model_copy(tiny_model_dir, pairs, tmp_path):
    import torch

    before = live_instances(_llama())
    ctx = build_ctx(["+method=dpo", "+adapter=lora", *run_args(tiny_model_dir, pairs, tmp_path, "lora", 2)],
                    tmp_path / "lora")
    trainer, model = ctx.trainer, ctx.model
    from peft import PeftModel

    assert isinstance(model, PeftModel)
    assert trainer.ref_model is None and ctx.reference_model is None
    assert "ref" not in model.peft_config  # no copy of the adapter either
    assert len(live_instances(_llama()) - before) == 1
    trainer.train()
    assert len(live_instances(_llama()) - before) == 1
    trained = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert trained and any(p.detach().abs().sum() > 0 for p in trained)  # the adapter did train

    # The reference log-probs are those of the untouched base model.
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    reference = torch.cat(trainer.compute_ref_log_probs(model, batch))
    base = _llama().from_pretrained(tiny_model_dir)
    base.eval()
    with torch.no_grad():
        logits = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    logps = torch.log_softmax(logits.float(), -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    expected = (logps * batch["completion_mask"][:, 1:]).sum(-1)
    torch.testing.assert_close(reference, expected, rtol=1e-4, atol=1e-3)


def test_dpo_with_qlora_keeps_the_adapter_in_the_run_precision_and_one_model(tiny_model_dir, pairs, tmp_path):
    import torch
    from bitsandbytes.nn import Linear4bit

    before = live_instances(_llama())
    ctx = build_ctx(["+method=dpo", "+adapter=qlora", *run_args(tiny_model_dir, pairs, tmp_path, "qlora", 2)],
                    tmp_path / "qlora")
    assert any(isinstance(m, Linear4bit) for m in ctx.model.modules())
    trainable = [p for p in ctx.model.parameters() if p.requires_grad]
    # TRL casts a quantized model's adapter to bfloat16; trainer.precision=fp32 keeps it in float32.
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    assert ctx.trainer.ref_model is None and "ref" not in ctx.model.peft_config
    ctx.trainer.train()
    assert len(live_instances(_llama()) - before) == 1
    assert all(math.isfinite(r["loss"]) for r in ctx.trainer.state.log_history if "loss" in r)


def test_full_finetune_reference_is_a_frozen_copy_that_does_not_move(tiny_model_dir, pairs, tmp_path):
    import torch

    before = live_instances(_llama())
    ctx = build_ctx(["+method=dpo", *run_args(tiny_model_dir, pairs, tmp_path, "full", 2)], tmp_path / "full")
    reference = ctx.reference_model
    assert reference is not None and ctx.trainer.ref_model is reference
    assert len(live_instances(_llama()) - before) == 2
    assert not any(p.requires_grad for p in reference.parameters())
    start = {n: p.detach().clone() for n, p in reference.named_parameters()}
    policy_start = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}
    for (name, p), q in zip(reference.named_parameters(), ctx.model.parameters()):
        assert p.data_ptr() != q.data_ptr(), name
    ctx.trainer.train()
    for name, p in reference.named_parameters():
        torch.testing.assert_close(p, start[name])
    assert any(not torch.equal(p, policy_start[n]) for n, p in ctx.model.named_parameters())


def test_precomputed_reference_log_probs_keep_no_reference_model(tiny_model_dir, pairs, tmp_path):
    before = live_instances(_llama())
    ctx = build_ctx(["+method=dpo", "method.precompute_ref_log_probs=true",
                     *run_args(tiny_model_dir, pairs, tmp_path, "pre", 2)], tmp_path / "pre")
    assert ctx.trainer.ref_model is None and ctx.reference_model is None
    assert len(live_instances(_llama()) - before) == 1
    assert {"ref_chosen_logps", "ref_rejected_logps"} <= set(ctx.trainer.train_dataset.column_names)
    ctx.trainer.train()


@pytest.mark.parametrize("method", ["dpo", "kto", "orpo", "simpo"])
def test_trl_defaults_that_do_not_fit_the_machine_come_from_ft_config(method, tiny_model_dir, pairs, tmp_path):
    before = live_instances(_llama())
    ctx = build_ctx([f"+method={method}", *run_args(tiny_model_dir, pairs, tmp_path, method)], tmp_path / method)
    # A full fine-tune: DPO and KTO keep a frozen copy as their reference; ORPO and SimPO need none.
    assert len(live_instances(_llama()) - before) == (2 if method in ("dpo", "kto") else 1)
    assert (ctx.reference_model is None) == (method in ("orpo", "simpo"))
    args = ctx.trainer.args
    assert args.bf16 is False and args.fp16 is False  # TRL would turn bf16 autocast on
    assert args.gradient_checkpointing is False  # TRL would turn it on
    assert not ctx.model.is_activation_checkpointing
    assert args.learning_rate == pytest.approx(5e-3)  # TRL's own default is 1e-6
    on = build_ctx([f"+method={method}", "trainer.gradient_checkpointing=true",
                    *run_args(tiny_model_dir, pairs, tmp_path, method + "-gc")], tmp_path / (method + "-gc"))
    assert on.trainer.args.gradient_checkpointing is True


def test_method_knobs_reach_trl(tiny_model_dir, pairs, tmp_path):
    ctx = build_ctx(["+method=simpo", "method.beta=2.5", "method.gamma=1.25", "method.cpo_alpha=0.1",
                     *run_args(tiny_model_dir, pairs, tmp_path, "simpo")], tmp_path / "simpo")
    args = ctx.trainer.args
    assert (args.loss_type, args.beta, args.simpo_gamma, args.cpo_alpha) == ("simpo", 2.5, 1.25, 0.1)
    ctx = build_ctx(["+method=kto", "method.desirable_weight=1.5", "method.undesirable_weight=0.5",
                     *run_args(tiny_model_dir, pairs, tmp_path, "kto")], tmp_path / "kto")
    assert (ctx.trainer.args.desirable_weight, ctx.trainer.args.undesirable_weight) == (1.5, 0.5)
    ctx = build_ctx(["+method=ipo", "method.beta=0.3", *run_args(tiny_model_dir, pairs, tmp_path, "ipo")],
                    tmp_path / "ipo")
    assert (ctx.trainer.args.loss_type, ctx.trainer.args.beta) == (["ipo"], 0.3)


def test_sweep_over_three_methods_prints_one_comparison_table(tiny_model_dir, pairs, tmp_path, capsys):
    args = run_args(tiny_model_dir, pairs, tmp_path, "unused", 3)
    args = [a for a in args if not a.startswith(("run.name", "run.root"))]
    # data.max_eval_rows exists only in data=preference, which the swept methods select themselves.
    code = main(["run", "-m", "+method=dpo,ipo,simpo", "+adapter=lora", "optim.lr=1e-2", "data.max_eval_rows=6",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}", *args])
    out = capsys.readouterr().out
    assert code == 0
    table = out[out.index("Sweep summary (3 jobs"):].splitlines()
    header = table[1]
    for column in ("method", "heldout_reward_accuracy_before", "heldout_reward_accuracy_after",
                   "heldout_reward_margin_before", "heldout_reward_margin_after"):
        assert column in header
    rows = table[3:6]
    assert [r.split("|")[2].strip() for r in rows] == ["dpo", "ipo", "simpo"]
    assert all("| ok " in r for r in rows)
    assert (tmp_path / "sweep" / "summary.md").is_file()


def test_adapter_output_holds_only_the_trained_adapter(tiny_model_dir, pairs, tmp_path):
    assert main(["run", "+method=dpo", "+adapter=lora", *run_args(tiny_model_dir, pairs, tmp_path, "save", 2)]) == 0
    model_dir = tmp_path / "save" / "model"
    assert (model_dir / "adapter_model.safetensors").is_file()
    assert not (model_dir / "ref").exists()


@pytest.mark.parametrize("extra, message", [
    (["+method=kto", "trainer.micro_batch_size=1"], "method=kto needs at least 2 rows a batch"),
    (["+method=dpo", "method.beta=0"], "method.beta=0"),
    (["+method=dpo", "method.loss_type=exo_pair"], "exo_pair needs method.label_smoothing > 0"),
    (["+method=orpo", "method.max_prompt_length=600"], "max_prompt_length=600 must be below method.max_length"),
    (["+method=dpo", "method.loss_type=sigmoidd"], "method.loss_type='sigmoidd' is not valid"),
    (["data=preference"], "data=preference needs a preference method"),
])
def test_bad_method_config_fails_before_anything_loads(extra, message, pairs, capsys):
    assert main(["validate", f"data.path={pairs}", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unpaired_rows_with_a_pairwise_method_is_one_line_naming_kto(tiny_model_dir, tmp_path):
    data = tmp_path / "kto.jsonl"
    data.write_text(json.dumps({"prompt": "p", "completion": "a", "label": True}) + "\n")
    result = run_ft(["run", "+method=dpo", *run_args(tiny_model_dir, data, tmp_path, "x")])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"ft: error: {data}: rows are unpaired (prompt/completion/label), but this method trains on pairs "
        "(prompt/chosen/rejected); use method=kto, or pair the completions")
