#!/usr/bin/python3
"""A loopback TCP "blackhole": a listening socket whose accept queue is full.

Linux drops a SYN to a listener whose accept queue is full (it does not answer RST), so a
client's connect() hangs until its own timeout -- the same symptom as a firewall that drops
packets ("dial tcp ...: i/o timeout"), produced without iptables and without a netns.

listen(0) leaves room for exactly one established connection; this script fills it itself,
checks that a second connect() really times out, prints "ready <port>" and sleeps until killed.

Usage: blackhole.py HOST PORT [TAG]   (PORT 0 picks a free one; TAG is ignored, it only
marks the command line so that world.sh down can tell its own process from a recycled pid)
"""
import signal
import socket
import sys


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(0)
    port = listener.getsockname()[1]

    filler = socket.create_connection((host, port), timeout=2)  # occupies the only accept slot

    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(0.3)
    try:
        probe.connect((host, port))
    except (socket.timeout, TimeoutError):
        pass  # expected: SYN dropped
    else:
        print(f"blackhole: a second connect() to {host}:{port} succeeded; "
              "full accept queues do not drop SYNs on this kernel", file=sys.stderr)
        return 1
    finally:
        probe.close()

    print(f"ready {port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            signal.pause()
    finally:
        filler.close()
        listener.close()


if __name__ == "__main__":
    sys.exit(main())
