#!/usr/bin/env python3
"""ClickGate, nginx and HAProxy doing the same job in front of one nginx origin; prints a table.

Run through Benchmarks/proxy-vs-nginx, which installs the tools and builds the release binary.
Each proxy is pinned to core 0; the origin and the load generators share core 1. Every proxy:
captures `ttclid` from the URL into a Set-Cookie, appends a missing ttclid to an upstream 3xx
Location, keeps connections to the origin alive, and writes no access log. ClickGate's click
ledger (every captured click stored for server events to join, a job the others do not do) is
off; docs/PERFORMANCE.md gives its cost. Scenarios run
interleaved (every proxy once per repeat) and the table shows medians, with the spread.
"""
import argparse
import asyncio
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

PROXY_CORE, LOAD_CORE = "0", "1"
CLICK = "E.C.P.bench0123456789"
# The idle row after a larger response: a TLS stack may keep buffers the size of what it last sent.
ASSET_BYTES, ASSET_CONNECTIONS = 256 * 1024, 2000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(pids):
    """The processes and their descendants (nginx's workers)."""
    seen, queue = [], list(pids)
    while queue:
        pid = queue.pop()
        if pid in seen:
            continue
        seen.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    queue += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return seen


def cpu_sample(pids):
    """Clock ticks so far: each core's (busy, idle), and the processes' own user and system time."""
    cores = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *ticks = line.split()
            if name in (f"cpu{PROXY_CORE}", f"cpu{LOAD_CORE}"):
                ticks = list(map(int, ticks))
                idle = ticks[3] + ticks[4]
                cores[name[3:]] = (sum(ticks[:8]) - idle, idle)
    user = system = 0
    for pid in process_tree(pids):
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                user, system = user + int(fields[11]), system + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return cores, user, system


def cpu_split(before, after, requests):
    """The proxy's user and kernel µs a request (kernel time includes the network softirqs it ran)
    and each core's idle share: a proxy whose core sat idle was held back by the load core."""
    tick_us = 1_000_000 / os.sysconf("SC_CLK_TCK")
    idle = {}
    for core in (PROXY_CORE, LOAD_CORE):
        busy = after[0][core][0] - before[0][core][0]
        rest = after[0][core][1] - before[0][core][1]
        idle[core] = 100 * rest / max(1, busy + rest)
    return {
        "user_us": (after[1] - before[1]) * tick_us / max(1, requests),
        "kernel_us": (after[2] - before[2]) * tick_us / max(1, requests),
        "proxy_idle": idle[PROXY_CORE], "load_idle": idle[LOAD_CORE],
    }


def rss_kib(pids):
    """Resident memory of the processes and their children, in KiB: (all, anonymous). The rest is
    file-backed, mostly the binary's code, and moves by megabytes with its layout and the page cache."""
    total = anonymous = 0
    for pid in process_tree(pids):
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = {line.split(":")[0]: int(line.split()[1]) for line in f if line.startswith(("VmRSS:", "RssAnon:"))}
            total += fields["VmRSS"]
            anonymous += fields["RssAnon"]
        except (FileNotFoundError, KeyError, ProcessLookupError):
            pass
    return total, anonymous


def rss_cell(kib):
    return f"{kib[0] / 1024:.1f} ({kib[1] / 1024:.1f} anon)"


class Setup:
    def __init__(self, work, binary, wrap=(), start_seconds=20):
        """`wrap`: a command each proxy runs under (valgrind for instruction counts)."""
        self.work, self.binary = work, binary
        self.wrap, self.start_seconds = list(wrap), start_seconds
        self.procs = []
        self.origin_port = free_port()
        self.ports = {name: (free_port(), free_port()) for name in ("nginx", "haproxy", "clickgate")}
        self.admin_port = free_port()
        # HAProxy keeps two descriptors per connection and refuses a maxconn the limit cannot hold;
        # nginx and ClickGate keep one per idle client connection.
        descriptors = resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 300
        self.max_connections = min(10100, descriptors // 2)
        self.max_idle = {"haproxy": self.max_connections - 50, "nginx": descriptors, "clickgate": descriptors}

    def spawn(self, args, core, proxy=True, **kwargs):
        proc = subprocess.Popen(["taskset", "-c", core] + (self.wrap if proxy else []) + args, stdout=subprocess.DEVNULL, stderr=open(f"{self.work}/{os.path.basename(args[0])}-{len(self.procs)}.log", "w"), **kwargs)
        self.procs.append(proc)
        return proc

    def start(self):
        w = self.work
        os.makedirs(f"{w}/site")
        page = "<!doctype html><html><head><title>Spring offer</title></head><body>" + "<p>Landing page text for the benchmark.</p>" * 45 + "</body></html>\n"
        with open(f"{w}/site/lp", "w") as f:
            f.write(page[:2048])
        # A larger response (a script bundle, an image) for the idle row after one.
        with open(f"{w}/site/asset", "w") as f:
            f.write((page * (ASSET_BYTES // len(page) + 1))[:ASSET_BYTES])
        os.chmod(w, 0o755)
        subprocess.run(["chmod", "-R", "a+rX", f"{w}/site"], check=True)
        subprocess.run([self.binary, "certs", "dev", "--dir", f"{w}/certs"], check=True, stdout=subprocess.DEVNULL)
        cert, key = f"{w}/certs/localhost.pem", f"{w}/certs/localhost.key"
        with open(f"{w}/certs/haproxy.pem", "w") as out:
            out.write(open(cert).read() + open(key).read())
        subprocess.run(["chmod", "-R", "a+rX", f"{w}/certs"], check=True)

        # The origin: a 2 KB landing page and a 302 whose Location drops the click id.
        self.write(f"{w}/origin.conf", f"""
daemon off; worker_processes 1; pid {w}/origin.pid; error_log {w}/origin-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off; default_type text/html; keepalive_requests 1000000; absolute_redirect off;
  server {{
    listen 127.0.0.1:{self.origin_port} reuseport;
    root {w}/site;
    location = /go {{ return 302 /lp; }}
  }}
}}""")
        self.origin = self.spawn(["nginx", "-c", f"{w}/origin.conf", "-e", f"{w}/origin-error.log"], LOAD_CORE, proxy=False)

        http, https = self.ports["nginx"]
        self.write(f"{w}/nginx.conf", f"""
daemon off; worker_processes 1; pid {w}/nginx.pid; error_log {w}/nginx-error.log;
master_process {"off" if self.wrap else "on"};  # under valgrind, one process: a forked worker cannot be reached to count it
worker_rlimit_nofile 20000;
events {{ worker_connections 20000; }}
http {{
  access_log off; keepalive_requests 1000000; keepalive_timeout 300s; absolute_redirect off;
  upstream origin {{ server 127.0.0.1:{self.origin_port}; keepalive 256; }}  # ClickGate's default upstream_idle_connections
  map $arg_ttclid $ttclid_cookie {{ "" ""; default "ttclid=$arg_ttclid; Max-Age=2592000; Path=/; Secure; SameSite=Lax"; }}
  map $arg_ttclid $ttclid_query {{ "" ""; default "ttclid=$arg_ttclid"; }}
  server {{
    listen 127.0.0.1:{http}; listen 127.0.0.1:{https} ssl http2;
    ssl_certificate {cert}; ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{
      proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      add_header Set-Cookie $ttclid_cookie;
      proxy_redirect ~^([^?]*)$ $1?$ttclid_query;
    }}
  }}
}}""")
        self.nginx = self.spawn(["nginx", "-c", f"{w}/nginx.conf", "-e", f"{w}/nginx-error.log"], PROXY_CORE)

        http, https = self.ports["haproxy"]
        self.write(f"{w}/haproxy.cfg", f"""
global
  nbthread 1
  maxconn {self.max_connections}
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 60s
  timeout http-keep-alive 300s
frontend fe
  bind 127.0.0.1:{http}
  bind 127.0.0.1:{https} ssl crt {w}/certs/haproxy.pem alpn h2,http/1.1
  option forwardfor
  http-request set-var(txn.ttclid) url_param(ttclid)
  http-response add-header Set-Cookie "ttclid=%[var(txn.ttclid)]; Max-Age=2592000; Path=/; Secure; SameSite=Lax" if {{ var(txn.ttclid) -m found }}
  http-response replace-header Location ^([^?]*)$ \\1?ttclid=%[var(txn.ttclid)] if {{ status 301:308 }} {{ var(txn.ttclid) -m found }}
  default_backend origin
backend origin
  http-reuse always
  server o 127.0.0.1:{self.origin_port} maxconn 1000
""")
        self.haproxy = self.spawn(["haproxy", "-db", "-f", f"{w}/haproxy.cfg"], PROXY_CORE)

        http, https = self.ports["clickgate"]
        self.write(f"{w}/clickgate.yaml", f"""
listen: {{ https: "127.0.0.1:{https}", http: "127.0.0.1:{http}", admin: "127.0.0.1:{self.admin_port}" }}
tls: {{ certificates: [ {{ cert: {cert}, key: {key} }} ] }}
sites:
  - hosts: [127.0.0.1, localhost]
    upstream: http://127.0.0.1:{self.origin_port}
events: {{ store: "sqlite:{w}/clickgate.sqlite", click_ledger: false }}
log: {{ access: off, level: error }}
timeouts: {{ idle: 300s }}
""")
        self.clickgate = self.spawn([self.binary, "serve", "--config", f"{w}/clickgate.yaml"], PROXY_CORE, cwd=w)
        self.pids = {"nginx": [self.nginx.pid], "haproxy": [self.haproxy.pid], "clickgate": [self.clickgate.pid]}
        for name in self.ports:
            self.wait_ready(name)

    @staticmethod
    def write(path, text):
        with open(path, "w") as f:
            f.write(text)

    def wait_ready(self, name):
        for _ in range(self.start_seconds * 10):
            if subprocess.run(["curl", "-sfk", "-o", "/dev/null", self.url(name, "https", "/lp")]).returncode == 0:
                return
            time.sleep(0.1)
        logs = "".join(open(os.path.join(self.work, f)).read()[-2000:] for f in sorted(os.listdir(self.work)) if f.endswith(".log"))
        sys.exit(f"{name} did not start:\n{logs}")

    def url(self, name, scheme, path):
        http, https = self.ports[name]
        return f"{scheme}://127.0.0.1:{https if scheme == 'https' else http}{path}"

    def check_same_job(self):
        """Every proxy must set the cookie and restore the click id on the redirect."""
        for name in self.ports:
            lp = subprocess.run(["curl", "-sk", "-D", "-", "-o", "/dev/null", self.url(name, "https", f"/lp?ttclid={CLICK}")], capture_output=True, text=True).stdout.lower()
            go = subprocess.run(["curl", "-sk", "-D", "-", "-o", "/dev/null", self.url(name, "http", f"/go?ttclid={CLICK}")], capture_output=True, text=True).stdout.lower()
            ok = f"set-cookie: ttclid={CLICK.lower()}" in lp and f"location: /lp?ttclid={CLICK.lower()}" in go
            if not ok:
                sys.exit(f"{name} does not do the job:\n{lp}\n{go}")

    def stop(self):
        """Stops every process and removes the work directory."""
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.work, ignore_errors=True)


def print_table_head(title, cells):
    """A blank line, the title, and a markdown table's header row and rule."""
    print(f"\n{title}")
    print(f"| {' | '.join(cells)} |")
    print("|" + " --- |" * len(cells))


def to_ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url, seconds, connections=64, headers=()):
    args = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50": p50, "p99": p99, "errors": errors.group(0) if errors else "", "requests": requests}


def h2load(url, seconds, work):
    log = f"{work}/h2load.log"
    args = ["taskset", "-c", LOAD_CORE, "h2load", "-c16", "-m32", "-D", str(seconds), "--warm-up-time=1", f"--log-file={log}", url]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))
    failed = int(re.search(r"(\d+) failed", out).group(1))
    with open(log) as f:
        durations = sorted(int(line.split()[2]) / 1000 for line in f if line.strip())
    os.remove(log)
    pick = lambda q: durations[min(len(durations) - 1, int(q * len(durations)))]
    # The CPU sample spans the warm-up second too, at about the same rate.
    return {"rps": rps, "p50": pick(0.5), "p99": pick(0.99), "errors": f"{failed} failed" if failed else "", "requests": rps * (seconds + 1)}


async def hold_idle(port, count, path):
    """Opens `count` TLS keep-alive connections, one request for `path` each, and keeps them open."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    request = f"GET {path}?ttclid={CLICK} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    semaphore = asyncio.Semaphore(64)
    streams = []

    async def one():
        async with semaphore:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
            await reader.readexactly(length)
            streams.append(writer)

    await asyncio.gather(*(one() for _ in range(count)))
    return streams


def idle_connections_rss(setup, name, count, path="/lp"):
    """RSS with `count` connections held, and the anonymous KiB a connection they added."""
    async def run():
        before = rss_kib(setup.pids[name])
        streams = await hold_idle(setup.ports[name][1], count, path)
        await asyncio.sleep(2)
        rss = rss_kib(setup.pids[name])
        rss = (*rss, (rss[1] - before[1]) / count)
        for writer in streams:
            writer.transport.abort()
        return rss

    return asyncio.run(run())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--idle", type=int, default=10000)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="clickgate-bench-")
    setup = Setup(work, os.path.abspath(args.binary))
    try:
        setup.start()
        setup.check_same_job()
        time.sleep(1)
        idle_rss = {name: rss_kib(pids) for name, pids in setup.pids.items()}
        scenarios = [
            ("plaintext h1 /lp", lambda n: wrk(setup.url(n, "http", f"/lp?ttclid={CLICK}"), args.seconds)),
            ("TLS h1 /lp", lambda n: wrk(setup.url(n, "https", f"/lp?ttclid={CLICK}"), args.seconds)),
            ("TLS h2 /lp (16 conns x 32 streams)", lambda n: h2load(setup.url(n, "https", f"/lp?ttclid={CLICK}"), args.seconds, work)),
            ("plaintext h1 /go redirect", lambda n: wrk(setup.url(n, "http", f"/go?ttclid={CLICK}"), args.seconds)),
            ("new TLS connections/s", lambda n: wrk(setup.url(n, "https", f"/lp?ttclid={CLICK}"), args.seconds, 32, ["Connection: close"])),
        ]
        results = {(s, n): [] for s, _ in scenarios for n in setup.ports}
        for repeat in range(args.repeats):
            for scenario, run in scenarios:
                for name in setup.ports:
                    before = cpu_sample(setup.pids[name])
                    result = run(name)
                    result.update(cpu_split(before, cpu_sample(setup.pids[name]), result["requests"]))
                    results[(scenario, name)].append(result)
                    print(f"[{repeat + 1}/{args.repeats}] {scenario:38} {name:9} {result['rps']:>10.0f} req/s  p50 {result['p50']:.2f} ms  p99 {result['p99']:.2f} ms"
                          f"  user {result['user_us']:.1f} µs  kernel {result['kernel_us']:.1f} µs  idle {result['proxy_idle']:.0f}/{result['load_idle']:.0f} % {result['errors']}", file=sys.stderr, flush=True)
        idle_counts = {name: min(args.idle, setup.max_idle[name]) for name in setup.ports}
        # First, while each proxy's heap holds little that was freed: its growth a connection is the row.
        after_asset = {name: idle_connections_rss(setup, name, ASSET_CONNECTIONS, "/asset") for name in setup.ports}
        idle = {name: idle_connections_rss(setup, name, idle_counts[name]) for name in setup.ports}
    finally:
        setup.stop()

    names = list(setup.ports)
    print_table_head(
        f"medians of {args.repeats} runs of {args.seconds} s; each proxy on core {PROXY_CORE}, origin and load on core {LOAD_CORE}",
        ["scenario", *(f"{n} req/s (p50/p99 ms)" for n in names), "ClickGate ÷ nginx", "spread"])
    for scenario, _ in scenarios:
        cells, medians, spreads = [], {}, []
        for name in names:
            runs = results[(scenario, name)]
            rps = statistics.median(r["rps"] for r in runs)
            medians[name] = rps
            spreads.append((max(r["rps"] for r in runs) - min(r["rps"] for r in runs)) / rps * 100)
            cells.append(f"{rps:,.0f} ({statistics.median(r['p50'] for r in runs):.2f}/{statistics.median(r['p99'] for r in runs):.2f})")
        print(f"| {scenario} | {' | '.join(cells)} | {medians['clickgate'] / medians['nginx']:.2f}× | ≤{max(spreads):.0f} % |")
    print(f"| RSS idle, MiB | {' | '.join(rss_cell(idle_rss[n]) for n in names)} | | |")
    # A proxy that could not hold them all says how many it held.
    cells = [rss_cell(idle[n]) + (f" ({idle_counts[n]:,} connections)" if idle_counts[n] != args.idle else "") for n in names]
    print(f"| RSS with {args.idle:,} idle TLS keep-alive connections, MiB | {' | '.join(cells)} | | |")
    print(f"| RSS with {ASSET_CONNECTIONS:,} idle TLS keep-alive connections, each after a {ASSET_BYTES // 1024} KiB response, MiB"
          f" (anonymous KiB a connection) | {' | '.join(f'{rss_cell(after_asset[n])} ({after_asset[n][2]:.1f} KiB)' for n in names)} | | |")
    print_table_head(
        f"CPU a request (connection, for new TLS), medians: the proxy's user and kernel µs; idle share of the proxy's core {PROXY_CORE} / the load's core {LOAD_CORE}",
        ["scenario", *(f"{n} user / kernel µs, idle %" for n in names)])
    for scenario, _ in scenarios:
        cells = []
        for name in names:
            median = lambda key: statistics.median(r[key] for r in results[(scenario, name)])
            cells.append(f"{median('user_us'):.1f} / {median('kernel_us'):.1f}, {median('proxy_idle'):.0f} / {median('load_idle'):.0f}")
        print(f"| {scenario} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
