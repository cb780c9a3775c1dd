"""Plugin discovery, blocking, import failures, activation and conflict detection."""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest

from ft.errors import PluginError
from ft.plugins import LoadedPlugin, PluginInfo, active_plugins
from ft_testing import install_fake_plugin, run_ft


#: Installs a plugin distribution by hand (a module plus a .dist-info with entry points).
fake_dist = install_fake_plugin


GOOD = """
from ft import PluginInfo, hookimpl
FT_PLUGIN = PluginInfo(name="{name}", description="test plugin", capabilities={caps})

@hookimpl
def post_trainer_create(ctx):
    pass
"""


@pytest.fixture
def site(tmp_path) -> Path:
    path = tmp_path / "site"
    path.mkdir()
    return path


def env_with(site: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), **extra}


def test_builtins_load_first_then_entry_point_plugins(site):
    fake_dist(site, "ft-hello", "hello", GOOD.format(name="hello", caps="()"),
              {"kernels/hello.yaml": "enabled: true\n"})
    result = run_ft(["plugins"], env=env_with(site))
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines() if line and not line.startswith(" ")]
    assert names.index("hello") > names.index("model")
    assert "hello 1.2.3 (ft-hello)" in result.stdout
    assert "kernels=hello" in result.stdout
    assert "post_trainer_create" in result.stdout


def test_a_plugin_that_fails_to_import_is_a_hard_error_naming_its_distribution(site):
    fake_dist(site, "ft-broken", "broken", "import a_module_that_does_not_exist\n")
    result = run_ft(["validate"], env=env_with(site))
    assert result.returncode == 2
    assert "ft-broken" in result.stderr and "failed to import" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_p_no_blocks_a_plugin_even_a_broken_one(site):
    fake_dist(site, "ft-broken", "broken", "import a_module_that_does_not_exist\n")
    result = run_ft(["-p", "no:broken", "validate"], env=env_with(site))
    assert result.returncode == 0, result.stderr


def test_autoload_can_be_disabled_and_a_plugin_enabled_by_name(site):
    fake_dist(site, "ft-hello", "hello", GOOD.format(name="hello", caps="()"))
    disabled = run_ft(["plugins"], env=env_with(site, FT_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert disabled.returncode == 0 and "hello" not in disabled.stdout
    enabled = run_ft(["-p", "hello", "plugins"], env=env_with(site, FT_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert enabled.returncode == 0 and "hello 1.2.3" in enabled.stdout


def test_allow_list_loads_only_the_named_plugins(site):
    fake_dist(site, "ft-hello", "hello", GOOD.format(name="hello", caps="()"))
    fake_dist(site, "ft-other", "other", GOOD.format(name="other", caps="()"))
    result = run_ft(["plugins"], env=env_with(site, FT_PLUGINS="other"))
    assert "other 1.2.3" in result.stdout and "hello 1.2.3" not in result.stdout


LOSS = GOOD + """
@hookimpl
def loss(ctx, call):
    return call.method_loss()
"""


def test_two_selected_plugins_claiming_the_same_capability_fail_before_anything_loads(site):
    fake_dist(site, "ft-loss-a", "loss_a", LOSS.format(name="loss_a", caps="('loss',)"), {"kernels/a.yaml": "x: 1\n"})
    fake_dist(site, "ft-loss-b", "loss_b", LOSS.format(name="loss_b", caps="('loss',)"), {"packing/b.yaml": "x: 1\n"})
    alone = run_ft(["validate", "+kernels=a"], env=env_with(site))
    assert alone.returncode == 0, alone.stderr
    both = run_ft(["validate", "+kernels=a", "+packing=b"], env=env_with(site))
    assert both.returncode == 2
    assert "'loss' capability" in both.stderr and "loss_a" in both.stderr and "loss_b" in both.stderr


def _plugin(name: str, **info) -> LoadedPlugin:
    options = info.pop("options", {})
    return LoadedPlugin(PluginInfo(name=name, **info), types.ModuleType(name), f"ft-{name}", "1", False,
                        options=options)


def test_unselected_plugins_are_inactive_and_requirements_activate():
    base = _plugin("lora", options={"adapter": ["lora"]})
    quant = _plugin("qlora", options={"adapter": ["qlora"]}, requires=("lora",))
    other = _plugin("csv", options={"logger": ["csv"]})
    always = _plugin("always", always_active=True)
    names = [p.name for p in active_plugins([base, quant, other, always], {"adapter": "qlora", "logger": None})]
    assert names == ["lora", "qlora", "always"]


def test_declared_conflict_and_missing_requirement_are_errors():
    a = _plugin("fsdp", options={"dist": ["fsdp"]}, conflicts=("adapter/qlora",))
    with pytest.raises(PluginError, match="conflicts with 'adapter/qlora'"):
        active_plugins([a], {"dist": "fsdp", "adapter": "qlora"})
    b = _plugin("needy", options={"method": ["x"]}, requires=("absent",))
    with pytest.raises(PluginError, match="requires plugin 'absent'"):
        active_plugins([b], {"method": "x"})


def test_the_compatibility_matrix_in_the_docs_is_current():
    """docs/compatibility.md holds `ft plugins --matrix` for the first-party plugins (regenerate it after a change)."""
    import re
    import tomllib

    from ft_scaffold.listing import compatibility_matrix, plugin_listing

    repo = Path(__file__).resolve().parents[1]
    projects = [tomllib.loads(p.read_text())["project"]
                for p in [*repo.glob("plugins/*/pyproject.toml"), repo / "kernels" / "pyproject.toml"]]
    first_party = {p["name"] for p in projects if p.get("entry-points", {}).get("ft")}  # ft-testing is a library
    listing = [e for e in plugin_listing([]) if e["distribution"] in first_party | {"ft"}]
    assert first_party <= {e["distribution"] for e in listing}, "install every first-party plugin"
    page = (repo / "docs" / "compatibility.md").read_text()
    documented = re.search(r"<!-- generated by: ft plugins --matrix -->\n(.*?)\n<!-- end of generated table -->", page, re.S)
    assert documented and documented.group(1) == compatibility_matrix(listing), (
        "docs/compatibility.md is stale: replace its table with the output of `ft plugins --matrix`")
    assert "| dpo | yes | yes | yes | yes | yes | yes | no: needs token_loss |" in documented.group(1)


def test_each_builtin_plugin_can_be_left_out_and_a_missing_default_says_which(capsys):
    """Builtin means installed by default: -p no:NAME removes one; when its option is ft's default, one line says so."""
    from ft.cli import main

    for name in ("outputs", "generate", "scaffold", "reliability"):
        assert main(["-p", f"no:{name}", "validate"]) == 0, name
    assert main(["-p", "no:sft", "validate"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "ft: error: method=sft is provided by the plugin 'sft', which is installed but disabled (-p no:sft, "
        "FT_PLUGINS or FT_DISABLE_PLUGIN_AUTOLOAD); enable it with -p sft")
    assert main(["-p", "no:sft", "validate", "+method=dpo"]) == 0  # another method needs no sft


def test_autoload_off_and_an_allow_list_leave_the_builtin_plugins_in():
    for env in ({"FT_DISABLE_PLUGIN_AUTOLOAD": "1"}, {"FT_PLUGINS": "lora"}):
        result = run_ft(["validate"], env=env)
        assert result.returncode == 0, (env, result.stderr)
    left_out = run_ft(["validate", "+method=dpo"], env={"FT_PLUGINS": "lora"})
    assert left_out.returncode == 2 and "enable it with -p preference" in left_out.stderr
