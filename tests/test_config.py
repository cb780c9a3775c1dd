"""Composition and validation: bad configs fail fast with one clear line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ft.config import available_options, redact
from ft.plugins import discover
from ft.runner import Session, validate_all
from ft_testing import run_ft


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("+adapter=doesnotexist", "adapter=doesnotexist: no such option"),
        ("optim.lr=abc", "optim.lr='abc' is not valid: expected a number"),
        ("data.path=/missing", "data.path='/missing': no such file or folder"),
        ("bogus_key=1", "unknown config key 'bogus_key'"),
        ("+bogus_key=1", "unknown config key 'bogus_key'"),
        ("model.dtyp=x", "did you mean 'dtype'"),
        ("model.dtype=float64", "model.dtype='float64' is not valid: expected one of"),
        ("trainer.max_steps=1.5", "trainer.max_steps=1.5 is not valid: expected an integer"),
        ("+adaptr=lora", "did you mean 'adapter'"),
        ("data=alpaca", "'data.path' is required"),
        ("model.name_or_path=/no/such/model", "model.name_or_path='/no/such/model': no such folder"),
        ("model.name_or_path=someorg/not-in-cache", "not a local folder and not in the Hugging Face cache"),
        ("model.name_or_path=builtin:nope", "unknown builtin model"),
        ("data.datasets=[]", "'data.datasets' is a valid key that the selected data=default_task config does not set, "
                             "so Hydra needs it added: write +data.datasets=... instead of data.datasets=..."),
    ],
)
def test_bad_config_is_one_line_exit_2_no_traceback(override, expected):
    result = run_ft(["validate", override])
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ft: error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_option_of_a_plugin_that_is_not_installed_names_the_distribution():
    """Every first-party plugin is installed here: leave ft-fsdp out of the discovered plugins, as on a
    machine without it, and select its option."""
    from ft.config import normalise_overrides
    from ft.errors import FtUserError
    from ft.plugins import discover

    found = discover([])
    without_fsdp = [p for p in found.plugins if p.name != "fsdp"]
    repo = Path(__file__).resolve().parent.parent
    with pytest.raises(FtUserError) as raised:
        normalise_overrides(["+dist=fsdp"], without_fsdp, found.disabled)
    assert str(raised.value) == (f"dist=fsdp is provided by the plugin 'ft-fsdp', which is not installed or is disabled; "
                                 f"install it with: pip install -e {repo / 'plugins' / 'fsdp'} (from this checkout; "
                                 f"from the package index: pip install ft-fsdp)")


def test_option_of_a_disabled_plugin_says_installed_but_disabled():
    result = run_ft(["-p", "no:preference", "validate", "+method=dpo"])
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "ft: error: method=dpo is provided by the plugin 'preference', which is installed but disabled "
        "(-p no:preference, FT_PLUGINS or FT_DISABLE_PLUGIN_AUTOLOAD); enable it with -p preference")


def test_plus_and_plain_group_forms_both_work(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    for form in ("data=alpaca", "+data=alpaca"):
        result = run_ft(["validate", form, f"data.path={data}"])
        assert result.returncode == 0, result.stderr


def test_validate_and_config_show_do_not_import_torch():
    code = (
        "import sys; from ft.cli import main; "
        "assert main(['validate']) == 0; assert main(['config', 'show']) == 0; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'transformers' not in sys.modules, 'transformers imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_config_show_prints_the_composed_config():
    result = run_ft(["config", "show", "optim.lr=3e-4"])
    assert result.returncode == 0, result.stderr
    assert "lr: 0.0003" in result.stdout
    assert "name_or_path: builtin:smollm2-135m-instruct" in result.stdout


def test_every_shipped_config_option_composes_and_validates(tmp_path):
    """Each option of every group (kernel and installed plugins) composes and validates, alone on top
    of the defaults or, when it needs a partner (a preference dataset needs a preference method),
    together with one option of another group."""
    from ft.errors import ConfigError, PluginError

    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    session = Session([])
    options = available_options(discover([]))
    every = [(g, o) for g, names in sorted(options.items()) for o in names]

    def validates(pairs: list[tuple[str, str]]) -> bool:
        overrides = [f"{g}={o}" for g, o in pairs]
        if ("data", "default_task") not in pairs:
            overrides.append(f"data.path={data}")
        try:
            _, jobs = validate_all(session, overrides, multirun=False)
        except (ConfigError, PluginError):  # a pair of options that cannot be used together
            return False
        return all(jobs[0].choices[g] == o for g, o in pairs)

    for group, option in every:
        ok = validates([(group, option)]) or any(
            validates([(group, option), partner]) for partner in every if partner[0] != group
        )
        assert ok, f"{group}={option} does not validate alone or with any one other option"
    assert len(every) >= 7


def test_multirun_overrides_expand_to_every_combination():
    _, jobs = validate_all(Session([]), ["optim.lr=1e-4,3e-4", "seed=1,2"], multirun=True)
    assert sorted((j.cfg.optim.lr, j.cfg.seed) for j in jobs) == [(1e-4, 1), (1e-4, 2), (3e-4, 1), (3e-4, 2)]


def test_a_bad_value_in_any_sweep_job_fails_before_the_first_job():
    result = run_ft(["run", "-m", "optim.lr=1e-4,abc"])
    assert result.returncode == 2
    assert "optim.lr='abc'" in result.stderr


def test_secrets_are_redacted():
    assert redact({"a": {"hub_token": "hf_x", "n": 1}, "api_key": "k", "b": [{"password": "p"}]}) == {
        "a": {"hub_token": "***", "n": 1}, "api_key": "***", "b": [{"password": "***"}]}
    # a tokenizer's special tokens are settings, not secrets
    assert redact({"method": {"mask_token": "<|mdm_mask|>", "pad_token": "<pad>", "api_token": "t"}}) == {
        "method": {"mask_token": "<|mdm_mask|>", "pad_token": "<pad>", "api_token": "***"}}


# -- holes an outside fuzz found: each passed `ft validate` and ended in a traceback or outside run.root ----

@pytest.mark.parametrize("override, expected", [
    ("seed=-1", "seed=-1 is not valid: expected an integer >= 0 and <= 4294967295"),
    ("trainer.micro_batch_size=99999999999999999999",
     "trainer.micro_batch_size=99999999999999999999 is not valid: expected an integer of at most 2,147,483,647 in size"),
    ("trainer.max_steps=" + "9" * 400, "(400 characters) is not valid: expected an integer of at most 2,147,483,647"),
    ("run.name=../../../escape", "run.name='../../../escape' is not valid: expected one folder name (no '/', not '.' or '..')"),
    ("run.name=/abs/path", "run.name='/abs/path' is not valid: expected one folder name"),
    ("run.name=" + "a" * 3000, "(3000 characters) is not valid: expected a folder name of at most 255 bytes"),
    ("data.path=null", "data=chat has no data: data.path is null; set data.path=FILE"),
])
def test_fuzzed_values_are_one_line_and_exit_2_at_validate(override, expected, capsys):
    from ft.cli import main

    extra = ["data=chat"] if override.startswith("data.") else []
    assert main(["validate", *extra, override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ft: error: ") and len(err.splitlines()) == 1 and expected in err, err
