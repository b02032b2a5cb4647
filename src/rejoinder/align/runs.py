"""Run folders: the resolved config beside the outputs, checkpoints to resume from, atomic saves."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rejoinder.align.config import save_config, to_plain
from rejoinder.errors import ConfigError

log = logging.getLogger(__name__)


def process_state() -> Any:
    """accelerate's view of the processes of this run: several under ``accelerate launch`` (gloo on
    CPUs), else one. Made with ``cpu=`` set on a machine without a GPU, or it sees a single process."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _complete(checkpoint: Path) -> bool:
    """Whether a checkpoint folder was written to the end. Its ``trainer_state.json`` is the last file
    a save writes, so a kill during the save leaves it missing, empty or cut short."""
    import json

    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(state, dict)


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint with the highest step whose files are complete (a killed save is skipped)."""
    if not directory.is_dir():
        return None
    numbered = sorted(
        (p for p in directory.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    for checkpoint in numbered:
        if _complete(checkpoint):
            return checkpoint
        if (checkpoint / "trainer_state.json").exists():
            log.warning("%s was cut short by a kill during its save; resuming from an earlier one", checkpoint)
    return None


def same_config(run: Path, name: str, config: Any) -> bool:
    """Whether ``run/name`` holds exactly ``config`` (as :func:`save_config` wrote it)."""
    import yaml

    path = run / name
    if not path.is_file():
        return False
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return False
    return saved == to_plain(config)


def start_run(run: Path, name: str, config: Any, checkpoints: Path) -> Path | None:
    """Record ``config`` in the run folder; the checkpoint to resume from, if one of this config exists."""
    resume = latest_checkpoint(checkpoints)
    if resume is not None and not same_config(run, name, config):
        raise ConfigError(
            f"{run} holds checkpoints of a run with another config ({run / name}); "
            "give another output_dir, or delete the folder to start again"
        )
    run.mkdir(parents=True, exist_ok=True)
    save_config(config, run / name)
    return resume


def save_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """``write`` fills a staging folder that then replaces ``target``: a kill leaves the old folder or none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=target.parent))
    try:
        write(staging)
        (staging / ".complete").write_text("ok\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
