"""Character language models: the TBPTT data layout, the unigram baseline, training in both twins,
generation that agrees across twins, and clear errors for bad text and prompts."""

import json

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from diptych.data.text import decode, default_text, encode, unigram_bpc, windows
from diptych.errors import DiptychError


def test_windows_continue_each_stream_across_batches():
    ids = np.arange(1000, dtype=np.int32)
    x, y = windows(ids, streams=4, seq_len=16)  # (W * 4, 16)
    per, w = 999 // 4, 999 // 4 // 16
    assert x.shape == y.shape == (w * 4, 16)
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])  # the target is the next character
    for b in range(4):  # row b of batch k + 1 starts where row b of batch k stopped
        rows = x[b::4]
        assert rows[0, 0] == b * per
        np.testing.assert_array_equal(rows[1:, 0], rows[:-1, -1] + 1)


def test_windows_refuse_a_text_too_short_for_the_batch():
    with pytest.raises(Exception, match="100 characters are too few for 8 streams of 64-character windows"):
        windows(np.arange(100, dtype=np.int32), streams=8, seq_len=64)


def test_unigram_bpc_by_hand():
    # train counts a:3, b:1 (+1 smoothing each -> 4/6, 2/6); val "ab" -> -(log2(4/6) + log2(2/6)) / 2
    got = unigram_bpc(np.array([0, 0, 0, 1]), np.array([0, 1]), 2)
    assert got == pytest.approx(-(np.log2(4 / 6) + np.log2(2 / 6)) / 2)


def test_encode_decode_round_trip_and_unknown_characters():
    vocab = "".join(sorted(set("hello world")))
    assert decode(encode("hello", vocab), vocab) == "hello"
    with pytest.raises(Exception, match=r"not in the model's vocabulary: 'z'"):
        encode("hez", vocab)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(default_text()[:40_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained_lms(small_corpus, tmp_path_factory):
    """chars-lstm trained briefly by each twin on the same small corpus: {framework: run folder}."""
    out = {}
    for fw in ("torch", "jax"):
        folder = tmp_path_factory.mktemp(f"lm-{fw}")
        proc = run_cli(
            "train",
            "chars-lstm",
            "--framework",
            fw,
            "--text",
            str(small_corpus),
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--lr",
            "0.01",
            "--out",
            str(folder),
            "--no-progress",
        )
        assert proc.returncode == 0, proc.stderr
        out[fw] = folder
    return out


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_training_lowers_loss_and_beats_the_unigram_baseline(framework, trained_lms):
    run = json.loads((trained_lms[framework] / "run.json").read_text())
    curve = [loss for _, loss in run["loss_curve"]]
    assert curve[-1] < 0.75 * curve[0]
    assert run["test_bpc"] < run["unigram_bpc"] - 0.5, (run["test_bpc"], run["unigram_bpc"])
    assert run["dataset"]["vocab"] == "".join(sorted(set(default_text()[:40_000])))


@pytest.mark.parametrize("trained_in", ["torch", "jax"])
def test_greedy_and_seeded_generation_agree_across_twins(trained_in, trained_lms):
    from diptych.commands.generate import generate

    weights = trained_lms[trained_in] / "weights.safetensors"
    for temperature in (0.0, 0.7):
        texts = {fw: generate(weights, fw, "The ", 60, temperature, seed=3) for fw in ("torch", "jax")}
        assert texts["torch"] == texts["jax"], texts
        assert texts["torch"].startswith("The ") and len(texts["torch"]) == 64


def test_generate_cli_prints_the_text(trained_lms):
    proc = run_cli(
        "generate",
        "chars-lstm",
        "--weights",
        str(trained_lms["jax"] / "weights.safetensors"),
        "--framework",
        "torch",
        "--prompt",
        "if ",
        "--length",
        "20",
        "--temperature",
        "0",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("if ") and len(proc.stdout) == len("if ") + 20 + 1  # and a newline


def test_parity_passes_for_the_language_model():
    from diptych.parity import run_parity

    report = run_parity("chars-lstm", steps=3)
    assert report.ok, report.worst().as_dict()


def test_bad_prompts_fail_with_one_line(trained_lms):
    weights = str(trained_lms["torch"] / "weights.safetensors")
    for prompt, message in [("日本", "not in the model's vocabulary"), ("", "--prompt is empty")]:
        proc = run_cli("generate", "chars-lstm", "--weights", weights, "--prompt", prompt)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_generate_refuses_classifier_weights(tmp_path):
    from diptych.weights import save_weights

    save_weights({"fc1.weight": np.zeros((10, 40), np.float32)}, tmp_path / "w.safetensors", task="mnist1d-mlp")
    proc = run_cli("generate", "chars-lstm", "--weights", str(tmp_path / "w.safetensors"))
    assert proc.returncode == 2 and "not a diptych language model" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "content,message", [(b"", "is empty"), (b"  \n\n ", "is empty"), (b"caf\xe9 au lait", "is not UTF-8")]
)
def test_bad_text_files_fail_with_one_line(content, message, tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    proc = run_cli("train", "chars-lstm", "--framework", "torch", "--text", str(path), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "run.json").exists()


def _text_of(tmp_path, n: int):
    path = tmp_path / f"t{n}.txt"
    path.write_text(("the quick brown fox jumps over a lazy dog. " * (n // 40 + 1))[:n])
    return path


def _train_on_text(tmp_path, n: int, *options: str):
    text = str(_text_of(tmp_path, n))
    return run_cli(
        "train", "chars-lstm", "--framework", "torch", "--text", text, "--out", str(tmp_path / "r"), *options
    )


def test_a_short_text_names_its_length_and_the_part_too_short(tmp_path):
    """18,000 characters: the held-out last 10% (1,800) cannot hold 16 windows of 128. The message used to
    call the whole text "a text of 1800 characters" and suggest a smaller --batch-size, which changes nothing."""
    proc = _train_on_text(tmp_path, 18_000)
    line = assert_one_line_error(
        proc, "a text of 18,000 characters is too short", "last 10%", "holds 1,800 characters", "need 2,049"
    )
    assert "--batch-size" not in line
    enough = int(line.split("use a text of at least ")[1].split()[0].replace(",", ""))
    from diptych.language import text_dataset
    from diptych.tasks import get_task

    task = get_task("chars-lstm")
    text_dataset(task, str(_text_of(tmp_path, enough)), 32)  # the length it names is enough...
    with pytest.raises(DiptychError, match="too short"):
        text_dataset(task, str(_text_of(tmp_path, enough - 1)), 32)  # ...and the least that is


def test_a_text_too_short_for_the_batch_says_so(tmp_path):
    proc = _train_on_text(tmp_path, 30_000, "--batch-size", "512")
    assert_one_line_error(proc, "a text of 30,000 characters is too short", "first 90%", "or a smaller --batch-size")


def test_text_option_is_refused_for_other_tasks(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("some text")
    proc = run_cli("train", "mnist1d-mlp", "--framework", "torch", "--text", str(path), "--epochs", "1")
    assert proc.returncode == 2 and "--text is for language-model tasks" in proc.stderr


def test_language_model_weights_convert_both_ways(tmp_path):
    """The vocabulary size is read from the embedding, so .pt and .msgpack round-trip like any model."""
    from safetensors.numpy import load_file, save_file

    from diptych.commands.convert import convert
    from diptych.tasks import TASKS, fit_vocab

    rng = np.random.default_rng(0)
    shapes = fit_vocab(TASKS["chars-lstm"], 37).model.param_shapes()
    w = {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in shapes.items()}
    save_file(w, tmp_path / "w.safetensors")
    for src, dst in [("w.safetensors", "w.pt"), ("w.pt", "w.msgpack"), ("w.msgpack", "back.safetensors")]:
        convert(tmp_path / src, tmp_path / dst)
    back = load_file(tmp_path / "back.safetensors")
    assert set(back) == set(w) and all(np.array_equal(back[k], w[k]) for k in w)
