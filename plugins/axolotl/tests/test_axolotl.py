"""ft-axolotl: Axolotl files become ft overrides key by key; nothing is dropped silently; presets compose the same.

Axolotl's own example configs (tests/axolotl_examples, Apache-2.0, commit in SOURCE.md) are the inputs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ft.api import cli_main

EXAMPLES = Path(__file__).parent / "axolotl_examples"


def write_axolotl(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def example(name: str, **changes) -> dict:
    """An Axolotl example as a dict, with ``changes`` applied (a value of None removes the key)."""
    config = yaml.safe_load((EXAMPLES / name).read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def translated(file: Path, *extra: str) -> list[str]:
    """The arguments ``ft run --axolotl FILE extra...`` becomes (the plugin's command_arguments hook)."""
    from ft_axolotl.plugin import command_arguments

    return command_arguments(command="validate", args=["--axolotl", str(file), *extra], p_flags=[])


def composed(capsys, *args: str) -> dict:
    assert cli_main(["config", "show", *args]) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    return yaml.safe_load(text.split("\n", 1)[1])


def test_an_axolotl_example_becomes_these_ft_keys(tiny_model_dir, tmp_path, capsys):
    file = write_axolotl(tmp_path / "lora.yml", example("llama-3/lora-1b.yml", base_model=str(tiny_model_dir)))
    cfg = composed(capsys, "--axolotl", str(file))
    assert cfg["adapter"]["r"] == 16 and cfg["adapter"]["alpha"] == 32 and cfg["adapter"]["dropout"] == 0.05
    assert cfg["adapter"]["target_modules"] == ["gate_proj", "down_proj", "up_proj", "q_proj", "v_proj", "k_proj", "o_proj"]
    assert "attention" in cfg["packing"] and cfg["packing"]["eval"] is True          # sample_packing: true
    assert cfg["data"]["datasets"][0] == {**cfg["data"]["datasets"][0], "path": "teknium/GPT4-LLM-Cleaned", "format": "alpaca"}
    assert cfg["data"]["sequence_len"] == 2048 and cfg["data"]["val_size"] == 0.1
    assert cfg["trainer"]["micro_batch_size"] == 2 and cfg["trainer"]["gradient_accumulation_steps"] == 2
    assert cfg["trainer"]["eval_steps"] == 0.25 and cfg["trainer"]["save_steps"] is None  # 4 evals / 1 save an epoch
    assert cfg["trainer"]["precision"] == "bf16" and cfg["model"]["dtype"] == "bfloat16"  # bf16: auto
    assert cfg["optim"] == {**cfg["optim"], "name": "adamw_8bit", "lr": 0.0002, "warmup_steps": 0.1, "scheduler": "cosine"}
    assert cfg["model"]["special_tokens"] == {"pad_token": "<|end_of_text|>"}
    assert cfg["run"]["root"] == "./outputs/lora-out"


def test_overrides_typed_after_the_file_win(tiny_model_dir, tmp_path, capsys):
    file = write_axolotl(tmp_path / "lora.yml", example("llama-3/lora-1b.yml", base_model=str(tiny_model_dir)))
    cfg = composed(capsys, "--axolotl", str(file), "trainer.micro_batch_size=7", "adapter.r=4")
    assert cfg["trainer"]["micro_batch_size"] == 7 and cfg["adapter"]["r"] == 4


def test_a_key_no_plugin_maps_stops_with_one_line_and_lenient_runs(tiny_model_dir, tmp_path, capsys):
    config = example("llama-3/qlora-1b.yml", base_model=str(tiny_model_dir), my_unknown_key=3, other_thing="x")
    file = write_axolotl(tmp_path / "q.yml", config)
    assert cli_main(["validate", "--axolotl", str(file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'my_unknown_key: 3'" in err[0] and "'other_thing: x'" in err[0], err
    assert "--axolotl-ignore my_unknown_key,other_thing" in err[0]
    assert cli_main(["validate", "--axolotl", str(file), "--axolotl-lenient"]) == 0
    assert cli_main(["validate", "--axolotl", str(file), "--axolotl-ignore", "my_unknown_key,other_thing"]) == 0
    capsys.readouterr()
    assert cli_main(["axolotl", "explain", str(file), "--lenient"]) == 0
    table = capsys.readouterr().out
    assert any(line.startswith("my_unknown_key") and " ignored " in line for line in table.splitlines()), table


def test_a_key_of_a_plugin_left_out_names_the_plugin(tiny_model_dir, tmp_path, capsys):
    file = write_axolotl(tmp_path / "q.yml", example("llama-3/qlora-1b.yml", base_model=str(tiny_model_dir)))
    assert cli_main(["-p", "no:multipack", "validate", "--axolotl", str(file)]) == 2
    err = capsys.readouterr().err
    assert "'sample_packing: True' (belongs to ft-multipack, which is not installed or not enabled)" in err, err


def test_a_value_out_of_range_is_ft_line_naming_the_axolotl_key(tiny_model_dir, tmp_path, capsys):
    file = write_axolotl(tmp_path / "q.yml", example("llama-3/qlora-1b.yml", base_model=str(tiny_model_dir), lora_r=0))
    assert cli_main(["validate", "--axolotl", str(file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ft: error:") and "adapter.r" in err and "(from Axolotl key 'lora_r'" in err, err
    file = write_axolotl(tmp_path / "g.yml", example("llama-3/qlora-1b.yml", gradient_checkpointing="offload"))
    assert cli_main(["validate", "--axolotl", str(file)]) == 2
    err = capsys.readouterr().err
    assert "'gradient_checkpointing: offload'" in err and "activation offloading is not in ft yet" in err, err


def test_bad_files_are_one_line(tmp_path, capsys):
    assert cli_main(["validate", "--axolotl", str(tmp_path / "missing.yml")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.yml").write_text("base_model: [unclosed\n")
    assert cli_main(["validate", "--axolotl", str(tmp_path / "bad.yml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert cli_main(["validate", "--axolotl-lenient"]) == 2
    assert "need --axolotl FILE" in capsys.readouterr().err


@pytest.mark.parametrize("changes, expected", [
    ({"batch_size": 8, "micro_batch_size": 2, "gradient_accumulation_steps": None}, {"trainer.gradient_accumulation_steps": 4}),
    ({"val_set_size": 20}, {"data.val_size": 20}),
    ({"val_set_size": 0.05}, {"data.val_size": 0.05}),
    ({"val_set_size": 0, "evals_per_epoch": 4}, {}),                    # no eval split: nothing to schedule
    ({"num_epochs": 2, "evals_per_epoch": 4}, {"trainer.eval_steps": 0.125}),
    ({"warmup_ratio": None, "warmup_steps": 10}, {"optim.warmup_steps": 10}),
    ({"learning_rate": "2e-5"}, {"optim.lr": 2e-5}),
    ({"load_in_4bit": False, "load_in_8bit": True, "adapter": "lora"}, {"adapter": "qlora", "adapter.bits": 8}),
    ({"fsdp_config": {"fsdp_offload_params": True, "fsdp_state_dict_type": "FULL_STATE_DICT"}},
     {"dist": "fsdp", "dist.cpu_offload": True, "dist.checkpoint_format": "full", "adapter.quant_storage": "bfloat16"}),
    ({"lora_target_modules": r".*\.(q|v)_proj"}, {"adapter.target_modules": r".*\.(q|v)_proj"}),
    ({"adapter": None, "load_in_4bit": False, "unfrozen_parameters": ["^lm_head.weight$", "model.layers.1[0-9]+.mlp.*"]},
     {"model.unfrozen_parameters": [r"^lm_head\.weight$", r"model\.layers\.1[0-9]+\.mlp\.*"]}),
    ({"resize_token_embeddings_to_32x": True, "model_config": {"output_router_logits": True}},
     {"model.pad_vocab_to_multiple_of": 32, "model.config_overrides": {"output_router_logits": True}}),
])
def test_axolotl_meaning_is_kept(changes, expected):
    from ft.api import Session
    from ft_axolotl.translate import collect_rules, translate

    result = translate(example("llama-3/qlora-1b.yml", **changes), collect_rules(Session([]).pm_all))
    merged = {k: v for row in result.rows for k, v in row.overrides.items()}
    assert not result.unsupported, [(r.key, r.note) for r in result.unsupported]
    assert expected.items() <= merged.items(), {k: merged.get(k) for k in expected}


def test_values_survive_the_override_grammar(tiny_model_dir, tmp_path, capsys):
    template = "{% for m in messages %}<|{{ m['role'] }}|>: {{ m['content'] }}\n{% endfor %}{{ eos_token }}"
    config = example("llama-3/instruct-lora-8b.yml", base_model=str(tiny_model_dir), chat_template_jinja=template,
                     chat_template=None, special_tokens={"pad_token": "<pad> 'x'"}, load_in_8bit=False)
    file = write_axolotl(tmp_path / "c.yml", config)
    cfg = composed(capsys, "--axolotl", str(file))
    assert cfg["data"]["chat_template"] == template
    assert cfg["model"]["special_tokens"] == {"pad_token": "<pad> 'x'"}


def test_convert_writes_a_preset_that_composes_the_same_config(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    file = write_axolotl(tmp_path / "lora1b.yml", example("llama-3/lora-1b.yml", base_model=str(tiny_model_dir)))
    assert cli_main(["axolotl", "convert", str(file)]) == 0
    preset = tmp_path / "conf" / "experiment" / "lora1b.yaml"
    text = preset.read_text()
    for key in yaml.safe_load(file.read_text()):  # a comment for every key of the file
        assert f"#   {key}:" in text, key
    capsys.readouterr()
    direct = composed(capsys, "--axolotl", str(file), "run.name=x")
    from_preset = composed(capsys, f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "experiment=lora1b", "run.name=x")
    assert from_preset == direct
    assert cli_main(["axolotl", "convert", str(file)]) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err


def test_the_key_table_in_the_docs_is_current():
    """docs/axolotl.md holds `ft axolotl keys` for the first-party plugins (regenerate it after a change)."""
    import re

    import tomllib

    from ft.api import Session
    from ft_axolotl.report import key_table
    from ft_axolotl.translate import collect_rules

    repo = Path(__file__).resolve().parents[3]
    projects = [tomllib.loads(p.read_text())["project"] for p in repo.glob("plugins/*/pyproject.toml")]
    first_party = {p["name"] for p in projects}
    session = Session([])
    names = {p.name for p in session.plugins if p.distribution in first_party}
    table = key_table([rule for rule in collect_rules(session.pm_all) if rule[1] in names])
    page = (repo / "docs" / "axolotl.md").read_text()
    documented = re.search(r"<!-- generated by: ft axolotl keys -->\n(.*?)\n<!-- end of generated table -->", page, re.S)
    assert documented and documented.group(1) == table, "docs/axolotl.md is stale: paste `ft axolotl keys` into it"
    assert "| `lora_r` | lora | by value |" in table and "| `datasets` | data | by value |" in table


def test_ft_run_with_lenient_trains_and_records_the_translation(tiny_model_dir, chat_file, tmp_path, capsys):
    """The whole command line: an unmapped key is left out with --axolotl-lenient, the run trains, and run.json
    holds the translated overrides (the run repeats without the Axolotl file)."""
    import json

    config = {"base_model": str(tiny_model_dir), "datasets": [{"path": str(chat_file), "type": "chat_template"}],
              "micro_batch_size": 2, "learning_rate": 1e-3, "max_steps": 2, "sequence_len": 128, "not_an_axolotl_key": 1,
              "output_dir": str(tmp_path / "out")}
    file = write_axolotl(tmp_path / "run.yml", config)
    assert cli_main(["run", "--axolotl", str(file), "run.name=r", "run.plot=false"]) == 2
    assert "'not_an_axolotl_key: 1'" in capsys.readouterr().err
    assert cli_main(["run", "--axolotl", str(file), "--axolotl-lenient", "run.name=r", "run.plot=false"]) == 0
    record = json.loads((tmp_path / "out" / "r" / "run.json").read_text())
    overrides = record["overrides"] if "overrides" in record else record["command"]
    assert f"++model.name_or_path={tiny_model_dir}" in overrides and "++trainer.max_steps=2" in overrides
    assert "++optim.lr=0.001" in overrides and overrides[-2:] == ["run.name=r", "run.plot=false"]
    assert (tmp_path / "out" / "r" / "model").is_dir()


def test_two_keys_setting_one_ft_key_differently_are_refused_and_explained(tiny_model_dir, tmp_path, capsys):
    plugins = ["axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin", "axolotl.integrations.liger.LigerPlugin"]
    file = write_axolotl(tmp_path / "k.yml", example("llama-3/qlora-1b.yml", base_model=str(tiny_model_dir), plugins=plugins))
    assert cli_main(["validate", "--axolotl", str(file)]) == 2
    err = capsys.readouterr().err
    assert "1 Axolotl key ft cannot translate: 'plugins: axolotl.integrations.liger" in err
    assert "(sets kernels, which 'plugins: axolotl.integrations.cut_cr...' sets to cce; ft takes one value" in err, err
    assert cli_main(["axolotl", "explain", str(file)]) == 0  # the table still shows every key
    assert "kernels=cce" in capsys.readouterr().out


def test_a_bad_value_typed_after_the_file_is_not_blamed_on_the_file(tiny_model_dir, tmp_path, capsys):
    file = write_axolotl(tmp_path / "q.yml", example("llama-3/qlora-1b.yml", base_model=str(tiny_model_dir)))
    assert cli_main(["validate", "--axolotl", str(file), "adapter.r=0"]) == 2
    err = capsys.readouterr().err
    assert "adapter.r=0" in err and "from Axolotl key" not in err, err
