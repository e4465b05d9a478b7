#!/usr/bin/env python3
"""Instructions each proxy's own process spends per request, counted by callgrind; prints a table.

Run through Benchmarks/instructions, which installs the tools and builds the release binary.
The same three proxies, configuration and origin as Benchmarks/proxy-vs-nginx, each run under
`valgrind --tool=callgrind`. For every scenario and proxy: counters zeroed, a fixed number of
requests sent with h2load, the proxy's processes (nginx's master and worker) dumped and summed.
Instruction counts repeat to a fraction of a percent where req/s on this machine moves by tens
of percent between runs; they leave out the kernel's work (system calls, loopback) and say
nothing of stalls, so they complement the throughput table rather than replace it. The few
connections of each run are opened and, over TLS, shaken hands inside the count: under 3 % of a
request at the default request count.
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

from proxy_vs_nginx import CLICK, LOAD_CORE, Setup, print_table_head, process_tree


def callgrind_control(pids, *flags):
    # It exits 0 also when it finds no such process.
    result = subprocess.run(["callgrind_control", *flags, *map(str, pids)], capture_output=True, text=True)
    if result.returncode != 0 or "Error" in result.stdout + result.stderr:
        sys.exit(f"callgrind_control {' '.join(flags)} {pids}: {result.stdout}{result.stderr}")


def counted(setup, name, url, requests, h2load_args):
    """Instructions per request in `name`'s processes while h2load sends `requests` to `url`."""
    load = ["taskset", "-c", LOAD_CORE, "h2load", *h2load_args, url]
    subprocess.run(load[:-1] + ["-n", "200", url], check=True, capture_output=True)  # connections to the origin made
    pids = process_tree(setup.pids[name])
    callgrind_control(pids, "--zero")
    callgrind_control(pids, "--instr=on")
    out = subprocess.run(load[:-1] + ["-n", str(requests), url], check=True, capture_output=True, text=True).stdout
    callgrind_control(pids, "--instr=off")
    callgrind_control(pids, "--dump")
    succeeded = int(re.search(r"(\d+) succeeded", out).group(1))
    if succeeded != requests:
        sys.exit(f"{name}: {succeeded} of {requests} requests succeeded on {url}\n{out}")
    total = 0
    for pid in pids:
        dumps = glob.glob(f"{setup.work}/callgrind.{pid}.*")
        if not dumps:
            continue
        with open(max(dumps, key=os.path.getmtime)) as f:
            total += int(re.search(r"^totals: (\d+)", f.read(), re.M).group(1))
    return total / requests


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="clickgate-instructions-")
    wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={work}/callgrind.%p"]
    # This valgrind cannot read the DWARF 5 debug information Swift writes; a copy without it runs.
    binary = f"{work}/clickgate"
    subprocess.run(["strip", "--strip-debug", "-o", binary, args.binary], check=True)
    setup = Setup(work, binary, wrap=wrap, start_seconds=120)
    lp = f"/lp?ttclid={CLICK}"
    scenarios = [
        ("plaintext h1 /lp (8 conns)", "http", lp, ["--h1", "-c8"]),
        ("TLS h1 /lp (8 conns)", "https", lp, ["--h1", "-c8"]),
        ("TLS h2 /lp (4 conns x 32 streams)", "https", lp, ["-c4", "-m32"]),
        ("plaintext h1 /go redirect (8 conns)", "http", f"/go?ttclid={CLICK}", ["--h1", "-c8"]),
    ]
    results = {}
    try:
        setup.start()
        setup.check_same_job()
        for scenario, scheme, path, load in scenarios:
            for name in setup.ports:
                results[(scenario, name)] = counted(setup, name, setup.url(name, scheme, path), args.requests, load)
                print(f"{scenario:38} {name:9} {results[(scenario, name)]:>10,.0f} instructions a request", file=sys.stderr, flush=True)
    finally:
        setup.stop()

    names = list(setup.ports)
    print_table_head(
        f"instructions a request in each proxy's processes (callgrind), {args.requests:,} requests a row",
        ["scenario", *names, "ClickGate ÷ nginx"])
    for scenario, *_ in scenarios:
        cells = [f"{results[(scenario, n)]:,.0f}" for n in names]
        print(f"| {scenario} | {' | '.join(cells)} | {results[(scenario, 'clickgate')] / results[(scenario, 'nginx')]:.2f}× |")


if __name__ == "__main__":
    main()
