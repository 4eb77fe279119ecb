#!/usr/bin/env python3
"""The mlmpipe demo: one small list, told as a story (`make demo`).

It runs mlmpipe.py exactly as a mail server would -- one `deliver` process
per incoming message, the message on standard input -- but with the
recording stand-in tests/fake_sendmail.py as its sendmail, so nothing is
mailed.  After each step it shows every sendmail call mlmpipe made: the
envelope sender, the recipients, and which of the six variants they got
(text, html or both; a follower's or a non-follower's footer).

Everything goes to ./demo-output/, which is wiped at the start of each run.
Standard library only.
"""
import email
import email.policy
import email.utils
import json
import os
import shutil
import subprocess
import sys
import textwrap
from email.message import EmailMessage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = os.path.join(ROOT, "mlmpipe.py")
FAKE_SENDMAIL = os.path.join(ROOT, "tests", "fake_sendmail.py")
OUT = os.path.join(ROOT, "demo-output")
CONFIG = os.path.join(OUT, "mlmpipe.cfg")
SENT = os.path.join(OUT, "sent")

LIST = "systers"
DOMAIN = "lists.example.org"
OWNER = "owner@example.org"

# name, address, default for new threads, format
MEMBERS = [
    ("Anita Reyes", "anita@example.org", "all", "text"),
    ("Barbara Chen", "barbara@example.net", "first", "html"),
    ("Carol Okafor", "carol@example.com", "all", "both"),
    ("Dana Kowalski", "dana@example.org", "first", "text"),
    ("Eve Lindqvist", "eve@example.net", "all", "html"),
    ("Fay Moreau", "fay@example.com", "first", "both"),
]
ADDRESS = {name.split()[0].lower(): address for name, address, _, _ in MEMBERS}
FULL_NAME = {address: name for name, address, _, _ in MEMBERS}
SHORT = {address: name.split()[0].lower() for name, address, _, _ in MEMBERS}

ENV = dict(os.environ, FAKE_SENDMAIL_DIR=SENT)
ENV.pop("MLMPIPE_CONFIG", None)
seen_calls = set()


# Running mlmpipe ############################################################

def mlmpipe(*args, stdin=None, show=True):
    """Run one mlmpipe.py subcommand; returns the finished process."""
    if show:
        print("  $ mlmpipe.py %s" % " ".join(args))
    done = subprocess.run([sys.executable, PROGRAM, "-c", CONFIG, *args],
                          input=stdin, capture_output=True, env=ENV, cwd=OUT)
    return done


def admin(*args, show=True):
    """An admin command that must succeed; its output is returned as text."""
    done = mlmpipe(*args, show=show)
    if done.returncode != 0:
        sys.stdout.write(done.stdout.decode(errors="replace"))
        sys.stderr.write(done.stderr.decode(errors="replace"))
        sys.exit("demo: `mlmpipe.py %s` failed with exit %d"
                 % (" ".join(args), done.returncode))
    return done.stdout.decode()


def threads(all_threads=False):
    args = ["threads", LIST, "--json"] + (["--all"] if all_threads else [])
    return json.loads(admin(*args, show=False))


def message(who, subject, body, html=False, in_reply_to=None):
    """A message as a member's mail program would write it."""
    address = ADDRESS[who]
    msg = EmailMessage()
    msg["From"] = email.utils.formataddr((FULL_NAME[address], address))
    msg["To"] = "placeholder"      # set per step: the address written to
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(who, domain=address.split("@")[1])
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    if html:
        msg.set_content(body, subtype="html")
    else:
        msg.set_content(body)
    return msg


def send(msg, local_part):
    """Hand `msg` to mlmpipe as the MTA would, for LOCAL_PART@DOMAIN."""
    recipient = "%s@%s" % (local_part, DOMAIN)
    msg.replace_header("To", recipient)
    sender = email.utils.parseaddr(msg["From"])[1]
    print("  %s -> %s" % (sender, recipient))
    print("  $ mlmpipe deliver --recipient=%s --sender=%s  < message"
          % (recipient, sender))
    done = mlmpipe("deliver", "--recipient=" + recipient, "--sender=" + sender,
                   stdin=msg.as_bytes(), show=False)
    print("  deliver exited %d%s" % (done.returncode, " (OK)" if done.returncode == 0 else ""))
    for line in (done.stdout + done.stderr).decode(errors="replace").splitlines():
        print("  | " + line)
    return show_calls()


# Showing what mlmpipe handed to sendmail ####################################

def new_calls():
    if not os.path.isdir(SENT):
        return []
    calls = []
    for name in sorted(os.listdir(SENT)):
        if name.endswith(".json") and name not in seen_calls:
            seen_calls.add(name)
            with open(os.path.join(SENT, name), encoding="utf-8") as f:
                calls.append(json.load(f))
    return calls


def parse(record):
    return email.message_from_string(record["message"], policy=email.policy.default)


BODY_NAMES = {"text/plain": "text", "text/html": "html", "multipart/alternative": "both"}


def describe(record):
    """(body, footer or kind) of one recorded outgoing message."""
    msg = parse(record)
    body = msg
    if body.get_content_type() == "multipart/mixed":
        body = next(iter(body.iter_parts()))
    kind = BODY_NAMES.get(body.get_content_type(), body.get_content_type())
    if msg.get("Auto-Submitted", "no").lower() != "no":
        digest = [part for part in msg.walk() if part.get_content_type() == "multipart/digest"]
        if digest:
            count = sum(1 for _ in digest[0].iter_parts())
            return kind, "reply + digest of %d" % count
        return kind, "reply"
    text = "\n".join(part.get_content() for part in body.walk()
                     if part.get_content_type() in ("text/plain", "text/html"))
    thread = str(msg.get("X-Mlmpipe-Thread", ""))
    if "%s-%s-unsubscribe@" % (LIST, thread) in text:
        return kind, "follower"
    if "%s-%s-subscribe@" % (LIST, thread) in text:
        return kind, "non-follower"
    return kind, "no thread footer"


def show_calls():
    """Print the sendmail calls made since the last look; return them."""
    calls = new_calls()
    if not calls:
        print("  sendmail was not called.")
        return calls
    received = set()
    print()
    print("    %-4s %-34s %-6s %-5s %-20s %s"
          % ("call", "envelope sender (-f)", "VERP", "body", "footer", "recipients"))
    for record in calls:
        kind, footer = describe(record)
        verp = "-XV-=" if "-XV-=" in record["argv"] else "no"
        received.update(record["recipients"])
        print("    %-4s %-34s %-6s %-5s %-20s %s" % (
            "#%d" % record["call"], record["sender"], verp, kind, footer,
            ", ".join(SHORT.get(r, r) for r in record["recipients"])))
        if footer.startswith("reply"):
            print("%-52s subject: %s" % ("", parse(record).get("Subject")))
    got = [SHORT[a] for _, a, _, _ in MEMBERS if a in received]
    not_got = [SHORT[a] for _, a, _, _ in MEMBERS if a not in received]
    print("    received: %s   |   not: %s" % (" ".join(got) or "-", " ".join(not_got) or "-"))
    return calls


def show_copy(calls, who, headers=()):
    """Print the copy `who` received: some headers, then the text body."""
    address = ADDRESS[who]
    record = next(r for r in calls if address in r["recipients"])
    msg = parse(record)
    print()
    print("    %s's copy:" % who.capitalize())
    for name in headers:
        print("    | %s: %s" % (name, msg.get(name)))
    if headers:
        print("    |")
    part = msg.get_body(preferencelist=("plain", "html"))
    for line in part.get_content().rstrip("\n").splitlines():
        print("    | " + line)


def step(number, title, story):
    print()
    print("=" * 78)
    print("%d. %s" % (number, title))
    print("=" * 78)
    paragraphs = story.strip().split("\n\n")
    print("\n\n".join(textwrap.fill(" ".join(p.split()), 78, initial_indent="  ",
                                    subsequent_indent="  ", break_on_hyphens=False)
                      for p in paragraphs))
    print()


# The story ##################################################################

def setup():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    with open(CONFIG, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent("""\
            [mlmpipe]
            database = {out}/mlmpipe.db
            archive = {out}/archive
            sendmail = {sendmail}
            verp = postfix
            batch_size = 500
            domain = {domain}
            log = {out}/mlmpipe.log
            """).format(out=OUT, sendmail=FAKE_SENDMAIL, domain=DOMAIN))

    step(0, "A list called systers, and six members",
         """Everything lives in demo-output/: the config, the SQLite database,
         the archive, mlmpipe's log, and sent/, where the stand-in sendmail
         records each call instead of mailing.

         Every member picks a default for new threads -- "all" (every message
         of each new thread) or "first" (only its first message) -- and a
         format: text, html or both (multipart/alternative).

         In the tables below, each row is one sendmail call: the envelope
         sender, whether Postfix is asked to VERP (-XV-=: each copy then
         bounces to systers-bounces-USER=HOST@, naming the member), the body
         format, the footer (a follower's says how to stop following the
         thread, a non-follower's how to follow it), and the recipients.""")
    admin("init")
    admin("newlist", LIST, "--owner=" + OWNER)
    for _name, address, preference, fmt in MEMBERS:
        args = ["add", LIST, address, "--format=" + fmt]
        if preference == "first":
            args.append("--first")
        admin(*args)
    print()
    for _name, address, preference, fmt in MEMBERS:
        print("    %-8s %-22s default %-6s format %s"
              % (SHORT[address], address, preference, fmt))


def story():
    step(1, "Anita starts a thread",
         """Anita writes to systers-new@. The first message of a new thread goes
         to every member, whatever her default. The list names the thread from
         the subject and puts its address in To:, so replies stay in it.

         Six variants -- three formats, times a follower's footer for the "all"
         members and a non-follower's footer for the "first" members -- each
         rendered once and handed to sendmail once, with all its recipients.""")
    first = message("anita", "AAUW fellowships",
                    "Hi all,\n\nThe AAUW fellowships for 2026 are open, including"
                    " the ones for\nwomen in computer science. Has anyone here"
                    " applied before?\n\nhttps://www.aauw.org/resources/programs/"
                    "fellowships-grants/\n\nAnita\n")
    calls = send(first, LIST + "-new")
    (thread,) = [t["name"] for t in threads()]
    address = "%s-%s" % (LIST, thread)
    show_copy(calls, "dana", headers=("From", "To", "Subject", "List-Id", "List-Post",
                                      "List-Unsubscribe", "Precedence"))

    step(2, "Barbara replies, in HTML, to the thread's address",
         """Barbara takes only first messages, but she answers, and whoever posts
         to a thread follows it from then on. Later messages go only to the
         followers: the "all" members plus Barbara -- Dana and Fay hear no more
         of it. Her HTML is turned into plain text for Anita.""")
    calls = send(message("barbara", "Re: [systers] AAUW fellowships",
                         "<p>I had one in 2019. <b>Apply early</b>: the reference"
                         " letters take longest.</p>\n<p>Happy to read drafts.<br>"
                         "Barbara</p>\n", html=True, in_reply_to=first["Message-ID"]),
                 address)
    show_copy(calls, "anita")

    step(3, "Carol replies to systers@ with her mail program's Reply",
         """Carol's reply goes to the plain list address, but its In-Reply-To
         header names Anita's first message, which mlmpipe has stored, so the
         reply is filed in the same thread and goes to the same followers.""")
    send(message("carol", "Re: [systers] AAUW fellowships",
                  "Same here, 2021. The personal statement matters more than the"
                  " publication list.\n\nCarol\n", in_reply_to=first["Message-ID"]),
         LIST)

    step(4, "Eve leaves the thread",
         """Eve gets every message of new threads but has heard enough about
         this one: she writes to its -unsubscribe address. mlmpipe changes her
         choice for this thread only and acknowledges by mail.""")
    send(message("eve", "unsubscribe", ""), address + "-unsubscribe")

    step(5, "Anita writes again",
         """The same followers as before, minus Eve.""")
    send(message("anita", "Re: [systers] AAUW fellowships",
                  "Thanks both! Barbara, I will take you up on that.\n\nAnita\n",
                  in_reply_to=first["Message-ID"]), address)

    step(6, "Dana follows the thread after all",
         """Dana takes only first messages, but this thread interests her: she
         writes to its -subscribe address. The acknowledgement carries the
         three replies she missed, as a digest.""")
    send(message("dana", "subscribe", ""), address + "-subscribe")

    step(7, "Carol starts a child thread: deadlines",
         """Carol writes to %s-new-deadlines@. A child thread's first message
         goes only to the parent thread's followers -- now Anita, Barbara,
         Carol and Dana, not Eve or Fay. Of those, only the "all" members
         and Carol, who wrote it, follow the new thread; Barbara and Dana get
         the non-follower footer.""" % address)
    send(message("carol", "Fellowship deadlines",
                  "Collecting the deadlines here so the other thread can stay about"
                  " applying:\n\n- American fellowships: 1 November\n"
                  "- International fellowships: 15 November\n\nCarol\n"),
         address + "-new-deadlines")
    child = [t for t in threads() if t["parent"] == thread]
    print("    new thread: %s, child of %s" % (child[0]["name"], thread))

    step(8, "Fay asks for help",
         """Every list answers LIST-help@ with its command addresses.""")
    send(message("fay", "help", ""), LIST + "-help")

    step(9, "A mistyped address",
         """An address that names no thread is refused: deliver exits 67 and
         prints one line starting with an RFC 3463 code, which Postfix quotes
         in the bounce to the sender.""")
    send(message("fay", "hello?", "Is this the right address?\n"), LIST + "-zzz9")

    step(10, "Where things stand", "The members, and the threads.")
    for args in (("members", LIST), ("threads", LIST)):
        output = admin(*args)
        print(textwrap.indent(output.rstrip("\n"), "    "))
        print()


def main():
    if not os.path.exists(PROGRAM):
        sys.exit("demo: %s not found" % PROGRAM)
    setup()
    story()
    print("Everything above is in %s/ (sent/ holds each sendmail call as JSON)."
          % os.path.relpath(OUT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
