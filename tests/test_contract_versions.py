"""A plugin written against another hook contract is left out with one line, and ft keeps working."""

from __future__ import annotations

from pathlib import Path

import pytest

from ft.api import CONTRACT_VERSION
from ft_testing import install_fake_plugin, run_ft

#: A loss kernel written for an earlier contract: the loss hook then took the trainer's compute_loss arguments.
OLD_LOSS = '''
from ft.api import PluginInfo, hookimpl

FT_PLUGIN = PluginInfo(name="oldloss", capabilities=("loss",), requires_traits=("token_loss",))


@hookimpl
def loss(ctx, model, inputs, return_outputs, num_items_in_batch):
    return model(**inputs).loss
'''

#: A plugin that declares the contract major it was written for, and it is not this one.
OTHER_MAJOR = '''
from ft.api import PluginInfo, hookimpl

FT_PLUGIN = PluginInfo(name="future", contract="4.1")


@hookimpl
def post_train(ctx, metrics):
    metrics["seen"] = True
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("old-site")
    install_fake_plugin(site, "ft-oldloss", "oldloss", OLD_LOSS, {"kernels/oldloss.yaml": "name: oldloss\n"})
    install_fake_plugin(site, "ft-future", "future", OTHER_MAJOR, {"logger/future.yaml": "every: 1\n"})
    return site


STALE_LINE = (f"plugin 'oldloss' (ft-oldloss): hook 'loss' takes (ctx, model, inputs, return_outputs, "
              f"num_items_in_batch), but ft's contract {CONTRACT_VERSION} calls loss(ctx, call); write it as "
              f"loss(ctx, call) (docs/plugins.md), or update it (pip install -U ft-oldloss) or skip it with -p no:oldloss")


def test_a_stale_hook_signature_leaves_help_and_other_commands_working(site):
    helped = run_ft(["--help"], site=site)
    assert helped.returncode == 0 and "commands:" in helped.stdout and "Traceback" not in helped.stderr
    assert STALE_LINE in helped.stderr
    validated = run_ft(["validate"], site=site)
    assert validated.returncode == 0, validated.stderr
    assert "Traceback" not in validated.stderr and STALE_LINE in validated.stderr


def test_ft_plugins_marks_it_broken_with_the_fix_and_exits_2(site):
    listed = run_ft(["plugins"], site=site)
    assert listed.returncode == 2 and "Traceback" not in listed.stderr
    assert "oldloss 1.2.3 (ft-oldloss) [BROKEN]" in listed.stdout and f"error:        {STALE_LINE}" in listed.stdout
    assert "future 1.2.3 (ft-future) [BROKEN]" in listed.stdout


def test_selecting_the_stale_plugin_is_one_line_and_exit_2(site):
    selected = run_ft(["validate", "+kernels=oldloss"], site=site)
    assert selected.returncode == 2
    assert selected.stderr.strip().splitlines()[-1] == f"ft: error: {STALE_LINE}"


def test_another_contract_major_names_both_versions(site):
    selected = run_ft(["validate", "+logger=future"], site=site)
    assert selected.returncode == 2
    assert (f"ft: error: plugin 'future' (ft-future) was written for ft's hook contract 4.1, and this ft has contract "
            f"{CONTRACT_VERSION}") in selected.stderr
    assert "-p no:future" in selected.stderr
