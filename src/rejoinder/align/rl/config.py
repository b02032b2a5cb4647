"""Step 3's configs: every hyper-parameter of the algorithms and of the evaluation, declared once with help."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rejoinder.align.config import PRECISION_HELP, option
from rejoinder.errors import ConfigError

ALGOS = ("reinforce", "ppo", "rloo", "grpo", "dpo", "ppo++")


@dataclass
class RLConfig:
    # -- what is trained, on what ------------------------------------------------------------------
    algo: str = option(
        "ppo",
        "The algorithm: reinforce, ppo, rloo, grpo, dpo (preference pairs) or ppo++ (RLGF: PPO with guide roll-ins).",
    )
    model: str = option(
        "auto",
        "The starting policy (and frozen reference): a model folder or name; auto: <output_dir>/sft, else smollm2.",
    )
    rewards: list[str] = option(
        ["model:auto"],
        "Reward terms, summed: model:<folder> (model:auto is <output_dir>/reward), sentiment, length:<words>, "
        "toxicity, json, each optionally weighted as 0.5*term.",
    )
    data: list[str] = option(["oasst"], "Prompt sources: a curated folder, JSONL/CSV files, oasst, hh or store.")
    output_dir: Path = option(Path("runs/default"), "The run folder: the policy goes to policy/, checkpoints/rl/.")
    max_prompts: int = option(0, "Use at most this many training prompts (0: all).")
    max_prompt_tokens: int = option(256, "Prompts longer than this (in tokens, chat template applied) are left out.")
    # -- rollouts ----------------------------------------------------------------------------------
    steps: int = option(20, "RL steps: each samples a batch of replies, scores them and updates the policy.")
    prompts_per_step: int = option(8, "Prompts per step and process.")
    samples_per_prompt: int = option(
        1, "Replies sampled per prompt (rloo and grpo need 2 or more; their baselines come from the siblings)."
    )
    max_new_tokens: int = option(48, "Longest reply sampled.")
    temperature: float = option(1.0, "Sampling temperature of rollouts (log-probabilities are computed at it).")
    unfinished_penalty: float = option(
        -1.0, "Added to the reward of a reply that reached max_new_tokens without ending (0: none)."
    )
    # -- the KL penalty to the reference model -----------------------------------------------------
    kl_coef: float = option(0.05, "β: weight of the KL penalty to the reference (SFT) model (DPO's β for dpo).")
    kl_target: float = option(
        0.0, "Adaptive β (Ziegler et al.): steer the measured KL per reply towards this (0: β stays fixed)."
    )
    kl_horizon: int = option(10000, "Horizon of the adaptive β controller, in replies.")
    kl_stop: float = option(0.0, "Stop the run when the KL per reply passes this bound (0: never).")
    # -- RLGF's PPO++ (Chang et al. 2023) --------------------------------------------------------------
    guide_model: str = option(
        "auto",
        "ppo++: the guide policy that rolls in (any local model with the policy's vocabulary; auto: the SFT model).",
    )
    guide_mix: float = option(
        0.5, "ppo++: fraction of rollouts that start with a guide roll-in (the rest are plain PPO)."
    )
    guide_max_prefix: int = option(
        24, "ppo++: the guide writes a random prefix of 0..this many tokens; the policy rolls out from there."
    )
    # -- the policy update -------------------------------------------------------------------------
    learning_rate: float = option(1e-5, "Adam's learning rate (about 1e-4 with LoRA).")
    ppo_epochs: int = option(2, "Passes over each rollout batch (ppo, rloo, grpo; reinforce makes one step).")
    minibatches: int = option(2, "Minibatches per pass (each one Adam step).")
    clip_range: float = option(0.2, "ε of the clipped ratio objective: the ratio is clipped to [1-ε, 1+ε].")
    target_approx_kl: float = option(
        0.0, "Stop a step's epochs early when the approximate KL between old and new policy passes this (0: never)."
    )
    max_ratio: float = option(
        10.0, "Skip a minibatch whose mean probability ratio passes this (a blown-up update; 0: never)."
    )
    max_grad_norm: float = option(1.0, "Clip the gradient norm to this.")
    whiten_advantages: bool = option(True, "Normalise advantages over each batch to zero mean and unit variance.")
    normalise_rewards: bool = option(True, "Scale scores by a running standard deviation (ppo, reinforce).")
    baseline: str = option("mean", "REINFORCE's baseline: mean (the batch's mean reward), moving, or none.")
    # -- the value model (ppo) ---------------------------------------------------------------------
    value_model: str = option(
        "auto", "PPO's value model: auto (initialised from the reward model, else from the policy) or a folder."
    )
    vf_coef: float = option(0.1, "Weight of the value loss.")
    cliprange_value: float = option(0.2, "Value clipping: new values stay within this of the rollout's values.")
    gamma: float = option(1.0, "GAE discount γ.")
    lam: float = option(0.95, "GAE λ.")
    # -- engineering -------------------------------------------------------------------------------
    lora: bool = option(False, "Train LoRA adapters on the policy (the reference is the same weights, adapter off).")
    lora_r: int = option(16, "LoRA rank.")
    lora_alpha: int = option(32, "LoRA scaling alpha.")
    eval_prompts: int = option(16, "Held-out prompts scored before and after the run.")
    save_steps: int = option(5, "Write a checkpoint every this many steps (a killed run resumes from the last).")
    seed: int = option(0, "Seed of the prompt order and of sampling.")
    threads: int = option(0, "PyTorch CPU threads (0: PyTorch's default).")
    precision: str = option("auto", PRECISION_HELP)
    rollout_precision: str = option(
        "auto",
        "Precision of rollout decoding: auto (bf16 when training runs in bf16), bf16 (from a bf16 copy of the "
        "policy, refreshed after every update) or fp32 (the policy itself).",
    )

    def check(self) -> None:
        problems = []
        if self.rollout_precision not in ("auto", "bf16", "fp32"):
            problems.append(f"rollout_precision {self.rollout_precision!r}: expected auto, bf16 or fp32")
        if self.algo not in ALGOS:
            problems.append(f"algo {self.algo!r}: expected one of {', '.join(ALGOS)}")
        if self.algo in ("rloo", "grpo") and self.samples_per_prompt < 2:
            problems.append(f"{self.algo} needs samples_per_prompt of 2 or more (its baseline is the other samples)")
        if self.baseline not in ("mean", "moving", "none"):
            problems.append(f"baseline {self.baseline!r}: expected mean, moving or none")
        for name in ("steps", "prompts_per_step", "samples_per_prompt", "max_new_tokens", "ppo_epochs", "minibatches"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.temperature <= 0:
            problems.append("temperature must be above 0 (rollouts sample)")
        if not 0 < self.clip_range < 1:
            problems.append("clip_range must be in (0, 1)")
        if self.kl_coef < 0:
            problems.append("kl_coef must be 0 or more")
        if not 0 <= self.lam <= 1 or not 0 <= self.gamma <= 1:
            problems.append("gamma and lam must be in [0, 1]")
        if self.learning_rate <= 0:
            problems.append("learning_rate must be positive")
        if self.minibatches > self.prompts_per_step * self.samples_per_prompt:
            problems.append("minibatches must not exceed the replies per step (prompts_per_step x samples_per_prompt)")
        if not 0 <= self.guide_mix <= 1:
            problems.append("guide_mix must be in [0, 1]")
        if self.algo == "ppo++" and self.guide_max_prefix >= self.max_new_tokens:
            problems.append("guide_max_prefix must be below max_new_tokens (the policy must have tokens to write)")
        if problems:
            raise ConfigError("rl config: " + "; ".join(problems))


@dataclass
class EvalConfig:
    run: Path = option(Path("runs/default"), "The run folder: policy/, sft/ and reward/ are found there.")
    policy: str = option("auto", "The policy to evaluate (auto: <run>/policy).")
    reference: str = option("auto", "The model it is compared with (auto: the policy's starting model).")
    rewards: list[str] = option(["model:auto"], "Reward terms, as for rejoinder train rl (model:auto: <run>/reward).")
    data: list[str] = option(["oasst"], "Where the held-out prompts come from (the RL run's held-out split).")
    prompts: int = option(32, "Held-out prompts.")
    max_new_tokens: int = option(64, "Longest reply.")
    temperature: float = option(1.0, "Sampling temperature (1: the KL estimate is of the models' own distributions).")
    max_prompt_tokens: int = option(256, "Prompts longer than this are left out.")
    seed: int = option(0, "Seed of the split and of sampling.")
    threads: int = option(0, "PyTorch CPU threads (0: PyTorch's default).")
    output: Path | None = option(None, "Write the JSON record here (default: <run>/eval-policy.json).")

    def check(self) -> None:
        if self.prompts < 1 or self.max_new_tokens < 1:
            raise ConfigError("prompts and max_new_tokens must be at least 1")
        if self.temperature <= 0:
            raise ConfigError("temperature must be above 0")
