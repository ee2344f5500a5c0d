"""The boot package's own logic: environment, edits, lazy imports, device facts (no Xinference started)."""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

from qwendesk.daemon.xinference import boot
from qwendesk.daemon.xinference.boot import devices, forkserver, light

SITE_PACKAGES = Path(importlib.util.find_spec("xinference").origin).parent.parent  # type: ignore[arg-type]


def test_environment_puts_the_site_folder_first_once() -> None:
    env = boot.environment({"PYTHONPATH": os.pathsep.join(["/a", str(boot.SITE), "/b"])})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(boot.SITE), "/a", "/b"]
    assert (boot.SITE / "sitecustomize.py").is_file()
    assert boot.environment({})["PYTHONPATH"] == str(boot.SITE)


@pytest.mark.parametrize("value", ["0", "false", "off", "No"])
def test_environment_switch_off_runs_xinference_as_it_ships(value: str) -> None:
    env = boot.environment({"QWENDESK_XINFERENCE_LIGHT": value, "PYTHONPATH": "/a"})
    assert "PYTHONPATH" not in env and env["QWENDESK_XINFERENCE_LIGHT"] == "0"


def test_apply_edits_needs_each_text_exactly_once_and_keeps_line_numbers() -> None:
    source = "a = 1\nb = 2\nc = 3\n"
    edited = light.apply_edits(source, [("b = 2\nc = 3\n", "b = 5\n")])
    assert edited.splitlines() == ["a = 1", "b = 5", ""]
    with pytest.raises(light.EditMismatch):
        light.apply_edits(source, [("x = 9\n", "")])
    with pytest.raises(light.EditMismatch):
        light.apply_edits("a\na\n", [("a\n", "b\n")])
    with pytest.raises(light.EditMismatch):
        light.apply_edits(source, [("a = 1\n", "a = 1\nz = 0\n")])


def _installed_source(module: str) -> str:
    spec = importlib.machinery.PathFinder.find_spec(module.split(".")[0])
    assert spec is not None and spec.submodule_search_locations
    base = Path(next(iter(spec.submodule_search_locations))).joinpath(*module.split(".")[1:])
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    return path.read_text(encoding="utf-8")


def test_every_edit_and_lazy_import_applies_to_the_installed_xinference() -> None:
    """A new Xinference makes this fail (light mode would then leave those modules heavy): re-check them."""
    assert light.xinference_version() == light.XINFERENCE_VERSION
    for module, edits in light.EDITS.items():
        light.apply_edits(_installed_source(module), edits)
    for module in light.LAZY_IMPORTS:
        light.lazy_imports(_installed_source(module), module)
    for package in light.LAZY_PACKAGES:
        assert importlib.util.find_spec(package.split(".")[0]) is not None, package


def test_lazy_imports_turns_only_module_level_heavy_imports_into_bindings() -> None:
    source = (
        "import os\nimport torch\nimport torch.nn as nn\nimport torch.cuda\n"
        "def f():\n    import torch\n    return torch\n"
        "class C:\n    import transformers\n"
    )
    tree = light.lazy_imports(source, "<test>")
    top = [ast.unparse(node) for node in tree.body[:5]]
    assert top[0] == "import os"
    assert top[1] == "torch = __import__('_qwendesk_boot_light').lazy_module('torch', globals())"
    assert top[2] == "nn = __import__('_qwendesk_boot_light').lazy_module('torch.nn', globals())"
    assert top[3] == "torch = __import__('_qwendesk_boot_light').lazy_module('torch', globals())"
    assert [node.lineno for node in tree.body[:4]] == [1, 2, 3, 4]
    assert "import torch" in ast.unparse(tree.body[4]) and "import transformers" in ast.unparse(tree.body[5])
    with pytest.raises(light.EditMismatch):
        light.lazy_imports("import os\n", "<test>")


@pytest.fixture
def fake_heavy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module that records its own import in os.environ."""
    name = "qwendesk_test_heavy_module"
    (tmp_path / f"{name}.py").write_text("import os\nos.environ['QD_HEAVY_IMPORTED'] = '1'\nVALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("QD_HEAVY_IMPORTED", raising=False)
    yield name
    sys.modules.pop(name, None)


def test_lazy_module_imports_on_first_use_and_rebinds_the_owner(fake_heavy: str) -> None:
    owner: dict[str, object] = {}
    owner["heavy"] = owner["alias"] = lazy = light.lazy_module(fake_heavy, owner)
    assert isinstance(lazy, light.LazyModule) and "QD_HEAVY_IMPORTED" not in os.environ
    assert lazy.VALUE == 42  # type: ignore[attr-defined]
    assert os.environ["QD_HEAVY_IMPORTED"] == "1"
    assert owner["heavy"] is owner["alias"] is sys.modules[fake_heavy]
    assert light.lazy_module(fake_heavy, {}) is sys.modules[fake_heavy]  # already imported: the module
    with pytest.raises(ModuleNotFoundError):
        light.lazy_module("qwendesk_no_such_module", {})


def test_on_import_waits_for_the_real_module(fake_heavy: str) -> None:
    seen: list[types.ModuleType] = []
    light.on_import(fake_heavy, seen.append)
    finder = light.LightFinder(device_stand_in=False)
    sys.meta_path.insert(0, finder)
    try:
        module = importlib.import_module(fake_heavy)
    finally:
        sys.meta_path.remove(finder)
    assert seen == [module]
    light.on_import(fake_heavy, seen.append)  # already imported: called at once
    assert seen == [module, module]


def test_loaded_class_is_the_real_one_only_once_its_module_is_imported(fake_heavy: str) -> None:
    placeholder = light.loaded_class(fake_heavy, "Anything")
    assert placeholder.__name__ == "AnythingNotImported" and not isinstance(object(), placeholder)
    importlib.import_module(fake_heavy)
    assert light.loaded_class(fake_heavy, "VALUE") == 42


def test_devices_on_this_machine_allow_the_stand_in() -> None:
    build = devices.torch_build()
    assert build is not None and not any(build.get(field) for field in devices.ACCELERATOR_BUILDS)
    assert devices.torch_free() == ("darwin" if sys.platform == "darwin" else "cpu")


def test_devices_defer_to_the_real_module_for_gpu_builds_and_vendor_packages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(devices, "torch_build", lambda: {"cuda": "12.4"})
    assert devices.torch_free() is None
    monkeypatch.setattr(devices, "torch_build", lambda: None)  # unreadable: cannot tell
    assert devices.torch_free() is None
    monkeypatch.setattr(devices, "torch_build", lambda: {"cuda": None, "hip": None})
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        devices.importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "torch_npu" else real_find_spec(name, *a),
    )
    assert devices.torch_free() is None
    monkeypatch.setattr(devices.importlib.util, "find_spec", real_find_spec)
    monkeypatch.setattr(devices.sys, "platform", "darwin")
    assert devices.torch_free() == "darwin"


def test_fork_server_is_linux_only_and_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QWENDESK_XINFERENCE_FORK", raising=False)
    assert forkserver.supported() == sys.platform.startswith("linux")
    monkeypatch.setenv("QWENDESK_XINFERENCE_FORK", "0")
    assert not forkserver.supported()
    monkeypatch.delenv("QWENDESK_XINFERENCE_FORK")
    monkeypatch.setattr(forkserver.sys, "platform", "darwin")
    assert not forkserver.supported()


def test_only_the_exact_worker_command_is_forked() -> None:
    exe = sys.executable
    assert forkserver._is_start_local([exe, "-u", "/tmp/x/start_local.py", "/tmp/x/local.json"])
    assert not forkserver._is_start_local([exe, "/tmp/x/start_local.py", "/tmp/x/local.json"])
    assert not forkserver._is_start_local(["/other/python", "-u", "/tmp/x/start_local.py", "c"])
    assert not forkserver._is_start_local("python -u start_local.py c")
