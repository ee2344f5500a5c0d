"""Pulls against a local HTTP hub (tests/hub_server.py): full, resumed, bad checksum, 404, full disk, splits."""

from __future__ import annotations

import hashlib
import os
from collections import namedtuple
from pathlib import Path

import pytest

from qwendesk.daemon.config import load_settings
from qwendesk.models import download
from qwendesk.models.catalog import BadCatalog, Catalog, parse_catalog
from qwendesk.models.download import PullBusy, Puller, pull
from qwendesk.models.errors import DownloadError, NotEnoughSpace
from tests.hub_server import blob, catalog_entry

REPO = "Qwen/Test-GGUF"
MB = 1024 * 1024
Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def settings(hub_server, monkeypatch):
    monkeypatch.setenv("QWENDESK_HUGGINGFACE_ENDPOINT", hub_server.url)
    monkeypatch.setenv("QWENDESK_MODELSCOPE_ENDPOINT", hub_server.url)
    monkeypatch.setenv("QWENDESK_CATALOG_SOURCE", "huggingface")
    return load_settings()


def catalog_of(*entries: dict) -> Catalog:
    return Catalog(parse_catalog({"models": list(entries)}))


def folder_listing(settings) -> list[str]:
    folder = settings.model_folders[0]
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_full_download_lands_verified_in_models_folder(hub_server, settings):
    content = blob(3 * MB + 123)
    entry = catalog_entry(hub_server, "qwen-test:1b-q4_k_m", REPO, {"qwen-test-1b-q4_k_m.gguf": content})
    events = []

    result = pull("qwen-test:1b", settings, catalog=catalog_of(entry), on_progress=events.append)

    target = settings.model_folders[0] / "qwen-test-1b-q4_k_m.gguf"
    assert result.path == target and not result.already_present
    assert target.read_bytes() == content
    assert folder_listing(settings) == ["qwen-test-1b-q4_k_m.gguf"]  # no .part, no lock left behind
    assert hub_server.body_bytes() == len(content) == result.downloaded
    downloads = [e for e in events if e.phase == "download"]
    assert downloads[-1].done == downloads[-1].total == len(content)
    assert [e.done for e in downloads] == sorted(e.done for e in downloads)
    # The hub's sha256 ETag was used: a verify pass ran although the catalog has no checksum.
    assert any(e.phase == "verify" for e in events)
    # Like the real hub: the resolve URL redirects (302) to the CDN that serves the bytes.
    assert [r.status for r in hub_server.requests("GET")] == [302, 200]


def test_modelscope_source_is_verified_by_size(hub_server, settings, monkeypatch):
    monkeypatch.setenv("QWENDESK_CATALOG_SOURCE", "modelscope")
    content = blob(MB, seed=1)
    entry = catalog_entry(hub_server, "qwen-test:1b-q8_0", REPO, {"qwen-test-1b-q8_0.gguf": content})
    events = []

    result = pull("qwen-test:1b-q8_0", load_settings(), catalog=catalog_of(entry), on_progress=events.append)

    assert result.path.read_bytes() == content
    assert all(
        r.path.startswith(("/models/Qwen/Test-GGUF/resolve/master/", "/cdn/")) for r in hub_server.requests()
    )
    assert not any(e.phase == "verify" for e in events)  # no checksum from ModelScope here: size only


def test_dropped_connection_resumes_without_refetching(hub_server, settings):
    content = blob(4 * MB, seed=2)
    entry = catalog_entry(hub_server, "qwen-test:1b-q4_k_m", REPO, {"m.gguf": content})
    hub_server.state.drop_after["m.gguf"] = MB + 17

    result = pull("qwen-test:1b", settings, catalog=catalog_of(entry))

    assert result.path.read_bytes() == content
    gets = hub_server.requests("GET", cdn=True)
    assert [g.range for g in gets] == [None, f"bytes={MB + 17}-"]
    assert hub_server.body_bytes() == len(content)  # every byte served exactly once


def test_ctrl_c_leaves_part_and_next_pull_resumes(hub_server, settings):
    content = blob(6 * MB, seed=3)
    entry = catalog_entry(hub_server, "qwen-test:1b-q4_k_m", REPO, {"m.gguf": content})
    release = catalog_of(entry).resolve("qwen-test:1b")
    folder = settings.model_folders[0]

    def interrupt(event):
        if event.done >= 2 * MB:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Puller(folder, "huggingface", hub_server.url, on_progress=interrupt, min_interval=0).pull(release)

    part = folder / "m.gguf.part"
    kept = part.stat().st_size
    assert kept >= 2 * MB and content.startswith(part.read_bytes())
    assert not (folder / "m.gguf").exists()

    served_before = hub_server.body_bytes()
    Puller(folder, "huggingface", hub_server.url).pull(release)

    assert (folder / "m.gguf").read_bytes() == content and not part.exists()
    resume = hub_server.requests("GET", cdn=True)[-1]
    assert resume.range == f"bytes={kept}-"
    assert hub_server.body_bytes() - served_before == resume.sent == len(content) - kept


def test_checksum_mismatch_rejects_the_file(hub_server, settings):
    content = blob(2 * MB, seed=4)
    wrong = hashlib.sha256(b"the publisher's file").hexdigest()
    entry = catalog_entry(
        hub_server, "qwen-test:1b-q4_k_m", REPO, {"m.gguf": content}, sha256={"m.gguf": wrong}
    )

    with pytest.raises(DownloadError, match="Checksum mismatch for m.gguf") as info:
        pull("qwen-test:1b", settings, catalog=catalog_of(entry))

    assert wrong in info.value.message and "nothing was added" in info.value.message
    assert folder_listing(settings) == []  # neither the .gguf nor the bad .part stays


def test_hub_404_is_a_clear_error(hub_server, settings):
    entry = catalog_entry(hub_server, "qwen-test:1b-q4_k_m", REPO, {"m.gguf": b"x"})
    entry["quantizations"]["q4_k_m"]["files"][0]["file"] = "missing.gguf"

    with pytest.raises(DownloadError, match="missing.gguf was not found on Hugging Face"):
        pull("qwen-test:1b", settings, catalog=catalog_of(entry))

    assert hub_server.requests("GET") == [] and folder_listing(settings) == []


def test_not_enough_disk_is_refused_before_downloading(hub_server, settings):
    """Free space is looked up through an injectable function (no tmpfs mount needed)."""
    content = blob(2 * MB, seed=5)
    entry = catalog_entry(hub_server, "qwen-test:1b-q4_k_m", REPO, {"m.gguf": content})
    folder = settings.model_folders[0]

    with pytest.raises(NotEnoughSpace) as info:
        pull(
            "qwen-test:1b",
            settings,
            catalog=catalog_of(entry),
            disk_usage=lambda _p: Usage(10**9, 0, 400_000),
        )

    assert info.value.message.startswith(
        f"Not enough disk space: the download needs 2.1 MB, 400 KB free on {folder}"
    )
    assert hub_server.requests("GET") == [] and folder_listing(settings) == []


def test_split_model_and_mmproj_come_along_model_file_last(hub_server, settings, monkeypatch):
    shards = {f"v-q4_k_m-0000{i}-of-00003.gguf": blob(MB + i, seed=10 + i) for i in (1, 2, 3)}
    mmproj = {"mmproj-v-f16.gguf": blob(MB // 2, seed=20)}
    entry = catalog_entry(hub_server, "qwen-vl-test:1b-q4_k_m", REPO, shards, extra_files=mmproj)
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(
        download.os, "replace", lambda a, b: (renamed.append(Path(b).name), real_replace(a, b))
    )

    result = pull("qwen-vl-test:1b", settings, catalog=catalog_of(entry))

    assert result.path.name == "v-q4_k_m-00001-of-00003.gguf"
    assert sorted(folder_listing(settings)) == sorted([*shards, *mmproj])
    assert (
        renamed[-1] == "v-q4_k_m-00001-of-00003.gguf"
    )  # the watcher sees the first shard only when all are there
    assert set(renamed) == {*shards, *mmproj}


def test_second_pull_of_a_complete_model_downloads_nothing(hub_server, settings):
    entry = catalog_entry(hub_server, "qwen-test:1b-q4_k_m", REPO, {"m.gguf": blob(MB, seed=6)})
    pull("qwen-test:1b", settings, catalog=catalog_of(entry))
    gets = len(hub_server.requests("GET"))

    again = pull("qwen-test:1b", settings, catalog=catalog_of(entry))

    assert again.already_present and len(hub_server.requests("GET")) == gets


def test_catalog_size_mismatch_stops_before_downloading(hub_server, settings):
    entry = catalog_entry(
        hub_server, "qwen-test:1b-q4_k_m", REPO, {"m.gguf": blob(MB)}, exact_size={"m.gguf": 999}
    )

    with pytest.raises(DownloadError, match="the file on the hub has changed"):
        pull("qwen-test:1b", settings, catalog=catalog_of(entry))
    assert hub_server.requests("GET") == []


def test_a_second_concurrent_pull_of_the_same_model_is_refused(hub_server, settings):
    entry = catalog_entry(hub_server, "qwen-test:1b-q4_k_m", REPO, {"m.gguf": blob(MB)})
    folder = settings.model_folders[0]
    folder.mkdir(parents=True)
    with (
        download._exclusive(folder / ".m.gguf.lock", "qwen-test"),
        pytest.raises(PullBusy, match="already being pulled"),
    ):
        pull("qwen-test:1b", settings, catalog=catalog_of(entry))


@pytest.mark.parametrize(
    "bad", ["../evil.gguf", "/etc/cron.d/x.gguf", "sub/x.gguf", "..\\x.gguf", ".hidden.gguf"]
)
def test_catalog_file_names_never_leave_the_models_folder(hub_server, settings, bad):
    entry = catalog_entry(hub_server, "qwen-test:1b-q4_k_m", REPO, {"m.gguf": blob(MB)})
    entry["quantizations"]["q4_k_m"]["files"][0]["file"] = bad
    with pytest.raises(BadCatalog, match="not a plain file name"):
        pull("qwen-test:1b", settings, catalog=catalog_of(entry))
    assert hub_server.requests("GET") == []
