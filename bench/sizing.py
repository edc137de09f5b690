#!/usr/bin/env python3
"""What N tunnels cost egress-proxy in open files, direct memory, heap and RSS: the measurements
behind the sizing table in docs/operations.md. Not part of CI.

    bench/sizing.py [--jar proxy/target/egress-proxy.jar] [--tunnels 1000,4000] [--kinds idle,slow]
                    [--splice true,false] [--direct 1g] [--heap 256m]

For every combination it starts the proxy with the launcher's JVM flags (-Xms/-Xmx, direct
memory), an origin on loopback, and opens the tunnels one kind at a time:
  idle  CONNECT, one 16-byte exchange, then nothing (a keep-alive registry connection),
  slow  CONNECT to an origin that streams 4 MiB, and a client that reads nothing (4 KiB receive
        buffer): the worst a slow reader pulling a big layer holds in the proxy.
Tunnels the proxy refuses (503: its open-file or memory budget) are counted, not opened. Once
the proxy's held direct memory has not grown for 2 s it prints one row: open files of the proxy
process, bytes held in Netty's buffers (egress_proxy_memory_held_bytes), the JVM's heap
after a full GC (jcmd GC.run, then jvm_memory_used_bytes{area="heap"}) and the process RSS.
KiB/tun is held per admitted tunnel. With the default --direct 1g the budget (3/4 of it) refuses
no tunnel up to 4,000 slow readers; --direct 256m (the launcher's default) shows where it does.
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PROXY_PORT, ADMIN_PORT, ORIGIN_PORT = 13328, 19328, 18382


def origin():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", ORIGIN_PORT))
    srv.listen(4096)
    chunk = bytes(range(256)) * 256

    def serve(c):
        try:
            first = c.recv(16)
            if first == b"S":  # a slow reader's download
                for _ in range(64):
                    c.sendall(chunk)
            else:
                while first:  # echo
                    c.sendall(first)
                    first = c.recv(16)
            c.recv(1)  # hold open until the client closes
        except OSError:
            pass
        finally:
            c.close()

    def loop():
        while True:
            c, _ = srv.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def metrics():
    text = urllib.request.urlopen(f"http://127.0.0.1:{ADMIN_PORT}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        m = re.match(r'^([a-z_]+(?:\{[^}]*\})?) ([0-9.eE+-]+)$', line)
        if m:
            values[m.group(1)] = float(m.group(2))
    return values


def heap_used(values):
    return sum(v for k, v in values.items() if k.startswith("jvm_memory_used_bytes{") and 'area="heap"' in k)


def start_proxy(jar, splice, direct, heap, workdir):
    conf = os.path.join(workdir, "sizing.conf")
    with open(conf, "w") as f:
        f.write(f"""egress-proxy {{
  listen {{ host = "127.0.0.1", port = {PROXY_PORT} }}
  admin {{ host = "127.0.0.1", port = {ADMIN_PORT} }}
  allowlist {{ presets = [], hosts = ["127.0.0.1/32:{ORIGIN_PORT}"] }}
  destinations.allow-private = ["127.0.0.0/8"]
  clients.max-connections-per-client = 20000
  tunnels.sni-check = off
  relay.splice = {splice}
  reload.watch = false
}}
""")
    cmd = ["java", f"-Xms{heap}", f"-Xmx{heap}", f"-XX:MaxDirectMemorySize={direct}", "-XX:+UseSerialGC",
           "-jar", jar, "--config", conf]
    log = open(os.path.join(workdir, "proxy.log"), "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{ADMIN_PORT}/readyz", timeout=1).status == 200:
                return p
        except OSError:
            time.sleep(0.1)
    p.kill()
    sys.exit("the proxy did not become ready; see " + log.name)


def tunnel(kind):
    s = socket.socket()
    if kind == "slow":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", PROXY_PORT))
    s.sendall(f"CONNECT 127.0.0.1:{ORIGIN_PORT} HTTP/1.1\r\nHost: 127.0.0.1:{ORIGIN_PORT}\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        b = s.recv(1)
        if not b:
            raise OSError("closed before the answer")
        head += b
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(head.split(b"\r\n")[0].decode())
    if kind == "slow":
        s.sendall(b"S")
    else:
        s.sendall(b"0123456789abcdef")
        got = b""
        while len(got) < 16:
            got += s.recv(16 - len(got))
    return s


def measure(args, kind, n, splice):
    with tempfile.TemporaryDirectory() as workdir:
        # A private copy of the jar, removed with workdir: a jar rewritten under a running JVM
        # (mvn package meanwhile) can crash it.
        jar = shutil.copy(args.jar, os.path.join(workdir, "egress-proxy.jar"))
        p = start_proxy(jar, splice, args.direct, args.heap, workdir)
        try:
            socks, refused = [], 0
            for _ in range(n):
                try:
                    socks.append(tunnel(kind))
                except OSError as e:
                    if " 503 " not in str(e):
                        raise
                    refused += 1  # the budget's answer: 503 connection_limit or memory_budget
            held, last_change = -1.0, time.time()
            while time.time() - last_change < 2:
                now = metrics().get("egress_proxy_memory_held_bytes", 0.0)
                if now > held:
                    held, last_change = now, time.time()
                time.sleep(0.25)
            subprocess.run(["jcmd", str(p.pid), "GC.run"], stdout=subprocess.DEVNULL, check=False)
            values = metrics()
            fds = len(os.listdir(f"/proc/{p.pid}/fd"))
            with open(f"/proc/{p.pid}/status") as f:
                rss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024
            mib = 1 << 20
            held_per = held / len(socks) / 1024 if socks else 0.0
            print(f"{kind:5} {n:>7} {refused:>7} {str(splice):>6} {args.direct:>6} {fds:>9} {held / mib:>10.1f} "
                  f"{held_per:>10.1f} {heap_used(values) / mib:>9.1f} {rss / mib:>8.1f}", flush=True)
            for s in socks:
                s.close()
        finally:
            p.terminate()
            p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jar", default=os.path.join(os.path.dirname(__file__), "..", "proxy", "target", "egress-proxy.jar"))
    ap.add_argument("--tunnels", default="1000,4000")
    ap.add_argument("--kinds", default="idle,slow")
    ap.add_argument("--splice", default="true,false")
    ap.add_argument("--direct", default="1g")
    ap.add_argument("--heap", default="256m")
    args = ap.parse_args()
    origin()
    print(f"{'kind':5} {'tunnels':>7} {'503s':>7} {'splice':>6} {'direct':>6} {'open fds':>9} {'held MiB':>10} "
          f"{'KiB/tun':>10} {'heap MiB':>9} {'RSS MiB':>8}")
    for kind in args.kinds.split(","):
        for splice in args.splice.split(","):
            for n in (int(x) for x in args.tunnels.split(",")):
                measure(args, kind, n, splice)


if __name__ == "__main__":
    main()
