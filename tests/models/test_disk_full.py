"""A disk that fills up while a model is written (pull, add, convert's output): a clear error, nothing
half-written under a model's name, the folder and the scan as before. On a real 8 MiB tmpfs filled from
another file after the up-front free-space check passed, so the write itself fails with ENOSPC."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qwendesk.models import folder as folder_module
from qwendesk.models.catalog import Catalog, parse_catalog
from qwendesk.models.download import Puller
from qwendesk.models.errors import NotEnoughSpace
from qwendesk.models.files import atomic_output
from qwendesk.models.folder import add_file, scan
from tests.hub_server import blob, catalog_entry
from tests.models.gguf_files import write_sized_gguf
from tests.models.small_disk import fill_disk, small_disk

MB = 2**20
__all__ = ["small_disk"]  # a fixture: pytest finds it by this name


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def summary(folder: Path) -> dict[str, tuple]:
    """What the daemon would list: names, their files and whether they are usable."""
    return {n: (m.fingerprint(), m.ok) for n, m in scan([folder]).items()}


@pytest.fixture
def models(small_disk: Path, qwen2_gguf: Path) -> Path:
    """A models folder on the small disk with one model already in it (the state that must survive)."""
    folder = small_disk / "models"
    folder.mkdir()
    shutil.copy(qwen2_gguf, folder / "existing.gguf")
    return folder


def test_pull_that_fills_the_disk_keeps_its_part_and_resumes(hub_server, models: Path, qwen2_gguf: Path):
    content = blob(6 * MB, seed=41)
    entry = catalog_entry(hub_server, "qwen-test:1b-q4_k_m", "Qwen/Test-GGUF", {"m.gguf": content})
    release = Catalog(parse_catalog({"models": [entry]})).resolve("qwen-test:1b")
    before = summary(models)
    filled: list[Path] = []

    def fill_once(event) -> None:  # another program takes the space once the download is under way
        if event.done >= MB and not filled:
            filled.append(fill_disk(models.parent))

    with pytest.raises(NotEnoughSpace) as info:
        Puller(models, "huggingface", hub_server.url, on_progress=fill_once, min_interval=0).pull(release)

    message = info.value.message
    assert message.startswith("The disk filled up while downloading m.gguf")
    assert "kept in m.gguf.part so the pull can resume" in message and "run the same pull again" in message
    assert f"delete {models / 'm.gguf.part'}" in message
    part = models / "m.gguf.part"
    assert MB <= part.stat().st_size < len(content) and content.startswith(part.read_bytes())
    assert listing(models) == ["existing.gguf", "m.gguf.part"]  # no m.gguf, no lock left
    assert summary(models) == before and (models / "existing.gguf").read_bytes() == qwen2_gguf.read_bytes()

    kept = part.stat().st_size
    filled[0].unlink()  # space is freed: the same pull resumes where the disk filled up
    Puller(models, "huggingface", hub_server.url).pull(release)
    assert (models / "m.gguf").read_bytes() == content and not part.exists()
    assert hub_server.requests("GET", cdn=True)[-1].range == f"bytes={kept}-"


def test_add_that_fills_the_disk_leaves_nothing(
    models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_sized_gguf(tmp_path / "elsewhere" / "big.gguf", 6 * MB)
    before, files = summary(models), listing(models)
    real_check = folder_module.ensure_free_space

    def check_then_fill(folder: Path, needed: int, what: str, **kwargs) -> None:
        real_check(folder, needed, what, **kwargs)  # passes: 6 MB of 8 MiB
        fill_disk(folder.parent, leave=MB)  # then only 1 MiB is left for the copy

    monkeypatch.setattr(folder_module, "ensure_free_space", check_then_fill)
    with pytest.raises(NotEnoughSpace) as info:
        add_file(source, models)

    message = info.value.message
    assert message.startswith(f"The disk filled up while adding big.gguf to {models}")
    assert "the partial file was deleted and nothing else changed" in message
    assert "Free up space on that disk or choose another folder, then try again." in message
    assert listing(models) == files and summary(models) == before


def test_convert_that_fills_the_disk_leaves_the_old_file(
    small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real conversion (a 3 MB f16 GGUF) over an existing file (--force) on a disk that fills up."""
    from qwendesk.models import convert
    from tests.models.hf_checkpoints import build_checkpoint

    hf_dir = build_checkpoint(tmp_path / "Qwen2.5-tiny", "qwen2", seed=3)
    out = small_disk / "qwen2.5-tiny-f16.gguf"
    out.write_bytes(b"the previous model")
    real_check = convert.ensure_free_space

    def check_then_fill(folder: Path, needed: int, what: str, **kwargs) -> None:
        real_check(folder, needed, what, **kwargs)
        fill_disk(small_disk, leave=MB)

    monkeypatch.setattr(convert, "ensure_free_space", check_then_fill)
    with pytest.raises(NotEnoughSpace, match="The disk filled up while writing qwen2.5-tiny-f16.gguf"):
        convert.convert_checkpoint(hf_dir, out, "f16", force=True)
    assert listing(small_disk) == [".filler", out.name] and out.read_bytes() == b"the previous model"


def test_output_that_fills_the_disk_leaves_the_old_file(small_disk: Path) -> None:
    """What convert and quantize write through: a replaced output (--force) stays whole when the disk fills."""
    out = small_disk / "model.gguf"
    out.write_bytes(b"the previous model")
    full = pytest.raises(NotEnoughSpace, match="The disk filled up while writing model.gguf")
    with full, atomic_output(out, force=True) as part, part.open("wb") as fh:
        for _ in range(16):
            fh.write(b"\0" * MB)
    assert listing(small_disk) == ["model.gguf"] and out.read_bytes() == b"the previous model"
