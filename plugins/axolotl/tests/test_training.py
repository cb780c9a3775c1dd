"""Ten translated Axolotl configs train exactly like the ft config a user would write by hand.

Each pair: ``ft run --axolotl FILE`` (the plugin's translation, as the command line runs it) and the
hand-written ft overrides for the same file, both with the model and data pointed at a tiny model and
local rows, and the same CPU settings typed after them (3 steps; transformers' AdamW, since bitsandbytes'
8-bit optimizers need a GPU; SDPA attention in place of flash-attn; short sequences; no eval split).
Same loss at every step (1e-6) and the same trained weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ft_testing import TEST_DATA, TrainingRecorder, assert_same_training, run_lifecycle

EXAMPLES = Path(__file__).parent / "axolotl_examples"
pytestmark = pytest.mark.slow  # twenty short training runs: the full tier
CPU = ["trainer.max_steps=3", "optim.name=adamw_torch", "model.attn_implementation=sdpa", "data.val_size=0", "trainer.logging_steps=1", "run.plot=false", "run.save_final_model=false",
       "trainer.save_every_minutes=null"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> dict[str, Path]:
    """Local rows in each shape: alpaca, chat (two user turns), preference pairs, GRPO prompts."""
    folder = tmp_path_factory.mktemp("rows")
    gsm8k = [json.loads(line) for line in (TEST_DATA / "gsm8k" / "train.jsonl").read_text().splitlines()[:24]]
    answer = lambda r: r["answer"].split("####")[-1].strip()  # noqa: E731
    shapes = {
        "alpaca": [{"instruction": r["question"][:160], "input": "", "output": answer(r)} for r in gsm8k],
        "chat": [{"messages": [{"role": "system", "content": "Answer with a number."},
                               {"role": "user", "content": r["question"][:120]},
                               {"role": "assistant", "content": answer(r)},
                               {"role": "user", "content": "Sure?"},
                               {"role": "assistant", "content": f"Yes, {answer(r)}."}]} for r in gsm8k],
        "pairs": [{"prompt": [{"role": "user", "content": r["question"][:120]}],
                   "chosen": [{"role": "assistant", "content": answer(r)}],
                   "rejected": [{"role": "assistant", "content": "I do not know."}]} for r in gsm8k],
        "prompts": [{"prompt": [{"role": "user", "content": r["question"][:100]}]} for r in gsm8k],
    }
    for name, items in shapes.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    (folder / "axolotl_test_rewards.py").write_text(
        "def brevity(prompts, completions, **kwargs):\n"
        "    return [-float(len(str(c))) / 10 for c in completions]\n")
    return {name: folder / f"{name}.jsonl" for name in shapes} | {"folder": folder}


def axolotl_file(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "axolotl.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def example(name: str, model: Path, data: list[dict], **changes) -> dict:
    """An Axolotl example with its model and data paths pointed at the tiny model and local rows."""
    config = yaml.safe_load((EXAMPLES / name).read_text())
    config.update(base_model=str(model), datasets=data, **changes)
    return config


def train_both(tmp_path: Path, config: dict, hand_written: list[str], *shared: str,
               short: str | None = "data.sequence_len=128") -> None:
    """Both runs, then the comparison; ``short`` keeps sequences short (the method's own length key)."""
    from ft_axolotl.plugin import command_arguments

    shared = (*shared, short) if short else shared
    translated = command_arguments(command="run", args=["--axolotl", str(axolotl_file(tmp_path, config)), *CPU, *shared],
                                   p_flags=[])
    mine, theirs = TrainingRecorder(), TrainingRecorder()
    run_lifecycle([*translated, f"run.root={tmp_path / 'a'}"], tmp_path / "a" / "run", mine)
    run_lifecycle([*hand_written, *CPU, *shared, f"run.root={tmp_path / 'b'}"], tmp_path / "b" / "run", theirs)
    assert len(mine.losses) >= 3
    assert_same_training(mine, theirs, tol=1e-6)


def common(model: Path, lr: str = "0.0002") -> list[str]:
    """What most of Axolotl's llama-3 examples set, written as ft keys."""
    return [f"model.name_or_path={model}", "trainer.logging_steps=1", f"optim.lr={lr}", "optim.scheduler=cosine",
            "optim.warmup_steps=0.1", "optim.weight_decay=0.0", "trainer.precision=bf16", "model.dtype=bfloat16",
            "trainer.gradient_checkpointing=true", "run.root=./outputs/lora-out"]


def test_lora_alpaca_packing(tiny_model_dir, rows, tmp_path):
    config = example("llama-3/lora-1b.yml", tiny_model_dir, [{"path": str(rows["alpaca"]), "type": "alpaca"}])
    hand = [*common(tiny_model_dir), "+adapter=lora", "adapter.r=16", "adapter.alpha=32", "adapter.dropout=0.05",
            "adapter.target_modules=[gate_proj,down_proj,up_proj,q_proj,v_proj,k_proj,o_proj]", "+packing=multipack",
            "packing.eval=true", "data=alpaca", f"data.path={rows['alpaca']}", "trainer.micro_batch_size=2",
            "trainer.gradient_accumulation_steps=2", "+model.special_tokens={pad_token:'<|end_of_text|>'}"]
    train_both(tmp_path, config, hand)


def test_qlora(tiny_model_dir, rows, tmp_path):
    config = example("llama-3/qlora-1b.yml", tiny_model_dir, [{"path": str(rows["alpaca"]), "type": "alpaca"}])
    hand = [*common(tiny_model_dir), "+adapter=qlora", "adapter.bits=4", "adapter.compute_dtype=bfloat16", "adapter.r=32",
            "adapter.alpha=16", "adapter.dropout=0.05",
            "adapter.target_modules=[gate_proj,down_proj,up_proj,q_proj,v_proj,k_proj,o_proj]", "+packing=multipack",
            "data=alpaca", f"data.path={rows['alpaca']}", "trainer.micro_batch_size=2",
            "trainer.gradient_accumulation_steps=4", "+model.special_tokens={pad_token:'<|end_of_text|>'}"]
    train_both(tmp_path, config, hand)


def test_full_fine_tune(tiny_model_dir, rows, tmp_path):
    config = example("llama-3/fft-8b.yaml", tiny_model_dir, [{"path": str(rows["alpaca"]), "type": "alpaca"}])
    hand = [*common(tiny_model_dir, "2e-5"), "+packing=multipack", "data=alpaca", f"data.path={rows['alpaca']}",
            "trainer.micro_batch_size=1", "trainer.gradient_accumulation_steps=8",
            "+model.special_tokens={pad_token:'<|end_of_text|>'}", "run.root=./outputs/out"]
    train_both(tmp_path, config, hand, "optim.lr=1e-3")


def test_alpaca_qlora_without_packing(tiny_model_dir, rows, tmp_path):
    config = example("archived/qwen/qlora.yml", tiny_model_dir, [{"path": str(rows["alpaca"]), "type": "alpaca"}])
    hand = [*common(tiny_model_dir), "trainer.gradient_checkpointing=false", "model.trust_remote_code=true",
            "+adapter=qlora", "adapter.bits=4", "adapter.compute_dtype=bfloat16", "adapter.r=32", "adapter.alpha=16",
            "adapter.dropout=0.05", "adapter.target_modules=all-linear", "data=alpaca", f"data.path={rows['alpaca']}",
            "trainer.micro_batch_size=2", "trainer.gradient_accumulation_steps=4", "trainer.num_epochs=4"]
    train_both(tmp_path, config, hand)


def test_full_fine_tune_alpaca_packing_mistral(tiny_model_dir, rows, tmp_path):
    config = example("mistral/config.yml", tiny_model_dir, [{"path": str(rows["alpaca"]), "type": "alpaca"}])
    hand = [*common(tiny_model_dir, "5e-6"), "+packing=multipack", "packing.eval=false", "data=alpaca",
            f"data.path={rows['alpaca']}", "trainer.micro_batch_size=2", "trainer.gradient_accumulation_steps=4",
            "trainer.num_epochs=4", "run.root=./outputs/out"]
    train_both(tmp_path, config, hand, "optim.lr=1e-3")


def test_chat_template_with_roles_to_train(tiny_model_dir, rows, tmp_path):
    data = [{"path": str(rows["chat"]), "type": "chat_template", "roles_to_train": ["assistant", "user"],
             "train_on_eos": "all"}]
    config = example("llama-3/instruct-lora-8b.yml", tiny_model_dir, data, chat_template="chatml")
    hand = [*common(tiny_model_dir), "+adapter=qlora", "adapter.bits=8", "adapter.compute_dtype=bfloat16", "adapter.r=32", "adapter.alpha=16", "adapter.dropout=0.05",
            "adapter.target_modules=all-linear", "data=chat", "data.chat_template=chatml",
            f"+data.datasets=[{{path:'{rows['chat']}',format:chat_template,roles_to_train:[assistant,user],train_on_eos:all}}]",
            "data.path=null", "trainer.micro_batch_size=2", "trainer.gradient_accumulation_steps=4",
            "trainer.num_epochs=4", "+model.special_tokens={pad_token:'<|end_of_text|>'}"]
    train_both(tmp_path, config, hand)


def test_dpo(tiny_model_dir, rows, tmp_path):
    config = example("llama-3/instruct-dpo-lora-8b.yml", tiny_model_dir, [{"path": str(rows["pairs"])}])
    hand = [*common(tiny_model_dir), "+method=dpo", f"data.path={rows['pairs']}", "+adapter=qlora", "adapter.bits=8",
            "adapter.compute_dtype=bfloat16", "adapter.r=32",
            "adapter.alpha=16", "adapter.dropout=0.05", "adapter.target_modules=all-linear", "trainer.micro_batch_size=2",
            "trainer.gradient_accumulation_steps=4", "trainer.num_epochs=4", "method.max_length=4096",
            "+model.special_tokens={pad_token:'<|finetune_right_pad_id|>',eos_token:'<|eot_id|>'}"]
    train_both(tmp_path, config, hand, "method.eval_before=false", short="method.max_length=128")


def test_kto(tiny_model_dir, rows, tmp_path):
    config = example("llama-3/qlora-1b-kto.yaml", tiny_model_dir, [{"path": str(rows["pairs"])}])
    hand = [*common(tiny_model_dir), "+method=kto", "method.beta=0.5", "method.desirable_weight=0.2",
            f"data.path={rows['pairs']}", "+adapter=qlora", "adapter.bits=4", "adapter.compute_dtype=bfloat16",
            "adapter.r=32", "adapter.alpha=64", "adapter.dropout=0.05", "adapter.target_modules=all-linear",
            "trainer.micro_batch_size=2", "trainer.gradient_accumulation_steps=1", "run.root=./outputs/qlora-out",
            "method.max_length=2048", "data.val_size=0.0",
            "+model.special_tokens={pad_token:'<|end_of_text|>'}"]
    train_both(tmp_path, config, hand, "method.eval_before=false", short="method.max_length=128")


def test_grpo(tiny_model_dir, rows, tmp_path, monkeypatch):
    """Axolotl's GRPO keys (rl: grpo, trl:) as its docs write them; the reward is an import path."""
    monkeypatch.syspath_prepend(str(rows["folder"]))
    config = {"base_model": str(tiny_model_dir), "rl": "grpo", "datasets": [{"path": str(rows["prompts"])}],
              "trl": {"beta": 0.0, "num_generations": 4, "max_completion_length": 6, "temperature": 1.0,
                      "scale_rewards": True, "loss_type": "grpo", "reward_funcs": ["axolotl_test_rewards.brevity"]},
              "micro_batch_size": 4, "gradient_accumulation_steps": 1, "learning_rate": 1e-5, "lr_scheduler": "constant",
              "optimizer": "adamw_torch", "output_dir": "./outputs/grpo"}
    hand = [f"model.name_or_path={tiny_model_dir}", "+method=grpo", f"data.path={rows['prompts']}", "method.beta=0.0",
            "method.num_generations=4", "method.max_completion_length=6", "method.temperature=1.0",
            "method.scale_rewards=group", "method.loss_type=grpo",
            "method.rewards=[{name:'axolotl_test_rewards:brevity',weight:1.0}]", "trainer.micro_batch_size=4",
            "trainer.gradient_accumulation_steps=1", "optim.lr=1e-5", "optim.scheduler=constant", "run.root=./outputs/grpo"]
    train_both(tmp_path, config, hand, "method.eval_before=false", "optim.lr=1e-2", short=None)


def test_knowledge_distillation(tiny_model_dir, rows, tmp_path):
    """Axolotl's KD plugin keys; the teacher (a model path) is given as an ft override on both sides."""
    config = {"base_model": str(tiny_model_dir), "plugins": ["axolotl.integrations.kd.KDPlugin"],
              "kd_alpha": 0.9, "kd_ce_alpha": 0.1, "kd_temperature": 2.0, "sequence_len": 128,
              "datasets": [{"path": str(rows["chat"]), "type": "chat_template"}], "micro_batch_size": 2,
              "gradient_accumulation_steps": 2, "learning_rate": 1e-3, "optimizer": "adamw_torch"}
    hand = [f"model.name_or_path={tiny_model_dir}", "+method=kd", "method.kd_alpha=0.9", "method.ce_alpha=0.1",
            "method.temperature=2.0", "data=chat", f"data.path={rows['chat']}", "trainer.micro_batch_size=2",
            "trainer.gradient_accumulation_steps=2", "optim.lr=1e-3"]
    train_both(tmp_path, config, hand, f"method.teacher={tiny_model_dir}", "method.eval_kl=false")
