#!/usr/bin/env python3
"""token_fcgi_client.py: a tiny FastCGI client for tests/unit/token_modes.sh.

Usage: token_fcgi_client.py ADDR MODE
  ADDR  unix:PATH or HOST:PORT
  MODE  keepalive  two requests on one kept-alive connection, the first
                   with a body the service does not read; prints both
                   status lines
        dups       repeated parameters, as nginx < 1.23 sends repeated
                   headers: prints the status line and Set-Cookie (if
                   any) of a logout with two HTTP_COOKIE parameters, then
                   the status of a token request with two HTTP_ORIGIN
        garbage    send bytes that are not FastCGI, then close
        idle       connect and sit idle until the peer closes; prints
                   "closed" when it does
"""
import socket
import struct
import sys


def connect(addr):
    if addr.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(addr[5:])
    else:
        host, port = addr.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    return s


def record(rtype, rid, content):
    pad = (8 - len(content) % 8) % 8
    return struct.pack("!BBHHBB", 1, rtype, rid, len(content), pad, 0) + content + b"\0" * pad


def params(pairs):
    out = b""
    if isinstance(pairs, dict):
        pairs = list(pairs.items())
    for k, v in pairs:
        k, v = k.encode(), v.encode()
        for n in (len(k), len(v)):
            out += bytes([n]) if n < 128 else struct.pack("!I", n | 0x80000000)
        out += k + v
    return out


def request(s, rid, env, body, keep):
    data = record(1, rid, struct.pack("!HB5x", 1, 1 if keep else 0))
    data += record(4, rid, params(env)) + record(4, rid, b"")
    if body:
        data += record(5, rid, body)
    data += record(5, rid, b"")
    s.sendall(data)
    out = b""
    while True:
        hdr = recvn(s, 8)
        _, rtype, _, clen, plen, _ = struct.unpack("!BBHHBB", hdr)
        content = recvn(s, clen)
        recvn(s, plen)
        if rtype == 6:
            out += content
        elif rtype == 3:
            return out


def recvn(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def main():
    addr, mode = sys.argv[1], sys.argv[2]
    s = connect(addr)
    s.settimeout(10)
    if mode == "keepalive":
        env = {"REQUEST_METHOD": "POST", "SCRIPT_NAME": "/auth/token",
               "CONTENT_LENGTH": "20000", "CONTENT_TYPE": "text/plain"}
        first = request(s, 1, env, b"x" * 20000, True)
        env = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/auth/jwks.json"}
        second = request(s, 1, env, b"", True)
        print(first.split(b"\r\n")[0].decode())
        print(second.split(b"\r\n")[0].decode())
    elif mode == "dups":
        env = [("REQUEST_METHOD", "POST"), ("SCRIPT_NAME", "/auth/logout"),
               ("HTTP_COOKIE", "a=1"), ("HTTP_COOKIE", "parley_session=bad\\value")]
        lines = request(s, 1, env, b"", True).split(b"\r\n")
        print(lines[0].decode())
        print(b"".join(l for l in lines if l.startswith(b"Set-Cookie")).decode())
        env = [("REQUEST_METHOD", "POST"), ("SCRIPT_NAME", "/auth/token"),
               ("HTTP_HOST", "chat.example"), ("HTTP_ORIGIN", "https://chat.example"),
               ("HTTP_ORIGIN", "https://evil.example")]
        print(request(s, 1, env, b"", True).split(b"\r\n")[0].decode())
    elif mode == "garbage":
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n" + b"\xff" * 100)
        try:
            s.recv(100)
        except OSError:
            pass
    elif mode == "idle":
        s.settimeout(30)
        print("connected", flush=True)
        try:
            while s.recv(100):
                pass
        except OSError:
            pass
        print("closed")


if __name__ == "__main__":
    main()
