"""Router benchmark: tsp-router vs the seed's router vs Kafka's own perf tools, one run.

On one local broker (started here), for each router:
  * throughput: N timestamps produced as fast as Kafka's ProducerPerformance can, routed
    input -> even/odd; rate = N / (last routed record's timestamp - first input timestamp);
  * end-to-end latency at 100 and 1,000 records/s: a paced producer writes values carrying
    their send time; a consumer of even/odd records the receive time; p50/p99 of the gap.
Kafka's perf tools give the broker's own limit on the same hop: ProducerPerformance (max
rate, ack latency at 100/1,000 rec/s) and ConsumerPerformance (max rate).

Writes bench/results/router.md and bench/results/router.png; `--profile` also runs
tsp-router under cProfile during the throughput run and prints where its main thread goes.

Run: `python -m bench.router_bench` (or via `make bench`).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))
RESULTS = ROOT / "bench" / "results"
SEED_DIR = ROOT / "bench" / "seed_router"

from kafka import KafkaConsumer, KafkaProducer  # noqa: E402
from kafka.structs import TopicPartition  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uid(p: str) -> str:
    return f"{p}-{uuid.uuid4().hex[:8]}"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))
    return s[k]


class Topics:
    def __init__(self):
        self.input, self.even, self.odd = uid("bin"), uid("bev"), uid("bod")


# ---------------------------------------------------------------- the two routers

class Router:
    def __init__(self, kind: str, bootstrap: str, t: Topics, profile: str | None = None):
        self.kind, self.bootstrap, self.t = kind, bootstrap, t
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{kind}-", suffix=".log", delete=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPRING_", "SERVER_", "TSROUTER_"))}
        env["PYTHONUNBUFFERED"] = "1"
        args = [f"--spring.cloud.stream.bindings.input.destination={t.input}",
                f"--spring.cloud.stream.bindings.even.destination={t.even}",
                f"--spring.cloud.stream.bindings.odd.destination={t.odd}"]
        if kind == "seed":
            env["SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS"] = bootstrap
            env["SEED_ACTUATOR_PORT"] = str(self.port)
            cmd = [sys.executable, str(SEED_DIR / "python_router_app.py"), *args]
            cwd = SEED_DIR
        else:
            args += [f"--spring.cloud.stream.kafka.binder.brokers={bootstrap}",
                     f"--server.port={self.port}", "--server.address=127.0.0.1",
                     f"--spring.cloud.stream.bindings.input.group={uid('bgrp')}"]
            if kind == "tsp-router-eos":
                args.append("--tsrouter.processing-guarantee=exactly-once")
            pre = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
            cmd = [*pre, "-m", "tsrouter", *args]
            cwd = ROOT
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if self.kind != "seed" else signal.SIGKILL)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self.log.name)

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.kind} exited {self.proc.returncode}:\n"
                               f"{Path(self.log.name).read_text()[-3000:]}")


def warm_up(bootstrap: str, router: Router, timeout: float = 90) -> None:
    """Send a few records until one comes out: the router is subscribed and at `latest`."""
    t = router.t
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    p = KafkaProducer(bootstrap_servers=bootstrap)
    deadline = time.monotonic() + timeout
    try:
        while True:
            parts = c.partitions_for_topic(t.even)
            if parts:
                break
            router.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{router.kind}: topics never appeared")
            time.sleep(0.2)
        c.assign([TopicPartition(t.even, p_) for p_ in parts])
        while time.monotonic() < deadline:
            router.check()
            p.send(t.input, b"00/00/00 00:00:00 warmup 0").get(timeout=30)
            got = c.poll(timeout_ms=1000)
            if got:
                return
        raise RuntimeError(f"{router.kind}: no warm-up record routed")
    finally:
        p.close()
        c.close()


def end_offsets(bootstrap: str, topics: list[str]) -> int:
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in (c.partitions_for_topic(t) or ())]
        return sum(c.end_offsets(tps).values())
    finally:
        c.close()


def timestamps_of(bootstrap: str, topic: str, first_only: bool = False) -> list[int]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in (c.partitions_for_topic(topic) or ())]
        c.assign(tps)
        c.seek_to_beginning()
        end = c.end_offsets(tps)
        out = []
        while any(c.position(tp) < end[tp] for tp in tps):
            for recs in c.poll(timeout_ms=500, max_records=5000).values():
                out.extend(r.timestamp for r in recs if b"warmup" not in (r.value or b""))
                if first_only and out:
                    return out
        return out
    finally:
        c.close()


def payload_file(n: int = 1000) -> str:
    f = tempfile.NamedTemporaryFile("w", prefix="bench-payload-", suffix=".txt", delete=False)
    for i in range(n):
        f.write(time.strftime("%m/%d/%y %H:%M:%S", time.gmtime(1_700_000_000 + i)) + "\n")
    f.close()
    return f.name


def throughput(broker, kind: str, n: int, payloads: str, profile: str | None = None) -> dict:
    t = Topics()
    r = Router(kind, broker.bootstrap, t, profile=profile)
    try:
        warm_up(broker.bootstrap, r)
        base = end_offsets(broker.bootstrap, [t.even, t.odd])
        prod = broker.run_tool("org.apache.kafka.tools.ProducerPerformance", "--topic", t.input,
                               "--num-records", str(n), "--payload-file", payloads, "--throughput", "-1",
                               "--producer-props", f"bootstrap.servers={broker.bootstrap}", "acks=all",
                               "linger.ms=5")
        deadline = time.monotonic() + max(120, n / 500)
        while end_offsets(broker.bootstrap, [t.even, t.odd]) - base < n:
            r.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: only {end_offsets(broker.bootstrap, [t.even, t.odd]) - base}"
                                   f" of {n} routed in time")
            time.sleep(0.5)
        first_in = min(timestamps_of(broker.bootstrap, t.input))
        last_out = max(timestamps_of(broker.bootstrap, t.even) + timestamps_of(broker.bootstrap, t.odd))
        secs = (last_out - first_in) / 1000.0
        return {"records": n, "seconds": secs, "rate": n / secs, "producer_stdout": prod.stdout[-300:]}
    finally:
        r.stop()


def latency(broker, kind: str, rate: int, seconds: float) -> dict:
    t = Topics()
    r = Router(kind, broker.bootstrap, t)
    try:
        warm_up(broker.bootstrap, r)
        lat: list[float] = []
        n = int(rate * seconds)
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
        tps = [TopicPartition(tp, p) for tp in (t.even, t.odd) for p in c.partitions_for_topic(tp)]
        c.assign(tps)
        c.seek_to_end()
        for tp in tps:
            c.position(tp)
        stop = threading.Event()

        def consume():
            while not stop.is_set() and len(lat) < n:
                for recs in c.poll(timeout_ms=100).values():
                    now = time.time()
                    for rec in recs:
                        v = rec.value
                        if b" t=" in v:
                            lat.append((now - int(v.rsplit(b" t=", 1)[1]) / 1e6) * 1000.0)

        th = threading.Thread(target=consume, daemon=True)
        th.start()
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
        start = time.monotonic()
        for i in range(n):
            target = start + i / rate
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ts = time.strftime("%m/%d/%y %H:%M:%S", time.gmtime(1_700_000_000 + i))
            p.send(t.input, f"{ts} t={int(time.time() * 1e6)}".encode())
        p.flush()
        achieved = n / (time.monotonic() - start)
        th.join(timeout=60)
        stop.set()
        p.close()
        c.close()
        r.check()
        return {"rate": rate, "achieved_rate": achieved, "sent": n, "received": len(lat),
                "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": max(lat) if lat else float("nan")}
    finally:
        r.stop()


def kafka_tools(broker, n: int, rates: list[int], seconds: float, payloads: str) -> dict:
    topic = uid("perf")
    out = {"producer_max": broker.run_perf_producer(topic, n, 20, -1, props={"linger.ms": "5"})}
    out["consumer_max"] = broker.run_perf_consumer(topic, n)
    for rate in rates:
        out[f"producer_{rate}"] = broker.run_perf_producer(uid("perf"), int(rate * seconds), 20, rate,
                                                           props={"linger.ms": "0"})
    return out


def profile_report(path: str, top: int = 18) -> str:
    import io
    import pstats

    s = io.StringIO()
    st = pstats.Stats(path, stream=s)
    st.sort_stats("cumulative").print_stats(top)
    s.write("\n--- by own time ---\n")
    st.sort_stats("tottime").print_stats(top)
    return s.getvalue()


# ---------------------------------------------------------------- report

def write_report(res: dict, path_md: Path, path_png: Path, meta: dict) -> None:
    kinds = [k for k in ("tsp-router", "tsp-router-eos", "seed") if k in res["throughput"]]
    names = {"tsp-router": "tsp-router (at-least-once)", "tsp-router-eos": "tsp-router (exactly-once)",
             "seed": "seed router (as written)"}
    rates = meta["rates"]
    lines = ["# Router benchmark", "",
             f"One local Kafka {meta['kafka']} broker (KRaft, single node) on {meta['host']}; "
             f"{meta['when']}. Command: `{meta['command']}`.", "",
             "Throughput: N records produced by Kafka's ProducerPerformance as fast as it can, routed "
             "input -> even/odd; rate = N / (last routed record's timestamp - first input record's timestamp). "
             "Latency: a paced kafka-python producer writes values carrying their send time, a consumer of "
             "even/odd takes the receive time (end to end through the router, both brokers hops included).", "",
             "| | throughput (rec/s) | " + " | ".join(f"p50 / p99 @ {r} rec/s (ms)" for r in rates) + " |",
             "|---|---:|" + "---:|" * len(rates)]
    for k in kinds:
        th = res["throughput"][k]
        cells = []
        for r in rates:
            l = res["latency"].get(k, {}).get(r)
            cells.append(f"{l['p50_ms']:.1f} / {l['p99_ms']:.1f}" if l else "-")
        lines.append(f"| {names[k]} | {th['rate']:,.0f} (N={th['records']:,}) | " + " | ".join(cells) + " |")
    kt = res["kafka"]
    cells = [f"{kt[f'producer_{r}']['p50_latency_ms']:.1f} / {kt[f'producer_{r}']['p99_latency_ms']:.1f} (produce ack)"
             for r in rates]
    lines.append(f"| Kafka perf tools (Java) | produce {kt['producer_max']['records_per_sec']:,.0f}, "
                 f"consume {kt['consumer_max']['nMsg_sec']:,.0f} | " + " | ".join(cells) + " |")
    if "seed" in res["throughput"] and "tsp-router" in res["throughput"]:
        ratio = res["throughput"]["tsp-router"]["rate"] / res["throughput"]["seed"]["rate"]
        lines += ["", f"tsp-router / seed throughput: **{ratio:.1f}x**."]
    lines += ["", "Latency details:", "", "| router | target rate | achieved | received | p50 ms | p99 ms | max ms |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for k in kinds:
        for r in rates:
            l = res["latency"].get(k, {}).get(r)
            if l:
                lines.append(f"| {names[k]} | {r} | {l['achieved_rate']:.0f} | {l['received']}/{l['sent']} | "
                             f"{l['p50_ms']:.1f} | {l['p99_ms']:.1f} | {l['max_ms']:.1f} |")
    if res.get("profile"):
        lines += ["", "## Where tsp-router's time goes (cProfile, main thread, throughput run)", "",
                  "```", res["profile"].strip(), "```"]
    if res.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in res["notes"]]
    path_md.write_text("\n".join(lines) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = [names[k] for k in kinds] + ["Kafka producer (Java)", "Kafka consumer (Java)"]
    vals = [res["throughput"][k]["rate"] for k in kinds] + [kt["producer_max"]["records_per_sec"],
                                                           kt["consumer_max"]["nMsg_sec"]]
    ax1.barh(labels, vals, color=["C0", "C2", "C3", "C7", "C8"][:len(vals)])
    ax1.set_xscale("log")
    ax1.set_xlabel("records/s (log)")
    ax1.set_title("Throughput")
    width = 0.8 / (len(kinds) + 1)
    for i, k in enumerate(kinds + ["kafka"]):
        for j, stat in enumerate(("p50_ms", "p99_ms")):
            ys = []
            for r in rates:
                if k == "kafka":
                    ys.append(kt[f"producer_{r}"]["p50_latency_ms" if stat == "p50_ms" else "p99_latency_ms"])
                else:
                    ys.append(res["latency"][k][r][stat])
            xs = [x + i * width + (0 if j == 0 else 0) for x in range(len(rates))]
            ax2.bar([x + (j * 0.0) for x in xs], ys, width * (0.5 if j == 0 else 1.0),
                    color=f"C{[0, 2, 3, 7][i] if i < 4 else 7}", alpha=1.0 if j == 0 else 0.45,
                    label=(names.get(k, "Kafka produce ack (Java)") + (" p50" if j == 0 else " p99")))
    ax2.set_xticks([x + width * len(kinds) / 2 for x in range(len(rates))])
    ax2.set_xticklabels([f"{r} rec/s" for r in rates])
    ax2.set_yscale("log")
    ax2.set_ylabel("ms (log)")
    ax2.set_title("End-to-end latency p50 (solid) / p99 (light)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path_png, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.router_bench")
    ap.add_argument("--records", type=int, default=50_000, help="records for the throughput runs")
    ap.add_argument("--seconds", type=float, default=15.0, help="duration of each latency run")
    ap.add_argument("--rates", default="100,1000")
    ap.add_argument("--no-eos", action="store_true", help="skip the exactly-once throughput row")
    ap.add_argument("--profile", action="store_true", help="cProfile tsp-router during its throughput run")
    ap.add_argument("--bootstrap", help=argparse.SUPPRESS)
    a = ap.parse_args(argv if argv is not None else sys.argv[1:])
    rates = [int(x) for x in a.rates.split(",")]
    from localinfra.kafka import KafkaBroker

    RESULTS.mkdir(parents=True, exist_ok=True)
    res: dict = {"throughput": {}, "latency": {}, "notes": []}
    payloads = payload_file()
    prof_path = tempfile.mktemp(prefix="tsrouter-", suffix=".prof") if a.profile else None
    with KafkaBroker() as broker:
        print(f"router bench: broker {broker.bootstrap}", flush=True)
        kinds = ["tsp-router"] + ([] if a.no_eos else ["tsp-router-eos"]) + ["seed"]
        for kind in kinds:
            r = throughput(broker, kind, a.records, payloads, profile=prof_path if kind == "tsp-router" else None)
            res["throughput"][kind] = r
            print(f"  {kind}: throughput {r['rate']:,.0f} rec/s ({r['records']} in {r['seconds']:.2f}s)", flush=True)
        for kind in ("tsp-router", "seed"):
            res["latency"][kind] = {}
            for rate in rates:
                l = latency(broker, kind, rate, a.seconds)
                res["latency"][kind][rate] = l
                print(f"  {kind}: {rate} rec/s -> p50 {l['p50_ms']:.1f} ms, p99 {l['p99_ms']:.1f} ms "
                      f"({l['received']}/{l['sent']} received, achieved {l['achieved_rate']:.0f}/s)", flush=True)
        res["kafka"] = kafka_tools(broker, a.records * 4, rates, a.seconds, payloads)
        print(f"  kafka perf: produce {res['kafka']['producer_max']['records_per_sec']:,.0f} rec/s, "
              f"consume {res['kafka']['consumer_max']['nMsg_sec']:,.0f} rec/s", flush=True)
        kafka_ver = broker.version
    if prof_path and os.path.exists(prof_path):
        res["profile"] = profile_report(prof_path)
        print(res["profile"], flush=True)
    os.unlink(payloads)
    meta = {"kafka": kafka_ver, "host": f"{os.cpu_count()} cores", "rates": rates,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "python -m bench.router_bench " + " ".join(argv if argv is not None else sys.argv[1:])}
    (RESULTS / "router.json").write_text(json.dumps(
        {k: v for k, v in res.items() if k != "profile"}, indent=1, default=str))
    write_report(res, RESULTS / "router.md", RESULTS / "router.png", meta)
    print(f"router bench: wrote {RESULTS / 'router.md'} and {RESULTS / 'router.png'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
