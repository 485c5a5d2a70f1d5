"""Cached-fetch latency from a Python client, the way botocore's container provider asks.

Reads {"targets": [{"name", "url", "token"}], "n": N, "blocks": B} on stdin; for each block
and each target, N/B requests over one kept-alive connection and N/(5B) with a new
connection each. Prints {"<name>": {"keepalive": [ms...], "fresh": [ms...]}} as JSON.
"""
import http.client
import json
import sys
import time
from urllib.parse import urlparse

cfg = json.load(sys.stdin)
out = {t["name"]: {"keepalive": [], "fresh": []} for t in cfg["targets"]}


def get(conn, path, token):
    t0 = time.perf_counter_ns()
    conn.request("GET", path, headers={"Authorization": token})
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        raise SystemExit(f"HTTP {r.status}")
    return (time.perf_counter_ns() - t0) / 1e6


for block in range(cfg["blocks"]):
    for t in cfg["targets"]:
        u = urlparse(t["url"])
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        for _ in range(20):
            get(conn, u.path or "/", t["token"])
        for _ in range(cfg["n"] // cfg["blocks"]):
            out[t["name"]]["keepalive"].append(get(conn, u.path or "/", t["token"]))
        conn.close()
        for _ in range(cfg["n"] // (5 * cfg["blocks"])):
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
            out[t["name"]]["fresh"].append(get(c, u.path or "/", t["token"]))
            c.close()
json.dump(out, sys.stdout)
