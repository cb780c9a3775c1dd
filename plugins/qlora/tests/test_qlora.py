"""ft-qlora on a tiny model, on CPU: a 4-bit (and 8-bit) base with LoRA on top trains, saves a plain PEFT
adapter, and merges into the de-quantised base."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from qlora_helpers import ModelSpy, probe_ids, run_lifecycle, tiny_args  # noqa: F401 (probe_ids is a fixture)

from ft import hookimpl
from ft.cli import main

#: A user's own script, with no ft importable: the 4-bit base as they would load it, plus the adapter.
PLAIN_PEFT_4BIT = r"""
import importlib.abc, json, sys

class NoFt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ft", "ft_lora", "ft_qlora"):
            raise ModuleNotFoundError(f"{name} is blocked: this check runs without ft")
        return None

sys.meta_path.insert(0, NoFt())
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

adapter_dir, ids, bits, out = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
base = json.load(open(f"{adapter_dir}/adapter_config.json"))["base_model_name_or_path"]
if bits == 4:
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32)
else:
    quant = BitsAndBytesConfig(load_in_8bit=True)
model = AutoModelForCausalLM.from_pretrained(base, quantization_config=quant, dtype=torch.float32)
model = PeftModel.from_pretrained(model, adapter_dir).eval()
for module in model.modules():  # as ft-qlora does: bitsandbytes' bf16 CPU inference kernel off (see its README)
    if hasattr(module, "support_avx512bf16_for_cpu"):
        module.support_avx512bf16_for_cpu = False
with torch.no_grad():
    torch.save(model(input_ids=torch.tensor([ids])).logits.float(), out)
"""


def losses(run_dir: Path) -> list[float]:
    records = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return [r["loss"] for r in records if "loss" in r]


@pytest.fixture(scope="module")
def chat(tmp_path_factory) -> Path:
    from ft_testing import write_chat_rows

    return write_chat_rows(tmp_path_factory.mktemp("data") / "chat.jsonl")


@pytest.fixture(scope="module")
def qlora_run(tiny_model_dir, chat, tmp_path_factory, probe_ids) -> tuple[Path, ModelSpy]:
    spy = ModelSpy(probe_ids)
    run_dir = tmp_path_factory.mktemp("runs") / "qlora"
    run_lifecycle([*tiny_args(tiny_model_dir, chat, steps=20), "+adapter=qlora", "adapter.r=8",
                   "adapter.dropout=0.0"], run_dir, spy)
    return run_dir, spy


@pytest.fixture(scope="module")
def int8_run(tiny_model_dir, chat, tmp_path_factory, probe_ids) -> tuple[Path, ModelSpy]:
    spy = ModelSpy(probe_ids)
    run_dir = tmp_path_factory.mktemp("runs") / "int8"
    run_lifecycle([*tiny_args(tiny_model_dir, chat, steps=12), "adapter=qlora", "adapter.bits=8",
                   "adapter.dropout=0.0"], run_dir, spy)
    return run_dir, spy


def plain_peft_logits(run_dir: Path, ids: list[int], bits: int, tmp_path: Path) -> torch.Tensor:
    out = tmp_path / f"logits-{bits}.pt"
    done = subprocess.run([sys.executable, "-c", PLAIN_PEFT_4BIT, str(run_dir / "model"), json.dumps(ids), str(bits),
                           str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out)


def test_qlora_trains_lora_on_a_4bit_base_on_cpu(qlora_run, tiny_model_dir):
    import bitsandbytes as bnb

    run_dir, spy = qlora_run
    values = losses(run_dir)
    assert values[-1] < values[0] - 0.5, values
    layers = {n: m for n, m in spy.model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert len(layers) == 14  # 7 linears in each of 2 blocks; the output head stays in full precision
    weight = next(iter(layers.values())).weight
    assert weight.dtype == torch.uint8 and weight.quant_state.quant_type == "nf4"
    assert spy.trainable and all(".lora_A." in n or ".lora_B." in n for n in spy.trainable)
    changed = {n for n in spy.initial if not torch.equal(spy.initial[n], spy.final[n])}
    assert changed == spy.trainable  # the packed 4-bit weights did not move; every adapter matrix did
    # Trainable / total counts each packed byte as the two 4-bit weights it holds.
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    linears = [m for n, m in base.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    lora = sum(8 * (m.in_features + m.out_features) for m in linears)
    total = sum(p.numel() for p in base.parameters()) + lora
    assert f"parameters: {lora:,} trainable of {total:,}" in (run_dir / "ft.log").read_text()
    record = json.loads((run_dir / "run.json").read_text())
    active = {p["name"] for p in record["plugins"] if p["active"]}
    assert {"qlora", "lora"} <= active  # qlora requires lora: selecting one activates both


def test_saved_qlora_adapter_loads_in_plain_peft_on_a_4bit_base(qlora_run, probe_ids, tmp_path):
    run_dir, spy = qlora_run
    saved = json.loads((run_dir / "model" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and Path(saved["base_model_name_or_path"]).is_dir()
    record = json.loads((run_dir / "model" / "ft_adapter.json").read_text())
    assert record["base_quantization"]["bnb_4bit_quant_type"] == "nf4"
    logits = plain_peft_logits(run_dir, probe_ids, 4, tmp_path)
    torch.testing.assert_close(logits, spy.logits, atol=1e-5, rtol=0)


def test_merge_into_the_dequantised_base_reproduces_the_trained_model(qlora_run, tiny_model_dir, probe_ids, capsys):
    """The QLoRA tolerance, measured: merged vs the in-memory model as it trained (bitsandbytes de-quantises
    and multiplies in float32) is within 1e-4; the original full-precision base plus the adapter is not,
    because it lacks the 4-bit rounding the adapter was trained against."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_dir, spy = qlora_run
    assert main(["merge", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "trained on a 4-bit nf4, double quantisation base (QLoRA)" in out
    assert "merged into that base de-quantised to float32" in out
    merged_dir = run_dir / "merged"
    config = json.loads((merged_dir / "config.json").read_text())
    assert "quantization_config" not in config
    ids = torch.tensor([probe_ids])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
        merged_logits = merged(input_ids=ids).logits
        original = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                             str(run_dir / "model")).eval()
        original_logits = original(input_ids=ids).logits
    torch.testing.assert_close(merged_logits, spy.train_logits, atol=1e-4, rtol=0)
    quantisation_gap = (original_logits - spy.train_logits).abs().max().item()
    assert quantisation_gap > 100 * (merged_logits - spy.train_logits).abs().max().item()

    # --original-base: the full-precision weights plus the adapter, equal to PEFT's base + adapter.
    assert main(["merge", str(run_dir), "--original-base", "--output", str(run_dir / "merged-original")]) == 0
    assert "de-quantised" not in capsys.readouterr().out
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(run_dir / "merged-original", dtype=torch.float32).eval()
        torch.testing.assert_close(plain(input_ids=ids).logits, original_logits, atol=1e-4, rtol=0)


def greedy_reply(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                           return_dict=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_generate_applies_the_adapter_to_the_base_quantised_as_it_trained(qlora_run, tiny_model_dir, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    run_dir, _ = qlora_run
    prompt = "Name a colour."
    assert main(["generate", str(run_dir), "--prompt", prompt, "--max-new-tokens", "8"]) == 0
    captured = capsys.readouterr()
    assert "(base quantised as it was trained;" in captured.err
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32)
    base4 = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=quant, dtype=torch.float32)
    expected = greedy_reply(PeftModel.from_pretrained(base4, str(run_dir / "model")).eval(), tokenizer, prompt, 8)
    assert captured.out == expected + "\n"

    assert main(["generate", str(run_dir), "--prompt", prompt, "--max-new-tokens", "8", "--full-precision-base"]) == 0
    captured = capsys.readouterr()
    assert "quantised" not in captured.err
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    expected = greedy_reply(PeftModel.from_pretrained(base, str(run_dir / "model")).eval(), tokenizer, prompt, 8)
    assert captured.out == expected + "\n"


class GradientsAcrossAnEvaluation:
    """A test plugin: right after the adapter wraps the model, take LoRA's gradients on one batch, run an
    evaluation-style pass (eval mode, no gradients), and take them again."""

    def __init__(self, probe_ids: list[int]) -> None:
        self.probe_ids = probe_ids
        self.before: dict[str, torch.Tensor] = {}
        self.after: dict[str, torch.Tensor] = {}

    def grads(self, model) -> dict[str, torch.Tensor]:
        model.train()
        model.zero_grad()
        ids = torch.tensor([self.probe_ids])
        model(input_ids=ids, labels=ids).loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        model.zero_grad()
        return grads

    @hookimpl(trylast=True)
    def post_model_load(self, ctx) -> None:
        self.before = self.grads(ctx.model)
        ctx.model.eval()
        with torch.inference_mode():
            ctx.model(input_ids=torch.tensor([self.probe_ids]))
        self.after = self.grads(ctx.model)


@pytest.mark.parametrize("bits", [4, 8])
def test_an_evaluation_does_not_change_the_gradients_that_follow(bits, tiny_model_dir, chat, tmp_path, probe_ids):
    """bitsandbytes repacks 4-bit weights for a bf16 inference kernel (with no backward) on AVX512-BF16
    CPUs at the first eval pass; ft-qlora keeps the layers on their trainable path."""
    spy = GradientsAcrossAnEvaluation(probe_ids)
    run_lifecycle([*tiny_args(tiny_model_dir, chat, steps=1), "+adapter=qlora", "adapter.r=4",
                   f"adapter.bits={bits}", "adapter.dropout=0.0"], tmp_path / "eval-grads", spy)
    # B starts at zero, so B's gradients in the first block are what flows back through every 4-bit layer above.
    lower = [n for n in spy.before if "layers.0." in n and "lora_B" in n]
    assert lower and all(spy.before[n].abs().max() > 0 for n in lower)
    for name, grad in spy.before.items():
        torch.testing.assert_close(spy.after[name], grad, atol=1e-6, rtol=0)


def test_8bit_base_trains_and_its_adapter_loads_in_plain_peft(int8_run, probe_ids, tmp_path):
    import bitsandbytes as bnb

    run_dir, spy = int8_run
    values = losses(run_dir)
    assert values[-1] < values[0], values
    assert sum(isinstance(m, bnb.nn.Linear8bitLt) for m in spy.model.modules()) == 14
    changed = {n for n in spy.initial if not torch.equal(spy.initial[n], spy.final[n])}
    assert changed == spy.trainable and all(".lora_" in n for n in changed)
    logits = plain_peft_logits(run_dir, probe_ids, 8, tmp_path)
    torch.testing.assert_close(logits, spy.logits, atol=1e-5, rtol=0)


def test_fp4_and_compute_dtype_reach_the_quantised_layers(tiny_model_dir, chat, tmp_path, probe_ids):
    import bitsandbytes as bnb

    spy = ModelSpy(probe_ids)
    run_lifecycle([*tiny_args(tiny_model_dir, chat, steps=2), "+adapter=qlora", "adapter.quant_type=fp4",
                   "adapter.double_quant=false", "adapter.compute_dtype=bfloat16",
                   "adapter.target_modules=[q_proj,v_proj]"], tmp_path / "fp4", spy)
    layer = next(m for m in spy.model.modules() if isinstance(m, bnb.nn.Linear4bit))
    assert layer.weight.quant_state.quant_type == "fp4" and layer.weight.quant_state.nested is False
    assert layer.compute_dtype == torch.bfloat16
    assert {n.split(".")[-4] for n in spy.trainable} == {"q_proj", "v_proj"}


# --------------------------------------------------------------------------------------------------
# Config: LoRA's keys inherited, quantisation keys checked, bitsandbytes missing
# --------------------------------------------------------------------------------------------------


def test_qlora_inherits_every_lora_key_and_adds_its_own(tiny_model_dir, chat, capsys):
    import yaml

    assert main(["config", "show", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={chat}",
                 "+adapter=qlora", "adapter.r=4", "adapter.target_modules=[q_proj]"]) == 0
    adapter = yaml.safe_load(capsys.readouterr().out.split("\n", 1)[1])["adapter"]
    assert adapter["r"] == 4 and adapter["target_modules"] == ["q_proj"] and adapter["alpha"] == 32
    assert adapter["bits"] == 4 and adapter["quant_type"] == "nf4" and adapter["double_quant"] is True


@pytest.mark.parametrize(("override", "message"), [
    ("adapter.bits=3", "adapter.bits=3 is not valid: expected one of 4, 8"),
    ("adapter.quant_type=nf3", "adapter.quant_type='nf3' is not valid: expected one of 'nf4', 'fp4'"),
    ("adapter.r=0", "adapter.r=0 is not valid: expected a rank of at least 1"),
    ("adapter.init=pissa", "adapter.init=pissa rewrites the base weights, which adapter=qlora keeps quantised"),
    ("adapter.init=orthogonal", "adapter.init=orthogonal does not work on a quantised base"),
    ("adapter.target_modules=[q_proj,o_prj]", "'o_prj' matches no layer with weights in the model (did you mean 'o_proj'?)"),
])
def test_bad_qlora_values_fail_validation_in_one_line(override, message, tiny_model_dir, chat, capsys):
    code = main(["validate", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={chat}",
                 "+adapter=qlora", override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert message in err


def test_without_bitsandbytes_qlora_says_what_to_install(tiny_model_dir, chat, tmp_path):
    """An environment where bitsandbytes cannot be imported (a path hook hides it, as if uninstalled)."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class HideBitsandbytes(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'bitsandbytes':\n"
        "            raise ModuleNotFoundError(\"No module named 'bitsandbytes'\")\n"
        "sys.meta_path.insert(0, HideBitsandbytes())\n"
    )
    from ft_testing import run_ft

    done = run_ft(["validate", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={chat}",
                   "+adapter=qlora", "adapter.bits=8"], env={"PYTHONPATH": str(hide)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == ("ft: error: adapter=qlora loads the base in 8-bit through bitsandbytes, which is "
                                   "not installed; install it with: pip install bitsandbytes")


def test_ft_plugins_lists_qlora_with_its_option_and_requirement(capsys):
    assert main(["plugins", "--json"]) == 0
    listing = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    qlora = listing["qlora"]
    assert qlora["distribution"] == "ft-qlora" and qlora["options"] == ["adapter=qlora"]
    assert qlora["requires"] == ["lora"]
    assert {"pre_model_load", "prepare_model", "config_schemas", "validate_config"} <= set(qlora["hooks"])
