"""ft-lora on a tiny model: only adapter weights train, the saved adapter is plain PEFT, merge is exact."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lora_helpers import ModelSpy, probe_ids, run_lifecycle, tiny_args  # noqa: F401 (probe_ids is a fixture)

from ft.api import hookimpl
from ft.cli import main

#: Loads adapters the way a user without ft would: transformers + PEFT only (ft's packages are blocked).
PLAIN_PEFT_SCRIPT = r"""
import importlib.abc, json, sys

class NoFt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ft", "ft_lora", "ft_qlora"):
            raise ModuleNotFoundError(f"{name} is blocked: this check runs without ft")
        return None

sys.meta_path.insert(0, NoFt())
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

jobs = json.loads(sys.argv[1])
out = {}
for adapter_dir, ids in jobs:
    base = json.load(open(f"{adapter_dir}/adapter_config.json"))["base_model_name_or_path"]
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, adapter_dir).eval()
    with torch.no_grad():
        out[adapter_dir] = model(input_ids=torch.tensor([ids])).logits.float()
torch.save(out, sys.argv[2])
"""

VARIANTS = {
    "default": [],
    "dora-rslora-qv": ["adapter.use_dora=true", "adapter.use_rslora=true", "adapter.target_modules=[q_proj,v_proj]"],
    "gaussian-head": ["adapter.init=gaussian", "adapter.modules_to_save=[lm_head]", "adapter.dropout=0.0"],
    "orthogonal": ["adapter.init=orthogonal", "adapter.r=4"],
    "pissa": ["adapter.init=pissa", "adapter.r=4"],
    "olora": ["adapter.init=olora", "adapter.r=4"],
}


def losses(run_dir: Path) -> list[float]:
    records = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return [r["loss"] for r in records if "loss" in r]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory, probe_ids) -> dict[str, tuple[Path, ModelSpy]]:
    """One short LoRA run per variant (trained once for the whole module)."""
    data = tmp_path_factory.mktemp("data")
    from ft_testing import write_chat_rows

    chat = write_chat_rows(data / "chat.jsonl")
    root = tmp_path_factory.mktemp("runs")
    result = {}
    for name, extra in VARIANTS.items():
        spy = ModelSpy(probe_ids)
        steps = 20 if name == "default" else 6
        run_lifecycle([*tiny_args(tiny_model_dir, chat, steps=steps), "+adapter=lora", "adapter.r=8", *extra],
                      root / name, spy)
        result[name] = (root / name, spy)
    return result


@pytest.fixture(scope="module")
def plain_peft_logits(runs, probe_ids, tmp_path_factory) -> dict[str, torch.Tensor]:
    """Every variant's adapter loaded by plain PEFT in a process where ft cannot be imported."""
    out = tmp_path_factory.mktemp("plain") / "logits.pt"
    jobs = [[str(run_dir / "model"), probe_ids] for run_dir, _ in runs.values()]
    done = subprocess.run([sys.executable, "-c", PLAIN_PEFT_SCRIPT, json.dumps(jobs), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    logits = torch.load(out)
    return {name: logits[str(run_dir / "model")] for name, (run_dir, _) in runs.items()}


def test_lora_loss_falls_and_only_adapter_weights_change(runs, tiny_model_dir):
    run_dir, spy = runs["default"]
    values = losses(run_dir)
    assert values[-1] < values[0] - 0.5, values
    assert spy.trainable and all(".lora_A." in n or ".lora_B." in n for n in spy.trainable)
    changed = {n for n in spy.initial if not torch.equal(spy.initial[n], spy.final[n])}
    assert changed == spy.trainable  # every adapter matrix moved, nothing else did
    # The kernel's report: trainable = r * (in + out) summed over every wrapped Linear.
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    linears = [m for n, m in base.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    expected = sum(8 * (m.in_features + m.out_features) for m in linears)
    total = sum(p.numel() for p in base.parameters()) + expected
    log = (run_dir / "ft.log").read_text()
    assert f"parameters: {expected:,} trainable of {total:,}" in log


def test_modules_to_save_train_in_full_next_to_the_adapter(runs):
    _, spy = runs["gaussian-head"]
    head = {n for n in spy.trainable if "lm_head" in n}
    assert head and all("modules_to_save" in n for n in head)
    changed = {n for n in spy.initial if not torch.equal(spy.initial[n], spy.final[n])}
    assert changed == spy.trainable
    assert not any("original_module" in n for n in changed)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_saved_adapter_loads_in_plain_peft_with_equal_logits(variant, runs, plain_peft_logits):
    run_dir, spy = runs[variant]
    saved = json.loads((run_dir / "model" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA"
    assert Path(saved["base_model_name_or_path"]).is_dir()
    assert not (run_dir / "model" / "model.safetensors").exists()  # the adapter only, not a full copy
    torch.testing.assert_close(plain_peft_logits[variant], spy.logits, atol=1e-5, rtol=0)


def test_adapter_options_reach_the_saved_peft_config(runs):
    dora = json.loads((runs["dora-rslora-qv"][0] / "model" / "adapter_config.json").read_text())
    assert dora["use_dora"] is True and dora["use_rslora"] is True
    assert sorted(dora["target_modules"]) == ["q_proj", "v_proj"]
    head = json.loads((runs["gaussian-head"][0] / "model" / "adapter_config.json").read_text())
    assert head["modules_to_save"] == ["lm_head"] and head["init_lora_weights"] == "gaussian"
    # PiSSA/OLoRA move part of the base into the adapter; the saved adapter is converted back to the
    # original base (PEFT's conversion doubles the rank), so it needs no modified base to load.
    for name in ("pissa", "olora"):
        converted = json.loads((runs[name][0] / "model" / "adapter_config.json").read_text())
        assert converted["r"] == 8 and converted["init_lora_weights"] is True


def test_merge_gives_a_plain_model_equal_to_base_plus_adapter(runs, tiny_model_dir, probe_ids, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_dir, _ = runs["default"]
    assert main(["merge", str(run_dir)]) == 0
    out = capsys.readouterr().out
    merged_dir = run_dir / "merged"
    assert f"merged model: {merged_dir}" in out
    assert (merged_dir / "model.safetensors").is_file() and (merged_dir / "tokenizer.json").is_file()
    assert not (merged_dir / "adapter_config.json").exists()
    ids = torch.tensor([probe_ids])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        adapted = PeftModel.from_pretrained(base, str(run_dir / "model")).eval()
        torch.testing.assert_close(merged(input_ids=ids).logits, adapted(input_ids=ids).logits, atol=1e-4, rtol=0)
    assert isinstance(merged.model.layers[0].self_attn.q_proj, torch.nn.Linear)
    # Both folders carry the run's model card: the adapter's for PEFT, the merged one's for transformers.
    from huggingface_hub import ModelCard

    adapter_card, merged_card = ModelCard.load(run_dir / "model" / "README.md"), ModelCard.load(merged_dir / "README.md")
    assert adapter_card.data.library_name == "peft" and "lora" in adapter_card.data.tags
    assert merged_card.data.library_name == "transformers" and {"lora", "merged"} <= set(merged_card.data.tags)
    assert "AutoPeftModelForCausalLM" in adapter_card.text and "merged into the base weights" in merged_card.text
    # A second merge never overwrites the first.
    assert main(["merge", str(run_dir)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_merge_of_a_full_fine_tune_says_there_is_nothing_to_merge(tiny_model_dir, capsys):
    assert main(["merge", str(tiny_model_dir)]) == 2
    assert "holds a full model, not an adapter" in capsys.readouterr().err


def test_continue_from_starts_at_the_saved_adapter_and_keeps_training(runs, tiny_model_dir, chat_file, tmp_path,
                                                                      probe_ids):
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    first, _ = runs["default"]
    spy = ModelSpy(probe_ids)
    run_lifecycle([*tiny_args(tiny_model_dir, chat_file, steps=6), "+adapter=lora",
                   f"adapter.continue_from={first}"], tmp_path / "second", spy)
    saved = load_file(first / "model" / "adapter_model.safetensors")
    start = {k.replace(".default", ""): v for k, v in spy.initial.items() if ".lora_" in k}
    assert set(start) == {k.replace("base_model.model.", "base_model.model.", 1) for k in saved}
    for key, value in saved.items():
        assert torch.equal(start[key], value), key
    assert spy.trainable and all(".lora_" in n for n in spy.trainable)
    assert losses(tmp_path / "second")[0] < losses(first)[0] - 0.5
    after = get_peft_model_state_dict(spy.model)
    assert any(not torch.equal(after[k], saved[k]) for k in saved)


def test_gradient_checkpointing_trains_the_adapter(tiny_model_dir, chat_file, tmp_path, probe_ids):
    spy = ModelSpy(probe_ids)
    run_lifecycle([*tiny_args(tiny_model_dir, chat_file, steps=3), "+adapter=lora",
                   "trainer.gradient_checkpointing=true"], tmp_path / "gc", spy)
    changed = {n for n in spy.initial if not torch.equal(spy.initial[n], spy.final[n])}
    assert changed == spy.trainable and any(".lora_A." in n for n in changed)


# --------------------------------------------------------------------------------------------------
# Config errors: one line, before any model loads
# --------------------------------------------------------------------------------------------------


def validate(capsys, *overrides: str) -> tuple[int, str]:
    code = main(["validate", *overrides])
    captured = capsys.readouterr()
    return code, captured.err.strip()


def test_a_target_module_typo_lists_the_modules_it_could_have_been(tiny_model_dir, chat_file, capsys):
    code, err = validate(capsys, f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={chat_file}",
                         "+adapter=lora", "adapter.target_modules=[q_proj,v_prj]")
    assert code == 2
    assert err.count("\n") == 0
    assert err.startswith("ft: error: adapter.target_modules: 'v_prj' matches no layer with weights in the model "
                          "(did you mean 'v_proj'?)")
    assert "could be one of: down_proj, embed_tokens, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj" in err


def test_the_loaded_model_check_catches_what_the_files_cannot_show(tiny_model_dir):
    """After loading, the check runs on the real modules (hub models, tied heads, custom code)."""
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM

    from ft.errors import ConfigError
    from ft_lora.adapter import check_target_modules

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    check_target_modules(model, SimpleNamespace(target_modules=["self_attn.q_proj", "mlp.up_proj"], modules_to_save=None))
    with pytest.raises(ConfigError, match=r"'input_layernorm' matches no Linear/Embedding layer in the model; "
                                          r"it could be one of: down_proj, embed_tokens, gate_proj, k_proj, lm_head"):
        check_target_modules(model, SimpleNamespace(target_modules=["input_layernorm"], modules_to_save=None))
    with pytest.raises(ConfigError, match=r"^adapter.modules_to_save: 'lm_haed' matches no module .*did you mean 'lm_head'"):
        check_target_modules(model, SimpleNamespace(target_modules="all-linear", modules_to_save=["lm_haed"]))


def test_a_regular_expression_targets_exactly_the_modules_it_matches_in_full(tiny_model_dir):
    """A string target other than all-linear is PEFT's regular expression, matched against whole module names."""
    from types import SimpleNamespace

    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from ft.errors import ConfigError
    from ft_lora.adapter import check_target_modules, lora_config

    pattern = r".*\.layers\.0\.self_attn\.(q|v)_proj"
    adapter = SimpleNamespace(target_modules=pattern, modules_to_save=None, r=4, alpha=8, dropout=0.0, exclude_modules=None,
                              bias="none", use_dora=False, use_rslora=False, init="default")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    check_target_modules(model, adapter)
    peft_model = get_peft_model(model, lora_config(adapter))
    adapted = sorted({n.rsplit(".lora_", 1)[0] for n, _ in peft_model.named_parameters() if ".lora_A." in n})
    assert adapted == ["base_model.model.model.layers.0.self_attn.q_proj", "base_model.model.model.layers.0.self_attn.v_proj"]
    with pytest.raises(ConfigError, match="the regular expression matches no Linear/Embedding layer"):
        check_target_modules(model, SimpleNamespace(target_modules=r".*\.q_projection", modules_to_save=None))


@pytest.mark.parametrize(("override", "message"), [
    ("adapter.r=0", "adapter.r=0 is not valid: expected a rank of at least 1"),
    ("adapter.dropout=1.5", "adapter.dropout=1.5 is not valid: expected a number in [0, 1)"),
    ("adapter.bias=some", "adapter.bias='some' is not valid: expected one of 'none', 'all', 'lora_only'"),
    ("adapter.init=pisa", "adapter.init='pisa' is not valid (did you mean 'pissa'?)"),
    ("adapter.target_modules=q_proj", "expected a list of module names (adapter.target_modules=[q_proj]) or all-linear"),
    ("adapter.alpah=8", "unknown config key 'adapter.alpah' (did you mean 'alpha'?)"),
    ("adapter.continue_from=/nonexistent/run", "adapter.continue_from='/nonexistent/run': no such file or folder"),
])
def test_bad_adapter_values_fail_validation_in_one_line(override, message, tiny_model_dir, chat_file, capsys):
    code, err = validate(capsys, f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={chat_file}",
                         "+adapter=lora", override)
    assert code == 2 and err.count("\n") == 0
    assert message in err


def test_continue_from_must_name_an_adapter(tiny_model_dir, chat_file, capsys):
    code, err = validate(capsys, f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={chat_file}",
                         "+adapter=lora", f"adapter.continue_from={tiny_model_dir}")
    assert code == 2
    assert err == (f"ft: error: adapter.continue_from='{tiny_model_dir}': no PEFT adapter there (expected "
                   f"adapter_config.json in the folder or in its model/ subfolder)")


def test_orthogonal_init_needs_an_even_rank(tiny_model_dir, chat_file, capsys):
    code, err = validate(capsys, f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={chat_file}",
                         "adapter=lora", "adapter.init=orthogonal", "adapter.r=5")
    assert code == 2 and "adapter.init=orthogonal needs an even rank, got adapter.r=5" in err


def test_ft_plugins_lists_lora_with_its_option_and_merge_command(capsys):
    assert main(["plugins", "--json"]) == 0
    listing = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    lora = listing["lora"]
    assert lora["distribution"] == "ft-lora" and lora["options"] == ["adapter=lora"]
    assert {"adapt_model", "post_save", "cli_commands", "config_schemas"} <= set(lora["hooks"])
    assert main(["--help"]) == 0
    assert re.search(r"^\s+merge\s+merge RUN_DIR's LoRA adapter", capsys.readouterr().out, re.M)


def test_adapter_option_is_inert_unless_selected(tiny_model_dir, chat_file, capsys):
    """An installed ft-lora changes nothing when the config does not select adapter=lora."""
    assert main(["config", "show", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={chat_file}"]) == 0
    assert "\nadapter:" not in capsys.readouterr().out


class OptimizerGroups:
    """A spy: the optimizer's groups at the end of training, as (learning rate, parameter names)."""

    @hookimpl
    def post_train(self, ctx, metrics):
        names = {id(p): n for n, p in ctx.model.named_parameters()}
        self.groups = [(g["lr"], sorted(names[id(p)] for p in g["params"])) for g in ctx.trainer.optimizer.param_groups
                       if g["params"]]


def test_loraplus_trains_the_b_matrices_at_ratio_times_the_learning_rate(tiny_model_dir, chat_file, tmp_path, capsys):
    spy = OptimizerGroups()
    run_lifecycle([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={chat_file}", "+adapter=lora",
                   "adapter.loraplus_lr_ratio=16", "optim.lr=1e-3", "optim.scheduler=constant", "trainer.max_steps=2",
                   "run.plot=false", "run.save_final_model=false"], tmp_path / "run", spy)
    by_kind = {"lora_A": set(), "lora_B": set()}
    for lr, names in spy.groups:
        for name in names:
            by_kind["lora_B" if ".lora_B." in name else "lora_A"].add(lr)
    assert by_kind == {"lora_A": {1e-3}, "lora_B": {16e-3}}, spy.groups
    assert main(["validate", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={chat_file}", "+adapter=lora",
                 "adapter.loraplus_lr_ratio=16", "dist=fsdp"]) == 2
    assert "LoRA+'s optimizer is built before the model is sharded" in capsys.readouterr().err
