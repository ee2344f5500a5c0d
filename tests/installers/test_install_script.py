"""installers/install.sh and uninstall.sh, run for real in a temp HOME from a copy of this checkout."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from .test_linux import read_keyfile, split_exec

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
INSTALLERS = REPO / "installers"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the sources, so building the wheel leaves no build/ or egg-info in the repository."""
    target = tmp_path / "src tree"
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "test-artifacts", "*.egg-info", "build", "__pycache__", "*.gguf", ".*cache"
    )
    shutil.copytree(REPO, target, ignore=ignore)
    return target


@pytest.fixture
def fast_venv(tmp_path: Path) -> Path:
    """A venv that sees the already-installed dependencies (torch, Xinference...) through a .pth file.

    Only a shortcut for CI time: the script reuses an existing venv, and `--no-deps` skips the
    dependency downloads; qwendesk itself is still built and installed from the checkout by pip.
    """
    venv = tmp_path / "app dir" / "qwendesk venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    ours = Path(site.getsitepackages()[0])
    theirs = next((venv / "lib").glob("python3.*/site-packages"))
    (theirs / "zz-test-deps.pth").write_text(f"{ours}\n")
    return venv


def run_script(script: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["sh", str(INSTALLERS / script), *args], env=env, capture_output=True, text=True, timeout=600
    )
    print(result.stdout, result.stderr)
    return result


def test_install_then_uninstall(
    user_home: Path, qwendesk_home: Path, checkout: Path, fast_venv: Path
) -> None:
    env = {
        "HOME": str(user_home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",  # no pipx, no project venv: the script's own venv path
        "LANG": "C.UTF-8",
        "QWENDESK_HOME": str(qwendesk_home),
        "QWENDESK_SOURCE": str(checkout),
        "QWENDESK_VENV": str(fast_venv),
        "QWENDESK_PYTHON": sys.executable,
        "QWENDESK_PIP_ARGS": "--no-deps",
    }
    result = run_script("install.sh", env, "--no-start")
    assert result.returncode == 0, result.stderr

    launcher = user_home / ".local/bin/qwendesk"
    assert launcher.is_symlink() and launcher.resolve() == (fast_venv / "bin/qwendesk").resolve()
    version = subprocess.run([str(launcher), "--version"], env=env, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("qwendesk "), version.stderr
    # The installed package, not this checkout, answers (the wheel was built and installed by pip).
    where = subprocess.run(
        [str(fast_venv / "bin/python"), "-c", "import qwendesk.installers as m; print(m.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(fast_venv)), where.stdout

    entry = read_keyfile((user_home / ".config/autostart/qwendesk.desktop").read_text())
    assert split_exec(entry["Exec"]) == [
        "env",
        f"QWENDESK_HOME={qwendesk_home}",
        str(fast_venv / "bin/qwendesk"),
        "tray",
    ]

    # The user's models and conversations survive an uninstall without --purge.
    model = qwendesk_home / "models" / "mine.gguf"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"GGUF")
    result = run_script("uninstall.sh", env)
    assert result.returncode == 0, result.stderr
    assert not launcher.exists() and not launcher.is_symlink()
    assert not fast_venv.exists()
    assert not any(user_home.rglob("*.desktop"))
    assert model.read_bytes() == b"GGUF"
    assert "--purge" in result.stdout


def test_uninstall_purge_removes_qwendesk_folders_but_not_home(
    user_home: Path, qwendesk_home: Path, checkout: Path, fast_venv: Path
) -> None:
    env = {
        "HOME": str(user_home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "QWENDESK_HOME": str(qwendesk_home),
        "QWENDESK_SOURCE": str(checkout),
        "QWENDESK_VENV": str(fast_venv),
        "QWENDESK_PIP_ARGS": "--no-deps",
    }
    assert run_script("install.sh", env, "--no-start", "--no-autostart").returncode == 0
    assert not (user_home / ".config/autostart").exists()  # --no-autostart
    (qwendesk_home / "models").mkdir()
    (qwendesk_home / "models" / "mine.gguf").write_bytes(b"GGUF")
    result = run_script("uninstall.sh", env, "--purge")
    assert result.returncode == 0, result.stderr
    assert not qwendesk_home.exists() and user_home.is_dir()

    env["QWENDESK_HOME"] = str(user_home)  # a careless QWENDESK_HOME must not cost the user their HOME
    fast_venv.mkdir(parents=True)
    (fast_venv / "bin").mkdir()
    (fast_venv / "bin" / "qwendesk").symlink_to(Path(sys.executable).with_name("qwendesk"))
    result = run_script("uninstall.sh", env, "--purge")
    assert user_home.is_dir() and "refusing to remove" in result.stdout


def test_install_rejects_unknown_options(user_home: Path) -> None:
    result = run_script("install.sh", {"HOME": str(user_home), "PATH": "/usr/bin:/bin"}, "--bogus")
    assert result.returncode == 2 and "unknown option --bogus" in result.stderr
