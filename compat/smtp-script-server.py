#!/usr/bin/env python3
"""Scripted SMTP/LMTP server for recording Postfix 3.7.11's smtp/lmtp client.

Reads tests/golden/smtp/cases.txt, listens on one 127.0.0.1 port per case
(printing "NAME PORT" lines to PORTFILE once ready), answers each command as
the case's script says, and appends every byte received to OUTDIR/NAME.in.
tests/smtp.rs implements the same script in Rust.
Usage: smtp-script-server.py CASES PORTFILE OUTDIR
"""
import socket, sys, threading, os, time

def parse(path):
    cases, cur = [], None
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        w = line.split(" ", 1)
        if w[0] == "case":
            f = w[1].split()
            cur = {"name": f[0], "proto": f[1], "refused": "refused" in f[2:],
                   "stages": {}, "rcpt": [], "opt": "", "body": None}
            cases.append(cur)
        elif w[0] == "rcpt" and "@" in w[1].split()[0] and not w[1][0].isdigit():
            cur["rcpt"] = w[1].split()
        elif w[0] == "opt":
            cur["opt"] = w[1]
        elif w[0] == "body":
            cur["body"] = w[1]
        else:
            cur["stages"].setdefault(w[0], []).append(w[1])
    return cases

DEFAULTS = {
    "greeting": "220 sink.test ESMTP",
    "ehlo": "250-sink.test|250-PIPELINING|250-SIZE 10240000|250-8BITMIME|250-DSN|250 ENHANCEDSTATUSCODES",
    "helo": "250 sink.test",
    "mail": "250 2.1.0 Ok",
    "rcpt": "250 2.1.5 Ok",
    "data": "354 End data with <CR><LF>.<CR><LF>",
    "dot": "250 2.0.0 Ok: queued as QUEUED1",
    "rset": "250 2.0.0 Ok",
    "quit": "221 2.0.0 Bye",
}

def serve(conn, case, out):
    st = case["stages"]
    idx = {}
    def reply(stage):
        lst = st.get(stage, [])
        i = idx.get(stage, 0)
        idx[stage] = i + 1
        r = lst[i] if i < len(lst) else (lst[-1] if lst and stage in ("dot",) and case["proto"] == "smtp" else DEFAULTS[stage])
        if r == "hang":
            time.sleep(30)
            raise EOFError
        if r == "close":
            raise EOFError
        conn.sendall(("\r\n".join(r.split("|")) + "\r\n").encode())
    f = conn.makefile("rb")
    def rec(b):
        with open(out, "ab") as o:
            o.write(b)
    try:
        reply("greeting")
        naccepted = 0
        while True:
            line = f.readline()
            if not line:
                return
            rec(line)
            verb = line[:4].upper()
            if verb in (b"EHLO", b"LHLO"):
                reply("ehlo")
            elif verb == b"HELO":
                reply("helo")
            elif verb == b"MAIL":
                reply("mail")
            elif verb == b"RCPT":
                i = idx.get("rcpt", 0)
                lst = st.get("rcpt", [])
                r = lst[i] if i < len(lst) else DEFAULTS["rcpt"]
                if r.startswith("2"):
                    naccepted += 1
                reply("rcpt")
            elif verb == b"DATA":
                reply("data")
                if not st.get("data", ["3"])[0].startswith("3"):
                    continue
                while True:
                    l = f.readline()
                    if not l:
                        return
                    rec(l)
                    if l == b".\r\n":
                        break
                n = naccepted if case["proto"] == "lmtp" else 1
                for _ in range(n):
                    reply("dot")
            elif verb == b"RSET":
                reply("rset")
            elif verb == b"QUIT":
                reply("quit")
                return
            else:
                conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")
    except (EOFError, OSError):
        pass
    finally:
        conn.close()

def main():
    cases = parse(sys.argv[1])
    outdir = sys.argv[3]
    os.makedirs(outdir, exist_ok=True)
    ports = []
    for c in cases:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        if c["refused"]:
            s.close()
        else:
            s.listen(5)
            def loop(s=s, c=c):
                while True:
                    conn, _ = s.accept()
                    threading.Thread(target=serve, args=(conn, c, os.path.join(outdir, c["name"] + ".in")), daemon=True).start()
            threading.Thread(target=loop, daemon=True).start()
        ports.append("%s %d" % (c["name"], port))
    with open(sys.argv[2] + ".tmp", "w") as p:
        p.write("\n".join(ports) + "\n")
    os.rename(sys.argv[2] + ".tmp", sys.argv[2])
    time.sleep(float(os.environ.get("SERVER_LIFETIME", "120")))

main()
