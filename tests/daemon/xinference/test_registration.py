"""The registration JSON and launch plan Xinference is given for each model found on disk."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from qwendesk.daemon.accelerator import detect
from qwendesk.daemon.config import load_settings
from qwendesk.daemon.lifecycle.launch import launch_plan
from qwendesk.daemon.schemas import StartRequest
from qwendesk.daemon.xinference.registration import registration_spec, size_in_billions
from qwendesk.models.errors import ModelFileError
from qwendesk.models.folder import scan
from tests.fixtures.synthetic import write_minimal_gguf, write_qwen_gguf
from tests.models.test_folder import _link

VL_TEMPLATE = "{% for m in messages %}{{ m.content }}{% endfor %}"


def plan_kwargs(model) -> dict:
    """The engine arguments a default start of `model` would launch with."""
    plan = launch_plan(load_settings(env={}), detect(), model, StartRequest(), direct=False)
    return plan.engine_kwargs


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
    kwargs = plan_kwargs(model)
    assert "multimodal_projector" not in kwargs and "pooling_type" not in kwargs


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
    assert plan_kwargs(qwen)["multimodal_projector"] == str(qwen.mmproj.resolve())
    assert registration_spec(qwen)["model_specs"][0]["multimodal_projectors"] == [qwen.mmproj.name]
    assert models["other-q8_0"].mmproj is None and "vision" not in models["other-q8_0"].registration.abilities
    assert models["gemma-3-4b-it-q4_0"].mmproj == b / "gemma-3-4b-it-mmproj-f16.gguf"
    assert models["vision"].mmproj == c / "projector.gguf"


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
