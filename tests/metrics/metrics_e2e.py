#!/usr/bin/python3
"""tests/metrics/metrics_e2e.py - /metrics against the real tools.

  metrics_e2e.py promtool   DAEMON CLI TRAFFIC
      a daemon with metrics_listen on, known traffic (metrics_traffic),
      /metrics fetched: `promtool check metrics` must pass with no lint
      finding; histograms cumulative and ending in +Inf = _count; a 404
      elsewhere; the scrape agrees with STATS
  metrics_e2e.py prometheus DAEMON CLI TRAFFIC
      the same daemon scraped every second by a real Prometheus server
      (temporary config and storage, a free port); its HTTP API's value of
      the hit-tokens counter must equal the daemon's STATS value
  metrics_e2e.py watch      DAEMON CLI TRAFFIC
      `prefixcache-cli stats --watch` into a pipe: two intervals with
      --count 2 (plain lines, rates from two snapshots), and one ended by
      SIGINT (Ctrl-C) with status 0

Standard library only (Debian's /usr/bin/python3).  Every process it starts
is killed in `finally`, whatever fails.  Exit 0: pass; 1: fail (the reason
on stderr); 77: skipped (a tool missing).
"""
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROUNDS = 20  # "demo" gets 2 lookups a round: past the 32 that promote it
DEADLINE = 25.0  # seconds for the whole test


def die_with_us():
    """preexec_fn: the child gets SIGKILL if this script dies, however."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    os.setsid()


def fail(msg):
    raise SystemExit("metrics_e2e: FAIL: " + msg)


def wait_for(what, fn, timeout):
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            fail("timed out waiting for " + what)
        time.sleep(0.05)


def http_get(url, timeout=5.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stats(cli, ep):
    out = subprocess.run([cli, "--endpoint", ep, "stats", "--json"],
                         check=True, capture_output=True, text=True,
                         timeout=10).stdout
    return json.loads(out)


def start_daemon(daemon, tmp, procs):
    ep = "ipc://%s/pc.sock" % tmp
    log = open(os.path.join(tmp, "daemon.log"), "w+")
    # 16 blocks: the traffic's older prompts are evicted into a small
    # second tier, where later lookups find them (tier="2" hits).
    p = subprocess.Popen([daemon, "--endpoint", ep, "--pool-blocks", "16",
                          "--layers", "1", "--kv-heads", "1", "--head-dim", "8",
                          "--tier2-bytes", "64KiB", "--tier2-path", tmp,
                          "--metrics-listen", "127.0.0.1:0"],
                         stdout=log, stderr=log, preexec_fn=die_with_us)
    procs.append(p)

    def port():
        if p.poll() is not None:
            log.seek(0)
            fail("prefixcached exited: " + log.read())
        log.seek(0)
        m = re.search(r"metrics: http://127\.0\.0\.1:(\d+)/metrics", log.read())
        return m and int(m.group(1))
    return ep, wait_for("the daemon's metrics line", port, 10)


def samples(text):
    """{(name, frozenset(labels)): value} from the exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        if not m:
            fail("unparsable line: " + line)
        labels = frozenset(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"',
                                      m.group(3) or ""))
        key = (m.group(1), labels)
        if key in out:
            fail("duplicate series: " + line)
        out[key] = float(m.group(4))
    return out


def check_histograms(s):
    by = {}
    for (name, labels), v in s.items():
        if name.endswith("_bucket"):
            d = dict(labels)
            le = d.pop("le")
            by.setdefault((name[:-7], frozenset(d.items())), []).append(
                (float("inf") if le == "+Inf" else float(le), v))
    if not by:
        fail("no histogram buckets")
    for (base, labels), bk in by.items():
        bk.sort()
        if bk[-1][0] != float("inf"):
            fail("%s%s has no +Inf bucket" % (base, dict(labels)))
        for a, b in zip(bk, bk[1:]):
            if b[1] < a[1]:
                fail("%s%s buckets not cumulative" % (base, dict(labels)))
        cnt = s.get((base + "_count", labels))
        if cnt != bk[-1][1]:
            fail("%s%s: +Inf %s != _count %s" % (base, dict(labels), bk[-1][1], cnt))


def hit_tokens(st):
    return sum(v for k, v in st.items()
               if re.match(r"^(ns\.hit_tokens\.tier\d\..*|ns_other\.hit_tokens\.tier\d)$", k))


def run_promtool(daemon, cli, ep, port, tmp):
    promtool = shutil.which("promtool")
    if not promtool:
        print("metrics_e2e: SKIP: no promtool (Debian package prometheus)")
        return 77
    base = "http://127.0.0.1:%d" % port
    code, _ = http_get(base + "/nope")
    if code != 404:
        fail("/nope answered %d, not 404" % code)
    try:
        with urllib.request.urlopen(urllib.request.Request(
                base + "/metrics", data=b"x", method="POST"), timeout=5) as r:
            code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    if code != 405:
        fail("POST /metrics answered %d, not 405" % code)
    code, text = http_get(base + "/metrics")
    if code != 200:
        fail("/metrics answered %d" % code)
    st = stats(cli, ep)
    with open(os.path.join(tmp, "metrics.txt"), "w") as f:
        f.write(text)
    r = subprocess.run([promtool, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=20)
    if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
        fail("promtool check metrics (rc %d):\n%s%s" % (r.returncode, r.stdout,
                                                        r.stderr))
    s = samples(text)
    check_histograms(s)
    # The traffic is over: counters of the scrape equal STATS's.
    demo = s.get(("prefixcache_hit_tokens_total",
                  frozenset({("namespace", "demo"), ("tier", "1")})))
    if demo is None or demo != st["ns.hit_tokens.tier1.demo"] or demo <= 0:
        fail("hit tokens of demo: /metrics %s, STATS %s" %
             (demo, st.get("ns.hit_tokens.tier1.demo")))
    odd = s.get(("prefixcache_lookups_total",
                 frozenset({("namespace", 'q\\"b\\\\s')})))
    other = s.get(("prefixcache_lookups_total",
                   frozenset({("namespace", "(other)")})))
    if odd is None or not other:
        fail("the odd namespace has no series of its own (label escaping), "
             "or (other) is missing")
    total = sum(v for (n, _), v in s.items() if n == "prefixcache_hit_tokens_total")
    if total != hit_tokens(st):
        fail("sum of hit tokens: /metrics %s, STATS %s" % (total, hit_tokens(st)))
    t2 = s.get(("prefixcache_hit_tokens_total",
                frozenset({("namespace", "demo"), ("tier", "2")})))
    if not t2 or t2 != st["ns.hit_tokens.tier2.demo"]:
        fail("tier 2 hit tokens of demo: /metrics %s, STATS %s" %
             (t2, st.get("ns.hit_tokens.tier2.demo")))
    lease = s.get(("prefixcache_refusals_total", frozenset({("reason", "lease")})))
    if lease != ROUNDS:
        fail("refusals{reason=lease}: %s, expected %d" % (lease, ROUNDS))
    print("metrics_e2e: promtool: ok (%d series, %d hit tokens)" % (len(s), total))
    return 0


def run_prometheus(daemon, cli, ep, port, tmp, procs):
    prom = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not os.access(prom, os.X_OK):
        print("metrics_e2e: SKIP: no prometheus (Debian package prometheus)")
        return 77
    ppor = free_port()
    cfg = os.path.join(tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: prefixcache\n"
                "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % port)
    log = open(os.path.join(tmp, "prometheus.log"), "w+")
    p = subprocess.Popen([prom, "--config.file=" + cfg,
                          "--storage.tsdb.path=" + os.path.join(tmp, "data"),
                          "--web.listen-address=127.0.0.1:%d" % ppor,
                          "--log.level=warn"],
                         stdout=log, stderr=log, preexec_fn=die_with_us)
    procs.append(p)
    want = stats(cli, ep)["ns.hit_tokens.tier1.demo"]
    if want <= 0:
        fail("no hit tokens in STATS")
    q = 'prefixcache_hit_tokens_total{namespace="demo",tier="1"}'
    url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (ppor, urllib.parse.quote(q))

    def value():
        if p.poll() is not None:
            log.seek(0)
            fail("prometheus exited: " + log.read())
        try:
            code, body = http_get(url, timeout=2)
        except (urllib.error.URLError, ConnectionError, OSError):
            return None
        if code != 200:
            return None
        res = json.loads(body)["data"]["result"]
        return res and float(res[0]["value"][1])
    got = wait_for("prometheus to scrape the hit tokens", value, 15)
    if got != want:
        fail("prometheus says %s hit tokens, STATS says %s" % (got, want))
    print("metrics_e2e: prometheus: ok (%s hit tokens, scraped and queried)" % got)
    return 0


WATCH_LINE = re.compile(r"^\d\d:\d\d:\d\d hit_rate=(-|[\d.]+%) hit_tokens=\d+ "
                        r"lookup_tokens=\d+ pool_used=[\d.]+% "
                        r"evictions_per_s=[\d.]+ requests_per_s=[\d.]+$")


def run_watch(cli, ep, traffic, procs):
    # Traffic during the first interval, so that a rate is not zero.
    t = subprocess.Popen([traffic, ep, "5"])
    procs.append(t)
    r = subprocess.run([cli, "--endpoint", ep, "stats", "--watch", "0.5",
                        "--count", "2"], capture_output=True, text=True,
                       timeout=10)
    lines = r.stdout.splitlines()
    if r.returncode != 0 or len(lines) != 2 or "\033" in r.stdout:
        fail("stats --watch --count 2: rc %d, output:\n%s%s" %
             (r.returncode, r.stdout, r.stderr))
    for line in lines:
        if not WATCH_LINE.match(line):
            fail("stats --watch line: " + line)
    t.wait(timeout=10)
    p = subprocess.Popen([cli, "--endpoint", ep, "stats", "--watch", "0.3"],
                         stdout=subprocess.PIPE, text=True)
    procs.append(p)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=5)
    if p.returncode != 0 or not out.splitlines():
        fail("stats --watch after SIGINT: rc %d, output %r" % (p.returncode, out))
    print("metrics_e2e: watch: ok (%s)" % lines[0])
    return 0


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("promtool", "prometheus", "watch"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, daemon, cli, traffic = sys.argv[1:]
    def stop(sig, frame):  # a timeout or ctest's kill: clean up, then fail
        raise SystemExit("metrics_e2e: FAIL: signal %d" % sig)
    signal.signal(signal.SIGALRM, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.alarm(int(DEADLINE) + 5)  # a last resort: never hang ctest
    tmp = tempfile.mkdtemp(prefix="pc-metrics-")
    procs = []
    try:
        ep, port = start_daemon(daemon, tmp, procs)
        if mode == "promtool":  # a scrape before the namespaces get series:
            # the listener's memo of the stats' rows must follow them
            code, _ = http_get("http://127.0.0.1:%d/metrics" % port)
            if code != 200:
                fail("/metrics before traffic answered %d" % code)
        subprocess.run([traffic, ep, str(ROUNDS)], check=True, timeout=20)
        if mode == "watch":
            return run_watch(cli, ep, traffic, procs)
        if mode == "promtool":
            return run_promtool(daemon, cli, ep, port, tmp)
        return run_prometheus(daemon, cli, ep, port, tmp, procs)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        log = os.path.join(tmp, "daemon.log")
        if os.path.exists(log):  # sanitizer reports reach ctest's regex
            with open(log) as f:
                txt = f.read()
            if "ERROR:" in txt or "runtime error:" in txt:
                print(txt)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
