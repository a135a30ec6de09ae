#!/usr/bin/env python3
"""Record bounce(8) notices from a private Postfix 3.7.11 instance.

Run as root on a host with Debian's postfix package installed (not
running). It starts an instance under /var/tmp/rostfix-bounce-record with
no qmgr (so every queue file stays in incoming/), submits one message with
sendmail, then speaks Postfix's bounce protocol on private/defer and
private/trace to log recipients and ask for a delay warning and a success
notice, and writes the notices that cleanup queued (as postcat -bh shows
them) to tests/golden/bounce/. Usage: compat/bounce-record.py [OUTDIR]
"""
import os, socket, subprocess, sys, time, shutil, glob

BASE = "/var/tmp/rostfix-bounce-record"
CONF = BASE + "/conf"
SPOOL = BASE + "/spool"
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "bounce")

MAIN_CF = f"""compatibility_level = 3.6
queue_directory = {SPOOL}
data_directory = {BASE}/data
meta_directory = {CONF}
maillog_file = {BASE}/maillog
myhostname = mx.example.test
mydomain = example.test
inet_interfaces = 127.0.0.1
notify_classes = resource, software, bounce, delay, 2bounce
delay_warning_time = 1h
"""
MASTER_CF = """pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
rewrite   unix  -       -       n       -       -       trivial-rewrite
postlog   unix-dgram n  -       n       -       1       postlogd
"""

def pf(*args, **kw):
    return subprocess.run(list(args), check=True, **kw)

def records(path):
    data = open(path, "rb").read()
    i, out = 0, []
    while i < len(data):
        t = data[i]; i += 1
        n, shift = 0, 0
        while True:
            b = data[i]; i += 1
            n |= (b & 0x7f) << shift; shift += 7
            if not b & 0x80:
                break
        out.append((chr(t), i - 1 - (shift // 7) , data[i:i + n])); i += n
    return out

def rcpt_offset(path):
    off = 0
    data = open(path, "rb").read()
    i = 0
    while i < len(data):
        start = i
        t = chr(data[i]); i += 1
        n, shift = 0, 0
        while True:
            b = data[i]; i += 1
            n |= (b & 0x7f) << shift; shift += 7
            if not b & 0x80:
                break
        if t == "R":
            return start
        i += n
    raise SystemExit("no R record")

def attr0(pairs):
    out = b""
    for k, v in pairs:
        out += k.encode() + b"\0" + str(v).encode() + b"\0"
    return out + b"\0"

def scan0(sock):
    buf = b""
    while not buf.endswith(b"\0\0") or buf.count(b"\0") % 2 == 0:
        c = sock.recv(1)
        if not c:
            break
        buf += c
        if buf == b"\0":
            break
    return buf

def request(service, pairs):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(f"{SPOOL}/private/{service}")
    hello = scan0(s)
    assert b"protocol\0delivery_status_protocol\0" in hello, hello
    s.sendall(attr0(pairs))
    reply = scan0(s)
    s.close()
    return reply

def main():
    pf("sh", "-c", f"postfix -c {CONF} stop >/dev/null 2>&1 || true")
    shutil.rmtree(BASE, ignore_errors=True)
    os.makedirs(CONF); os.makedirs(BASE + "/data"); os.makedirs(SPOOL)
    shutil.chown(BASE + "/data", "postfix", "postfix")
    open(CONF + "/main.cf", "w").write(MAIN_CF)
    open(CONF + "/master.cf", "w").write(MASTER_CF)
    shutil.copy("/usr/share/postfix/dynamicmaps.cf", CONF) if os.path.exists("/usr/share/postfix/dynamicmaps.cf") else open(CONF + "/dynamicmaps.cf", "w").close()
    for f in ("postfix-files",):
        src = "/etc/postfix/" + f
        if os.path.exists(src):
            shutil.copy(src, CONF)
    old = time.time() - 3600
    os.utime(CONF + "/main.cf", (old, old))
    pf("postfix", "-c", CONF, "start")
    os.makedirs(SPOOL + "/defer", exist_ok=True)
    try:
        msg = b"Subject: delay test\n\ndelay test\n"
        pf("sendmail", "-C", CONF, "-f", "testuser@mx.example.test",
           "someone@remote.example", input=msg)
        for _ in range(50):
            files = [f for f in glob.glob(SPOOL + "/incoming/**", recursive=True)
                     if os.path.isfile(f) and os.stat(f).st_mode & 0o100]
            if files:
                break
            time.sleep(0.2)
        time.sleep(0.5)
        path = files[0]
        qid = os.path.basename(path)
        off = rcpt_offset(path)
        rcpt = [("original_recipient", "someone@remote.example"),
                ("recipient", "someone@remote.example"), ("offset", off),
                ("dsn_orig_rcpt", "rfc822;someone@remote.example"), ("notify_flags", 0)]
        dsn = [("status", "4.4.1"), ("diag_type", ""), ("diag_text", ""),
               ("mta_type", ""), ("mta_mname", ""), ("action", "delayed"),
               ("reason", "connect to mx.remote.example[192.0.2.1]:25: Connection timed out")]
        print(request("defer", [("nrequest", 0), ("flags", 0), ("queue_id", qid)] + rcpt + dsn))
        shutil.copy(glob.glob(f"{SPOOL}/defer/*/{qid}")[0], OUT + "/defer-log.txt")
        common = [("flags", 0), ("queue_name", "incoming"), ("queue_id", qid),
                  ("encoding", "8bit"), ("smtputf8", 0),
                  ("sender", "testuser@mx.example.test"), ("envelope_id", ""), ("ret_flags", 0)]
        print(request("defer", [("nrequest", 2)] + common))
        dsn2 = [("status", "2.0.0"), ("diag_type", "smtp"), ("diag_text", "250 2.0.0 Ok: queued as 4ABC"),
                ("mta_type", "dns"), ("mta_mname", "mx.remote.example"), ("action", "relayed"),
                ("reason", "delivered via mx.remote.example[192.0.2.1]:25: 250 2.0.0 Ok: queued as 4ABC")]
        print(request("trace", [("nrequest", 0), ("flags", 0), ("queue_id", qid)] + rcpt + dsn2))
        print(request("trace", [("nrequest", 5)] + common))
        time.sleep(0.2)
        dsn5 = [("status", "5.1.1"), ("diag_type", ""), ("diag_text", ""),
                ("mta_type", ""), ("mta_mname", ""), ("action", "failed"),
                ("reason", "unknown user: \"someone\"")]
        print(request("bounce", [("nrequest", 4)] + common + rcpt + dsn5))
        time.sleep(0.2)
        print(request("defer", [("nrequest", 1)] + common))
        time.sleep(0.2)
        # sendmail -bv style report (DEL_REQ_FLAG_USR_VRFY).
        dsnv = [("status", "2.0.0"), ("diag_type", ""), ("diag_text", ""),
                ("mta_type", ""), ("mta_mname", ""), ("action", "deliverable"),
                ("reason", "delivers to maildir")]
        print(request("trace", [("nrequest", 0), ("flags", 512), ("queue_id", qid)] + rcpt + dsnv))
        vcommon = [("flags", 512)] + common[1:]
        print(request("trace", [("nrequest", 5)] + vcommon))
        time.sleep(0.2)
        # Threaded bounces and a bounce_size_limit below the message size.
        pf("postconf", "-c", CONF, "-e", "enable_threaded_bounces = yes", "bounce_size_limit = 100")
        os.utime(CONF + "/main.cf", (old, old))
        pf("postfix", "-c", CONF, "reload")
        time.sleep(2)
        print(request("defer", [("nrequest", 0), ("flags", 0), ("queue_id", qid)] + rcpt + dsn))
        print(request("defer", [("nrequest", 1)] + common))
        time.sleep(0.2)
        # VERP: one notice per logged recipient, to prefix+user=domain@origin.
        print(request("bounce", [("nrequest", 0), ("flags", 0), ("queue_id", qid)] + rcpt + dsn5))
        print(request("bounce", [("nrequest", 3)] + common + [("verp_delimiters", "+=")]))
        time.sleep(0.2)
        # Mail that cleanup refuses (header_checks REJECT) is returned by
        # bounce: cleanup logs the recipients in bounce/ and asks for a flush.
        open(CONF + "/header_checks", "w").write("/^Subject: reject me/ REJECT go away\n")
        pf("postconf", "-c", CONF, "-e", f"header_checks = regexp:{CONF}/header_checks",
           "enable_threaded_bounces = no", "bounce_size_limit = 50000")
        os.utime(CONF + "/main.cf", (old, old))
        pf("postfix", "-c", CONF, "reload")
        time.sleep(2)
        pf("sendmail", "-C", CONF, "-f", "testuser@mx.example.test", "someone@remote.example",
           input=b"Subject: reject me\nX-Other: kept?\n\nrejected body\n")
        time.sleep(3)
        # The notices, in the order bounce logged them.
        for _ in range(50):
            logged = [l for l in open(BASE + "/maillog") if "/bounce[" in l and "notification: " in l]
            if len(logged) >= 14:
                break
            time.sleep(0.2)
        time.sleep(0.5)
        notices = [(0, f"{SPOOL}/incoming/{l.rsplit(': ', 1)[1].strip()}") for l in logged]
        shutil.copy(path, OUT + "/original.queue")
        names = ["delay-sender", "delay-postmaster", "success-sender",
                 "one-sender", "one-postmaster", "expired-sender", "expired-postmaster",
                 "verify-sender", "threaded-sender", "threaded-postmaster",
                 "verp-sender", "verp-postmaster", "reject-sender", "reject-postmaster"]
        assert len(notices) == len(names), notices
        for n, (_, f) in enumerate(notices):
            out = subprocess.run(["postcat", "-c", CONF, "-e", "-h", "-b", f], capture_output=True, check=True).stdout
            open(f"{OUT}/{names[n]}.txt", "wb").write(out)
        with open(OUT + "/maillog.txt", "w") as f:
            f.writelines(logged)
    finally:
        pf("postfix", "-c", CONF, "stop")

main()
