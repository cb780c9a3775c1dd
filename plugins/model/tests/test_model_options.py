"""ft-model's options beyond the model's name: vocabulary padding, config overrides, training part of the model."""

from __future__ import annotations

from ft.api import cli_main
from ft_testing import WeightsSpy, build_context, run_lifecycle


def base(model_dir, chat_file) -> list[str]:
    return [f"model.name_or_path={model_dir}", "data=chat", f"data.path={chat_file}", "trainer.max_steps=2",
            "optim.lr=1e-2", "run.plot=false", "run.save_final_model=false"]


def test_unfrozen_parameters_train_and_nothing_else_moves(tiny_model_dir, chat_file, tmp_path):
    spy = WeightsSpy()
    run_lifecycle([*base(tiny_model_dir, chat_file), r"model.unfrozen_parameters=['lm_head\..*','model\.layers\.0\.mlp\..*']"],
                  tmp_path / "run", spy)
    assert spy.trainable and all(n.startswith(("lm_head.", "model.layers.0.mlp.")) for n in spy.trainable), spy.trainable
    for name, weight in spy.before.items():
        moved = not weight.equal(spy.after[name])
        assert moved == (name in spy.trainable), name


def test_unfrozen_parameters_that_match_nothing_or_meet_an_adapter_are_one_line(tiny_model_dir, chat_file, tmp_path, capsys):
    assert cli_main(["validate", *base(tiny_model_dir, chat_file), "+adapter=lora", "model.unfrozen_parameters=[lm_head]"]) == 2
    assert "use one or the other" in capsys.readouterr().err
    assert cli_main(["validate", *base(tiny_model_dir, chat_file), "model.unfrozen_parameters=['(']"]) == 2
    assert "is not a regular expression" in capsys.readouterr().err
    assert cli_main(["run", *base(tiny_model_dir, chat_file), "model.unfrozen_parameters=[nothing_here]",
                     f"run.root={tmp_path}"]) == 2
    assert "no parameter name matches" in capsys.readouterr().err


def test_vocabulary_padding_new_tokens_and_config_overrides(tiny_model_dir, chat_file, tmp_path):
    ctx = build_context([*base(tiny_model_dir, chat_file), "model.pad_vocab_to_multiple_of=64",
                         "model.added_tokens=['<tool>','<think>']", "model.config_overrides={use_cache:false}"],
                        tmp_path / "run")
    from transformers import AutoConfig

    rows = ctx.model.get_input_embeddings().num_embeddings
    needed = max(len(ctx.tokenizer), AutoConfig.from_pretrained(tiny_model_dir).vocab_size)
    assert rows % 64 == 0 and needed <= rows < needed + 64  # the two new tokens fit, padded to a multiple of 64
    assert ctx.tokenizer.convert_tokens_to_ids("<think>") == len(ctx.tokenizer) - 1
    assert ctx.model.config.use_cache is False
