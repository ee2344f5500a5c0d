"""The model lifecycle and keep-alive against a fake Xinference (unit tests; the e2e tests use the real one)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from qwendesk.daemon import accelerator
from qwendesk.daemon.config import load_settings
from qwendesk.daemon.errors import BadRequest, Conflict, ModelLoadError, NotEnoughMemory, NotFound
from qwendesk.daemon.events import EventBus
from qwendesk.daemon.lifecycle import manager as manager_module
from qwendesk.daemon.lifecycle.manager import ModelManager
from qwendesk.daemon.schemas import ModelState, StartRequest
from qwendesk.daemon.xinference.base import Supervisor
from qwendesk.models.folder import scan
from tests.fixtures.synthetic import write_qwen_gguf


class FakeClient:
    """Records what the manager asks of Xinference; `fail` makes the next launch fail."""

    endpoint = "http://xinference.test"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail: str | None = None

    async def register(self, kind: str, spec: dict[str, Any]) -> None:
        self.calls.append(("register", kind, spec["model_name"]))

    async def unregister(self, kind: str, name: str) -> None:
        self.calls.append(("unregister", kind, name))

    async def launch(self, name: str, uid: str, *, explain=None, **kwargs: Any) -> str:
        self.calls.append(("launch", name, kwargs))
        if self.fail:
            raise ModelLoadError(f"{self.fail}: {explain()}")
        return uid

    async def terminate(self, uid: str) -> None:
        self.calls.append(("terminate", uid))

    async def fresh_headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer xf-test"}

    def names(self, what: str) -> list[str]:
        return [c[1] if what == "launch" else c[-1] for c in self.calls if c[0] == what]


class FakeSupervisor(Supervisor):
    def __init__(self, settings, mode: str = "embedded") -> None:
        super().__init__(settings)
        self.mode = mode
        self.fake = FakeClient()
        self.starts = 0

    async def start(self) -> Any:
        self.starts += 1
        self.client = self.fake
        await self._set_state("running" if self.mode == "embedded" else "remote")
        return self.client

    async def stop(self) -> None:
        self.client = None
        await self._set_state("stopped")

    def explain_failure(self, since: int) -> str | None:
        return "the engine's own reason"


@pytest.fixture
def folder(tmp_path: Path, qwen2_gguf: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(qwen2_gguf, models / "chat.gguf")
    write_qwen_gguf(models / "embed.gguf", arch="qwen3", pooling_type="last")
    return models


def make(folder: Path, mode: str = "embedded", **settings: Any) -> ModelManager:
    s = load_settings(
        flags={"home": str(folder.parent / "home"), "models_dirs": [str(folder)], **settings}, env={}
    )
    acc = accelerator.detect(system="Linux", machine="x86_64", cores=2)
    return ModelManager(s, FakeSupervisor(s, mode), acc, EventBus())


async def scanned(folder: Path, mode: str = "embedded", **settings: Any) -> ModelManager:
    m = make(folder, mode, **settings)
    await m.apply_scan(scan([folder], now=time.time() + 60))  # long after the writes: nothing is pending
    return m


async def test_scan_adds_models_and_publishes_one_snapshot(folder: Path) -> None:
    m = make(folder)
    async with m.events.subscribe() as queue:
        await m.apply_scan(scan([folder]))
        event, data = queue.get_nowait()
    assert event == "snapshot" and [v["name"] for v in data["models"]] == ["chat", "embed"]
    assert queue.empty() and {v.state for v in m.views()} == {ModelState.AVAILABLE}


async def test_start_registers_then_launches_with_the_plan(folder: Path) -> None:
    m = await scanned(folder)
    async with m.events.subscribe() as queue:
        view = await m.start("chat", StartRequest(n_ctx=1024, n_parallel=2))
        events = [queue.get_nowait() for _ in range(queue.qsize())]
    states = [data["state"] for event, data in events if event == "model"]
    assert view.state == ModelState.RUNNING and view.n_ctx == 1024
    assert states[0] == "starting" and states[-1] == "running"
    fake = m.supervisor.fake
    assert fake.names("register") == ["chat", "embed"]  # every usable model, once Xinference is up
    (launch,) = [c for c in fake.calls if c[0] == "launch"]
    kwargs = launch[2]
    assert kwargs["model_type"] == "LLM" and kwargs["n_ctx"] == 2048 and kwargs["n_parallel"] == 2
    entry = m.find("chat")
    assert kwargs["port"] == entry.engine.port and kwargs["api_keys"] == [entry.engine.key]
    await m.start("chat")  # already running: nothing new
    assert len([c for c in fake.calls if c[0] == "launch"]) == 1


async def test_failed_start_is_an_error_state_with_the_engine_reason_and_stop_clears_it(folder: Path) -> None:
    m = await scanned(folder)
    await m.ensure_supervisor()
    m.supervisor.fake.fail = "Model 'chat' failed to load"
    with pytest.raises(ModelLoadError, match="the engine's own reason"):
        await m.start("chat")
    view = m.find("chat").view()
    assert view.state == ModelState.ERROR and "the engine's own reason" in view.error
    assert (await m.stop("chat")).state == ModelState.AVAILABLE
    m.supervisor.fake.fail = None
    assert (await m.start("chat")).state == ModelState.RUNNING


async def test_refusals_before_anything_is_launched(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (folder / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 10)
    m = await scanned(folder)
    with pytest.raises(Conflict, match="cannot start"):
        await m.start("broken")
    with pytest.raises(NotFound, match="qwendesk models"):
        await m.start("nope")
    monkeypatch.setattr(manager_module, "memory_snapshot", lambda: {"available_bytes": 10 * 2**20})
    with pytest.raises(NotEnoughMemory, match=r"needs about .* GiB .* only 0.0 GiB is available"):
        await m.start("chat")
    assert m.supervisor.starts == 0 and m.find("chat").state == ModelState.AVAILABLE


async def test_using_starts_on_demand_and_hands_out_the_engine(folder: Path) -> None:
    m = await scanned(folder)
    async with m.using("chat.gguf", "chat", "/v1/chat/completions") as endpoint:
        entry = m.find("chat")
        assert entry.busy == 1 and entry.on_demand
        assert endpoint.name == "chat" and endpoint.send_as is None
        assert endpoint.url == entry.engine.url and endpoint.headers == entry.engine.headers
    assert entry.busy == 0
    with pytest.raises(BadRequest, match="embedding model"):
        async with m.using("embed", "chat", "/v1/chat/completions"):
            pass
    with pytest.raises(BadRequest, match="does not serve embeddings"):
        async with m.using("chat", "embeddings", "/v1/embeddings"):
            pass


async def test_a_remote_xinference_is_reached_through_its_api(folder: Path) -> None:
    m = await scanned(folder, mode="remote")
    async with m.using("chat", "chat", "/v1/chat/completions") as endpoint:
        assert endpoint.url == FakeClient.endpoint and endpoint.send_as == "chat"
        assert endpoint.headers == {"Authorization": "Bearer xf-test"}
    (launch,) = [c for c in m.supervisor.fake.calls if c[0] == "launch"]
    assert "api_keys" not in launch[2]  # no engine of ours on a remote worker


async def test_auto_start_off_needs_an_explicit_start(folder: Path) -> None:
    m = await scanned(folder, auto_start=False)
    with pytest.raises(Conflict, match="qwendesk start chat"):
        async with m.using("chat", "chat", "/v1/chat/completions"):
            pass
    await m.start("chat")
    async with m.using("chat", "chat", "/v1/chat/completions") as endpoint:
        assert endpoint.name == "chat"


async def test_keep_alive_stops_idle_on_demand_models_then_xinference(folder: Path) -> None:
    m = await scanned(folder, keep_alive=60)
    async with m.using("chat", "chat", "/v1/chat/completions"):
        pass
    await m.start("embed")  # started by hand: stays up
    chat, embed = m.find("chat"), m.find("embed")
    now = chat.last_used + 61
    chat.busy = 1  # a request in flight keeps it up whatever the clock says
    await m.keep_alive.check(now)
    assert chat.state == ModelState.RUNNING
    chat.busy = 0
    await m.keep_alive.check(now)
    assert chat.state == ModelState.AVAILABLE and embed.state == ModelState.RUNNING
    assert m.supervisor.client is not None  # a model still runs
    await m.stop("embed")
    await m.keep_alive.check(m.last_activity + 30)
    assert m.supervisor.client is not None  # not idle long enough
    await m.keep_alive.check(m.last_activity + 61)
    assert m.supervisor.client is None and m.supervisor.state == "stopped"
    assert ("terminate", "chat") in m.supervisor.fake.calls


async def test_removed_and_changed_files_are_stopped_and_re_registered(folder: Path) -> None:
    m = await scanned(folder)
    await m.start("chat")
    await m.start("embed")
    (folder / "embed.gguf").unlink()
    write_qwen_gguf(folder / "chat.gguf", arch="qwen3")  # replaced in place by another model
    await m.apply_scan(scan([folder]))
    fake = m.supervisor.fake
    assert "embed" not in m.models and ("unregister", "embedding", "embed") in fake.calls
    assert ("terminate", "chat") in fake.calls and m.find("chat").state == ModelState.AVAILABLE
    assert fake.names("register").count("chat") == 2  # registered again with the new bytes


async def test_a_crashed_xinference_relaunches_what_ran(folder: Path) -> None:
    m = await scanned(folder)
    await m.start("chat")
    sup = m.supervisor
    await sup._set_state("restarting", "Xinference exited unexpectedly")
    assert m.find("chat").state == ModelState.STARTING and m.find("chat").relaunch
    await sup.start()
    await m._on_supervisor_restarted()
    for task in list(m._tasks):
        await task
    assert m.find("chat").state == ModelState.RUNNING
    assert sup.fake.names("launch") == ["chat", "chat"]
    await sup._set_state("failed", "gave up")
    assert m.find("chat").view().error == "gave up"
