"""`kvarn serve` driven by the official openai client (pinned in scripts/fetch_models.sh).

Run by ctest through run_openai_client_test.sh. Every server listens on 127.0.0.1 on a free port,
dies with this process (PR_SET_PDEATHSIG) and is killed by a watchdog at the deadline; every
client call has a timeout and no retries. Expected outputs are derived, never typed in: greedy
text comes from `kvarn run --temp 0` with the same -b and cache type, or from the same request
sent alone; stop strings are cut from an unstopped output.

--quick (the sanitizer build): fewer and shorter requests on the same paths.
"""

import argparse
import ctypes
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import openai

ARGS = None
CHUNK = 32          # -b of every server and kvarn run here
CTX = 512           # -c
TIMEOUT = 120.0     # per client call (the sanitizer build is slow)


def _die_with_parent():
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Server:
    """A `kvarn serve` process on 127.0.0.1:<free port>, killed at the deadline."""

    def __init__(self, *flags, deadline_s=600):
        self.log = tempfile.NamedTemporaryFile(prefix="kvarn-serve-", suffix=".log", delete=False)
        cmd = [ARGS.kvarn, "serve", "-m", ARGS.model, "--host", "127.0.0.1", "--port", "0",
               "-c", str(CTX), "-b", str(CHUNK), "-t", "2", *flags]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     preexec_fn=_die_with_parent)
        self.watchdog = threading.Timer(deadline_s, self.kill)
        self.watchdog.daemon = True
        self.watchdog.start()
        line = self.proc.stdout.readline()  # "kvarn serve: listening on http://HOST:PORT ..."
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.kill()
            raise RuntimeError("server did not start: " + line + self.tail())
        self.port = int(m.group(1))
        self.base = f"http://127.0.0.1:{self.port}"
        self.model = re.search(r"model '([^']*)'", line).group(1)
        self.client = openai.OpenAI(base_url=self.base + "/v1", api_key="unused", timeout=TIMEOUT,
                                    max_retries=0)

    def tail(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()[-4000:]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()

    def stop(self):
        self.watchdog.cancel()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # graceful: the server must exit by itself
            try:
                rc = self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("the server did not stop on SIGTERM")
            # 0 also means no leak report under the sanitizer build.
            assert rc == 0, f"server exit status {rc}:\n{self.tail()}"
        os.unlink(self.log.name)

    # Raw HTTP, for what the openai client cannot send (bad bodies) or hides (framing).
    def raw(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, data

    def metrics(self):
        status, data = self.raw("GET", "/metrics")
        assert status == 200
        out = {}
        for line in data.decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
        return out

    def metric(self, prefix):
        """Sum of the samples whose name (with labels) starts with prefix."""
        return sum(v for k, v in self.metrics().items() if k.startswith(prefix))

    def wait_metric(self, prefix, pred, timeout=60.0):
        end = time.time() + timeout
        while time.time() < end:
            v = self.metric(prefix)
            if pred(v):
                return v
            time.sleep(0.02)
        raise AssertionError(f"{prefix} = {self.metric(prefix)} after {timeout} s")


def kvarn_run(prompt, n, chat=False):
    """Greedy text and generated-token count of `kvarn run` with the servers' settings."""
    cmd = [ARGS.kvarn, "run", "-m", ARGS.model, "-p", prompt, "-n", str(n), "--temp", "0",
           "-c", str(CTX), "-b", str(CHUNK), "-t", "2"]
    if chat:
        cmd.append("--chat")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT * 2, check=True)
    assert r.stdout.endswith("\n")
    decoded = int(re.search(r"decode: (\d+) tokens", r.stderr).group(1))
    return r.stdout[:-1], decoded


def parse_sse(body):
    """The data lines of a server-sent-events body; checks the framing on the way."""
    text = body.decode()
    assert text.endswith("data: [DONE]\n\n"), text[-200:]
    events = text.split("\n\n")
    assert events[-1] == ""
    out = []
    for ev in events[:-1]:
        assert ev.startswith("data: "), ev
        out.append(ev[len("data: "):])
    assert out[-1] == "[DONE]"
    return [json.loads(e) for e in out[:-1]]


QUICK_N = 4
FULL_N = 12


class OpenAIClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.n = QUICK_N if ARGS.quick else FULL_N
        cls.s = Server("--parallel", "16", "--max-body-kib", "64")

    @classmethod
    def tearDownClass(cls):
        cls.s.stop()

    def chat(self, content, **kw):
        kw.setdefault("max_tokens", self.n)
        kw.setdefault("temperature", 0)
        return self.s.client.chat.completions.create(
            model=self.s.model, messages=[{"role": "user", "content": content}], **kw)

    def complete(self, prompt, **kw):
        kw.setdefault("max_tokens", self.n)
        kw.setdefault("temperature", 0)
        return self.s.client.completions.create(model=self.s.model, prompt=prompt, **kw)

    def test_models_health_tokenize(self):
        models = self.s.client.models.list()
        self.assertEqual([m.id for m in models.data], [self.s.model])
        self.assertEqual(self.s.raw("GET", "/health")[0], 200)
        st, body = self.s.raw("POST", "/tokenize", json.dumps({"content": "Hello world"}))
        self.assertEqual(st, 200)
        ids = json.loads(body)["tokens"]
        self.assertGreater(len(ids), 1)
        st, body = self.s.raw("POST", "/detokenize", json.dumps({"tokens": ids}))
        self.assertEqual(json.loads(body)["content"], "Hello world")

    def test_chat_greedy_equals_kvarn_run(self):
        q = "What is the capital of France?"
        expected, n_decoded = kvarn_run(q, self.n, chat=True)
        r = self.chat(q)
        self.assertEqual(r.choices[0].message.content, expected)
        self.assertEqual(r.usage.completion_tokens, n_decoded)
        self.assertEqual(r.choices[0].finish_reason, "length" if n_decoded == self.n else "stop")
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)
        # Streamed: the same text, chunk by chunk, usage in the chunk with finish_reason.
        chunks = list(self.chat(q, stream=True))
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        self.assertEqual("".join(c.choices[0].delta.content or "" for c in chunks), expected)
        self.assertEqual(chunks[-1].choices[0].finish_reason, r.choices[0].finish_reason)
        self.assertEqual(chunks[-1].usage.completion_tokens, n_decoded)

    def test_completion_greedy_equals_kvarn_run_streaming_and_not(self):
        p = "The three primary colors are"
        expected, n_decoded = kvarn_run(p, self.n)
        r = self.complete(p, logprobs=1)
        self.assertEqual(r.choices[0].text, expected)
        self.assertEqual(r.usage.completion_tokens, n_decoded)
        self.assertEqual(len(r.choices[0].logprobs.tokens), n_decoded)
        self.assertEqual("".join(r.choices[0].logprobs.tokens), expected)
        # prompt_tokens: what /tokenize says, with the BOS the model asks for.
        st, body = self.s.raw("POST", "/tokenize", json.dumps({"content": p, "add_special": True}))
        self.assertEqual(r.usage.prompt_tokens, len(json.loads(body)["tokens"]))
        chunks = list(self.complete(p, stream=True))
        self.assertEqual("".join(c.choices[0].text for c in chunks), expected)
        # The raw framing: data lines, one JSON object each, then [DONE]; include_usage puts
        # "usage": null in every chunk and one choices-less usage chunk last.
        st, body = self.s.raw("POST", "/v1/completions", json.dumps(
            {"prompt": p, "max_tokens": self.n, "temperature": 0, "stream": True,
             "stream_options": {"include_usage": True}}),
            {"Content-Type": "application/json"})
        self.assertEqual(st, 200)
        objs = parse_sse(body)
        self.assertEqual(objs[-1]["choices"], [])
        self.assertEqual(objs[-1]["usage"]["completion_tokens"], n_decoded)
        for o in objs[:-1]:
            self.assertIsNone(o["usage"])
            self.assertEqual(o["object"], "text_completion")
        self.assertEqual("".join(o["choices"][0]["text"] for o in objs[:-1]), expected)

    def test_stop_strings(self):
        p = "Once upon a time, in a small village,"
        n = max(self.n, 8)
        full = self.complete(p, max_tokens=n).choices[0].text
        words = full.split(" ")
        self.assertGreater(len(words), 3, full)
        stop = " " + words[2]  # a stop string from inside the greedy output
        cut = full[:full.index(stop)]
        for stream in (False, True):
            if stream:
                chunks = list(self.complete(p, max_tokens=n, stop=[stop, "@@@"], stream=True))
                text = "".join(c.choices[0].text for c in chunks)
                finish = chunks[-1].choices[0].finish_reason
            else:
                r = self.complete(p, max_tokens=n, stop=[stop, "@@@"])
                text, finish = r.choices[0].text, r.choices[0].finish_reason
            self.assertEqual(text, cut)
            self.assertEqual(finish, "stop")

    def test_seed_reproducibility(self):
        p = "My favourite season is"
        a = [self.complete(p, seed=s, temperature=1.0, top_p=1.0,
                           extra_body={"top_k": 0, "min_p": 0.0}).choices[0].text
             for s in (1, 1, 2, 3, 4)]
        self.assertEqual(a[0], a[1])
        self.assertGreater(len(set(a[1:])), 1, "four seeds gave one text at temperature 1")

    def test_concurrent_greedy_requests_equal_alone(self):
        prompts = ["The capital of Italy is", "def fibonacci(n):", "Water boils at",
                   "The largest planet is", "SELECT name FROM", "Dear diary, today",
                   "The speed of light is", "A haiku about the sea:", "In 1969, the first",
                   "To make tea, first", "Photosynthesis is", "import numpy as np\n",
                   "The quick brown fox", "My name is", "Rust and C++ are", "2 + 2 ="]
        if ARGS.quick:
            prompts = prompts[:9]  # still more than 8 sequences in one decode step
        results = [None] * len(prompts)
        errors = []

        def one(i):
            try:
                results[i] = self.complete(prompts[i], max_tokens=8).choices[0].text
            except Exception as e:  # reported below, with the others
                errors.append(repr(e))

        before = self.s.metric("kvarn_decode_steps_total")
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT * 2)
        self.assertEqual(errors, [])
        steps = self.s.metric("kvarn_decode_steps_total") - before
        for i, p in enumerate(prompts):
            self.assertEqual(results[i], self.complete(p, max_tokens=8).choices[0].text,
                             f"request {i} under load differs from alone")
        # Batched: fewer decode steps than tokens generated under load.
        self.assertLess(steps, 7 * len(prompts))

    def test_disconnect_mid_stream_frees_pages(self):
        base_cancel = self.s.metric('kvarn_requests_total{model="%s",outcome="cancelled"}' % self.s.model)
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=TIMEOUT)
        conn.request("POST", "/v1/completions", json.dumps(
            {"prompt": "Count from one to a thousand: one, two,", "max_tokens": 400,
             "temperature": 0, "stream": True}), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        got = b""
        while got.count(b"\n\n") < 3:  # a few events
            got += resp.read1(4096)
        self.s.wait_metric("kvarn_requests_running", lambda v: v == 1)
        self.assertGreater(self.s.metric('kvarn_kv_cache_bytes{'), 0)
        conn.sock.shutdown(2)
        conn.close()
        self.s.wait_metric("kvarn_requests_running", lambda v: v == 0, timeout=30)
        self.s.wait_metric('kvarn_requests_total{model="%s",outcome="cancelled"}' % self.s.model,
                           lambda v: v == base_cancel + 1)
        # Every page freed (the prompt is shorter than a prefix-cache chunk: nothing cached).
        m = self.s.metrics()
        pages = sum(v for k, v in m.items() if k.startswith("kvarn_kv_cache_bytes{")
                    and 'kind="scratch"' not in k)
        self.assertEqual(pages, m['kvarn_kv_cache_prefix_bytes{model="%s"}' % self.s.model])
        self.assertEqual(m['kvarn_kv_cache_reserved_bytes{model="%s"}' % self.s.model], 0)

    def test_disconnect_while_waiting_for_a_whole_response_cancels_it(self):
        # Not streaming: nothing is written until the end, so the server watches the socket.
        key = 'kvarn_requests_total{model="%s",outcome="cancelled"}' % self.s.model
        base_cancel = self.s.metric(key)
        base_tokens = self.s.metric("kvarn_tokens_generated_total")
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=TIMEOUT)
        conn.request("POST", "/v1/completions", json.dumps(
            {"prompt": "List every prime below ten thousand:", "max_tokens": 400,
             "temperature": 0, "stop": ["@@@@"]}), {"Content-Type": "application/json"})
        self.s.wait_metric("kvarn_tokens_generated_total", lambda v: v > base_tokens)
        conn.sock.shutdown(2)
        conn.close()
        self.s.wait_metric(key, lambda v: v == base_cancel + 1, timeout=30)
        self.s.wait_metric("kvarn_requests_running", lambda v: v == 0, timeout=30)
        # Ended by the disconnect, long before its 400 tokens.
        self.assertLess(self.s.metric("kvarn_tokens_generated_total") - base_tokens, 400)

    def bad(self, path, body, status, param=None, code=None, headers=None):
        st, data = self.s.raw("POST", path, body, headers or {"Content-Type": "application/json"})
        self.assertEqual(st, status, data[:300])
        err = json.loads(data)["error"]
        self.assertIsInstance(err["message"], str)
        self.assertTrue(err["message"])
        self.assertEqual(err["param"], param, err)
        if code is not None:
            self.assertEqual(err["code"], code)
        return err

    def test_bad_inputs_get_4xx_and_others_are_served(self):
        # A stream runs meanwhile; it must end exactly as the same request alone.
        p = "The history of Rome"
        alone = self.complete(p, max_tokens=self.n).choices[0].text
        out = {}
        t = threading.Thread(target=lambda: out.setdefault(
            "text", "".join(c.choices[0].text for c in self.complete(p, max_tokens=self.n, stream=True))))
        t.start()
        c = "/v1/completions"
        ch = "/v1/chat/completions"
        msgs = [{"role": "user", "content": "hi"}]
        self.bad(c, b'{"prompt": "x", ', 400)                                   # malformed JSON
        self.bad(c, b'[1, 2]', 400)                                             # not an object
        self.bad(c, '{"prompt": "caf\xe9"}'.encode("latin-1"), 400)             # invalid UTF-8
        self.bad(c, json.dumps({"prompt": "x", "max_tokens": "8"}), 400, "max_tokens")
        self.bad(c, json.dumps({"prompt": 5}), 400, "prompt")
        self.bad(ch, json.dumps({"messages": "hi"}), 400, "messages")
        self.bad(ch, json.dumps({"messages": [{"role": "tool", "content": "x"}]}), 400,
                 "messages[0].role")
        self.bad(c, json.dumps({"prompt": "x", "temperature": 9}), 400, "temperature")
        self.bad(c, json.dumps({"prompt": "x", "stream": "yes"}), 400, "stream")
        self.bad(c, json.dumps({"model": "gpt-4o", "prompt": "x"}), 404, "model", "model_not_found")
        self.bad(c, json.dumps({"prompt": "x " * (CTX + 10)}), 400, "prompt")     # over the context
        self.bad(ch, json.dumps({"messages": msgs, "max_tokens": CTX}), 400, "max_tokens")
        self.bad(c, json.dumps({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}), 400, "stop")
        self.bad(c, json.dumps({"prompt": "x", "n": 2}), 400, "n")
        self.bad(c, json.dumps({"prompt": "x" * (70 << 10)}), 413)              # > --max-body-kib 64
        st, data = self.s.raw("GET", "/v1/nothing")
        self.assertEqual(st, 404)
        self.assertEqual(json.loads(data)["error"]["code"], "not_found")
        # The openai client surfaces them as its typed errors.
        with self.assertRaises(openai.BadRequestError) as e:
            self.complete("x", max_tokens=CTX)
        self.assertEqual(e.exception.status_code, 400)
        with self.assertRaises(openai.NotFoundError):
            self.s.client.completions.create(model="nope", prompt="x", max_tokens=1)
        t.join(TIMEOUT * 2)
        self.assertEqual(out.get("text"), alone)


class BudgetTest(unittest.TestCase):
    """A 6 MiB budget holds two sequences of one fp16 page (2.81 MiB for SmolLM2 under
    kvarn_k4v2_g128 while prompt + max_tokens <= 128 tokens), not three."""

    @classmethod
    def setUpClass(cls):
        cls.s = Server("--cache-budget-mib", "6", "--queue", "1", "--no-prefix-cache")

    @classmethod
    def tearDownClass(cls):
        cls.s.stop()

    def test_budget_exhaustion_refuses_the_newest_and_the_others_finish_identically(self):
        n_long = 12 if ARGS.quick else 40
        prompts = ["The capital of Spain is", "Mount Everest is", "Bees make", "Clouds are"]
        c = self.s.client
        results, errors = {}, []

        def run(i, n):
            try:
                results[i] = "".join(ch.choices[0].text for ch in c.completions.create(
                    model=self.s.model, prompt=prompts[i], max_tokens=n, temperature=0, stream=True))
            except Exception as e:
                errors.append(repr(e))

        threads = []
        for i in range(2):  # admitted one after the other
            threads.append(threading.Thread(target=run, args=(i, n_long)))
            threads[-1].start()
            self.s.wait_metric("kvarn_requests_running", lambda v, k=i: v == k + 1)
        threads.append(threading.Thread(target=run, args=(2, 4)))
        threads[-1].start()
        self.s.wait_metric("kvarn_requests_waiting", lambda v: v == 1)
        self.assertEqual(self.s.metric("kvarn_requests_running"), 2)
        with self.assertRaises(openai.RateLimitError) as e:
            c.completions.create(model=self.s.model, prompt=prompts[3], max_tokens=4, temperature=0)
        self.assertEqual(e.exception.status_code, 429)
        self.assertIn("busy", e.exception.body["message"])
        for t in threads:
            t.join(TIMEOUT * 3)
        self.assertEqual(errors, [])
        for i, n in ((0, n_long), (1, n_long), (2, 4)):
            alone = c.completions.create(model=self.s.model, prompt=prompts[i], max_tokens=n,
                                         temperature=0).choices[0].text
            self.assertEqual(results[i], alone, f"request {i}")
        self.assertEqual(self.s.metric("kvarn_requests_refused_total"), 1)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvarn", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--deadline", type=float, default=900.0, help="whole-run watchdog, seconds")
    ARGS, rest = ap.parse_known_args()
    # The whole run is bounded too: past the deadline this process (and, by PDEATHSIG, every
    # server) dies.
    watchdog = threading.Timer(ARGS.deadline, lambda: os._exit(124))
    watchdog.daemon = True
    watchdog.start()
    unittest.main(argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
