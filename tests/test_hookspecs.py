"""The hook contract is documented, complete for the planned plugins, and enforced."""

from __future__ import annotations

import inspect
import types

import pytest

from ft import hookimpl, hookspecs
from ft.errors import PluginError
from ft.plugins import LoadedPlugin, PluginInfo, make_plugin_manager


def spec_functions() -> dict[str, object]:
    return {
        name: fn for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, "ft_spec")
    }


def test_every_hook_has_a_docstring_saying_when_and_how_results_combine():
    specs = spec_functions()
    assert specs, "no hook specs found"
    for name, fn in specs.items():
        doc = inspect.getdoc(fn) or ""
        assert len(doc) > 80, f"hook '{name}' has no real docstring"
        assert "Combine" in doc or "combine" in doc, f"hook '{name}' does not say how results combine"


def test_contract_carries_the_hooks_the_planned_plugins_need():
    required = {
        "pre_model_load", "load_model", "load_tokenizer", "post_model_load", "load_reference_model",
        "dataset_formats", "prepare_dataset", "collator", "batch_sampler", "create_trainer",
        "training_args", "callbacks", "post_trainer_create", "loss",
        "run_training", "post_train", "save_model", "post_save", "cli_commands", "config_schemas",
        "validate_config",
    }
    assert required <= set(spec_functions())


def test_firstresult_hooks_are_the_who_builds_x_hooks():
    firstresult = {name for name, fn in spec_functions().items() if fn.ft_spec.get("firstresult")}
    assert {"loss", "create_trainer", "collator", "load_model"} <= firstresult
    assert not {"callbacks", "training_args", "dataset_formats", "cli_commands", "pre_model_load"} & firstresult


def test_a_plugin_implementing_an_undefined_hook_is_rejected():
    module = types.ModuleType("typo_plugin")

    @hookimpl
    def post_model_loaded(ctx):  # a typo of post_model_load
        return None

    module.post_model_loaded = post_model_loaded
    module.FT_PLUGIN = PluginInfo(name="typo")
    plugin = LoadedPlugin(PluginInfo(name="typo"), module, "ft-typo", "1.0", builtin=False)
    with pytest.raises(PluginError, match="post_model_loaded"):
        make_plugin_manager([plugin])
