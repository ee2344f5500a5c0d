"""Keeps torch, transformers and the whole OpenAI and Anthropic SDKs out of the embedded Xinference.

Runs inside Xinference's own processes (loaded by site/sitecustomize.py, standard library only), never in
the daemon. Measured with python -X importtime (xinference 4.1.0, 2 cores, bench/FINDINGS.md section 6):
the API process imported 6.5 s / 443 MiB RSS, the supervisor/worker 5.4 s / 440 MiB, each model's
sub-pool 5.3 s / 433 MiB; all three sets together now take 1.7-2.0 s / 180 MiB. Where it went: torch
(0.9-1.8 s) through `xinference.device_utils`, `core/model.py`, `model/utils.py` and 14 family modules that
use it only inside functions; transformers (0.5-1.1 s) through the image family's OCR modules and the
Transformers LLM engine (~50 modules); openai and anthropic (1.4 s, ~100 MiB), whose `__init__` imports the
whole SDK for a few types; xoscar, which imports torch at every actor-pool start for its tensor serializer.

A meta-path finder changes exactly this, for the xinference version it was written against:
- `xinference.device_utils` becomes device_utils.py beside this file when devices.py shows that no
  accelerator can be found (then the real module's answers are the CPU ones); otherwise the real module.
- EDITS: exact-text edits of a few sources; a text not found exactly once leaves that module as it ships
  (logged): a newer Xinference is heavier, never wrong. LLM, embedding and rerank install only their
  llama.cpp engine (another engine fails with Xinference's "cannot be run on engine"); every model family
  stays installed (the supervisor imports all of them at start-up).
- LAZY_IMPORTS: module-level `import torch` becomes a LazyModule where torch is used only in functions.
- LAZY_PACKAGES: a package's `__init__` runs on the first attribute that is not a submodule.
- torch's OutOfMemoryError and xoscar's tensor serializer appear the moment torch is really imported.
"""

from __future__ import annotations
import __future__

import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("xinference.qwendesk.light")  # Xinference's logging config keeps it

HERE = os.path.dirname(os.path.abspath(__file__))
ALIAS = "_qwendesk_boot_light"  # the name edited module sources import this module by
XINFERENCE_VERSION = "4.1.0"  # the sources EDITS were written against (others still load, unedited)

_LLM_ENGINES_OLD = """    from .llama_cpp.core import XllamaCppModel
    from .mlx.core import MLXChatModel, MLXModel, MLXVisionModel
    from .sglang.core import SGLANGChatModel, SGLANGModel, SGLANGVisionModel
    from .transformers.core import PytorchChatModel, PytorchModel
    from .trt_llm.core import TRTLLMModel
    from .vllm.core import VLLMChatModel, VLLMModel, VLLMMultiModel

    # register llm classes.
    extend_classes_once(LLAMA_CLASSES, [XllamaCppModel])
    extend_classes_once(
        SGLANG_CLASSES, [SGLANGModel, SGLANGChatModel, SGLANGVisionModel]
    )
    extend_classes_once(VLLM_CLASSES, [VLLMModel, VLLMChatModel, VLLMMultiModel])
    extend_classes_once(MLX_CLASSES, [MLXModel, MLXChatModel, MLXVisionModel])
    extend_classes_once(TRANSFORMERS_CLASSES, [PytorchChatModel, PytorchModel])
    extend_classes_once(TRTLLM_CLASSES, [TRTLLMModel])
"""
_LLM_ENGINES_NEW = """    from .llama_cpp.core import XllamaCppModel

    # register llm classes (qwendesk: the llama.cpp engine only).
    extend_classes_once(LLAMA_CLASSES, [XllamaCppModel])
"""

_EMBEDDING_ENGINES_OLD = """    from .embeddinggemma2 import (
        SentenceTransformerEmbeddingGemma2Model,
        TransformersEmbeddingGemma2Model,
    )
    from .flag.core import FlagEmbeddingModel
    from .llama_cpp.core import XllamaCppEmbeddingModel
    from .llama_cpp.embeddinggemma2 import XllamaCppEmbeddingGemma2Model
    from .sentence_transformers.core import SentenceTransformerEmbeddingModel
    from .vllm.core import VLLMEmbeddingModel

    extend_classes_once(
        SENTENCE_TRANSFORMER_CLASSES, [SentenceTransformerEmbeddingModel]
    )
    # Specific modality-aware adapters take precedence over the generic text path.
    if SentenceTransformerEmbeddingGemma2Model not in SENTENCE_TRANSFORMER_CLASSES:
        SENTENCE_TRANSFORMER_CLASSES.insert(0, SentenceTransformerEmbeddingGemma2Model)
    extend_classes_once(FLAG_EMBEDDER_CLASSES, [FlagEmbeddingModel])
    extend_classes_once(VLLM_CLASSES, [VLLMEmbeddingModel])
    extend_classes_once(
        LLAMA_CPP_CLASSES,
        [XllamaCppEmbeddingModel, XllamaCppEmbeddingGemma2Model],
    )
"""
_EMBEDDING_ENGINES_NEW = """    from .llama_cpp.core import XllamaCppEmbeddingModel
    from .llama_cpp.embeddinggemma2 import XllamaCppEmbeddingGemma2Model

    # qwendesk: the llama.cpp engine only.
    extend_classes_once(
        LLAMA_CPP_CLASSES,
        [XllamaCppEmbeddingModel, XllamaCppEmbeddingGemma2Model],
    )
"""
_EMBEDDING_TRANSFORMERS_OLD = (
    """    SUPPORTED_ENGINES["transformers"] = [TransformersEmbeddingGemma2Model]\n"""
)
_EMBEDDING_TRANSFORMERS_NEW = """    SUPPORTED_ENGINES["transformers"] = []\n"""

_RERANK_ENGINES_OLD = """    from .llama_cpp.core import XllamaCppRerankModel
    from .sentence_transformers.core import SentenceTransformerRerankModel
    from .vllm.core import VLLMRerankModel

    extend_classes_once(SENTENCE_TRANSFORMER_CLASSES, [SentenceTransformerRerankModel])
    extend_classes_once(VLLM_CLASSES, [VLLMRerankModel])
    extend_classes_once(LLAMA_CPP_CLASSES, [XllamaCppRerankModel])
"""
_RERANK_ENGINES_NEW = """    from .llama_cpp.core import XllamaCppRerankModel

    # qwendesk: the llama.cpp engine only.
    extend_classes_once(LLAMA_CPP_CLASSES, [XllamaCppRerankModel])
"""

_OOM_OLD = """try:
    from torch.cuda import OutOfMemoryError
except ImportError:
"""
_OOM_NEW = """try:
    OutOfMemoryError = __import__("_qwendesk_boot_light").torch_oom_error(globals())
except ImportError:
"""

# ModelActor.__pre_destroy__ imports the Transformers engine (and so torch and transformers) only to ask
# whether the model is one of its instances, which it cannot be while that module was never imported.
_PYTORCH_MODEL_OLD = "        from ..model.llm.transformers.core import PytorchModel as LLMPytorchModel\n"
_PYTORCH_MODEL_NEW = (
    "        LLMPytorchModel = __import__('_qwendesk_boot_light').loaded_class("
    "'xinference.model.llm.transformers.core', 'PytorchModel')\n"
)

# The same two classes, from their own modules (anthropic.types re-exports them), so that anthropic.types'
# __init__ (every Anthropic API type) is not run.
_ANTHROPIC_OLD = "    from anthropic.types import ContentBlock, Usage\n"
_ANTHROPIC_NEW = (
    "    from anthropic.types.content_block import ContentBlock; from anthropic.types.usage import Usage\n"
)

EDITS: dict[str, tuple[tuple[str, str], ...]] = {
    "xinference.types": ((_ANTHROPIC_OLD, _ANTHROPIC_NEW),),
    "xinference.model.llm": ((_LLM_ENGINES_OLD, _LLM_ENGINES_NEW),),
    "xinference.model.embedding": (
        (_EMBEDDING_ENGINES_OLD, _EMBEDDING_ENGINES_NEW),
        (_EMBEDDING_TRANSFORMERS_OLD, _EMBEDDING_TRANSFORMERS_NEW),
    ),
    "xinference.model.rerank": ((_RERANK_ENGINES_OLD, _RERANK_ENGINES_NEW),),
    "xinference.core.model": ((_OOM_OLD, _OOM_NEW), (_PYTORCH_MODEL_OLD, _PYTORCH_MODEL_NEW)),
}

# Modules that import torch/transformers (HEAVY) at module level but use them only inside functions (found
# with QWENDESK_XINFERENCE_TRACE=1): those imports become LazyModule bindings. The flag: also compile with
# postponed annotations, because their signatures name torch types (`-> torch.Tensor`); nothing in them
# evaluates an annotation (no pydantic model, dataclass or get_type_hints).
HEAVY = ("torch", "transformers")
LAZY_IMPORTS: dict[str, bool] = {
    "xinference.model.utils": False,
    "xinference.model.embedding.embeddinggemma2": True,
    "xinference.model.audio.utils": False,
    "xinference.model.audio.fish_speech": False,
    "xinference.model.image.rng": True,
    "xinference.model.image.stable_diffusion.core": True,
    "xinference.model.image.ocr.deepseek_ocr": True,
    "xinference.model.image.ocr.dots_ocr": False,
    "xinference.model.image.ocr.hunyuan_ocr": False,
    "xinference.model.image.ocr.jina_ocr": False,
    "xinference.model.image.ocr.navidc_ocr": False,
    "xinference.model.image.ocr.ovisocr2": False,
    "xinference.model.image.ocr.paddleocr_vl": False,
    "xinference.model.image.ocr.unlimited_ocr": False,
    "xinference.model.image.ocr.xiaomi_ocr": False,
}

# Packages whose __init__ imports the whole SDK (its client and every API type: 1.2 s and ~70 MiB here)
# while Xinference imports a few of their submodules, for request and response types. Their __init__ runs
# on the first attribute that is not a submodule (`anthropic.types.ContentBlock`, `openai.OpenAI`).
LAZY_PACKAGES = (
    "openai",
    "openai.types",
    "openai.types.chat",
    "openai.types.shared_params",
    "anthropic",
    "anthropic.types",
)


class EditMismatch(Exception):
    """The installed source is not the one an edit was written for."""


def apply_edits(source: str, edits: Sequence[tuple[str, str]]) -> str:
    """Each `old` must occur exactly once; `new` is padded to as many lines so tracebacks keep their lines."""
    for old, new in edits:
        count = source.count(old)
        if count != 1:
            raise EditMismatch(f"expected text found {count} times: {old.splitlines()[0].strip()!r}")
        missing = old.count("\n") - new.count("\n")
        if missing < 0:
            raise EditMismatch("an edit may not add lines")
        source = source.replace(old, new + "\n" * missing)
    return source


# ---- lazy torch -------------------------------------------------------------------------------------
_on_import: dict[str, list[Callable[[types.ModuleType], None]]] = {}
_lock = threading.RLock()


def _really_imported(name: str) -> types.ModuleType | None:
    module = sys.modules.get(name)
    return None if module is None or isinstance(module, LazyModule) else module


def on_import(name: str, callback: Callable[[types.ModuleType], None]) -> None:
    """Call `callback(module)` once module `name` has really been imported (now, if it is)."""
    with _lock:
        module = _really_imported(name)
        if module is None:
            _on_import.setdefault(name, []).append(callback)
            return
    callback(module)


def _imported(module: types.ModuleType) -> None:
    with _lock:
        callbacks = _on_import.pop(module.__name__, [])
    for callback in callbacks:
        try:
            callback(module)
        except Exception:  # a follow-up must never break the import that triggered it
            log.exception("qwendesk light mode: callback after importing %s failed", module.__name__)


class LazyModule(types.ModuleType):
    """Stands for a module bound at import time but used only inside functions: the first attribute
    access imports the real module and rebinds every global of the owner that held this stand-in."""

    def __init__(self, name: str, owner: dict[str, Any]) -> None:
        super().__init__(name)
        self.__dict__["_qd_owner"] = owner

    def _qd_load(self) -> types.ModuleType:
        real = importlib.import_module(self.__name__)
        owner = self.__dict__["_qd_owner"]
        for key, value in list(owner.items()):
            if value is self:
                owner[key] = real
        return real

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._qd_load(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._qd_load())

    def __repr__(self) -> str:
        return f"<lazy module {self.__name__!r} (not imported yet)>"


def lazy_module(name: str, owner: dict[str, Any]) -> types.ModuleType:
    """`import name` for a module-level binding: the real module if loaded, else a LazyModule.

    A missing module still raises ModuleNotFoundError, as the import statement would."""
    module = _really_imported(name)
    if module is not None:
        return module
    if importlib.util.find_spec(name.split(".")[0]) is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    return LazyModule(name, owner)


class _LazyImports(ast.NodeTransformer):
    """`import torch` / `import torch.nn as nn` at module level -> `torch = lazy_module("torch", ...)`."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.changed = 0

    def visit_FunctionDef(self, node: ast.AST) -> ast.AST:
        return node  # imports inside functions run when called, already lazily

    visit_AsyncFunctionDef = visit_ClassDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> Any:
        if not all(alias.name.split(".")[0] in self.names for alias in node.names):
            return node
        self.changed += 1
        statements = []
        for alias in node.names:
            name = alias.name if alias.asname else alias.name.split(".")[0]
            call = ast.parse(f"__import__({ALIAS!r}).lazy_module({name!r}, globals())", mode="eval").body
            target = ast.Name(id=alias.asname or name, ctx=ast.Store())
            statements.append(ast.copy_location(ast.Assign(targets=[target], value=call), node))
        return [ast.fix_missing_locations(s) for s in statements]


def lazy_imports(source: str, path: str, names: Sequence[str] = HEAVY) -> ast.Module:
    tree = ast.parse(source, path)
    transformer = _LazyImports(names)
    tree = transformer.visit(tree)
    if not transformer.changed:
        raise EditMismatch("no module-level import of " + "/".join(names))
    return tree  # type: ignore[no-any-return]


def loaded_class(module: str, name: str) -> type:
    """The class if its module has been imported; else a class nothing is an instance of (an instance of
    the real one cannot exist in a process that never imported its module)."""
    loaded = _really_imported(module)
    if loaded is not None:
        return getattr(loaded, name)  # type: ignore[no-any-return]
    return type(f"{name}NotImported", (), {"__module__": __name__})


def torch_oom_error(owner: dict[str, Any]) -> type[BaseException]:
    """`from torch.cuda import OutOfMemoryError` without importing torch.

    An `except OutOfMemoryError` clause looks the name up when it runs, and no torch error can exist before
    torch is imported: so the module keeps its own fallback class (we raise ImportError, its except branch)
    until torch is really imported, and then the name is rebound to torch's class."""
    torch = _really_imported("torch")
    if torch is not None:
        return torch.cuda.OutOfMemoryError  # type: ignore[no-any-return]
    if importlib.util.find_spec("torch") is None:
        raise ImportError("No module named 'torch'")

    def rebind(module: types.ModuleType) -> None:
        owner["OutOfMemoryError"] = module.cuda.OutOfMemoryError

    on_import("torch", rebind)
    raise ImportError("torch is imported only when a model needs it (qwendesk light mode)")


def defer_torch_serializer(module: types.ModuleType) -> None:
    """xoscar registers its torch.Tensor serializer by name, and resolves every such name (importing
    torch) when an actor pool starts and on each unknown type it serializes. Before torch is imported no
    tensor exists: register it for a placeholder type (which keeps its deserializer, for a tensor sent by
    another process) and for torch.Tensor itself the moment torch is imported."""
    if _really_imported("torch") is not None or not hasattr(module, "TorchTensorSerializer"):
        return
    serializer = module.TorchTensorSerializer
    serializer.unregister("torch.Tensor")
    serializer.register(type("TorchTensorBeforeTorchIsImported", (), {}))
    on_import("torch", lambda torch: serializer.register(torch.Tensor))


# ---- loaders -------------------------------------------------------------------------------------
class ChangedLoader(importlib.machinery.SourceFileLoader):
    """Loads a module's source with its EDITS and LAZY_IMPORTS applied (compiled each time, not cached)."""

    def __init__(
        self, fullname: str, path: str, edits: Sequence[tuple[str, str]], lazy: bool, postpone: bool
    ) -> None:
        super().__init__(fullname, path)
        self.edits = edits
        self.lazy = lazy
        self.postpone = postpone

    def get_code(self, fullname: str) -> types.CodeType:
        source = self.get_data(self.path).decode("utf-8")
        try:
            code: Any = apply_edits(source, self.edits)
            if self.lazy:
                code = lazy_imports(code, self.path)
        except (EditMismatch, SyntaxError) as exc:
            log.warning("qwendesk light mode: %s left as it is (%s)", fullname, exc)
            return super().get_code(fullname)  # type: ignore[return-value]
        flags = __future__.annotations.compiler_flag if self.postpone else 0
        return compile(code, self.path, "exec", flags=flags, dont_inherit=True)


class AfterLoader(importlib.abc.Loader):
    """Runs `after(module)` once the wrapped loader has executed the module."""

    def __init__(self, loader: Any, after: Callable[[types.ModuleType], None]) -> None:
        self._loader = loader
        self._after = after

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        self._after(module)

    def __getattr__(self, attr: str) -> Any:  # get_resource_reader, is_package, get_data ...
        return getattr(self._loader, attr)


class LazyPackageLoader(importlib.abc.Loader):
    """Creates the package (its __path__ lets submodules import) and runs its __init__ only when an
    attribute that is not a submodule is first asked for."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self._lock = threading.RLock()

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        loader, lock = self._loader, self._lock

        def __getattr__(attr: str) -> Any:
            path = module.__dict__.get("__path__")
            if path and importlib.machinery.PathFinder.find_spec(f"{module.__name__}.{attr}", path):
                raise AttributeError(attr)  # a submodule: the import system imports it on its own
            with lock:
                if module.__dict__.get("__getattr__") is __getattr__:
                    del module.__dict__["__getattr__"]
                    loader.exec_module(module)
            return getattr(module, attr)

        module.__dict__["__getattr__"] = __getattr__

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._loader, attr)


class LightFinder(importlib.abc.MetaPathFinder):
    """Finds the modules this mode changes or waits for; every other import goes on as usual."""

    def __init__(self, device_stand_in: bool) -> None:
        self.device_stand_in = device_stand_in

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "xinference.device_utils" and self.device_stand_in:
            return importlib.util.spec_from_file_location(fullname, os.path.join(HERE, "device_utils.py"))
        changed = fullname in EDITS or fullname in LAZY_IMPORTS
        if not changed and fullname not in _on_import and fullname not in LAZY_PACKAGES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        if fullname in LAZY_PACKAGES and spec.submodule_search_locations:
            spec.loader = LazyPackageLoader(spec.loader)
        if changed and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            lazy, postpone = fullname in LAZY_IMPORTS, LAZY_IMPORTS.get(fullname, False)
            edits = EDITS.get(fullname, ())
            spec.loader = ChangedLoader(fullname, spec.loader.path, edits, lazy, postpone)
        if fullname in _on_import:
            spec.loader = AfterLoader(spec.loader, _imported)
        return spec


def xinference_version() -> str | None:
    """The installed xinference's version, read from its `_version.py` without importing it."""
    spec = importlib.util.find_spec("xinference")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), "_version.py")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(("__version__", "version =")) and "=" in line:
            return line.split("=")[-1].strip().strip("'\"")
    return None


def trace_imports(names: Sequence[str] = HEAVY) -> None:
    """QWENDESK_XINFERENCE_TRACE=1: log who imports what light mode keeps out (to find a new importer)."""
    import traceback

    def report(module: types.ModuleType) -> None:
        stack = "".join(line for line in traceback.format_stack(limit=60) if "<frozen" not in line)
        log.warning("qwendesk light mode: %s imported by:\n%s", module.__name__, stack)

    for name in names:
        on_import(name, report)


_installed: LightFinder | None = None


def installed() -> bool:
    return _installed is not None


def install() -> LightFinder | None:
    """Put the finder first on sys.meta_path (once). Returns it, or None when this xinference is unknown."""
    global _installed
    if _installed is not None:
        return _installed
    sys.modules.setdefault(ALIAS, sys.modules[__name__])
    version = xinference_version()
    if version != XINFERENCE_VERSION:
        log.warning(
            "qwendesk light mode off: xinference %s, edits written for %s", version, XINFERENCE_VERSION
        )
        return None
    from . import devices

    _installed = LightFinder(devices.torch_free() is not None)
    sys.meta_path.insert(0, _installed)
    on_import("xoscar.serialization.torch", defer_torch_serializer)
    if os.environ.get("QWENDESK_XINFERENCE_TRACE") == "1":
        trace_imports()
    return _installed
