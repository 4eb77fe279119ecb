"""Logs an administrator can use (README: Logs): one line per incoming
message naming its list, command, outcome, what went out and its
Message-ID; `mlmpipe log [MESSAGE_ID]`; syslog that falls back to stderr;
under the MTA one line on stderr, never a traceback."""
import io
import os
import re
import socket
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ALL_TEXT, DATA, FIRST_TEXT, MIXED, MLMPIPE, make_msg, msgid_of

sys.path.insert(0, str(MLMPIPE.parent))
import mlmpipe  # noqa: E402

LINE = re.compile(r"^\S+ \S+ mlmpipe\[\d+\]: (.*)$")


def lines_of(ml, message_id=None):
    """The mlmpipe log lines (without date and pid), those naming `message_id` when given."""
    found = [LINE.match(x).group(1) for x in ml.logfile.read_text().splitlines() if LINE.match(x)]
    return [x for x in found if message_id is None or "message-id=%s" % message_id in x]


def the_line(ml, raw):
    found = lines_of(ml, msgid_of(raw))
    assert len(found) == 1, found
    return found[0]


# One line per message #########################################################

def test_a_post_says_its_thread_and_what_was_sent(mixed):
    raw = make_msg(ALL_TEXT, mixed.addr("new"), "Fellowships")
    mixed.post(raw, to=mixed.addr("new"))
    line = the_line(mixed, raw)
    thread = mixed.threads().popitem()[0]
    assert re.fullmatch(r"list=systers command=new thread=%s outcome=sent sent=%d batches=\d+ seconds=[\d.]+ "
                        r"message-id=%s" % (thread, len(MIXED), re.escape(msgid_of(raw))), line), line


def test_a_command_says_who_was_answered_not_recipients(mixed):
    raw = make_msg(ALL_TEXT, mixed.addr("help"), "help")
    mixed.post(raw, to=mixed.addr("help"))
    line = the_line(mixed, raw)
    assert re.fullmatch(r"list=systers command=help outcome=ok answered=sender seconds=[\d.]+ message-id=%s"
                        % re.escape(msgid_of(raw)), line), line
    assert "recipients=" not in line and "sent=" not in line
    raw = make_msg(FIRST_TEXT, mixed.addr("set-digest-weekly"), "weekly")
    mixed.post(raw, to=mixed.addr("set-digest-weekly"))
    assert "command=set-digest-weekly outcome=ok answered=sender " in the_line(mixed, raw)


def test_a_held_post_says_the_reason_and_who_was_told(mixed):
    raw = make_msg("stranger@example.org", mixed.addr(), "Hello")
    mixed.post(raw)
    line = the_line(mixed, raw)
    assert line.startswith("list=systers command=post outcome=held: "), line
    assert " answered=owners,sender " in line and "sent=" not in line


def test_a_refusal_names_the_address_and_the_sentence(mixed):
    raw = make_msg(ALL_TEXT, mixed.addr("nosuchthread7-subscribe"), "follow")
    proc = mixed.deliver(raw, to=mixed.addr("nosuchthread7-subscribe"))
    assert proc.returncode == 67
    line = the_line(mixed, raw)
    assert line.startswith("list=systers recipient=%s outcome=refused 5.1.1 no such thread on list systers"
                           % mixed.addr("nosuchthread7-subscribe")), line
    raw = make_msg(ALL_TEXT, "nolist@%s" % mixed.domain, "hello")
    assert mixed.deliver(raw, to="nolist@%s" % mixed.domain).returncode == 67
    assert the_line(mixed, raw).startswith("list=- recipient=nolist@%s outcome=refused 5.1.1 " % mixed.domain)


def test_a_bounce_says_whose_score_it_counted(mixed):
    raw = (DATA / "bounces" / "01-postfix-user-unknown.eml").read_bytes()
    verp = mixed.addr("bounces-%s" % ALL_TEXT.replace("@", "="))
    mixed.post(raw, to=verp, sender="")
    line = the_line(mixed, raw)
    assert line.startswith("list=systers command=bounces outcome=bounce failed for=%s counted=%s probed=- "
                           "unknown=- seconds=" % (ALL_TEXT, ALL_TEXT)), line


def test_every_line_about_a_message_names_it(mixed):
    """A message whose Message-ID is missing gets the one mlmpipe makes of its bytes."""
    raw = b"From: %s\nSubject: no id\n\nhelp\n" % ALL_TEXT.encode()
    mixed.post(raw, to=mixed.addr("help"))
    assert re.search(r" message-id=<[0-9a-f]{32}@mlmpipe\.invalid>$", lines_of(mixed)[-1])


# mlmpipe log ##################################################################

def test_log_shows_one_message_and_the_last_lines(mixed):
    ids = []
    for n in range(3):
        raw = make_msg(ALL_TEXT, mixed.addr("help"), "help %d" % n)
        mixed.post(raw, to=mixed.addr("help"))
        ids.append(msgid_of(raw))
    done = mixed.cli("log", ids[1])
    assert done.stdout.decode().count("\n") == 1 and ids[1] in done.stdout.decode()
    done = mixed.cli("log", ids[2].strip("<>"))                      # without <> too
    assert "message-id=%s" % ids[2] in done.stdout.decode()
    done = mixed.cli("log")
    assert all(i in done.stdout.decode() for i in ids)
    done = mixed.cli("log", "<never@example.org>", check=False)
    assert done.returncode == 1
    assert done.stderr.decode() == ("mlmpipe log: no line about message-id=<never@example.org> in the log file "
                                    "%s\n" % mixed.logfile)


MAIL_LOG = """\
Dec  1 10:00:00 vm postfix/smtpd[100]: 4A1B2C3D4E: client=localhost[127.0.0.1]
Dec  1 10:00:00 vm postfix/cleanup[101]: 4A1B2C3D4E: message-id=<m1@example.com>
Dec  1 10:00:00 vm postfix/qmgr[102]: 4A1B2C3D4E: from=<ann@example.com>, size=400, nrcpt=1 (queue active)
Dec  1 10:00:00 vm postfix/cleanup[101]: 9F8E7D6C5B: message-id=<other@example.com>
Dec  1 10:00:01 vm mlmpipe[200]: list=systers command=help outcome=ok answered=sender seconds=0.05 \
message-id=<m1@example.com>
Dec  1 10:00:01 vm postfix/pipe[103]: 4A1B2C3D4E: to=<systers-help@lists.example.org>, relay=mlmpipe, \
status=sent (delivered via mlmpipe service)
Dec  1 10:00:01 vm postfix/qmgr[102]: 9F8E7D6C5B: removed
Dec  1 10:00:01 vm postfix/qmgr[102]: 4A1B2C3D4E: removed
Dec  1 10:00:02 vm mlmpipe[201]: list=systers command=post outcome=sent sent=3 batches=1 seconds=0.1 \
message-id=<other@example.com>
"""


def test_log_follows_a_message_through_postfix(tmp_path, monkeypatch, capsys):
    """log = syslog: mlmpipe's line and every Postfix line of the queue ids whose cleanup line names it."""
    cfg = tmp_path / "c.cfg"
    cfg.write_text("[mlmpipe]\nlog = syslog\n")
    (tmp_path / "mail.log").write_text(MAIL_LOG)
    monkeypatch.setattr(mlmpipe, "MAIL_LOGS", (str(tmp_path / "mail.log.1"), str(tmp_path / "mail.log")))
    assert mlmpipe.main(["-c", str(cfg), "log", "<m1@example.com>"], env={}) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [x for x in MAIL_LOG.splitlines() if "4A1B2C3D4E" in x or "mlmpipe[200]" in x]
    assert mlmpipe.main(["-c", str(cfg), "log"], env={}) == 0
    assert capsys.readouterr().out.splitlines() == [x for x in MAIL_LOG.splitlines() if "mlmpipe[" in x]
    assert mlmpipe.main(["-c", str(cfg), "log", "gone@example.com"], env={}) == 1
    assert capsys.readouterr().err == "mlmpipe log: no line about message-id=<gone@example.com> in %s\n" % (
        tmp_path / "mail.log")


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=300))
def test_log_takes_any_argument_without_a_traceback(text):
    try:
        mlmpipe.cmd_log(mlmpipe.Config("x", dict(mlmpipe.DEFAULTS, log="/nonexistent/mlmpipe.log")),
                        {"MESSAGE_ID": text})
    except mlmpipe.AdminError as exc:
        assert "\n" not in str(exc)


# syslog, and its fallback to stderr ###########################################

def test_log_writes_to_the_syslog_socket(tmp_path, monkeypatch, capsys):
    path = tmp_path / "log.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(5)
    monkeypatch.setattr(mlmpipe.Log, "SOCKET", str(path))
    try:
        mlmpipe.Log("syslog")("list=systers outcome=ok")
        got = listener.recv(9000).decode()
    finally:
        listener.close()
    assert re.fullmatch(r"<22>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d mlmpipe\[%d\]: list=systers outcome=ok"
                        % os.getpid(), got), got
    assert capsys.readouterr().err == ""


def test_unreachable_syslog_falls_back_to_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mlmpipe.Log, "SOCKET", str(tmp_path / "nothing-here"))
    log = mlmpipe.Log("syslog")
    log("first line")
    log("second line")
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("mlmpipe: syslog unreachable at %s: " % (tmp_path / "nothing-here"))
    assert "see 'mlmpipe check'" in err[0]
    assert err[1:] == ["mlmpipe: first line", "mlmpipe: second line"]


def test_an_unwritable_log_file_falls_back_to_stderr(tmp_path, capsys):
    mlmpipe.Log(str(tmp_path / "no-dir" / "x.log"))("a line")
    err = capsys.readouterr().err
    assert "cannot write the log file %s" % (tmp_path / "no-dir" / "x.log") in err
    assert err.endswith("mlmpipe: a line\n")


@pytest.fixture
def in_process(mixed, monkeypatch):
    """deliver in this process (main(argv, stdin, env)): its chdir and umask undone afterwards."""
    monkeypatch.chdir(mixed.root)
    monkeypatch.setenv("FAKE_SENDMAIL_DIR", str(mixed.spool))
    mask = os.umask(0o022)
    os.umask(mask)
    yield mixed
    os.umask(mask)


def deliver_in_process(ml, raw, to):
    return mlmpipe.main(["-c", str(ml.cfg), "deliver", "--recipient=%s" % to, "--sender=%s" % ALL_TEXT],
                        stdin=io.BytesIO(raw), env={})


def test_under_the_mta_without_syslog_one_line_reaches_the_mta(in_process, monkeypatch, capsys, tmp_path):
    ml = in_process
    cfg = ml.cfg.read_text()
    ml.cfg.write_text(re.sub(r"(?m)^log = .*$", "log = syslog", cfg))
    monkeypatch.setattr(mlmpipe.Log, "SOCKET", str(tmp_path / "nothing-here"))
    raw = make_msg(ALL_TEXT, ml.addr("help"), "help")
    assert deliver_in_process(ml, raw, ml.addr("help")) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("mlmpipe: list=systers command=help outcome=ok answered=sender ")
    assert err[0].endswith("message-id=%s (syslog unreachable at %s: No such file or directory)"
                           % (msgid_of(raw), tmp_path / "nothing-here"))
    # a refusal: the sentence alone, first, so that Postfix reads its status code
    raw = make_msg(ALL_TEXT, ml.addr("nosuchthread7"), "x")
    assert deliver_in_process(ml, raw, ml.addr("nosuchthread7")) == 67
    assert capsys.readouterr().err.startswith("5.1.1 no such thread on list systers")


def test_under_the_mta_no_traceback_reaches_stderr(make_list, tmp_path):
    """log = stderr, and the database a directory: a temporary failure whose traceback is not shown."""
    ml = make_list()
    (tmp_path / "db-is-a-directory").mkdir()
    ml.cfg.write_text(re.sub(r"(?m)^(database|log) = .*$", lambda m: "%s = %s" % (
        m.group(1), tmp_path / "db-is-a-directory" if m.group(1) == "database" else "stderr"), ml.cfg.read_text()))
    proc = ml.deliver(make_msg(ALL_TEXT, ml.addr("help"), "help"), to=ml.addr("help"))
    assert proc.returncode == 75
    assert proc.stdout == b""
    err = proc.stderr_text.splitlines()
    assert len(err) == 1 and err[0].startswith("4.3.0 mlmpipe: database unavailable"), err
