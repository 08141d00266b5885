"""Adding a method is one file: plugins (``BSE_BENCH_PLUGINS``, entry points), their errors,
the method code version, and docs/extending.md's example run as written."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from benchmark import provenance
from benchmark.runner import code_version
from datasets.cli_errors import run_cli
from datasets.errors import UnknownNameError
from methods import registry
from methods.registry import PluginError

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "extending.md"

PLUGIN_SOURCE = '''
from methods.base import HyperParam, Method
from methods.registry import register


class {cls}(Method):
    name = "{name}"
    hyperparams = {{"depth": HyperParam(20)}}

    def _reconstruct(self, stacks, energies_keV):
        return stacks[:, :1].repeat(self.depth, axis=1) * 0.0


register("{name}", f"{{__name__}}:{cls}")
'''


@pytest.fixture
def clean_registry(monkeypatch, tmp_path):
    """The registry as a fresh process sees it (built-in methods only, no plugin loaded), a
    folder ``tmp_path/plugins`` on ``sys.path``, and everything restored afterwards."""
    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    monkeypatch.setattr(registry, "_ORIGINS", dict(registry._ORIGINS))
    monkeypatch.setattr(registry, "_loaded_modules", set())
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [])
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    monkeypatch.syspath_prepend(str(plugins))
    yield plugins
    for name in [m for m in sys.modules if m.startswith("plugin_")]:
        del sys.modules[name]


def write_plugin(folder: Path, module: str, name: str, cls: str = "Plugged") -> Path:
    path = folder / f"{module}.py"
    path.write_text(PLUGIN_SOURCE.format(name=name, cls=cls))
    importlib.invalidate_caches()
    return path


# ------------------------------------------------------------------------ registration
def test_a_module_named_in_the_environment_registers_its_method(clean_registry, monkeypatch):
    write_plugin(clean_registry, "plugin_one", "plugone")
    assert "plugone" not in registry.available()
    monkeypatch.setenv(registry.PLUGINS_ENV, " plugin_one , ")
    assert registry.available() == ["bsevox", "medsem", "plugone", "unet3d"]
    assert registry.get("plugone").__module__ == "plugin_one"
    assert registry.create("plugone").reconstruct(
        [[[[1.0]]] * 20], energies_keV=[0.5 * k for k in range(1, 21)]).shape == (1, 20, 1, 1)


def test_an_unknown_name_lists_the_plugins_too(clean_registry, monkeypatch):
    write_plugin(clean_registry, "plugin_one", "plugone")
    monkeypatch.setenv(registry.PLUGINS_ENV, "plugin_one")
    with pytest.raises(UnknownNameError, match="unknown method 'nosuch'; known: bsevox, medsem, plugone, unet3d"):
        registry.get("nosuch")


def test_a_broken_plugin_module_is_named_with_its_cause(clean_registry, monkeypatch, capsys):
    (clean_registry / "plugin_broken.py").write_text("import numpy\nraise RuntimeError('no licence file')\n")
    monkeypatch.setenv(registry.PLUGINS_ENV, "plugin_broken")
    with pytest.raises(PluginError, match=r"plugin module 'plugin_broken' \(from BSE_BENCH_PLUGINS\) failed "
                                          r"to import: RuntimeError: no licence file"):
        registry.available()
    monkeypatch.setenv(registry.PLUGINS_ENV, "plugin_missing")
    with pytest.raises(PluginError, match="'plugin_missing'.*ModuleNotFoundError: No module named 'plugin_missing'"):
        registry.get("medsem")
    # on the command line: one line, exit code 1
    assert run_cli(lambda args: registry.get("medsem"), None) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: plugin module 'plugin_missing'") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("source, message", [
    ("from methods.registry import register\nregister('plugbad', 'plugin_bad:Missing')\n",
     r"method 'plugbad' \(plugin_bad:Missing, plugin module 'plugin_bad' .*\) could not be imported: "
     r"AttributeError"),
    ("from methods.registry import register\nclass NotAMethod: name = 'plugbad'\n"
     "register('plugbad', 'plugin_bad:NotAMethod')\n",
     "is not a subclass of methods.base.Method"),
    (PLUGIN_SOURCE.format(name="other", cls="Plugged").replace('register("other"', 'register("plugbad"'),
     "declares name = 'other'; the registered name and the class's name must agree"),
])
def test_a_registered_class_that_cannot_serve_is_named(clean_registry, monkeypatch, source, message):
    (clean_registry / "plugin_bad.py").write_text(source)
    monkeypatch.setenv(registry.PLUGINS_ENV, "plugin_bad")
    with pytest.raises(PluginError, match=message):
        registry.get("plugbad")


def test_a_plugin_cannot_take_a_name_already_registered(clean_registry, monkeypatch):
    write_plugin(clean_registry, "plugin_clash", "medsem")
    monkeypatch.setenv(registry.PLUGINS_ENV, "plugin_clash")
    with pytest.raises(PluginError, match="method 'medsem' is already registered as methods.medsem:MedSem "
                                          r"\(built in\); plugin module 'plugin_clash'"):
        registry.available()
    registry.register("unet3d", "methods.unet3d:UNet3D")  # the same target again: fine


@pytest.mark.parametrize("name, target", [("my method", "a:B"), ("", "a:B"), ("mine", "a.B"), ("mine", ":B")])
def test_register_rejects_bad_names_and_targets(clean_registry, name, target):
    with pytest.raises(ValueError, match="method name|'package.module:Class'"):
        registry.register(name, target)


@dataclass
class FakeEntryPoint:
    """What the registry reads of an ``importlib.metadata.EntryPoint``."""

    name: str
    value: str
    dist: object = None


def test_entry_points_register_lazily_and_name_their_distribution(clean_registry, monkeypatch):
    def fake_entry_points(group):
        assert group == "bse_bench.methods"
        return [FakeEntryPoint("plugep", "plugin_ep:Plugged"),
                FakeEntryPoint("plugmissing", "plugin_nowhere:Gone", SimpleNamespace(name="my-plugins"))]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    write_plugin(clean_registry, "plugin_ep", "plugep")
    assert registry.available() == ["bsevox", "medsem", "plugep", "plugmissing", "unet3d"]
    assert "plugin_ep" not in sys.modules  # listed, not imported
    assert registry.get("plugep").__module__ == "plugin_ep"  # its own register() call agrees
    with pytest.raises(PluginError, match=r"method 'plugmissing' \(plugin_nowhere:Gone, entry point "
                                          r"'plugmissing = plugin_nowhere:Gone' of my-plugins\) could not be imported: "
                                          "ModuleNotFoundError"):
        registry.get("plugmissing")


def test_an_entry_point_may_not_replace_a_method(clean_registry, monkeypatch):
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [
        FakeEntryPoint("bsevox", "plugin_ep:Plugged")])
    with pytest.raises(PluginError, match="'bsevox' is already registered.*entry point 'bsevox = plugin_ep:Plugged'"):
        registry.get("medsem")


# ------------------------------------------------------------------------ code version
def fake_suite(root: Path) -> None:
    """A miniature repository: two methods, a helper one imports lazily, the registry."""
    files = {
        "methods/__init__.py": "",
        "methods/registry.py": "REGISTRY = {'a': 'methods.a:A', 'b': 'methods.b:B'}\n",
        "methods/base.py": "from methods.registry import REGISTRY\n",
        "methods/a.py": "from methods.base import REGISTRY\nfrom . import shared\n"
                        "def run():\n    from datasets.physics import model\n",
        "methods/b.py": "import methods.base\n",
        "methods/shared.py": "X = 1\n",
        "datasets/__init__.py": "",
        "datasets/physics.py": "from datasets import tables\n",
        "datasets/tables.py": "T = 1\n",
        "datasets/unused.py": "U = 1\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_a_code_version_follows_imports_and_nothing_else(tmp_path, monkeypatch):
    fake_suite(tmp_path)
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)

    def sources(module):
        return sorted(str(p.relative_to(tmp_path)) for p in provenance.imported_sources(tmp_path / module))

    assert sources("methods/a.py") == ["datasets/physics.py", "datasets/tables.py", "methods/a.py",
                                       "methods/base.py", "methods/shared.py"]
    assert sources("methods/b.py") == ["methods/b.py", "methods/base.py"]

    def version(module):
        return provenance.source_hash(*provenance.imported_sources(tmp_path / module))

    before = version("methods/a.py")
    for unrelated in ("methods/registry.py", "methods/b.py", "datasets/unused.py", "methods/__init__.py"):
        (tmp_path / unrelated).write_text((tmp_path / unrelated).read_text() + "# edited\n")
        assert version("methods/a.py") == before, unrelated
    for related in ("methods/a.py", "methods/shared.py", "datasets/tables.py", "methods/base.py"):
        (tmp_path / related).write_text((tmp_path / related).read_text() + "# edited\n")
        after = version("methods/a.py")
        assert after != before, related
        before = after


def test_the_suites_methods_hash_their_own_sources():
    def sources(name):
        from benchmark.runner import method_class

        klass = method_class(name)
        files = provenance.imported_sources(Path(sys.modules[klass.__module__].__file__))
        return {str(p.relative_to(REPO)) for p in files}

    bsevox, medsem = sources("bsevox"), sources("medsem")
    assert {"methods/bsevoxnets.py", "methods/network.py", "methods/training.py", "methods/base.py"} <= bsevox
    assert not {"methods/registry.py", "methods/unet3d.py", "methods/medsem/method.py"} & bsevox
    # the case definitions (where a user adds a named case) are in no learned method's version,
    # nor in the binarisation's, which every method's version holds
    binarize = {str(p.relative_to(REPO)) for p in provenance.imported_sources(REPO / "methods" / "binarize.py")}
    assert "datasets/cases.py" not in bsevox | binarize and "datasets/sample_ids.py" in binarize
    assert {"methods/medsem/method.py", "methods/medsem/psf.py", "datasets/simulate.py"} <= medsem
    assert not {"methods/registry.py", "methods/network.py", "methods/bsevoxnets.py"} & medsem


def test_a_plugins_code_version_is_its_own_file(clean_registry, monkeypatch):
    mine = write_plugin(clean_registry, "plugin_mine", "plugmine")
    write_plugin(clean_registry, "plugin_theirs", "plugtheirs", cls="Theirs")
    monkeypatch.setenv(registry.PLUGINS_ENV, "plugin_mine,plugin_theirs")
    before = code_version("plugmine")
    assert code_version("plugtheirs") != before
    (clean_registry / "plugin_theirs.py").write_text((clean_registry / "plugin_theirs.py").read_text() + "# x\n")
    assert code_version("plugmine") == before
    mine.write_text(mine.read_text() + "# edited\n")
    assert code_version("plugmine") != before


# ------------------------------------------------------------------------ the documented example
def doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.slow
def test_the_documented_method_runs_as_written(tmp_path):
    """docs/extending.md's ``brightness_method.py`` saved outside the repository and its commands
    run there as written (results to ``tmp_path``; the smoke data from the tests' fast fake
    simulator): the method is listed and its rows carry its label and IoU."""
    [module] = [block for block in doc_blocks("python") if block.startswith("# brightness_method.py\n")]
    (tmp_path / "brightness_method.py").write_text(module)
    [commands] = [block for block in doc_blocks("bash") if "BSE_BENCH_PLUGINS" in block]
    env = dict(os.environ, BSE_DATASET_SIMULATOR="test_builder", OMP_NUM_THREADS="1")
    ran = []
    for line in commands.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            name, _, value = words[1].partition("=")
            env[name] = str(tmp_path) if value == "$PWD" else value
        elif words[:3] == ["python", "-m", "benchmark"]:
            extra = ["--results", str(tmp_path / "results"), "--threads", "1"] if words[3] == "run" else []
            env_run = dict(env, PYTHONPATH=os.pathsep.join([env["PYTHONPATH"], str(REPO), str(REPO / "tests")]))
            done = subprocess.run([sys.executable, *words[1:], *extra], cwd=tmp_path, env=env_run,
                                  capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr
            ran.append((words[3], done.stdout))
    assert [command for command, _ in ran] == ["list", "run"]
    assert "brightness (classical)" in ran[0][1]
    rows = pd.read_parquet(tmp_path / "results" / "results.parquet")
    assert set(rows["method"]) == {"brightness"} and set(rows["label"]) == {"Brightness (example)"}
    assert set(rows["case"]) == {"nanowire"} and len(rows) == 5
    assert rows["iou"].between(0, 1).all()
