"""What the proxy's report of a dead engine does to the model (ModelManager.engine_failed, fake Xinference)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from qwendesk.daemon.errors import Conflict, SupervisorError
from qwendesk.daemon.lifecycle import manager as manager_module
from qwendesk.daemon.lifecycle.manager import Endpoint
from qwendesk.daemon.schemas import ModelState
from tests.daemon.lifecycle.test_manager import folder, scanned  # noqa: F401 (folder is a fixture)


async def test_a_dead_engine_puts_the_model_in_error_and_the_next_request_relaunches_it(folder: Path) -> None:  # noqa: F811
    m = await scanned(folder)
    async with m.using("chat", "chat", "/v1/chat/completions") as endpoint:
        m.engine_failed(endpoint, "RemoteProtocolError: peer closed connection")
    view = m.find("chat").view()
    assert view.state == ModelState.ERROR
    assert "RemoteProtocolError" in view.error and "next request starts it again" in view.error
    await asyncio.sleep(0)  # the clean-up task
    await asyncio.gather(*m._tasks)
    fake = m.supervisor.fake
    assert fake.names("terminate") == ["chat"]  # Xinference's hold on the dead process is dropped

    m.engine_failed(endpoint, "again")  # a second request noticing the same death changes nothing
    assert fake.names("terminate") == ["chat"]

    async with m.using("chat", "chat", "/v1/chat/completions") as fresh:
        assert fresh.url != endpoint.url  # a new process: new port and key
    assert m.find("chat").view().state == ModelState.RUNNING and m.find("chat").error is None
    assert fake.names("launch") == ["chat", "chat"]

    m.engine_failed(endpoint, "late report about the old engine")  # must not touch the new one
    assert m.find("chat").view().state == ModelState.RUNNING


async def test_a_failed_start_still_refuses_requests_until_stopped(folder: Path) -> None:  # noqa: F811
    m = await scanned(folder)
    m.supervisor.fake.fail = "no memory"
    with pytest.raises(Exception, match="no memory"):
        await m.start("chat")
    m.supervisor.fake.fail = None
    with pytest.raises(Conflict, match="in error"):  # unlike a crash: relaunching would fail the same way
        async with m.using("chat", "chat", "/v1/chat/completions"):
            pass


async def test_reports_about_a_remote_xinference_are_left_to_its_supervisor(folder: Path) -> None:  # noqa: F811
    m = await scanned(folder, mode="remote")
    async with m.using("chat", "chat", "/v1/chat/completions") as endpoint:
        assert endpoint.send_as is not None
        m.engine_failed(endpoint, "ReadError")
    assert m.find("chat").view().state == ModelState.RUNNING
    unknown = Endpoint("nope", "http://127.0.0.1:1", {}, None)
    m.engine_failed(unknown, "ConnectError")  # a model removed meanwhile: nothing to do


async def test_the_drop_waits_while_xinference_brings_the_dead_process_back(
    folder: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Xinference's worker restarts a dead model process and refuses a terminate meanwhile."""
    monkeypatch.setattr(manager_module, "DROP_ENGINE_RETRY", 0.0)
    m = await scanned(folder)
    fake = m.supervisor.fake
    refusals = [SupervisorError("smollm2 is launching"), SupervisorError("smollm2 is launching")]
    plain_terminate = fake.terminate

    async def terminate(uid: str) -> None:
        fake.calls.append(("terminate", uid))
        if refusals:
            raise refusals.pop()
        await plain_terminate(uid)

    monkeypatch.setattr(fake, "terminate", terminate)
    async with m.using("chat", "chat", "/v1/chat/completions") as endpoint:
        m.engine_failed(endpoint, "ConnectError")
    async with m.using("chat", "chat", "/v1/chat/completions"):  # waits for the drop
        pass
    assert fake.names("terminate") == ["chat"] * 4  # 2 refused, the accepted one (logged twice by the fakes)
    assert [c[0] for c in fake.calls if c[0] in ("terminate", "launch")][-1] == "launch"
