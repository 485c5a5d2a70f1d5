"""
The hostile runner user of agent-launcher.test.ts, after disable-sudo: it starts root's copy
of run's launcher itself (the one command sudo keeps for it), lends it a workspace of its
own and swaps directories there for links while root sweeps the set-uid bits after the
command. The command (as the agent, through the idmapped mount) makes PAIRS directories
d<i> of FILES set-uid files each, stored as the runner's, plus e/ that is never swapped;
l<i> beside each is a link to `outside`, a folder of the runner's own set-uid files. Once
the mount is gone, a child swaps every d<i> with its l<i> (renameat2 RENAME_EXCHANGE)
over and over, so a path root found under d<i> may lead through the link when root opens
it. Prints the launcher's messages, one JSON line each. Bounded: the swapping stops after
SWAP_S seconds or when the launcher ends, the whole run after RUN_S seconds.

usage: launcher-swap.py <node> <agent.mjs> <workspace> <outside>
"""
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time

PAIRS = 8
FILES = 20
SWAP_S = 20
RUN_S = 60
AT_FDCWD = -100
RENAME_EXCHANGE = 2

node, program, ws, outside = sys.argv[1:5]
for i in range(PAIRS):
    os.symlink(outside, os.path.join(ws, "l%d" % i))

swapper = os.fork()
if swapper == 0:
    libc = ctypes.CDLL(None, use_errno=True)
    pairs = [
        (os.path.join(ws, "d%d" % i).encode(), os.path.join(ws, "l%d" % i).encode())
        for i in range(PAIRS)
    ]
    deadline = time.monotonic() + SWAP_S
    while time.monotonic() < deadline:
        for d, link in pairs:
            # Fails while the workspace is lent (the mount shows it as the agent's).
            libc.renameat2(AT_FDCWD, d, AT_FDCWD, link, RENAME_EXCHANGE)
    os._exit(0)

names = " ".join(["d%d" % i for i in range(PAIRS)] + ["e"])
files = " ".join("x%d" % j for j in range(FILES))
command = 'for d in %s; do mkdir "$d"; for f in %s; do : > "$d/$f"; chmod 4755 "$d/$f"; done; done' % (
    names,
    files,
)
config = {"argv": ["/bin/sh", "-c", command], "env": {}, "cwd": ws, "workspace": ws, "files": []}
launcher = subprocess.Popen(
    ["sudo", "-n", node, program], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
)
launcher.stdin.write((json.dumps({"op": "config", "config": config}) + "\n").encode())
launcher.stdin.flush()
buf = b""
end = time.monotonic() + RUN_S
try:
    while time.monotonic() < end:
        ready, _, _ = select.select([launcher.stdout], [], [], 1)
        if not ready:
            continue
        chunk = os.read(launcher.stdout.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            print(line.decode(), flush=True)
            op = json.loads(line).get("op")
            if op == "ready":
                launcher.stdin.write(b'{"op":"go"}\n')
                launcher.stdin.flush()
            elif op == "error":
                launcher.stdin.write(b'{"op":"abort"}\n')
                launcher.stdin.flush()
finally:
    os.kill(swapper, signal.SIGKILL)
    os.waitpid(swapper, 0)
    launcher.stdin.close()
    launcher.wait(timeout=30)
# Each d<i> back as a directory, for the checks after.
for i in range(PAIRS):
    d, link = os.path.join(ws, "d%d" % i), os.path.join(ws, "l%d" % i)
    if os.path.islink(d):
        os.rename(d, d + ".swap")
        os.rename(link, d)
        os.rename(d + ".swap", link)
