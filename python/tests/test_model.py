"""Model runs from Python against the C++ CLI built beside the library: tokenization, and
`kvarn run`'s output text, greedy and sampled, plain and chat, equal character for character."""

import subprocess

import numpy as np

import kvarn

PROMPT = "The three most useful data structures in Python are"


def cli_run(cli, model_path, *args):
    r = subprocess.run([cli, "run", "-m", model_path, "-t", "1", *args], capture_output=True,
                       timeout=120, check=True)
    out = r.stdout.decode("utf-8")
    assert out.endswith("\n")
    return out[:-1]


def test_tokenize_equals_cli(model, smollm2_path, cli):
    text = "Tabs\tand  spaces, ünïcödé, 数字 123 and <|im_start|> as text."
    r = subprocess.run([cli, "tokenize", "-m", smollm2_path, "-p", text, "--bos"],
                       capture_output=True, timeout=60, check=True)
    want = [int(x) for x in r.stdout.decode().strip().split(",")]
    assert model.tokenize(text, add_bos=True).tolist() == want
    assert model.detokenize(model.tokenize(text, add_bos=False)) == text
    r = subprocess.run([cli, "tokenize", "-m", smollm2_path, "-p", text, "--chat"],
                       capture_output=True, timeout=60, check=True)
    want = [int(x) for x in r.stdout.decode().strip().split(",")]
    assert model.tokenize_chat([("user", text)]).tolist() == want


def test_run_equals_cli_greedy(model, smollm2_path, cli):
    want = cli_run(cli, smollm2_path, "-p", PROMPT, "-n", "32", "--temp", "0",
                   "--cache-type", "kvarn_k4v2_g128")
    got = kvarn.run(model, PROMPT, n_predict=32, temperature=0, cache_type="kvarn_k4v2_g128")
    assert got == want


def test_run_equals_cli_sampled_chat(model, smollm2_path, cli):
    args = ["-p", "Name a fruit.", "--chat", "--system", "Answer in one sentence.", "-n", "24",
            "--temp", "0.9", "--top-k", "20", "--seed", "5", "--cache-type", "q8_0"]
    want = cli_run(cli, smollm2_path, *args)
    got = kvarn.run(model, "Name a fruit.", chat=True, system="Answer in one sentence.",
                    n_predict=24, temperature=0.9, top_k=20, seed=5, cache_type="q8_0")
    assert got == want


def test_forward_logits_and_hooks(model):
    cache = model.create_cache("f16", 256)
    seq = cache.add_sequence()
    ids = model.tokenize(PROMPT)
    seen = []
    all_logits = model.forward(cache, seq, ids, logits="all",
                               on_kv=lambda l, k, v: seen.append((l, k.shape)))
    assert all_logits.shape == (ids.size, model.n_vocab)
    assert [l for l, _ in seen] == list(range(model.info["n_layers"]))
    assert seen[0][1] == (ids.size, model.info["n_kv_heads"] * model.info["head_dim"])
    # The next token after the prompt from the same cache agrees with a fresh run's last logits
    # (a different matrix path: equal argmax, close values).
    fresh = model.create_cache("f16", 256)
    s2 = fresh.add_sequence()
    last = model.forward(fresh, s2, ids)
    assert np.argmax(last) == np.argmax(all_logits[-1])
    np.testing.assert_allclose(last, all_logits[-1], atol=0.05 * np.abs(last).max())
    ids2, _ = model.generate(fresh, s2, last, 5)
    assert fresh.length(s2) == ids.size + len(ids2)
    # An exception in a hook surfaces after the call.
    try:
        model.forward(cache, seq, ids[:2], on_attention=lambda l, a: 1 / 0)
        raise AssertionError("no exception")
    except ZeroDivisionError:
        pass
