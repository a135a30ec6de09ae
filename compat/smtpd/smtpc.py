#!/usr/bin/env python3
"""smtpc.py PORT [SRCADDR] < script : send script lines (CRLF added), print server bytes.
'!raw <python bytes literal>' sends bytes as is; '!wait' waits 1.5s for more output; '!close' stops sending."""
import socket, sys, time, ast, re
port = int(sys.argv[1]); src = sys.argv[2] if len(sys.argv) > 2 else '127.0.0.1'
s = socket.socket(); s.bind((src, 0)); s.connect(('127.0.0.1', port))
out = b''
closed = False
def complete(buf):
    # a final reply line: NNN<space>...\r\n at the end
    lines = buf.split(b'\r\n')
    return len(lines) >= 2 and re.match(rb'^\d{3}( |$)', lines[-2]) is not None and lines[-1] == b''
def drain(maxwait=5.0, idle=0.15):
    global out, closed
    start = len(out); end = time.time() + maxwait
    while time.time() < end and not closed:
        s.settimeout(idle if (len(out) > start and complete(out)) else max(0.01, end - time.time()))
        try:
            d = s.recv(65536)
        except socket.timeout:
            if len(out) > start and complete(out):
                return
            continue
        except OSError:
            closed = True; return
        if not d:
            closed = True; return
        out += d
drain()
for line in sys.stdin.read().split('\n'):
    if line == '' or closed:
        continue
    try:
        if line.startswith('!raw '):
            s.sendall(ast.literal_eval(line[5:]))
        elif line == '!wait':
            drain(1.5, 1.5); continue
        elif line == '!close':
            break
        else:
            s.sendall(line.encode('latin1') + b'\r\n')
    except OSError:
        break
    drain()
try:
    s.shutdown(socket.SHUT_WR)
except OSError:
    pass
drain(2.0, 0.3)
sys.stdout.buffer.write(out)
