#!/usr/bin/env python3
"""A recording stand-in for sendmail(1), used by the tests and `make demo`.

Every call is kept as one JSON file in $FAKE_SENDMAIL_DIR (NNNNNN.json with
argv, envelope sender, recipients and the message).  Faults for the tests:
FAKE_SENDMAIL_FAIL_AT=N makes the Nth call (counted across processes) fail
without recording, as FAKE_SENDMAIL_FAIL_CODE says: a number (default 75) is
the exit code; "kill" kills this call with SIGKILL; "hang" sleeps for
$FAKE_SENDMAIL_HANG seconds (default an hour; for sendmail_timeout); "killparent" SIGKILLs the mlmpipe that called it,
so mlmpipe dies between batches, before this batch is accepted.
FAKE_SENDMAIL_DELAY=S makes every call take S seconds more (a slow fan-out).
"""
import json
import os
import signal
import sys


def main():
    spool = os.environ.get("FAKE_SENDMAIL_DIR") or os.path.join(os.getcwd(), "sent")
    os.makedirs(spool, exist_ok=True)
    argv = sys.argv[1:]
    message = sys.stdin.buffer.read()
    if os.environ.get("FAKE_SENDMAIL_DELAY"):
        import time
        time.sleep(float(os.environ["FAKE_SENDMAIL_DELAY"]))
    counter = os.path.join(spool, "calls")
    fd = os.open(counter, os.O_RDWR | os.O_CREAT, 0o644)
    import fcntl
    fcntl.flock(fd, fcntl.LOCK_EX)
    calls = int(os.read(fd, 32) or b"0") + 1
    os.lseek(fd, 0, 0)
    os.ftruncate(fd, 0)
    os.write(fd, str(calls).encode())
    fail_at = int(os.environ.get("FAKE_SENDMAIL_FAIL_AT", "0") or 0)
    if calls == fail_at:
        fcntl.flock(fd, fcntl.LOCK_UN)
        code = os.environ.get("FAKE_SENDMAIL_FAIL_CODE", "75")
        if code == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if code == "hang":
            import time
            time.sleep(float(os.environ.get("FAKE_SENDMAIL_HANG", "3600")))
        if code == "killparent":
            os.kill(os.getppid(), signal.SIGKILL)
            return 75
        sys.stderr.write("fake sendmail: failing call %d on purpose\n" % calls)
        return int(code)
    sender = argv[argv.index("-f") + 1] if "-f" in argv else None
    recipients = argv[argv.index("--") + 1:] if "--" in argv else []
    record = {"call": calls, "argv": argv, "sender": sender,
              "recipients": recipients,
              "message": message.decode("utf-8", "surrogateescape")}
    path = os.path.join(spool, "%06d.json" % calls)
    with open(path + ".tmp", "w") as out:
        json.dump(record, out)
    os.rename(path + ".tmp", path)
    fcntl.flock(fd, fcntl.LOCK_UN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
