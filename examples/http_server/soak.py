#!/usr/bin/env python3
"""Load while reloading: the HTTP server on 2 threads, two clients on loopback sending
requests without pause, while the counter plugin's library is replaced 200 times, some
replacements bad (garbage, a truncated build, another plugin's library). Every request must
get a 2xx answer from a complete version (the version header and body agree), and the
counter must neither go backwards nor lose an increment.

    soak.py HTTP_SERVER PLUGIN_BUILD_DIR [REPLACEMENTS]
"""
import http.client
import json
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

server_bin, built = sys.argv[1], sys.argv[2]
replacements = int(sys.argv[3]) if len(sys.argv) > 3 else 200
work = tempfile.mkdtemp(prefix="hotreload-soak.")
plugins = os.path.join(work, "plugins")
os.makedirs(plugins)
for name in ("greeter.so", "counter.so"):
    shutil.copy(os.path.join(built, name), plugins)

good = {"1.0.0": open(os.path.join(built, "counter.so"), "rb").read(),
        "2.0.0": open(os.path.join(built, "http_counter_v2.so"), "rb").read()}
rng = random.Random(20261126)
bad = {"garbage": bytes(rng.getrandbits(8) for _ in range(8192)),
       "truncated": good["2.0.0"][: len(good["2.0.0"]) * 2 // 3],
       "another plugin": open(os.path.join(built, "greeter.so"), "rb").read()}

server = subprocess.Popen([server_bin, "--plugins", plugins, "--port", "0", "--threads", "2",
                           "--debounce-ms", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
lines = queue.Queue()
log = []


def pump():
    for line in server.stdout:
        log.append(line)
        lines.put(line)


threading.Thread(target=pump, daemon=True).start()


def fail(why):
    print("soak failed:", why)
    print("".join(log[-40:]))
    server.kill()
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(1)


def wait_for(*needles, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            fail(f"no line with {needles} within {timeout} s")
        for n in needles:
            if n in line:
                return line


port = int(wait_for("listening on ").rsplit(":", 1)[1])
stop = threading.Event()
errors = []
counts = [[], []]
requests = [0, 0]


def client(i):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        for method, path in (("POST", "/counter/increment"), ("GET", "/hello?name=soak")):
            try:
                conn.request(method, path)
                r = conn.getresponse()
                body = r.read().decode()
            except Exception as e:  # a dropped connection is a failure too
                errors.append(f"{method} {path}: {e!r}")
                return
            requests[i] += 1
            if not 200 <= r.status < 300:
                errors.append(f"{method} {path}: {r.status} {body}")
                return
            version = r.getheader("X-Plugin-Version")
            if path.startswith("/counter"):
                reply = json.loads(body)
                if version not in good or reply["version"] != version:
                    errors.append(f"torn reply: header {version}, body {body}")
                    return
                counts[i].append(reply["count"])
            elif not body.startswith("Hello, soak!"):
                errors.append(f"greeter said {body!r}")
                return


clients = [threading.Thread(target=client, args=(i,)) for i in range(2)]
for c in clients:
    c.start()

kinds = ["2.0.0", "garbage", "1.0.0", "truncated", "2.0.0", "another plugin", "1.0.0"]
started = time.monotonic()
outcomes = {"reloaded": 0, "refused": 0}
serving = "1.0.0"
for n in range(replacements):
    kind = kinds[n % len(kinds)]
    data = good.get(kind) or bad[kind]
    if kind in good and kind == serving:
        kind = "2.0.0" if serving == "1.0.0" else "1.0.0"
        data = good[kind]
    tmp = os.path.join(plugins, ".counter.so.new")
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(plugins, "counter.so"))
    line = wait_for("reloaded plugin: counter", "Reload failed for plugin: counter")
    if "Reload failed" in line:
        outcomes["refused"] += 1
        if kind in good:
            fail(f"replacement {n} ({kind}) was refused: {line}")
    else:
        outcomes["reloaded"] += 1
        if kind not in good:
            fail(f"replacement {n} ({kind}) was loaded: {line}")
        serving = kind
    if errors:
        fail(errors[0])

stop.set()
for c in clients:
    c.join()
if errors:
    fail(errors[0])

# Each client saw its own increments in increasing order; together, every count once.
for i in range(2):
    if any(b <= a for a, b in zip(counts[i], counts[i][1:])):
        fail(f"client {i}: the counter went backwards")
seen = sorted(counts[0] + counts[1])
if seen != list(range(1, len(seen) + 1)):
    fail("an increment was lost or counted twice")
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
conn.request("GET", "/counter")
final = json.loads(conn.getresponse().read())["count"]
if final != len(seen):
    fail(f"final count {final}, {len(seen)} increments answered")

server.send_signal(2)
if server.wait(timeout=30) != 0:
    fail(f"server exit status {server.returncode}")
shutil.rmtree(work, ignore_errors=True)
print(f"soak: {replacements} replacements ({outcomes['reloaded']} reloaded, {outcomes['refused']} refused) "
      f"in {time.monotonic() - started:.1f} s; {sum(requests)} requests, all 2xx; counter {final}, none lost")
