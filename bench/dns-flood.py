# Sends refused names from one UDP socket as fast as it can for argv[3] seconds; prints the count.
import socket, sys, time, struct, os
host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
pre = [b''.join([struct.pack('>HHHHHH', i & 0xffff, 0x0100, 1, 0, 0, 0), b'\x08', b'%08x' % i, b'\x05flood\x04test\x00', b'\x00\x01\x00\x01']) for i in range(65536)]
n = 0; end = time.monotonic() + secs; addr = (host, port)
while True:
    for i in range(256):
        try: s.sendto(pre[(n + i) & 65535], addr)
        except OSError: pass
    n += 256
    if time.monotonic() >= end: break
print(n)
