import smtplib, sys
port = int(sys.argv[1])
def send(frm, rcpts, subj, body="hello\n", extra=""):
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.helo.test")
    msg = f"{extra}Subject: {subj}\nFrom: x@y.test\n\n{body}"
    s.sendmail(frm, rcpts, msg.encode())
    s.quit()
send("Sender@S.test", ["Joe+Ext@T1.test"], "m1 exit=0")
send("sender@s.test", ["loop@t1.test"], "m1loop exit=0", extra="Delivered-To: Loop@T1.test\n")
send("sender@s.test", ["+bb@t1.test"], "m1plus exit=0")
send("", ["a@t2.test"], "m2a exit=0", body="From me\n.dot line\n..two\nlast\n")
send("sender@s.test", ["a@t2.test", "b@t2.test"], "m2b exit=0")
for c in ["64", "67", "75", "77", "out", "sig", "dsn", "ok-out", "0"]:
    send('"odd name"@s.test', ["X+e@t3.test"], f"m3 exit={c}")
send("sender@s.test", ["big@t4.test"], "m4big exit=0", body="x"*400+"\n")
send("sender@s.test", ["small@t4.test"], "m4small exit=ok-out")
send("sender@s.test", ["slow@t5.test"], "m5 exit=sleep")
send("sender@s.test", ["User@Dovecot.test"], "m6 exit=0")
