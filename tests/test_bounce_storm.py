"""A bounce storm (README: Bounces): after a big post, bounces for many
members come back at once, and the MTA runs a `deliver` process for each,
many at a time.  Every one is answered with exit 0 (a 75 would make the MTA
queue it and try again), counts once for its member and for nobody else, and
sends no mail.  At a smaller scale than `make bench`'s storm (1,000 bounces,
100 at once), and without timing anything."""
import collections
import re
from concurrent.futures import ThreadPoolExecutor

from test_concurrency import dsn

BOUNCED = ["b%03d@example.com" % i for i in range(200)]
OTHERS = ["k%02d@example.org" % i for i in range(20)]      # on the list, never bouncing
FORMATS = ("text", "html", "both")
MEMBERS = {a: ("all" if i % 2 else "first", FORMATS[i % 3]) for i, a in enumerate(BOUNCED + OTHERS)}
AT_ONCE = 50
TEXT_EVERY = 4          # every fourth bounce is a qmail text bounce (flufl.bounce), the others RFC 3464


def qmail_bounce(ml, member, n):
    """A qmail-send failure notice (plain text, no RFC 3464 report) at the member's VERP address."""
    local, _, host = member.partition("@")
    to = ml.addr(f"bounces-{local}={host}")
    raw = (
        "Return-Path: <>\n"
        f"Received: (qmail {30000 + n} invoked for bounce); 2 Mar 2026 10:00:00 -0000\n"
        "Date: 2 Mar 2026 10:00:00 -0000\n"
        "From: MAILER-DAEMON@mx.example.net\n"
        f"To: {to}\n"
        "Subject: failure notice\n"
        f"Message-ID: <qmail{n}.{local}@mx.example.net>\n"
        "\n"
        "Hi. This is the qmail-send program at mx.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n"
        "\n"
        f"<{member}>:\n"
        "Sorry, no mailbox here by that name. (#5.1.1)\n"
        "\n"
        "--- Below this line is a copy of the message.\n"
        "\n"
        f"Return-Path: <{to}>\n"
        f"From: M01 <m01@example.com>\nTo: {ml.addr()}\nSubject: [systers] Fellowship deadlines\n"
        "Message-ID: <big-post@example.com>\n"
        "\n"
        "The deadline is Friday.\n")
    return raw.encode(), to


def test_a_storm_of_bounces_counts_each_once_and_never_defers(make_list):
    ml = make_list(MEMBERS)
    ml.take()
    before = ml.members()
    assert set(before) == set(MEMBERS) and all(m["bounce_score"] == 0 for m in before.values())
    jobs = [(member, "text" if n % TEXT_EVERY == TEXT_EVERY - 1 else "dsn",
             *(qmail_bounce if n % TEXT_EVERY == TEXT_EVERY - 1 else dsn)(ml, member, n))
            for n, member in enumerate(BOUNCED)]

    # AT_ONCE deliver processes at a time, each started as the MTA starts it (empty sender)
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        done = list(pool.map(lambda job: ml.deliver(job[2], to=job[3], sender=""), jobs))

    codes = collections.Counter(proc.returncode for proc in done)
    failing = [(member, proc.returncode, proc.stderr_text[-500:])
               for (member, *_), proc in zip(jobs, done) if proc.returncode != 0]
    assert codes == {0: len(BOUNCED)}, (codes, failing[:3], ml.logfile.read_text()[-3000:])
    assert not [(member, proc.stdout_text, proc.stderr_text)
                for (member, *_), proc in zip(jobs, done) if proc.stdout or proc.stderr]

    # the log: one counted bounce per process, each for its own member alone
    log = ml.logfile.read_text()
    assert "Traceback" not in log, log[-3000:]
    lines = [line for line in log.splitlines() if " outcome=bounce " in line]
    assert len(lines) == len(BOUNCED), log[-3000:]
    counted = collections.Counter()
    for line in lines:
        found = re.search(r" outcome=bounce (\S+) for=(\S+) counted=(\S+) probed=- unknown=- ", line)
        assert found, line
        assert found.group(2) == found.group(3), line            # VERP: the member it came back for
        counted[found.group(3)] += 1
    assert counted == dict.fromkeys(BOUNCED, 1)

    # the database: exactly those members at bounce_score 1, the rest of their rows as before; nobody else changed
    after = ml.members()
    assert set(after) == set(before)
    for address in BOUNCED:
        was, now = before[address], after[address]
        assert (now["status"], now["bounce_score"]) == ("active", 1), now
        assert {k: v for k, v in now.items() if not k.startswith("bounce")} == \
            {k: v for k, v in was.items() if not k.startswith("bounce")}, (was, now)
    for address in OTHERS:
        assert after[address] == before[address]

    # and no mail: one bounce is far below bounce_threshold, and bounces are never answered
    assert ml.take() == []
