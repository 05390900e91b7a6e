#!/usr/bin/env python3
"""Serving benchmark: N concurrent streaming clients against `kvarn serve` at one KV byte budget,
per cache type, and the same load against llama-server of the pinned llama.cpp.

Each client sends one completion request of --prompt-tokens token ids (distinct slices of the
corpus, tokenized by the server under test) and asks for --gen tokens (greedy, ignore_eos, so
every request generates exactly --gen tokens), streaming. All clients start together. Reported,
per configuration:
  admitted at once   the most sequences the server ran together (kvarn: kvarn_requests_running
                     polled from /metrics; llama-server: its slots, -np, sized to the budget)
  gen tok/s          all generated tokens / the run's wall time (first request sent to last
                     token received): the aggregate throughput a user of the server sees
  decode tok/s       the median over requests of (tokens - 1) / (last token - first token)
                     times the mean number of requests decoding together; and, for kvarn, the
                     server's own kvarn_decode_tokens_per_second over the run
  TTFT p50/p99       request sent -> first token (queueing and prefill included)
  ITL p50/p99        gaps between successive streamed tokens, every request pooled
The KV budget: kvarn serve --cache-budget-mib (admission by the cache's exact accounting, sink
and tail included); llama-server cannot be given a byte budget, so it gets the context that
budget holds at its cache type's bytes per token, cut into slots of prompt + gen tokens
(--no-kv-unified: one slot per sequence, as llama-server's users size it); requests beyond its
slots wait in its queue.

Usage: scripts/bench_serve.py [--clients 16] [--prompt-tokens 2048] [--gen 256]
         [--budget-mib 256] [--cache-types f16 q8_0 kvarn_k4v2_g128] [--llama-types f16 q8_0]
         [--model GGUF] [--threads 2] [--json out.json] [--capacity-only]
Needs build/release (scripts/run.sh or cmake --build --preset release) and, for the comparison,
llama-server (scripts/bench_llamacpp.sh server). Only 127.0.0.1 is used; every server is killed
at the end or at --deadline seconds.
"""

import argparse
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("KVARN_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kvarn")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def request(port, method, path, body=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def wait_ready(port, proc, timeout=300):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if request(port, "GET", "/health", timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server not ready")


class Server:
    def __init__(self, cmd, port, log):
        self.port = port
        self.log = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_ready(port, self.proc)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def make_prompts(port, n, tokens, corpus):
    """n distinct prompts of exactly `tokens` token ids, from consecutive corpus slices."""
    text = open(corpus, encoding="utf-8", errors="replace").read()
    prompts, pos = [], 0
    step = tokens * 6  # bytes: comfortably more than `tokens` tokens of this prose
    while len(prompts) < n:
        st, data = request(port, "POST", "/tokenize", {"content": text[pos:pos + step]})
        assert st == 200, data
        ids = json.loads(data)["tokens"]
        assert len(ids) >= tokens, f"corpus slice at {pos} too short"
        prompts.append(ids[:tokens])
        pos += step
    return prompts


def run_clients(port, prompts, gen, model_field, poll_running):
    """All clients at once; returns per-request timings and the most sequences seen running."""
    results = [None] * len(prompts)
    start = threading.Barrier(len(prompts) + 1)
    peak = {"running": 0}
    stop_poll = threading.Event()

    def client(i):
        body = {"prompt": prompts[i], "max_tokens": gen, "temperature": 0, "stream": True,
                "ignore_eos": True}
        if model_field:
            body["model"] = model_field
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
        start.wait()
        t0 = time.time()
        conn.request("POST", "/v1/completions", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200, r.read()[:300]
        times, buf, usage = [], b"", None
        while True:
            chunk = r.read1(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                if not ev.startswith(b"data: "):
                    continue
                payload = ev[6:]
                if payload == b"[DONE]":
                    continue
                obj = json.loads(payload)
                if obj.get("usage"):
                    usage = obj["usage"]
                ch = obj.get("choices") or []
                if ch and ch[0].get("text"):
                    times.append(time.time())
        conn.close()
        results[i] = {"t0": t0, "times": times,
                      "tokens": usage["completion_tokens"] if usage else len(times)}

    def poller():
        while not stop_poll.is_set():
            try:
                peak["running"] = max(peak["running"], poll_running())
            except Exception:
                pass
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    pt = threading.Thread(target=poller)
    pt.start()
    start.wait()
    for t in threads:
        t.join()
    stop_poll.set()
    pt.join()
    return results, peak["running"]


def summarize(name, results, admitted, extra=None):
    t_start = min(r["t0"] for r in results)
    t_end = max(r["times"][-1] for r in results)
    total = sum(r["tokens"] for r in results)
    ttft = [r["times"][0] - r["t0"] for r in results]
    itl = [b - a for r in results for a, b in zip(r["times"], r["times"][1:])]
    rates = [(len(r["times"]) - 1) / (r["times"][-1] - r["times"][0]) for r in results
             if len(r["times"]) > 1 and r["times"][-1] > r["times"][0]]
    # Mean number of requests between their first and last token, over the decode span.
    span0 = min(r["times"][0] for r in results)
    busy = sum(r["times"][-1] - r["times"][0] for r in results) / max(t_end - span0, 1e-9)
    out = {
        "config": name,
        "admitted_at_once": admitted,
        "generated_tokens": total,
        "wall_s": t_end - t_start,
        "gen_tok_s": total / (t_end - t_start),
        "per_request_decode_tok_s_median": statistics.median(rates) if rates else float("nan"),
        "mean_decoding_together": busy,
        "decode_tok_s": (statistics.median(rates) if rates else 0) * busy,
        "ttft_p50_s": percentile(ttft, 0.5), "ttft_p99_s": percentile(ttft, 0.99),
        "itl_p50_ms": 1e3 * percentile(itl, 0.5), "itl_p99_ms": 1e3 * percentile(itl, 0.99),
    }
    if extra:
        out.update(extra)
    return out


def metrics(port):
    st, data = request(port, "GET", "/metrics", timeout=10)
    out = {}
    for line in data.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def metric(m, prefix):
    return sum(v for k, v in m.items() if k.startswith(prefix))


def bench_kvarn(a, cache_type, prompts_by_port):
    port = free_port()
    ctx = a.prompt_tokens + a.gen + 64
    cmd = ["nice", "-n", str(a.nice), a.kvarn, "serve", "-m", a.model, "--host", "127.0.0.1",
           "--port", str(port), "-c", str(ctx), "-t", str(a.threads), "--cache-type", cache_type,
           "--cache-budget-mib", str(a.budget_mib), "--parallel", str(a.clients), "--queue",
           str(a.clients), "-b", str(a.batch), "--no-prefix-cache"]
    srv = Server(cmd, port, os.path.join(a.logdir, f"kvarn-{cache_type}.log"))
    try:
        prompts = prompts_by_port(port)
        m0 = metrics(port)
        res, admitted = run_clients(port, prompts, a.gen, None,
                                    lambda: metric(metrics(port), "kvarn_requests_running"))
        m1 = metrics(port)
        dt = metric(m1, "kvarn_decode_seconds_total") - metric(m0, "kvarn_decode_seconds_total")
        # Tokens computed by decode steps: steps weighted by their batch (the histogram's sum).
        dn = metric(m1, "kvarn_decode_batch_size_sum") - metric(m0, "kvarn_decode_batch_size_sum")
        steps = metric(m1, "kvarn_decode_steps_total") - metric(m0, "kvarn_decode_steps_total")
        extra = {"server_decode_tok_s": dn / dt if dt > 0 else float("nan"),
                 "server_decode_steps": steps,
                 "kv_budget_bytes": metric(m1, "kvarn_kv_cache_budget_bytes")}
        return summarize(f"kvarn {cache_type}", res, admitted, extra), prompts
    finally:
        srv.stop()


def capacity_kvarn(a, cache_type, prompts_by_port):
    """Sequences admitted at once: admission is the cache's arithmetic, decided before any
    prefill, so firing --clients requests and reading kvarn_requests_running measures it
    without running them to the end."""
    port = free_port()
    ctx = a.prompt_tokens + a.gen + 64
    cmd = ["nice", "-n", str(a.nice), a.kvarn, "serve", "-m", a.model, "--host", "127.0.0.1",
           "--port", str(port), "-c", str(ctx), "-t", str(a.threads), "--cache-type", cache_type,
           "--cache-budget-mib", str(a.budget_mib), "--parallel", str(a.clients), "--queue",
           str(a.clients), "-b", str(a.batch), "--no-prefix-cache"]
    srv = Server(cmd, port, os.path.join(a.logdir, f"capacity-{cache_type}.log"))
    try:
        prompts = prompts_by_port(port)
        conns = []
        for p in prompts:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("POST", "/v1/completions", body=json.dumps(
                {"prompt": p, "max_tokens": a.gen, "ignore_eos": True, "stream": True}),
                headers={"Content-Type": "application/json"})
            conns.append(c)
        # Admission runs at the start of each scheduler step. Once every request has arrived,
        # two more prefill steps guarantee an admission pass after the last arrival.
        end, peak, waiting, changes, last = time.time() + 300, 0, 0, -1, None
        while time.time() < end:
            m = metrics(port)
            peak = max(peak, int(metric(m, "kvarn_requests_running")))
            waiting = int(metric(m, "kvarn_requests_waiting"))
            done = metric(m, "kvarn_prompt_tokens_total")
            if peak + waiting == len(prompts):
                if changes < 0:
                    changes, last = 0, done
                elif done != last:
                    changes, last = changes + 1, done
                if changes >= 2:
                    break
            time.sleep(0.05)
        for c in conns:
            c.close()
        return {"config": f"kvarn {cache_type}", "admitted_at_once": peak, "waiting": waiting,
                "reserved_bytes": metric(m, "kvarn_kv_cache_reserved_bytes")}, prompts
    finally:
        srv.stop()


def model_shape(model_path):
    """n_layers, n_kv_heads, head_dim from the GGUF header, via kvarn's own reader."""
    r = subprocess.run([a_global.kvarn, "run", "-m", model_path, "-p", "x", "-n", "0"],
                       capture_output=True, text=True, timeout=300)
    m = re.search(r"(\d+) layers, (\d+)/(\d+) heads, head_dim (\d+)", r.stderr)
    return int(m.group(1)), int(m.group(3)), int(m.group(4))


LLAMA_BYTES_PER_VALUE = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


def bench_llama(a, ctype, prompts):
    L, Hk, D = model_shape(a.model)
    per_token = L * Hk * D * 2 * LLAMA_BYTES_PER_VALUE[ctype]
    seq = a.prompt_tokens + a.gen + 64
    slots = max(1, min(a.clients, int(a.budget_mib * (1 << 20) // (per_token * seq))))
    port = free_port()
    cmd = ["nice", "-n", str(a.nice), a.llama_server, "-m", a.model, "--host", "127.0.0.1",
           "--port", str(port), "-t", str(a.threads), "-c", str(slots * seq), "-np", str(slots),
           "--no-kv-unified", "-ctk", ctype, "-ctv", ctype, "-fa", "on", "--no-webui",
           "--metrics", "--cache-ram", "0", "-b", str(a.batch), "-ub", str(a.batch)]
    srv = Server(cmd, port, os.path.join(a.logdir, f"llama-server-{ctype}.log"))
    try:
        res, peak = run_clients(port, prompts, a.gen, None,
                                lambda: metric(metrics(port), "llamacpp:requests_processing"))
        return summarize(f"llama-server {ctype}", res, max(peak, 0) or slots,
                         {"slots": slots, "kv_bytes": per_token * slots * seq})
    finally:
        srv.stop()


a_global = None


def main():
    global a_global
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kvarn", default=os.path.join(ROOT, "build/release/tools/kvarn/kvarn"))
    ap.add_argument("--llama-server",
                    default=os.path.join(CACHE, "llama.cpp/build-0.3.36/bin/llama-server"))
    ap.add_argument("--model", default=os.path.join(CACHE, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--corpus", default=os.path.join(CACHE, "pydocs.txt"))
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--prompt-tokens", type=int, default=2048)
    ap.add_argument("--gen", type=int, default=256)
    ap.add_argument("--budget-mib", type=int, default=256)
    ap.add_argument("--batch", type=int, default=256, help="prefill chunk (-b) of both servers")
    ap.add_argument("--cache-types", nargs="*", default=["f16", "q8_0", "kvarn_k4v2_g128"])
    ap.add_argument("--llama-types", nargs="*", default=["f16", "q8_0"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nice", type=int, default=0)
    ap.add_argument("--logdir", default="/tmp/kvarn-bench-serve")
    ap.add_argument("--json", default="")
    ap.add_argument("--deadline", type=float, default=7200)
    ap.add_argument("--capacity-only", action="store_true",
                    help="only measure the sequences admitted at once (no generation)")
    a = ap.parse_args()
    a_global = a
    os.makedirs(a.logdir, exist_ok=True)
    watchdog = threading.Timer(a.deadline, lambda: os._exit(124))
    watchdog.daemon = True
    watchdog.start()

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"# bench_serve: {os.path.basename(a.model)}, {a.clients} clients x {a.prompt_tokens}-token "
          f"prompt + {a.gen} generated, KV budget {a.budget_mib} MiB, {a.threads} threads, chunk {a.batch}")
    print(f"# cpu: {cpu}, {os.cpu_count()} cores; load before: {os.getloadavg()}")
    rows, prompts = [], None
    if a.capacity_only:
        for ct in a.cache_types:
            r, p = capacity_kvarn(a, ct, lambda port: prompts or make_prompts(
                port, a.clients, a.prompt_tokens, a.corpus))
            prompts = prompts or p
            print(json.dumps(r), flush=True)
        L, Hk, D = model_shape(a.model)
        for ct in a.llama_types:
            per_token = L * Hk * D * 2 * LLAMA_BYTES_PER_VALUE[ct]
            slots = int(a.budget_mib * (1 << 20) // (per_token * (a.prompt_tokens + a.gen + 64)))
            print(json.dumps({"config": f"llama-server {ct}", "slots_in_budget": slots}))
        return
    for ct in a.cache_types:
        r, p = bench_kvarn(a, ct, lambda port: prompts or make_prompts(
            port, a.clients, a.prompt_tokens, a.corpus))
        prompts = prompts or p
        rows.append(r)
        print(json.dumps(r), flush=True)
    if a.llama_types and os.path.exists(a.llama_server):
        for ct in a.llama_types:
            r = bench_llama(a, ct, prompts)
            rows.append(r)
            print(json.dumps(r), flush=True)
    print(f"# load after: {os.getloadavg()}")
    print()
    print("| server, cache | admitted at once | gen tok/s | decode tok/s | TTFT p50 / p99 s "
          "| ITL p50 / p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} | {int(r['admitted_at_once'])} | {r['gen_tok_s']:.1f} "
              f"| {r['decode_tok_s']:.1f} | {r['ttft_p50_s']:.1f} / {r['ttft_p99_s']:.1f} "
              f"| {r['itl_p50_ms']:.0f} / {r['itl_p99_ms']:.0f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
