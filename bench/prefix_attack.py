#!/usr/bin/env python3
"""1,000 unauthenticated sockets that each send a 4-byte prefix announcing
65,280 bytes: how much does the comet's RSS grow, and how many sockets does
it keep open?

    target/release/courier up --api-key k &
    python3 bench/prefix_attack.py $! 127.0.0.1:3101
"""
import socket, struct, sys, time

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

pid, addr = int(sys.argv[1]), sys.argv[2]
host, port = addr.rsplit(":", 1)
before = rss_kib(pid)
socks = []
for i in range(1000):
    s = socket.create_connection((host, int(port)))
    s.sendall(struct.pack(">I", 65280))
    socks.append(s)
time.sleep(1.0)  # let the comet read every prefix (this is a measurement, not a test)
after = rss_kib(pid)
closed = 0
for s in socks:
    s.setblocking(False)
    try:
        data = s.recv(65536)
        # An error frame, then EOF.
        while data:
            data = s.recv(65536)
        closed += 1
    except BlockingIOError:
        pass
    except ConnectionResetError:
        closed += 1
print(f"rss before {before} KiB, after 1000 prefixes {after} KiB, growth {(after-before)/1024:.1f} MiB; "
      f"{closed} of 1000 sockets already closed by the comet")
