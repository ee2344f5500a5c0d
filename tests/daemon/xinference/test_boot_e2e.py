"""The light embedded Xinference for real: no torch or transformers in any of its processes, the same
greedy answers as llama.cpp itself, the forked process tree, and a correct answer where torch is needed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from qwendesk.daemon.xinference import boot
from tests.conftest import SMOLLM2_NAME, DaemonProcess, free_port, link_model
from tests.daemon.test_openai_parity import PROMPTS, Reference, daemon_chat

pytestmark = pytest.mark.e2e

LINUX = sys.platform.startswith("linux")

CHECK_IMPORTS = textwrap.dedent(
    """
    import sys
    import xinference.api.restful_api, xinference.core.supervisor, xinference.core.worker
    import xinference.core.model as core_model, xinference.model.llm.llama_cpp.core
    heavy = sorted(m for m in ("torch", "transformers", "anthropic.types.beta") if m in sys.modules)
    assert not heavy, heavy

    from xinference import device_utils as stand_in
    assert stand_in.__file__.endswith("boot/device_utils.py"), stand_in.__file__
    names = ("cpu", "cuda", "mps", "xpu", "npu", "mlu", "vacc", "musa", "gcu", "rocm", "metax")
    calls = {
        "get_available_device": [()], "gpu_count": [()], "get_available_device_env_name": [()],
        "get_gpu_info": [()], "is_cuda_available": [()], "is_mps_available": [()],
        "is_xpu_available": [()], "is_rocm_available": [()], "is_npu_available": [()],
        "is_metax_available": [()], "move_model_to_available_device": [("model",)],
        "is_device_available": [(n,) for n in names], "empty_cache": [()],
    }
    def answers(module):
        return {f: [getattr(module, f)(*args) for args in arg_lists] for f, arg_lists in calls.items()}
    ours = answers(stand_in)
    assert "torch" not in sys.modules  # all answered without torch
    before = core_model.OutOfMemoryError
    dtypes = [stand_in.get_device_preferred_dtype(d) for d in ("cpu", "cuda", "mps")]  # needs torch
    import torch
    real = stand_in._real()
    assert answers(real) == ours, (answers(real), ours)
    assert dtypes == [real.get_device_preferred_dtype(d) for d in ("cpu", "cuda", "mps")]
    assert before is not torch.cuda.OutOfMemoryError
    assert core_model.OutOfMemoryError is torch.cuda.OutOfMemoryError

    from xoscar.serialization import deserialize, serialize
    tensor = torch.arange(6).reshape(2, 3)
    assert torch.equal(deserialize(*serialize(tensor)), tensor)

    import anthropic.types
    from xinference.types import ContentBlock, Usage
    assert anthropic.types.ContentBlock is ContentBlock and anthropic.types.Usage is Usage
    print("light imports ok")
    """
)


def test_light_imports_keep_torch_out_until_a_torch_path_needs_it(tmp_path: Path) -> None:
    """In an interpreter of the embedded Xinference: nothing heavy on import; the stand-in device_utils
    answers as the real one; torch's OutOfMemoryError and tensor serializer appear when torch does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QWENDESK_XINFERENCE")}
    env["XINFERENCE_HOME"] = str(tmp_path)
    env.update(boot.environment(env))
    done = subprocess.run(
        [sys.executable, "-c", CHECK_IMPORTS], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "light imports ok" in done.stdout


@pytest.fixture(scope="module")
def traced_daemon(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Iterator[DaemonProcess]:
    """A daemon whose Xinference logs every import of torch or transformers (QWENDESK_XINFERENCE_TRACE)."""
    home = tmp_path_factory.mktemp("light-home")
    proc = DaemonProcess(home, free_port(), {"QWENDESK_KEEP_ALIVE": "0", "QWENDESK_XINFERENCE_TRACE": "1"})
    link_model(smollm2_gguf, proc.models_dir)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _roles(daemon: DaemonProcess) -> dict[str, list[psutil.Process]]:
    roles: dict[str, list[psutil.Process]] = {"api": [], "fork server": [], "worker": [], "model": []}
    for proc in daemon.tree()[1:]:
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "xinference-local" in cmdline:
            roles["api"].append(proc)
        elif cmdline.startswith("qwendesk: xinference fork server"):
            roles["fork server"].append(proc)
        elif "start_local.py" in cmdline:
            roles["worker"].append(proc)
        elif cmdline.startswith("Model: "):
            roles["model"].append(proc)
    return roles


def test_gguf_model_runs_without_torch_and_answers_like_llama_cpp(
    traced_daemon: DaemonProcess, smollm2_gguf: Path
) -> None:
    daemon = traced_daemon
    daemon.client.start(SMOLLM2_NAME)
    try:
        view = daemon.model(SMOLLM2_NAME)
        threads = daemon.settings.n_threads or daemon.client.status()["accelerator"]["physical_cores"]
        reference = Reference(smollm2_gguf, view["n_ctx"], threads)
        for lang, messages in PROMPTS.items():
            ours = daemon_chat(daemon, SMOLLM2_NAME, messages)
            theirs = reference.chat(messages)
            text = ours["choices"][0]["message"]["content"]
            assert text and text == theirs["choices"][0]["message"]["content"], lang
            assert ours["usage"] == {k: theirs["usage"][k] for k in ours["usage"]}, lang
        del reference

        roles = _roles(daemon)
        assert len(roles["api"]) == 1 and len(roles["worker"]) == 1 and len(roles["model"]) == 1, roles
        everyone = [p for procs in roles.values() for p in procs]
        for proc in everyone:
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
            assert "/torch/" not in maps, f"torch is mapped in {proc.cmdline()}"
            assert "/transformers/" not in maps, f"transformers is mapped in {proc.cmdline()}"
        if LINUX:  # the worker and the model's sub-pool are forked from the pre-imported server
            (api,), (server,), (worker,), (model,) = (
                roles[r] for r in ("api", "fork server", "worker", "model")
            )
            assert server.ppid() == api.pid and worker.ppid() == api.pid and model.ppid() == server.pid
    finally:
        daemon.client.stop(SMOLLM2_NAME)
    log = (daemon.settings.log_dir / "xinference.log").read_text(errors="replace")
    assert "qwendesk light mode off" not in log
    for sign in ("torch imported by", "transformers imported by", "importing the real", "left as it is"):
        assert sign not in log, f"{sign!r} in the Xinference log"
