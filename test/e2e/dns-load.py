# The DNS flood test's two sides (egress-flood.test.ts), bounded in count and time.
#   flood HOST PORT SOCKETS SECONDS: refused names from SOCKETS UDP sockets in turn, each at
#     most 4000 a second (under the fence's per-socket limit), until SECONDS pass or it is
#     stopped; prints how many it sent.
#   lookups HOST PORT NAME COUNT: after a second, looks NAME up COUNT times, 0.3 s apart,
#     each from a new socket, sent again after 1 s unanswered, at most 5 tries (as a stub
#     resolver does); prints one JSON line: for each lookup its tries, rcode (None: none)
#     and microseconds to the answer (or to giving up).
import json, os, select, signal, socket, struct, sys, time

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
addr = (host, port)


def query(qid, labels):
    q = b''.join(bytes([len(l)]) + l for l in labels) + b'\x00'
    return struct.pack('>HHHHHH', qid, 0x0100, 1, 0, 0, 0) + q + b'\x00\x01\x00\x01'


if mode == 'flood':
    count, secs = int(sys.argv[4]), float(sys.argv[5])
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    base = os.getpid() & 0xfff
    pre = [query(i, [b'%03x%05x' % (base, i), b'flood', b'test']) for i in range(65536)]
    n = 0
    end = time.monotonic() + secs

    def stopped(*_):
        # Stopped early (SIGTERM): still say how many were sent.
        print(n, flush=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stopped)
    window, rounds = time.monotonic(), 0
    while time.monotonic() < end:
        # At most 40 rounds (one datagram per socket) in 10 ms: 4000 a second a socket.
        now = time.monotonic()
        if now - window >= 0.01:
            window, rounds = now, 0
        if rounds >= 40:
            time.sleep(0.001)
            continue
        rounds += 1
        for s in socks:
            try:
                s.sendto(pre[n & 65535], addr)
            except OSError:
                pass
            n += 1
    print(n)
elif mode == 'lookups':
    name, count = sys.argv[4].encode(), int(sys.argv[5])
    time.sleep(1)
    out = []
    qid = os.getpid() & 0x7fff
    for _ in range(count):
        qid = (qid + 1) & 0xffff
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rcode, tries, began = None, 0, time.monotonic()
        while rcode is None and tries < 5:
            tries += 1
            try:
                s.sendto(query(qid, name.split(b'.')), addr)
            except OSError:
                pass
            deadline = time.monotonic() + 1
            while rcode is None and time.monotonic() < deadline:
                r, _, _ = select.select([s], [], [], max(0, deadline - time.monotonic()))
                if not r:
                    break
                data = s.recv(4096)
                if len(data) >= 12 and struct.unpack('>H', data[:2])[0] == qid:
                    rcode = data[3] & 0x0f
        s.close()
        out.append({'tries': tries, 'rcode': rcode, 'us': int((time.monotonic() - began) * 1e6)})
        time.sleep(0.3)
    print(json.dumps(out))
