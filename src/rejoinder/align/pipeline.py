"""``rejoinder train pipeline``: curation → SFT → reward model → RL → evaluation from one config.

The config is a YAML file with one section per stage, each holding that stage's own settings
(the keys of ``rejoinder data curate``, ``train sft``, ``train reward``, ``train rl`` and
``eval policy``), and the run folder they share::

    output_dir: runs/pipeline
    curate: {sources: [oasst, hh], ner: false}
    sft: {max_examples: 240, max_length: 256}
    reward: {max_length: 384}
    rl: {algo: ppo, steps: 20}
    eval: {prompts: 24}

Unless a stage's section says otherwise, its data is the curated folder (``<output_dir>/data``)
and its models come from the stages before it. A stage whose output exists for the same settings
is skipped (so a killed pipeline picks up where it stopped, and an edited RL section re-runs only
RL and the evaluation); each training stage also resumes from its own last checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rejoinder.align.config import build
from rejoinder.configfile import read_yaml_mapping
from rejoinder.errors import ConfigError

STAGES = ("curate", "sft", "reward", "rl", "eval")


def read_pipeline(path: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The pipeline file as {stage: its config object, "output_dir": Path}; errors name file and key."""
    data = read_yaml_mapping(path, f"a mapping with output_dir and the stages {', '.join(STAGES)}")
    data = {**data, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    unknown = sorted(set(data) - {"output_dir", "skip", *STAGES})
    if unknown:
        raise ConfigError(
            f"config {path}: unknown key {unknown[0]!r}; the keys are output_dir, skip, {', '.join(STAGES)}"
        )
    run = Path(data.get("output_dir") or "runs/pipeline")
    skip = data.get("skip") or []
    if not isinstance(skip, list) or any(s not in STAGES for s in skip):
        raise ConfigError(f"config {path}: skip: expected a list of stages among {', '.join(STAGES)}")
    for stage in STAGES:
        if data.get(stage) is not None and not isinstance(data[stage], dict):
            raise ConfigError(f"config {path}: {stage}: expected a mapping of that stage's settings")
    return _stage_configs(data, run, skip, str(path))


def _stage_configs(data: dict[str, Any], run: Path, skip: list[str], where: str) -> dict[str, Any]:
    from rejoinder.align.data import CurateConfig
    from rejoinder.align.reward import RewardConfig
    from rejoinder.align.rl.config import EvalConfig, RLConfig
    from rejoinder.align.sft import SFTConfig

    curated = run / "data"
    out: dict[str, Any] = {"output_dir": run, "skip": skip}
    if "curate" not in skip:
        values = dict(data.get("curate") or {})
        unknown = sorted(set(values) - set(CurateConfig.__dataclass_fields__) - {"split"})
        if unknown or "out" in values:
            bad = unknown[0] if unknown else "out"
            raise ConfigError(f"config {where}: curate: key {bad!r} is not a setting here (the output is {curated})")
        if "split" in values:
            values["fractions"] = tuple(values.pop("split"))
        if "sources" in values and not isinstance(values["sources"], list):
            raise ConfigError(f"config {where}: curate: sources: expected a list such as [oasst, hh]")
        config = CurateConfig(**{**values, "out": curated})
        try:
            config.check()
        except ConfigError as exc:
            raise ConfigError(f"config {where}: curate: {exc}") from None
        out["curate"] = config
    data_default = [str(curated)] if "curate" not in skip else None
    for stage, cls in (("sft", SFTConfig), ("reward", RewardConfig), ("rl", RLConfig)):
        values = dict(data.get(stage) or {})
        values.setdefault("output_dir", str(run))
        if data_default and "data" not in values:
            values["data"] = data_default
        out[stage] = build(cls, values, f"config {where}: {stage}")
    values = dict(data.get("eval") or {})
    values.setdefault("run", str(run))
    if "data" not in values:
        values["data"] = out["rl"].data  # the RL run's held-out split
    values.setdefault("seed", out["rl"].seed)
    out["eval"] = build(EvalConfig, values, f"config {where}: eval")
    return out


def _curated_same(config: Any) -> bool:
    report = Path(config.out) / "report.json"
    if not report.is_file():
        return False
    try:
        saved = json.loads(report.read_text(encoding="utf-8")).get("config")
    except json.JSONDecodeError:
        return False
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    return json.loads(json.dumps(saved)) == json.loads(json.dumps(settings))


def run_pipeline(
    stages: dict[str, Any],
    *,
    on_stage: Callable[[str, str], None] | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    on_rl_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every stage not skipped, in order; returns what each produced (reports and the evaluation)."""
    from rejoinder.align.data import curate
    from rejoinder.align.reward import train_reward
    from rejoinder.align.rl.evaluate import evaluate_policy
    from rejoinder.align.rl.trainer import train_rl
    from rejoinder.align.runs import process_state
    from rejoinder.align.sft import train_sft

    state = process_state()  # under accelerate launch: curation and evaluation run on the main process
    main = state.is_main_process
    note = on_stage if on_stage and main else (lambda _stage, _what: None)
    results: dict[str, Any] = {}
    skip = stages["skip"]
    if "curate" not in skip:
        config = stages["curate"]
        if _curated_same(config):
            note("curate", f"{config.out} holds this curation already")
            results["curate"] = {"reused": True}
        else:
            note("curate", f"curating {', '.join(config.sources)} into {config.out}")
            if main:
                results["curate"] = {"report": curate(config).report}
        state.wait_for_everyone()
    if "sft" not in skip:
        note("sft", "supervised fine-tuning")
        results["sft"] = train_sft(stages["sft"], on_log=on_log).report
    if "reward" not in skip:
        note("reward", "the reward model")
        results["reward"] = train_reward(stages["reward"], on_log=on_log).report
    if "rl" not in skip:
        note("rl", f"RL ({stages['rl'].algo})")
        results["rl"] = train_rl(stages["rl"], on_log=on_rl_step).report
    if "eval" not in skip and main:
        note("eval", "the policy beside the SFT model on held-out prompts")
        results["eval"] = evaluate_policy(stages["eval"])
    results["main_process"] = main
    return results
