"""Step 3, RL: the estimators and losses against hand computations, and short runs on a tiny random model."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from llm_tiny import tiny_model_dir  # noqa: E402
from rejoinder.align.rl.common import kl_k1, kl_k3, masked_mean, reply_logprobs, whiten  # noqa: E402
from rejoinder.align.rl.grpo import group_normalised  # noqa: E402
from rejoinder.align.rl.ppo import gae, policy_loss, token_rewards, value_loss  # noqa: E402
from rejoinder.align.rl.reinforce import reinforce_loss  # noqa: E402
from rejoinder.align.rl.rewards import Reward, Term, is_json, length_reward, parse_rewards  # noqa: E402
from rejoinder.align.rl.rloo import leave_one_out  # noqa: E402
from rejoinder.errors import ConfigError  # noqa: E402


# -- the estimators and losses ----------------------------------------------------------------------
def test_the_reinforce_estimate_matches_the_exact_gradient_on_a_bandit():
    # a 4-armed bandit: π = softmax(θ), E[R] = Σ_a π_a r_a, whose gradient is known exactly
    theta = torch.tensor([0.3, -0.2, 0.5, 0.0], requires_grad=True)
    rewards = torch.tensor([1.0, -0.5, 2.0, 0.25])
    exact = torch.autograd.grad((torch.softmax(theta, 0) * rewards).sum(), theta)[0]

    gen = torch.Generator().manual_seed(0)
    n = 200_000
    arms = torch.multinomial(torch.softmax(theta.detach(), 0), n, replacement=True, generator=gen)
    logprobs = torch.log_softmax(theta, 0)[arms][:, None]  # one "token" per sample
    baseline = float(rewards[arms].mean())  # a baseline leaves the expectation unchanged
    loss = reinforce_loss(logprobs, torch.ones(n, 1), rewards[arms] - baseline)
    estimate = -torch.autograd.grad(loss, theta)[0]
    assert torch.allclose(estimate, exact, atol=0.01), (estimate, exact)


def test_the_clipped_ppo_loss_matches_a_hand_computation():
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5]]))
    new = torch.log(torch.tensor([[0.75, 0.4, 0.5]]))  # ratios 1.5, 0.8, 1.0
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third token is padding
    loss, stats = policy_loss(new, old, adv, mask, clip=0.2)
    # token 1: min(1.5*1, 1.2*1) = 1.2; token 2: min(0.8*-1, 0.8*-1) = -0.8 -> loss = -(1.2 - 0.8)/2
    assert float(loss) == pytest.approx(-(1.2 - 0.8) / 2)
    assert stats["clip_frac"] == pytest.approx(0.5)  # token 1 was clipped
    assert stats["ratio"] == pytest.approx((1.5 + 0.8) / 2)


def test_value_clipping_matches_a_hand_computation():
    old = torch.tensor([[1.0, 1.0]])
    new = torch.tensor([[2.0, 0.9]])
    returns = torch.tensor([[3.0, 0.0]])
    loss, stats = value_loss(new, old, returns, torch.ones(1, 2), clip=0.2)
    # token 1: max((2-3)^2, (1.2-3)^2) = 3.24; token 2: max(0.81, 0.81) = 0.81
    assert float(loss) == pytest.approx(0.5 * (3.24 + 0.81) / 2)
    assert stats["value_clip_frac"] == pytest.approx(0.5)


def test_gae_matches_a_hand_computation_and_ends_at_the_reply():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.4, 0.3, 9.0]])  # the 4th position is padding: its value is ignored
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    gamma, lam = 0.9, 0.8
    adv, ret = gae(rewards, values, mask, gamma, lam)
    d2 = 1.0 + 0 - 0.3  # the episode ends after token 3: next value 0
    d1 = 0.0 + gamma * 0.3 - 0.4
    d0 = 0.0 + gamma * 0.4 - 0.5
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    assert adv[0].tolist() == pytest.approx([a0, a1, a2, 0.0])
    assert ret[0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.4, a2 + 0.3, 0.0])


def test_the_kl_penalty_is_charged_per_token_and_the_score_paid_at_the_last_one():
    logp = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-2.0, -1.0, -1.0], [-1.5, -1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards = token_rewards(torch.tensor([3.0, 5.0]), logp, ref, mask, kl_coef=0.1)
    assert torch.allclose(rewards, torch.tensor([[-0.1, 0.0, 3.0], [-0.05, 5.0, 0.0]]))


def test_the_kl_estimators_agree_with_the_exact_kl_and_k3_is_never_negative():
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.3, 0.3, 0.4])
    exact = float((p * (p / q).log()).sum())
    gen = torch.Generator().manual_seed(1)
    samples = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    logp, logq = p.log()[samples], q.log()[samples]
    assert float(kl_k1(logp, logq).mean()) == pytest.approx(exact, abs=0.01)
    assert float(kl_k3(logp, logq).mean()) == pytest.approx(exact, abs=0.01)
    assert float(kl_k3(logp, logq).min()) >= 0.0
    assert float(kl_k1(logp, logq).min()) < 0.0  # k1 is unbiased but can be negative per sample


def test_leave_one_out_and_group_normalised_baselines():
    returns = torch.tensor([1.0, 2.0, 6.0, 10.0, 10.0])
    groups = torch.tensor([0, 0, 0, 1, 1])
    assert leave_one_out(returns, groups).tolist() == pytest.approx([1 - 4, 2 - 3.5, 6 - 1.5, 0.0, 0.0])
    normalised = group_normalised(returns, groups)
    std = float(torch.tensor([1.0, 2.0, 6.0]).std())
    assert normalised[:3].tolist() == pytest.approx([(1 - 3) / std, (2 - 3) / std, (6 - 3) / std], rel=1e-3)
    assert normalised[3:].tolist() == [0.0, 0.0]  # a group whose replies tie teaches nothing


TWO_PROMPTS = ([[11, 12, 13, 14, 15]] * 3 + [[21, 22, 23]] * 2, [4, 2, 3, 4, 1])  # B is left-padded
ONE_TOKEN_REPLIES = ([[31, 32, 33, 34, 35, 36]] * 4, [1, 1, 1, 1])


@pytest.mark.parametrize(("prompts", "reply_lengths"), [TWO_PROMPTS, ONE_TOKEN_REPLIES], ids=["two", "one-token"])
def test_samples_of_one_prompt_share_its_forward_pass_and_get_the_full_passs_logprobs_and_gradients(
    tmp_path, prompts, reply_lengths
):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir(tmp_path / "tiny"), dtype=torch.float32)
    torch.manual_seed(0)
    width, reply = max(map(len, prompts)), max(reply_lengths)
    ids, attention = [], []
    for prompt, n in zip(prompts, reply_lengths, strict=True):  # left-padded prompts, right-padded replies
        tokens = torch.randint(40, 300, (n,)).tolist()
        ids.append([0] * (width - len(prompt)) + prompt + tokens + [0] * (reply - n))
        attention.append([0] * (width - len(prompt)) + [1] * (len(prompt) + n) + [0] * (reply - n))
    ids, attention = torch.tensor(ids), torch.tensor(attention)
    mask = attention[:, width:].float()

    positions = []  # token positions the model computes, per call
    model.register_forward_pre_hook(lambda _m, _a, kw: positions.append(kw["input_ids"].numel()), with_kwargs=True)

    def run(share: bool) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        logprobs, entropy = reply_logprobs(model, ids, attention, width, 0.7, True, share_prompts=share)
        ((logprobs * mask).sum() + (entropy * mask).sum()).backward()
        return logprobs.detach() * mask, entropy.detach() * mask, [p.grad.clone() for p in model.parameters()]

    shared = run(True)
    shared_positions, positions[:] = sum(positions), []
    full = run(False)
    distinct = len({tuple(p) for p in prompts})
    assert shared_positions == distinct * width + len(prompts) * (reply - 1) < sum(positions) == ids.numel()
    torch.testing.assert_close(shared[0], full[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared[1], full[1], rtol=1e-5, atol=1e-5)
    for a, b in zip(shared[2], full[2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_whitening_ignores_padding():
    values = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    out = whiten(values, mask)
    assert float(masked_mean(out, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(out[0, 2]) == 0.0


# -- rewards -----------------------------------------------------------------------------------------
def test_reward_terms_are_parsed_weighted_and_summed():
    reward = parse_rewards(["length:4", "0.5*json"])
    total, parts = reward([(), ()], ["one two three four", '{"a": 1}'])
    assert parts["length:4"] == [0.0, -0.5]  # two words of four
    assert parts["0.5*json"] == [0.0, 1.0]
    assert total == pytest.approx([0.0, -0.5 + 0.5])
    assert reward.describe() == "length:4 + 0.5*json"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("lenght:4", "term one of model, sentiment, length"),
        ("length:four", "a number of words"),
        ("model", "name the reward model folder"),
    ],
)
def test_a_bad_reward_term_is_named(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_rewards([spec])


def test_programmatic_rewards():
    assert length_reward("", 10) == -1.0
    assert is_json('```json\n{"ok": true}\n```') and not is_json("{nope") and not is_json("")
    sentiment = parse_rewards(["sentiment"])
    total, _ = sentiment([(), ()], ["I love this, it is wonderful!", "This is awful and I hate it."])
    assert total[0] > 0.5 > -0.5 > total[1]
    toxicity = parse_rewards(["toxicity"])
    total, _ = toxicity([(), ()], ["Have a nice day.", "you are a fucking idiot"])
    assert total[0] > -0.5 and total[1] == -1.0


# -- runs on a tiny random model -----------------------------------------------------------------------
def digits_share(prompts, replies):
    """A dense programmatic reward a tiny model can learn in a few steps: the share of digit characters."""
    return [sum(c.isdigit() for c in r) / max(len(r), 1) for r in replies]


def digit_reward() -> Reward:
    return Reward([Term("digits", 1.0, "", digits_share)])


def write_prompts(path, n=24):
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": f"Tell me about the number {i} please.", "completion": "ok"}) + "\n")
    return path


def rl_config(tmp_path, model, **overrides):
    from rejoinder.align.rl.config import RLConfig

    settings = dict(
        model=str(model),
        rewards=["length:4"],
        data=[str(write_prompts(tmp_path / "prompts.jsonl"))],
        output_dir=tmp_path / "run",
        steps=12,
        prompts_per_step=4,
        samples_per_prompt=2,
        max_new_tokens=12,
        learning_rate=3e-3,
        kl_coef=0.01,
        unfinished_penalty=0.0,
        save_steps=4,
        threads=1,
        precision="fp32",
        eval_prompts=2,
    )
    settings.update(overrides)
    return RLConfig(**settings)


@pytest.mark.parametrize(
    "algo, extra",
    [
        ("ppo", {}),
        ("rloo", {}),
        ("grpo", {}),
        ("reinforce", {}),
        ("grpo", {"ppo_epochs": 1, "minibatches": 1, "learning_rate": 2e-2}),
    ],
    ids=["ppo", "rloo", "grpo", "reinforce", "grpo-one-update"],
)
def test_each_algorithm_raises_a_programmatic_reward_while_kl_stays_bounded(tmp_path, algo, extra):
    from rejoinder.align.rl.trainer import read_log, train_rl

    model = tiny_model_dir(tmp_path / "tiny")
    k = 4 if algo in ("rloo", "grpo") else 1  # group baselines need siblings; 8 replies per step either way
    lr = 2e-2 if algo == "reinforce" else 1e-2  # reinforce makes one update per batch, the others four
    config = rl_config(
        tmp_path,
        model,
        algo=algo,
        steps=20,
        samples_per_prompt=k,
        prompts_per_step=8 // k,
        **({"learning_rate": lr} | extra),
        kl_stop=60.0,
    )
    result = train_rl(config, reward=digit_reward())
    log = read_log(tmp_path / "run" / "rl-log.csv")
    assert result.report["stopped"] is None and len(log) == 20  # the KL never passed its bound
    first = sum(r["reward"] for r in log[:4]) / 4
    last = sum(r["reward"] for r in log[-4:]) / 4
    assert last > first + 0.1, [round(r["reward"], 3) for r in log]
    assert all(math.isfinite(r["kl"]) and r["kl_k3"] >= 0 for r in log)
    assert (result.policy_dir / ".complete").is_file()
    assert (tmp_path / "run" / "rl-curves.png").is_file()


def test_a_run_stops_when_the_kl_passes_kl_stop(tmp_path):
    from rejoinder.align.rl.trainer import train_rl

    model = tiny_model_dir(tmp_path / "tiny")
    config = rl_config(
        tmp_path,
        model,
        algo="ppo",
        steps=20,
        learning_rate=3e-2,
        kl_coef=0.0,
        kl_stop=2.0,
        samples_per_prompt=1,
        prompts_per_step=8,
    )
    result = train_rl(config, reward=digit_reward())
    assert result.report["stopped"].startswith("KL per reply")
    assert result.report["steps"] < 20
    assert (result.policy_dir / ".complete").is_file()  # the policy so far is still saved


def test_the_policy_folder_is_served_by_the_assistant_engine(tmp_path):
    from rejoinder.align.rl.trainer import train_rl
    from rejoinder.llm.backends.torch import TorchBackend
    from rejoinder.llm.generation import GenerationParams
    from rejoinder.llm.models import resolve_model

    model = tiny_model_dir(tmp_path / "tiny")
    result = train_rl(rl_config(tmp_path, model, algo="ppo", steps=2, samples_per_prompt=1), reward=digit_reward())
    backend = TorchBackend(resolve_model(str(result.policy_dir)))
    try:
        reply = "".join(backend.stream_chat([{"role": "user", "content": "hi"}], GenerationParams(max_new_tokens=5)))
    finally:
        backend.close()
    assert isinstance(reply, str)
    report = json.loads((result.policy_dir / "rejoinder-policy.json").read_text())
    assert report["steps"] == 2 and report["algo"] == "ppo"


def test_a_run_killed_between_steps_resumes_to_the_same_next_step(tmp_path):
    """Six steps straight, against four steps, a fresh process state, and the last two: same log."""
    from rejoinder.align.rl.trainer import read_log, train_rl

    model = tiny_model_dir(tmp_path / "tiny")
    (tmp_path / "a").mkdir()
    straight = rl_config(tmp_path / "a", model, algo="ppo", steps=6, save_steps=2, samples_per_prompt=1)
    train_rl(straight, reward=digit_reward())
    reference = read_log(tmp_path / "a" / "run" / "rl-log.csv")

    (tmp_path / "b").mkdir()
    interrupted = rl_config(tmp_path / "b", model, algo="ppo", steps=6, save_steps=2, samples_per_prompt=1)
    # "killed" after step 5: the checkpoint of step 4 is the last one; the log has 5 rows
    calls = []

    def kill_after_five(row):
        calls.append(row["step"])
        if row["step"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_rl(interrupted, on_log=kill_after_five, reward=digit_reward())
    assert calls == [1, 2, 3, 4, 5]
    result = train_rl(interrupted, reward=digit_reward())
    assert result.report["resumed_from"] == "checkpoint-4"
    resumed = read_log(tmp_path / "b" / "run" / "rl-log.csv")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(reference, resumed, strict=True):
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-6)
        assert a["kl"] == pytest.approx(b["kl"], abs=1e-4)


def test_a_bad_rl_config_names_what_is_wrong(tmp_path):
    from rejoinder.align.rl.config import RLConfig

    with pytest.raises(ConfigError, match="rloo needs samples_per_prompt of 2 or more"):
        RLConfig(algo="rloo", samples_per_prompt=1).check()
    with pytest.raises(ConfigError, match="algo 'dqn'"):
        RLConfig(algo="dqn").check()


def test_model_auto_without_a_trained_reward_model_is_refused(tmp_path):
    from rejoinder.align.rl.config import RLConfig
    from rejoinder.align.rl.trainer import resolve_rewards

    with pytest.raises(ConfigError, match="no trained reward model"):
        resolve_rewards(RLConfig(output_dir=tmp_path / "run"))


def test_ppo_plus_plus_rolls_in_with_the_guide_and_trains_on_the_policys_tokens_only(tmp_path):
    from rejoinder.align.rl.trainer import RLRun, chat_ids, read_log, train_rl

    model = tiny_model_dir(tmp_path / "tiny")
    config = rl_config(
        tmp_path,
        model,
        algo="ppo++",
        steps=3,
        samples_per_prompt=1,
        prompts_per_step=8,
        guide_mix=1.0,
        guide_max_prefix=4,
    )
    rl = RLRun(config, digit_reward())
    try:
        prompts = rl.prompts_of(0)
        rollouts, data, _ = rl.rollout(prompts, seed=0)
        plain = [len(chat_ids(rl.models.tokenizer, p)) for p in prompts]
        # every rollout starts after a guide prefix of 1..4 tokens, which belongs to the prompt side
        extra = [len(ids) - n for ids, n in zip(rollouts.prompt_ids, plain, strict=True)]
        assert all(1 <= e <= 4 for e in extra), extra
        assert rl.rolled_in == 8
        assert data.batch.mask.sum(1).tolist() == [float(len(r)) for r in rollouts.reply_ids]
    finally:
        rl.close()
    result = train_rl(config, reward=digit_reward())
    assert len(read_log(tmp_path / "run" / "rl-log.csv")) == 3
    assert (result.policy_dir / ".complete").is_file()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_bf16_rollouts_decode_from_a_copy_that_follows_every_update(tmp_path, lora):
    import torch

    from rejoinder.align.rl.trainer import RLRun

    model = tiny_model_dir(tmp_path / "tiny")
    config = rl_config(
        tmp_path, model, algo="grpo", samples_per_prompt=4, prompts_per_step=2, rollout_precision="bf16", lora=lora
    )
    rl = RLRun(config, digit_reward())
    try:
        assert rl.decoder is not rl.models.policy and next(rl.decoder.parameters()).dtype == torch.bfloat16
        rl.rollout(rl.prompts_of(0), seed=0)
        assert rl.engine.prefixes.hits >= 2  # the 4 samples of each prompt shared one prefill
        before = {n: p.detach().clone() for n, p in rl.models.policy.named_parameters() if p.requires_grad}
        rl.train_step()
        copies = dict(rl.decoder.named_parameters())
        changed = [
            n for n, p in rl.models.policy.named_parameters() if p.requires_grad and not torch.equal(p, before[n])
        ]
        assert changed
        for name in changed:  # the decoding copy holds the updated weights, rounded to bf16
            assert torch.equal(copies[name], rl.models.policy.get_parameter(name).detach().to(torch.bfloat16))
        assert not rl.engine.prefixes.entries  # prompts cached under the old weights are gone
    finally:
        rl.close()


def test_dpo_trains_on_preference_pairs_and_saves_a_policy(tmp_path):
    from rejoinder.align.rl.trainer import train_rl

    model = tiny_model_dir(tmp_path / "tiny")
    prefs = tmp_path / "prefs.jsonl"
    with prefs.open("w", encoding="utf-8") as f:
        for i in range(20):
            f.write(json.dumps({"prompt": f"Say a number {i}", "chosen": f"{i} {i} {i}", "rejected": "no"}) + "\n")
    config = rl_config(tmp_path, model, algo="dpo", data=[str(prefs)], steps=3, prompts_per_step=4, kl_coef=0.1)
    result = train_rl(config)
    assert result.report["algo"] == "dpo" and result.report["steps"] == 3
    assert (result.policy_dir / ".complete").is_file()


def write_pipeline_data(path, n=60):
    """Demonstrations and 3-way rankings from n users: enough for every stage and every split."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            prompt = f"Question number {i}: what is {i} plus one?"
            f.write(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": prompt},
                            {"role": "assistant", "content": f"It is {i + 1}."},
                        ],
                        "user_id": f"u{i}",
                    }
                )
                + "\n"
            )
            completions = [f"{i} plus one is {i + 1}.", "I think it is a number.", "no"]
            f.write(json.dumps({"prompt": prompt, "completions": completions, "user_id": f"u{i}"}) + "\n")
    return path


def tiny_pipeline(tmp_path):
    """A pipeline file for a tiny random model: every stage for a couple of steps."""
    import yaml

    model = tiny_model_dir(tmp_path / "tiny")
    data = write_pipeline_data(tmp_path / "data.jsonl")
    quick = {"threads": 1, "precision": "fp32"}
    config = {
        "output_dir": str(tmp_path / "run"),
        "curate": {"sources": [str(data)], "ner": False},
        "sft": {
            "model": str(model),
            "max_steps": 2,
            "batch_size": 4,
            "eval_examples": 4,
            "sample_prompts": [],
            **quick,
        },
        "reward": {"max_steps": 2, "groups_per_batch": 2, "normalise_prompts": 4, "normalise_tokens": 8, **quick},
        "rl": {"algo": "ppo", "steps": 2, "prompts_per_step": 4, "max_new_tokens": 8, "learning_rate": 1e-3, **quick},
        "eval": {"prompts": 4, "max_new_tokens": 8, "threads": 1},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_the_pipeline_runs_every_stage_and_skips_finished_ones(tmp_path):
    from rejoinder.align.pipeline import read_pipeline, run_pipeline

    path = tiny_pipeline(tmp_path)
    stages = read_pipeline(path)
    seen = []
    results = run_pipeline(stages, on_stage=lambda stage, what: seen.append((stage, what)))
    assert [s for s, _ in seen] == ["curate", "sft", "reward", "rl", "eval"]
    run = tmp_path / "run"
    for folder in ("data", "sft", "reward", "policy"):
        assert (run / folder).is_dir(), folder
    assert results["rl"]["policy"] == str(run / "sft")  # RL starts from the SFT model
    assert results["eval"]["reference"] == str(run / "sft")
    assert 0.0 <= results["eval"]["win_rate"] <= 1.0

    again = run_pipeline(read_pipeline(path))  # nothing left to do: every stage reports its saved result
    assert again["curate"] == {"reused": True}
    assert again["sft"]["reused"] and again["reward"]["reused"] and again["rl"]["reused"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("output_dir: x\nstages: 1\n", "unknown key 'stages'"),
        ("output_dir: x\nrl: {algo: dqn}\n", "rl: .*algo 'dqn'"),
        ("output_dir: x\nsft: [1]\n", "sft: expected a mapping"),
        ("output_dir: x\ncurate: {out: y}\n", "curate: key 'out' is not a setting here"),
    ],
)
def test_a_bad_pipeline_config_names_the_stage_and_the_key(tmp_path, text, message):
    from rejoinder.align.pipeline import read_pipeline

    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        read_pipeline(path)


@pytest.mark.slow
def test_the_pipeline_runs_under_accelerate_launch_on_two_processes(tmp_path):
    """Two processes with the gloo backend on this CPU: each rolls out its own prompts, gradients are averaged."""
    import os
    import subprocess
    import sys

    path = tiny_pipeline(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "250"}
    # accelerate spawns the processes through torchrun with --multi_gpu; without a GPU they join with gloo
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["-m", "rejoinder", "train", "pipeline", "--config", str(path)]
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "policy" / "rejoinder-policy.json").read_text())
    assert report["processes"] == 2 and report["steps"] == 2
    assert "win rate over SFT" in done.stdout  # the main process printed the summary, once
    assert done.stdout.count("held-out evaluation") == 1
