"""XinferenceClient: error parsing and auth logic (unit), and the real thing: embedded and a remote cluster."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from qwendesk.daemon.config import load_settings
from qwendesk.daemon.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    ModelLoadError,
    NotFound,
    SupervisorError,
    Unauthorized,
)
from qwendesk.daemon.ports import free_port
from qwendesk.daemon.xinference import RemoteXinference, make_supervisor, process_tree
from qwendesk.daemon.xinference.auth import ensure_auth, load_credentials
from qwendesk.daemon.xinference.client import (
    XinferenceClient,
    clean_detail,
    error_for,
    launch_failure_message,
)
from qwendesk.daemon.xinference.embedded import EmbeddedSupervisor
from tests.daemon.xinference.probe import registrations, running

E2E = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


def smol_spec(name: str, folder: Path, file_name: str) -> dict:
    """Registration JSON from the notes (chat_template "" = use the GGUF's own template)."""
    return {
        "version": 2,
        "model_name": name,
        "model_lang": ["en"],
        "model_ability": ["chat"],
        "model_family": "smollm2",
        "chat_template": "",
        "model_specs": [
            {
                "model_format": "ggufv2",
                "model_size_in_billions": "0_135",
                "quantization": "Q4_1",
                "model_file_name_template": file_name,
                "model_uri": str(folder),
            }
        ],
    }


# ---- unit: error bodies -----------------------------------------------------------------------
def test_clean_detail_strips_actor_address() -> None:
    body = b'{"detail":"[address=127.0.0.1:45223, pid=15363] Failed to init server, please check the input params."}'
    assert clean_detail(body) == "Failed to init server, please check the input params."
    assert clean_detail({"detail": "Model not found"}) == "Model not found"
    assert clean_detail("not json at all") == "not json at all"
    validation = {"detail": [{"loc": ["body", "model_uid"], "msg": "field required"}]}
    assert clean_detail(validation) == "model_uid: field required"


@pytest.mark.parametrize(
    ("status", "launch", "cls"),
    [
        (400, False, BadRequest),
        (401, False, Unauthorized),
        (403, False, Forbidden),
        (404, False, NotFound),
        (409, False, Conflict),
        (500, False, SupervisorError),
        (503, True, ModelLoadError),
        (400, True, BadRequest),
    ],
)
def test_error_for_status(status: int, launch: bool, cls: type) -> None:
    err = error_for(status, "msg", launch=launch)
    assert type(err) is cls and err.message == "msg"


def test_launch_failure_message_prefers_engine_cause() -> None:
    generic = "Failed to init server, please check the input params."
    assert "truncated" in launch_failure_message("m", generic, lambda: "the file is truncated")
    assert "not found in the supervisor log" in launch_failure_message("m", generic, lambda: None)

    def broken() -> str:
        raise RuntimeError("boom")

    assert generic in launch_failure_message("m", generic, broken)


# ---- unit: client behaviour over a fake transport ---------------------------------------------
class FakeXinference:
    """Just enough of the REST API to check the client's retry and replace logic."""

    def __init__(self) -> None:
        self.registered: dict[str, str] = {}
        self.logins = 0
        self.valid_jwt = "jwt-1"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        path, method = request.url.path, request.method
        if path == "/token":
            self.logins += 1
            return httpx.Response(200, json={"access_token": self.valid_jwt})
        if auth != f"Bearer {self.valid_jwt}":
            return httpx.Response(401, json={"detail": "Could not validate credentials"})
        if path == "/v1/model_registrations/LLM" and method == "POST":
            spec = json.loads(json.loads(request.content)["model"])
            if spec["model_name"] in self.registered:
                return httpx.Response(
                    400, json={"detail": f"[address=x, pid=1] Model {spec['model_name']} already registered"}
                )
            self.registered[spec["model_name"]] = spec["model_specs"][0]["model_uri"]
            return httpx.Response(200, json={})
        if path.startswith("/v1/model_registrations/LLM/") and method == "DELETE":
            self.registered.pop(path.rsplit("/", 1)[1], None)
            return httpx.Response(200, json={})
        if path == "/v1/models" and method == "POST":
            return httpx.Response(
                503,
                json={"detail": "[address=a, pid=2] Failed to init server, please check the input params."},
            )
        return httpx.Response(404, json={"detail": "nope"})


async def test_register_replaces_and_relogs_in() -> None:
    fake = FakeXinference()
    client = XinferenceClient("http://x", credentials=("u", "p"), transport=httpx.MockTransport(fake))
    await client.register("LLM", smol_spec("m", Path("/a"), "f.gguf"))
    fake.valid_jwt = "jwt-2"  # the server restarted: our token is no longer valid
    await client.register("LLM", smol_spec("m", Path("/b"), "f.gguf"))
    assert fake.registered == {"m": "/b"}
    assert fake.logins == 2
    with pytest.raises(ModelLoadError, match="truncated"):
        await client.launch(
            "m", "m-1", model_size="0_135", quantization="Q4_1", explain=lambda: "the file is truncated"
        )
    await client.aclose()


async def test_connection_failure_is_supervisor_error() -> None:
    client = XinferenceClient(f"http://127.0.0.1:{free_port()}", api_key="xf-x")
    assert not await client.alive()
    with pytest.raises(SupervisorError, match="Cannot reach Xinference"):
        await client.request("GET", "/v1/models")
    await client.aclose()


# ---- e2e: embedded supervisor ------------------------------------------------------------------
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def embedded(tmp_path_factory: pytest.TempPathFactory):
    """One real embedded Xinference for this module (each start costs ~15-50 s of CPU)."""
    home = tmp_path_factory.mktemp("xinf-embedded")
    sup = EmbeddedSupervisor(load_settings(flags={"home": str(home), "supervisor_timeout": 900}, env={}))
    try:
        await sup.start()
        yield sup
    finally:
        await sup.stop()


@pytest.mark.e2e
@pytest.mark.asyncio(loop_scope="module")
async def test_embedded_requires_api_key(embedded: EmbeddedSupervisor) -> None:
    client = embedded.client
    assert client is not None and client.api_key and client.api_key.startswith("xf-")
    async with httpx.AsyncClient(base_url=client.endpoint) as raw:
        assert (await raw.get("/v1/models")).status_code == 401
        assert (await raw.get("/v1/models", headers={"Authorization": "Bearer xf-wrong"})).status_code == 401
        ok = await raw.get("/v1/models", headers=client.headers)
        assert ok.status_code == 200 and ok.json()["data"] == []
    creds_file = embedded.auth_path
    assert creds_file.stat().st_mode & 0o777 == 0o600
    assert load_credentials(creds_file).api_key == client.api_key
    # A second bootstrap reuses the saved key instead of creating a new one.
    again = await ensure_auth(client.endpoint, embedded.settings.xinference_home, creds_file)
    assert again.api_key == client.api_key
    await again.aclose()


@pytest.mark.e2e
@pytest.mark.asyncio(loop_scope="module")
async def test_truncated_gguf_reports_real_cause(
    embedded: EmbeddedSupervisor, smollm2_gguf: Path, tmp_path: Path
) -> None:
    client = embedded.client
    assert client is not None
    bad = tmp_path / "broken.gguf"
    with smollm2_gguf.open("rb") as src:
        bad.write_bytes(src.read(smollm2_gguf.stat().st_size // 3))
    await client.register("LLM", smol_spec("broken", tmp_path, bad.name))
    await client.register("LLM", smol_spec("broken", tmp_path, bad.name))  # same name again: replaced
    assert "broken" in await registrations(client)
    offset = embedded.log_offset()
    with pytest.raises(ModelLoadError) as info:
        await client.launch(
            "broken",
            "broken-1",
            model_size="0_135",
            quantization="Q4_1",
            explain=lambda: embedded.explain_failure(offset),
            n_ctx=512,
        )
    message = info.value.message
    assert "not within the file bounds" in message, message
    assert "Failed to init server" not in message
    assert "broken-1" not in await running(client)
    await client.unregister("LLM", "broken")
    assert "broken" not in await registrations(client)


# ---- e2e: remote mode against a real two-process cluster ----------------------------------------
def _cluster_env(home: Path, xoscar_key: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        XINFERENCE_HOME=str(home),
        HF_HUB_OFFLINE="1",
        XINFERENCE_MODEL_SRC="huggingface",
        XINFERENCE_ENABLE_VIRTUAL_ENV="0",
        XINFERENCE_DISABLE_METRICS="1",
        XOSCAR_AUTH_KEY=xoscar_key,
    )
    return env


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory):
    """`xinference-supervisor` and `xinference-worker` as separate processes on loopback, auth on."""
    base = tmp_path_factory.mktemp("xinf-cluster")
    bindir = Path(sys.executable).parent
    key = os.urandom(16).hex()
    rest, sup_port, worker_port = free_port(), free_port(), free_port()
    endpoint = f"http://127.0.0.1:{rest}"
    procs = [
        _spawn(
            [
                str(bindir / "xinference-supervisor"),
                "-H",
                "127.0.0.1",
                "-p",
                str(rest),
                "--supervisor-port",
                str(sup_port),
            ],
            _cluster_env(base / "supervisor-home", key),
            base / "supervisor.log",
        )
    ]
    admin = None
    try:
        probe = XinferenceClient(endpoint)
        deadline = time.monotonic() + 900
        while not await probe.alive():
            assert procs[0].poll() is None, (base / "supervisor.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "supervisor did not come up"
            await asyncio.sleep(1)
        await probe.aclose()
        procs.append(
            _spawn(
                [
                    str(bindir / "xinference-worker"),
                    "-e",
                    endpoint,
                    "-H",
                    "127.0.0.1",
                    "--worker-port",
                    str(worker_port),
                ],
                _cluster_env(base / "worker-home", key),
                base / "worker.log",
            )
        )
        # The cluster's admin account, set up the same way the embedded supervisor does it.
        admin = await ensure_auth(endpoint, base / "supervisor-home", base / "creds.json")
        while True:
            nodes = (await admin.request("GET", "/v1/cluster/info", admin=True)).json()
            if any(n.get("node_type") == "Worker" for n in nodes):
                break
            assert procs[1].poll() is None, (base / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "worker did not join"
            await asyncio.sleep(1)
        creds = load_credentials(base / "creds.json")
        yield {"endpoint": endpoint, "creds": creds, "base": base}
    finally:
        if admin is not None:
            await admin.aclose()
        for proc in reversed(procs):
            await asyncio.to_thread(process_tree.terminate_tree, proc.pid, process_tree.descendants(proc.pid))
            proc.wait(timeout=10)


@pytest.mark.e2e
@pytest.mark.asyncio(loop_scope="module")
async def test_remote_cluster_serves_a_model(cluster: dict, smollm2_gguf: Path, tmp_path: Path) -> None:
    endpoint, creds = cluster["endpoint"], cluster["creds"]
    # An API key may only list and chat; a wrong one is refused with a clear error.
    wrong = make_supervisor(
        load_settings(flags={"xinference_endpoint": endpoint, "xinference_api_key": "xf-bad"}, env={})
    )
    assert isinstance(wrong, RemoteXinference)
    with pytest.raises(Unauthorized, match="rejected our credentials"):
        await wrong.start()
    assert wrong.view().state == "failed"
    keyed = RemoteXinference(
        load_settings(flags={"xinference_endpoint": endpoint, "xinference_api_key": creds.api_key}, env={})
    )
    await keyed.start()
    with pytest.raises(Forbidden, match="username:password"):
        await keyed.client.register("LLM", smol_spec("nope", tmp_path, "x.gguf"))
    await keyed.stop()

    settings = load_settings(
        flags={"xinference_endpoint": endpoint, "xinference_api_key": f"{creds.username}:{creds.password}"},
        env={},
    )
    remote = make_supervisor(settings)
    states: list[str] = []
    remote.on_state_change = lambda: states.append(remote.state)
    client = await remote.start()
    assert await remote.start() is client  # idempotent
    assert remote.view().state == "remote" and remote.log_offset() == 0
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(smollm2_gguf, folder / smollm2_gguf.name)
    await client.register("LLM", smol_spec("smol-remote", folder, smollm2_gguf.name))
    uid = await client.launch(
        "smol-remote",
        "smol-remote-1",
        model_size="0_135",
        quantization="Q4_1",
        explain=lambda: remote.explain_failure(0),
        worker_ip="127.0.0.1",
        n_ctx=512,
        n_parallel=1,
    )
    try:
        assert uid in await running(client)
        async with httpx.AsyncClient(base_url=endpoint, timeout=120) as raw:
            resp = await raw.post(
                "/v1/chat/completions",
                headers=await client.fresh_headers(),
                json={"model": uid, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8},
            )
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"].strip()
    finally:
        await client.terminate(uid)
        await client.terminate(uid)  # already gone: not an error
        await client.unregister("LLM", "smol-remote")
    # A remote launch failure says where the reason is.
    assert "remote Xinference" in remote.explain_failure(0)
    await remote.stop()
    assert remote.client is None and states[0] == "remote"


@pytest.mark.e2e
@pytest.mark.asyncio(loop_scope="module")
async def test_daemon_and_cli_drive_a_remote_cluster(
    cluster: dict, smollm2_gguf: Path, tmp_path: Path
) -> None:
    """`qwendesk serve --xinference-endpoint URL`: no embedded supervisor; models start and chat on the cluster."""
    from tests.conftest import SMOLLM2_NAME, DaemonProcess, link_model

    creds = cluster["creds"]
    daemon = DaemonProcess(
        tmp_path,
        free_port(),
        {
            "QWENDESK_XINFERENCE_ENDPOINT": cluster["endpoint"],
            "QWENDESK_XINFERENCE_API_KEY": f"{creds.username}:{creds.password}",
        },
    )
    link_model(smollm2_gguf, daemon.models_dir)
    await asyncio.to_thread(daemon.start)
    try:
        status = await asyncio.to_thread(daemon.client.status)
        assert status["supervisor"]["mode"] == "remote"
        assert status["supervisor"]["endpoint"] == cluster["endpoint"]
        assert not [p for p in daemon.tree()[1:] if "xinference" in " ".join(p.cmdline())]
        await asyncio.to_thread(daemon.wait_for, lambda c: daemon.model(SMOLLM2_NAME), 60, "listed")
        started = await asyncio.to_thread(daemon.client.start, SMOLLM2_NAME, n_ctx=512)
        assert started["state"] == "running"
        body = {
            "model": SMOLLM2_NAME,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 8,
        }
        async with httpx.AsyncClient(timeout=300) as http:
            resp = await http.post(daemon.url + "/v1/chat/completions", json=body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"].strip()
        stopped = await asyncio.to_thread(daemon.client.stop, SMOLLM2_NAME)
        assert stopped["state"] == "available"
    finally:
        await asyncio.to_thread(daemon.stop)
