"""scan / names / registration JSON over real files in temp folders (no Xinference needed)."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from qwendesk.daemon.errors import BadRequest, NotFound
from qwendesk.daemon.registry import (
    launch_kwargs_for_files,
    model_name_for,
    registration_spec,
    resolve_model_path,
    scan,
    size_in_billions,
)
from qwendesk.models.errors import ModelFileError
from qwendesk.models.synthetic import write_minimal_gguf, write_qwen_gguf

XINFERENCE_FORBIDDEN = re.compile(r"[+\\/?%#&=\s]")
VL_TEMPLATE = "{% for m in messages %}{{ m.content }}{% endfor %}"


def _link(src: Path, dst: Path) -> Path:
    """A hard link (or copy) of a read-only fixture into a models folder."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy(src, dst)
    return dst


@pytest.mark.parametrize(
    ("file", "name"),
    [
        ("qwen2.5-1.5b-instruct-q4_k_m.gguf", "qwen2.5-1.5b-instruct-q4_k_m"),
        ("Qwen2.5-7B-Instruct-Q4_K_M-00001-of-00003.gguf", "qwen2.5-7b-instruct-q4_k_m"),
        ("My Model (copy).GGUF", "my-model-copy"),
        ("a+b=c?#&%.gguf", "a-b-c"),
        ("Café-ünïcode.gguf", "cafe-unicode"),
        ("qwen3.gguf", "qwen3-gguf"),  # a built-in Xinference name would be refused
    ],
)
def test_model_name_for(file: str, name: str) -> None:
    assert model_name_for(file) == name
    assert re.fullmatch(r"[a-z0-9._-]+", name) and not XINFERENCE_FORBIDDEN.search(name)


def test_name_of_non_latin_file_is_stable() -> None:
    name = model_name_for("千问模型.gguf")
    assert re.fullmatch(r"model-[0-9a-f]+", name) and name == model_name_for("千问模型.gguf")
    assert name != model_name_for("另一个.gguf")


def test_scan_real_models(tmp_path: Path, qwen2_gguf: Path, qwen3_gguf: Path, smollm2_gguf: Path) -> None:
    folder = tmp_path / "models"
    _link(qwen2_gguf, folder / "Qwen2 Tiny+Q8_0.gguf")
    _link(qwen3_gguf, folder / "sub" / "qwen3-tiny.GGUF")  # one level deep counts
    _link(smollm2_gguf, folder / "SmolLM2-135M-Instruct.Q4_1.gguf")
    _link(qwen2_gguf, folder / "a" / "b" / "too-deep.gguf")
    _link(qwen2_gguf, folder / ".hidden.gguf")
    _link(qwen2_gguf, folder / "download.gguf.part")
    (folder / "readme.txt").write_text("hi")
    models = scan([folder])
    assert sorted(models) == ["qwen2-tiny-q8_0", "qwen3-tiny", "smollm2-135m-instruct.q4_1"]
    assert all(m.ok for m in models.values())
    smol = models["smollm2-135m-instruct.q4_1"]
    assert smol.quantization == "Q4_1" and smol.size_bytes == smollm2_gguf.stat().st_size
    assert smol.view_fields()["family"] == "custom-llama" and smol.view_fields()["chat_template"] is True
    q3 = models["qwen3-tiny"]
    spec = registration_spec(q3)
    assert spec["model_specs"][0]["model_uri"] == str((folder / "sub").resolve())
    assert spec["model_specs"][0]["model_file_name_template"] == "qwen3-tiny.GGUF"
    assert spec["model_family"] == "qwen3" and spec["chat_template"] == ""


def test_registration_spec_shape(tmp_path: Path, smollm2_gguf: Path) -> None:
    _link(smollm2_gguf, tmp_path / "Smol {v2}.gguf")
    model = scan([tmp_path])["smol-v2"]
    spec = registration_spec(model)
    assert spec["version"] == 2 and spec["model_name"] == "smol-v2"
    assert spec["model_lang"] == ["en", "zh"] and spec["model_ability"] == ["chat"]
    assert spec["chat_template"] == "" and spec["context_length"] == 8192
    (s,) = spec["model_specs"]
    assert s["model_format"] == "ggufv2" and s["quantization"] == "Q4_1" == model.quantization
    assert s["model_size_in_billions"] == "0_135"
    # Xinference runs str.format on the template: braces are escaped and format back to the file name.
    assert s["model_file_name_template"].format(quantization="Q4_1") == "Smol {v2}.gguf"
    assert os.path.isabs(s["model_uri"])
    assert launch_kwargs_for_files(model) == {"model_format": "ggufv2", "quantization": "Q4_1"}


def test_size_in_billions(qwen2_gguf: Path) -> None:
    from dataclasses import replace

    from qwendesk.models.gguf_info import read_gguf

    info = read_gguf(qwen2_gguf)
    cases = {494_032_768: "0_494", 1_543_714_304: "1_54", 7_615_616_512: "7_62", 32_763_876_352: 33, 3e9: 3}
    for count, expected in cases.items():
        assert size_in_billions(replace(info, parameter_count=int(count))) == expected


def test_split_model(tmp_path: Path) -> None:
    write_qwen_gguf(tmp_path / "Big-Q4_0.gguf", split_max_tensors=12, file_type="Q4_0")
    models = scan([tmp_path])
    assert list(models) == ["big-q4_0"]
    model = models["big-q4_0"]
    assert [f.name for f in model.files] == [f"Big-Q4_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert model.info.tensor_count == model.info.split_tensors_count
    spec = registration_spec(model)["model_specs"][0]
    assert spec["model_file_name_template"] == "Big-Q4_0-00001-of-00003.gguf"
    assert spec["model_file_name_split_template"] == "Big-Q4_0-{part}.gguf"
    assert spec["quantization_parts"] == {"Q4_0": ["00001-of-00003", "00002-of-00003", "00003-of-00003"]}
    (tmp_path / "Big-Q4_0-00002-of-00003.gguf").unlink()
    broken = scan([tmp_path], now=time.time() + 60)["big-q4_0"]
    assert not broken.ok and "00002-of-00003" in broken.error and "missing" in broken.error
    with pytest.raises(ModelFileError, match="cannot be registered"):
        registration_spec(broken)


def test_mmproj_pairing(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_minimal_gguf(
        a / "Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf", "qwen2vl", name="Qwen2.5 VL 3B", chat_template=VL_TEMPLATE
    )
    write_minimal_gguf(a / "mmproj-Qwen2.5-VL-3B-Instruct-f16.gguf", "clip", general_type="mmproj")
    write_minimal_gguf(a / "other-Q8_0.gguf", "qwen2vl", chat_template=VL_TEMPLATE)
    write_minimal_gguf(b / "gemma-3-4b-it-Q4_0.gguf", "gemma3", chat_template=VL_TEMPLATE)
    write_minimal_gguf(b / "gemma-3-4b-it-mmproj-f16.gguf", "clip", general_type="mmproj")
    write_minimal_gguf(c / "vision.gguf", "qwen2vl", chat_template=VL_TEMPLATE)
    write_minimal_gguf(c / "projector.gguf", "clip", general_type="mmproj")  # the only one: paired
    models = scan([a, b, c])
    assert sorted(models) == ["gemma-3-4b-it-q4_0", "other-q8_0", "qwen2.5-vl-3b-instruct-q4_k_m", "vision"]
    qwen = models["qwen2.5-vl-3b-instruct-q4_k_m"]
    assert qwen.mmproj == a / "mmproj-Qwen2.5-VL-3B-Instruct-f16.gguf"
    assert qwen.registration.model_family == "qwen2.5-vl-instruct" and "vision" in qwen.registration.abilities
    assert launch_kwargs_for_files(qwen)["multimodal_projector"] == str(qwen.mmproj.resolve())
    assert registration_spec(qwen)["model_specs"][0]["multimodal_projectors"] == [qwen.mmproj.name]
    assert models["other-q8_0"].mmproj is None and "vision" not in models["other-q8_0"].registration.abilities
    assert models["gemma-3-4b-it-q4_0"].mmproj == b / "gemma-3-4b-it-mmproj-f16.gguf"
    assert models["vision"].mmproj == c / "projector.gguf"


def test_same_file_name_in_two_folders(tmp_path: Path, qwen2_gguf: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _link(qwen2_gguf, one / "model.gguf")
    _link(qwen2_gguf, two / "model.gguf")
    _link(qwen2_gguf, two / "Model.GGUF")
    models = scan([one, two])
    assert {n: m.file for n, m in models.items()} == {
        "model": one / "model.gguf", "model-2": two / "Model.GGUF", "model-3": two / "model.gguf"
    }  # fmt: skip
    assert list(scan([one, two])) == list(models)  # the same every time


def test_bad_files_are_errors_not_crashes(tmp_path: Path, qwen2_gguf: Path) -> None:
    (tmp_path / "notes.gguf").write_text("not a model")
    (tmp_path / "empty.gguf").touch()
    data = qwen2_gguf.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 2])
    write_minimal_gguf(tmp_path / "odd.gguf", "xyz")
    models = scan([tmp_path], now=time.time() + 60)  # long after the last write: nothing is pending
    assert {n: (m.ok, m.pending) for n, m in models.items()} == {
        n: (False, False) for n in ("notes", "empty", "cut", "odd")
    }
    assert "bad magic" in models["notes"].error and "truncated" in models["cut"].error
    assert "not supported by llama.cpp" in models["odd"].error
    assert models["cut"].view_fields()["error"] == models["cut"].error


def test_file_being_copied_is_pending(tmp_path: Path, qwen2_gguf: Path) -> None:
    data = qwen2_gguf.read_bytes()
    partial = tmp_path / "copying.gguf"
    partial.write_bytes(data[: len(data) // 3])
    model = scan([tmp_path])["copying"]
    assert model.pending and not model.ok and "truncated" in model.error
    assert model.view_fields()["error"]
    with partial.open("ab") as fh:
        fh.write(data[len(data) // 3 :])
    assert scan([tmp_path])["copying"].ok


def test_symlinks(tmp_path: Path, qwen2_gguf: Path) -> None:
    folder, outside = tmp_path / "models", tmp_path / "elsewhere"
    real = _link(qwen2_gguf, folder / "store" / "real.gguf")
    (folder / "inside.gguf").symlink_to(real)
    secret = _link(qwen2_gguf, outside / "secret.gguf")
    (folder / "escape.gguf").symlink_to(secret)
    (folder / "dangling.gguf").symlink_to(outside / "gone.gguf")
    models = scan([folder])
    assert models["inside"].ok and models["real"].ok
    assert "outside the models folders" in models["escape"].error
    assert "broken link" in models["dangling"].error


def test_resolve_model_path(tmp_path: Path, qwen2_gguf: Path) -> None:
    folder = tmp_path / "models"
    _link(qwen2_gguf, folder / "ok.gguf")
    (folder / "escape.gguf").symlink_to(qwen2_gguf)
    assert resolve_model_path([folder], "ok.gguf") == (folder / "ok.gguf").resolve()
    for bad in ("../x.gguf", "a/../../x.gguf", str(qwen2_gguf), "/etc/passwd", "", "..\\x.gguf"):
        with pytest.raises(BadRequest):
            resolve_model_path([folder], bad)
    with pytest.raises(BadRequest, match="outside"):
        resolve_model_path([folder], "escape.gguf")
    with pytest.raises(NotFound):
        resolve_model_path([folder], "nope.gguf")


def test_missing_folder_is_empty(tmp_path: Path) -> None:
    assert scan([tmp_path / "does-not-exist"]) == {}


@pytest.mark.e2e
def test_specs_pass_xinference_validation(
    tmp_path: Path, qwen2_gguf: Path, qwen3_gguf: Path, smollm2_gguf: Path
) -> None:
    """Xinference's own parser accepts every spec (tools/vision family gates included); slow import."""
    import json

    from xinference.model.llm import _install
    from xinference.model.llm.llm_family import CustomLLMFamilyV2

    _install()
    _link(qwen2_gguf, tmp_path / "q2.gguf")
    _link(qwen3_gguf, tmp_path / "q3.gguf")
    _link(smollm2_gguf, tmp_path / "smol.gguf")
    write_qwen_gguf(tmp_path / "split.gguf", split_max_tensors=12)
    write_minimal_gguf(
        tmp_path / "vl" / "Qwen2.5-VL-Q4_0.gguf", "qwen2vl", name="Qwen2.5 VL", chat_template=VL_TEMPLATE
    )
    write_minimal_gguf(tmp_path / "vl" / "mmproj-Qwen2.5-VL-f16.gguf", "clip", general_type="mmproj")
    models = scan([tmp_path])
    assert len(models) == 5
    for model in models.values():
        parsed = CustomLLMFamilyV2.parse_raw(json.dumps(registration_spec(model)))
        assert parsed.chat_template == ""  # never replaced by a family template
