"""mta-config --apply / --remove and newlist --apply (README: Installation).

Postfix's side runs against a private copy of a Postfix configuration in a
temporary directory: postconf -c DIR, postmap and postalias work on it
without a running Postfix (its queue_directory is a temporary directory too,
so `postfix status` says "not running" and nothing is ever reloaded).
/etc/postfix is never written: every test also points $MAIL_CONFIG at its
copy, so even a call without --dir would land there.
"""
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import mlmpipe  # noqa: E402

POSTCONF = shutil.which("postconf", path=os.environ.get("PATH", "") + ":/usr/sbin")
pytestmark = pytest.mark.skipif(POSTCONF is None, reason="Postfix's postconf is not installed "
                                "(.ci/run installs postfix)")

DOMAIN = "lists.example.org"
OTHER_DOMAIN = "lists.example.net"
LOCAL_DOMAIN = "vm"                       # in mydestination: the alias way's domain

# Debian 12's main.cf as its postinst writes it: no relay_domains, no transport_maps.
DEBIAN_MAIN_CF = """\
# See /usr/share/postfix/main.cf.dist for a commented, more complete version


# Debian specific:  Specifying a file name will cause the first
# line of that file to be used as the name.  The Debian default
# is /etc/mailname.
#myorigin = /etc/mailname

smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
biff = no

# appending .domain is the MUA's job.
append_dot_mydomain = no

readme_directory = no

# See http://www.postfix.org/COMPATIBILITY_README.html -- default to 3.6 on
# fresh installs.
compatibility_level = 3.6

smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated defer_unauth_destination
myhostname = vm
alias_maps = hash:/etc/aliases
alias_database = hash:/etc/aliases
mydestination = $myhostname, vm, localhost.localdomain, , localhost
relayhost =
mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128
mailbox_size_limit = 0
recipient_delimiter = +
inet_interfaces = all
inet_protocols = all
"""

# Written by hand: the parameters mlmpipe touches exist already, with odd
# spacing, continuation lines, a comment inside a value; no final newline.
ODD_MAIN_CF = """\
compatibility_level = 3.6
myhostname = vm
mydestination = $myhostname, localhost
relay_domains =   a.example,
\tb.example
# a comment between continuation lines
    c.example

transport_maps=hash:/etc/postfix/transport
alias_maps = hash:/etc/aliases,
  hash:/etc/postfix/more_aliases
recipient_delimiter = +
owner_request_special  =  yes
mlmpipe_destination_recipient_limit = 5"""

MAIN_CFS = {"debian": DEBIAN_MAIN_CF, "odd": ODD_MAIN_CF}

# What a README of earlier versions had the administrator write by hand.
HAND_SERVICE = """\
mlmpipe   unix  -       n       n       -       10      pipe
  flags=hX null_sender= user=mlmpipe
  argv=/usr/local/lib/mlmpipe/venv/bin/python -m mlmpipe deliver --recipient=${recipient} --sender=${sender}
"""


def master_cf():
    for path in ("/etc/postfix/master.cf", "/usr/share/postfix/master.cf.dist"):
        if os.path.exists(path):
            return Path(path).read_text()
    pytest.skip("no master.cf of Postfix's to copy")


def postconf(directory, *args):
    for name in ("main.cf", "master.cf"):           # see Site.settle
        os.utime(Path(directory) / name, (1e9, 1e9))
    done = subprocess.run([POSTCONF, "-c", str(directory)] + list(args), capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


def query(program, site, key, table):
    """postmap -q or postalias -q: what the table built by mlmpipe answers for KEY."""
    program = shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin")
    done = subprocess.run([program, "-c", str(site.postfix), "-q", key, "hash:%s" % table],
                          capture_output=True, text=True)
    return done.stdout.strip()


class Site:
    """A Postfix configuration directory and an mlmpipe with lists, in a temporary directory."""

    def __init__(self, root, capsys, main_cf=DEBIAN_MAIN_CF, verp="postfix"):
        self.root = Path(root)
        self.capsys = capsys
        self.postfix = self.root / "postfix"
        self.postfix.mkdir()
        queue = "queue_directory = %s\n" % (self.root / "queue")   # never the system's Postfix
        (self.postfix / "main.cf").write_text(queue + main_cf)
        (self.postfix / "master.cf").write_text(master_cf())
        self.home = self.root / "mlmpipe"
        self.home.mkdir()
        self.cfg = self.home / "mlmpipe.cfg"
        self.cfg.write_text("[mlmpipe]\ndatabase = %s\narchive = %s\ndomain = %s\nlog = %s\nverp = %s\n" % (
            self.home / "db.sqlite", self.home / "archive", DOMAIN, self.home / "log", verp))
        self.run("init")
        self.database = self.home / "db.sqlite"
        if os.geteuid() == 0:          # the delivery user owns the database, as after make install
            nobody = pwd.getpwnam("nobody")
            os.chown(self.home, nobody.pw_uid, nobody.pw_gid)
            os.chown(self.database, nobody.pw_uid, nobody.pw_gid)
        self.user = pwd.getpwuid(self.database.stat().st_uid)

    def run(self, *args, code=0):
        """mlmpipe in this process; its standard output (stderr when it fails)."""
        for name in ("main.cf", "master.cf"):       # see postconf()
            os.utime(self.postfix / name, (1e9, 1e9))
        got = mlmpipe.main(["-c", str(self.cfg)] + list(args))
        out, err = self.capsys.readouterr()
        assert got == code, "exit %s, expected %s\n%s%s" % (got, code, out, err)
        return out if code == 0 else err

    def newlist(self, name, domain=DOMAIN):
        self.run("newlist", name, "--owner=owner@example.net", "--domain=%s" % domain)

    def mta(self, *args, code=0):
        return self.run("mta-config", *args, "--dir=%s" % self.postfix, code=code)

    def files(self, directory=None):
        """{name: bytes} of every file in the directory (Postfix's by default)."""
        directory = Path(directory or self.postfix)
        return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}

    def get(self, name, expand=False):
        return postconf(self.postfix, *(["-x"] if expand else []), "-h", name)



    def command(self):
        return "%s deliver -c %s" % (mlmpipe.run_command(), self.cfg)

    @property
    def transport(self):
        return self.postfix / "mlmpipe_transport"

    @property
    def aliases(self):
        return self.home / "postfix-aliases"


@pytest.fixture
def postfix_calls(tmp_path, monkeypatch):
    """A stand-in for postfix(1) first on PATH: it records its arguments and
    answers `status` with "not running" (the real one takes a second to say so)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "postfix-calls"
    (fake / "postfix").write_text('#!/bin/sh\necho "$@" >> %s\n[ -e %s.running ]\n' % (calls, calls))
    (fake / "postfix").chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (fake, os.environ.get("PATH", "")))
    return calls


@pytest.fixture
def make_site(tmp_path, capsys, monkeypatch, postfix_calls):
    monkeypatch.setenv("MAIL_CONFIG", str(tmp_path / "none"))   # a slip to the default directory fails
    count = [0]

    def factory(**kw):
        count[0] += 1
        root = tmp_path / ("s%d" % count[0])
        root.mkdir()
        site = Site(root, capsys, **kw)
        monkeypatch.setenv("MAIL_CONFIG", str(site.postfix))
        return site
    return factory


@pytest.fixture
def site(make_site):
    s = make_site()
    s.newlist("systers")
    return s


# Postfix: the pipe(8) transport ##############################################

@pytest.mark.parametrize("kind", sorted(MAIN_CFS))
def test_apply_routes_the_domain_to_the_pipe_service(make_site, kind):
    site = make_site(main_cf=MAIN_CFS[kind])
    site.newlist("systers")
    before = {name: site.get(name, expand=True) for name in ("relay_domains", "transport_maps")}
    out = site.mta("postfix", "systers", "--apply")
    relay = [d.strip() for d in site.get("relay_domains").replace(",", " ").split()]
    assert relay[-1] == DOMAIN and relay[:-1] == before["relay_domains"].replace(",", " ").split()
    maps = site.get("transport_maps").replace(",", " ").split()
    assert maps[0] == "hash:%s" % site.transport
    assert maps[1:] == before["transport_maps"].replace(",", " ").split()
    assert site.get("mlmpipe_destination_recipient_limit") == "1"
    assert query("postmap", site, DOMAIN, site.transport) == "mlmpipe:"
    service = postconf(site.postfix, "-M", "mlmpipe/unix").split()
    assert service[:8] == "mlmpipe unix - n n - 10 pipe".split()
    assert " ".join(service[8:]) == ("flags=hX null_sender= user=%s argv=%s --recipient=${recipient} "
                                     "--sender=${sender}" % (site.user.pw_name, site.command()))
    assert postconf(site.postfix, "-P", "mlmpipe/unix/") == ""          # no -o overrides
    assert not any(line.startswith("postconf: warning") for line in postconf(site.postfix, "-n").splitlines())
    lines = out.splitlines()
    assert "main.cf: mlmpipe_destination_recipient_limit = 1" in lines
    assert any(line.startswith("master.cf: added the service mlmpipe") for line in lines)
    assert lines[-1] == ("Postfix is not running: it reads these changes when it starts ('postfix -c %s start')"
                         % site.postfix)


def test_apply_twice_changes_no_byte(site):
    site.mta("postfix", "systers", "--apply")
    after = site.files()
    out = site.mta("postfix", "systers", "--apply")
    assert site.files() == after
    assert out == "nothing to change: %s already goes to mlmpipe (%s)\n" % (DOMAIN, site.postfix)


def test_a_second_list_on_the_domain_changes_nothing_and_a_second_domain_is_added(site):
    site.newlist("news")
    site.newlist("third", domain=OTHER_DOMAIN)
    site.mta("postfix", "systers", "--apply")
    after = site.files()
    assert site.mta("postfix", "news", "--apply").startswith("nothing to change")
    assert site.files() == after
    out = site.mta("postfix", "third", "--apply")
    assert "main.cf: relay_domains = %s, %s" % (DOMAIN, OTHER_DOMAIN) in out.splitlines()
    assert site.transport.read_text().splitlines()[-2:] == ["%s mlmpipe:" % DOMAIN, "%s mlmpipe:" % OTHER_DOMAIN]
    assert "master.cf" not in out and "transport_maps" not in out
    site.mta("postfix", "third", "--remove")
    assert site.files()["main.cf"] == after["main.cf"]
    assert site.files()["master.cf"] == after["master.cf"]
    assert site.transport.read_bytes() == after["mlmpipe_transport"]


@pytest.mark.parametrize("kind", sorted(MAIN_CFS))
def test_remove_leaves_main_cf_and_master_cf_byte_identical(make_site, kind):
    site = make_site(main_cf=MAIN_CFS[kind])
    site.newlist("systers")
    before = site.files()
    site.mta("postfix", "systers", "--apply")
    assert site.files()["main.cf"] != before["main.cf"]
    out = site.mta("postfix", "systers", "--remove")
    assert site.files() == before, out
    assert "removed %s" % site.transport in out.splitlines()
    assert site.mta("postfix", "systers", "--remove").startswith("nothing to change")


def test_the_domain_stays_while_another_list_is_on_it(site):
    site.newlist("news")
    before = site.files()
    site.mta("postfix", "systers", "--apply")
    wired = site.files()
    out = site.mta("postfix", "systers", "--remove")
    assert out == "kept %s in %s: list news still receives mail there\n" % (DOMAIN, site.transport)
    assert site.files() == wired
    site.run("rmlist", "systers")
    assert site.mta("postfix", "systers", "--remove").startswith("nothing to change")
    site.run("rmlist", "news")
    site.mta("postfix", "news", "--remove")           # a deleted list: what is left of the wiring goes
    assert site.files() == before


def test_a_hand_written_service_is_replaced_and_put_back(make_site):
    site = make_site()
    site.newlist("systers")
    master = site.postfix / "master.cf"
    text = master.read_text()
    at = text.index("uucp ")
    master.write_text(text[:at] + HAND_SERVICE + text[at:])
    before = site.files()
    out = site.mta("postfix", "systers", "--apply")
    assert any(line.startswith("master.cf: replaced the service mlmpipe") for line in out.splitlines())
    assert "user=%s" % site.user.pw_name in postconf(site.postfix, "-M", "mlmpipe/unix")
    assert master.read_text().index("mlmpipe ") < master.read_text().index("uucp ")   # in place
    site.mta("postfix", "systers", "--remove")
    assert site.files() == before


def test_what_the_administrator_changed_since_stays(site):
    site.mta("postfix", "systers", "--apply")
    postconf(site.postfix, "-e", "relay_domains = %s, mine.example" % site.get("relay_domains"))
    site.mta("postfix", "systers", "--remove")
    assert site.get("relay_domains").replace(",", " ").split() == ["mine.example"]
    assert site.get("transport_maps") == ""
    assert postconf(site.postfix, "-M", "mlmpipe/unix") == ""


def test_pipe_transport_refuses_a_domain_of_mydestination(site):
    site.newlist("local", domain=LOCAL_DOMAIN)
    before = site.files()
    err = site.mta("postfix", "local", "--apply", code=1)
    assert "vm is one of Postfix's mydestination domains" in err and "--alias" in err
    assert site.files() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the database to root")
def test_a_database_of_root_is_refused_and_printing_says_mlmpipe(site):
    os.chown(site.database, 0, 0)
    os.chown(site.home, 0, 0)
    before = site.files()
    err = site.mta("postfix", "systers", "--apply", code=1)
    assert "belongs to root, and the MTA runs no command as root" in err
    assert site.files() == before
    assert "  flags=hX null_sender= user=mlmpipe" in site.mta("postfix", "systers").splitlines()


def test_postfix_is_reloaded_when_it_runs(site, postfix_calls):
    Path(str(postfix_calls) + ".running").touch()
    out = site.mta("postfix", "systers", "--apply")
    assert out.splitlines()[-1] == "reloaded Postfix (postfix -c %s reload)" % site.postfix
    assert postfix_calls.read_text().splitlines() == ["-c %s status" % site.postfix,
                                                      "-c %s reload" % site.postfix]
    site.mta("postfix", "systers", "--apply")                 # nothing changed: no reload
    assert len(postfix_calls.read_text().splitlines()) == 2
    site.mta("postfix", "systers", "--remove")
    assert postfix_calls.read_text().splitlines()[2:] == ["-c %s status" % site.postfix,
                                                          "-c %s reload" % site.postfix]


def test_the_real_postfix_status_of_a_stopped_instance(site, monkeypatch):
    """The real postfix(1) on the copy (its queue directory is empty): not running."""
    monkeypatch.setenv("PATH", os.environ["PATH"].split(":", 1)[1])
    out = site.mta("postfix", "systers", "--apply")
    assert out.splitlines()[-1] == ("Postfix is not running: it reads these changes when it starts "
                                    "('postfix -c %s start')" % site.postfix)


def test_the_default_directory_is_postconfs_config_directory(site):
    """Without --dir: `postconf -h config_directory`, which $MAIL_CONFIG sets."""
    out = site.run("mta-config", "postfix", "systers", "--apply")
    assert "%s: %s mlmpipe:" % (site.transport, DOMAIN) in out
    site.run("mta-config", "postfix", "systers", "--remove")
    assert not site.transport.exists()


# Postfix: the alias way ######################################################

def test_alias_way_apply_and_remove(make_site):
    site = make_site()
    site.newlist("systers", domain=LOCAL_DOMAIN)
    site.newlist("news", domain=LOCAL_DOMAIN)
    before = site.files()
    out = site.mta("postfix", "systers", "--alias", "--apply")
    assert site.get("recipient_delimiter") == "+-"
    assert site.get("owner_request_special") == "no"
    assert site.get("alias_maps").replace(",", " ").split() == ["hash:/etc/aliases", "hash:%s" % site.aliases]
    assert '\nsysters: "|%s"\n' % site.command() in site.aliases.read_text()
    for path in (site.aliases, Path(str(site.aliases) + ".db")):
        assert path.stat().st_uid == site.user.pw_uid      # local(8) runs the command as this owner
    assert query("postalias", site, "systers", site.aliases) == '"|%s"' % site.command()
    assert "main.cf: owner_request_special = no" in out.splitlines()
    wired = site.files()
    assert site.mta("postfix", "systers", "--alias", "--apply").startswith("nothing to change")
    assert site.files() == wired
    assert site.mta("postfix", "news", "--alias", "--apply").splitlines()[0].startswith(
        "%s: news: " % site.aliases)
    assert site.files()["main.cf"] == wired["main.cf"]
    site.mta("postfix", "news", "--alias", "--remove")
    assert "news:" not in site.aliases.read_text() and "systers:" in site.aliases.read_text()
    site.mta("postfix", "systers", "--alias", "--remove")
    assert site.files() == before
    assert not site.aliases.exists() and not Path(str(site.aliases) + ".db").exists()


def test_alias_way_restores_odd_lines(make_site):
    site = make_site(main_cf=ODD_MAIN_CF)
    site.newlist("systers", domain=LOCAL_DOMAIN)
    before = site.files()
    site.mta("postfix", "systers", "--alias", "--apply")
    assert site.get("alias_maps").replace(",", " ").split()[-1] == "hash:%s" % site.aliases
    site.mta("postfix", "systers", "--alias", "--remove")
    assert site.files() == before


def test_alias_way_refuses_names_with_a_hyphen(make_site):
    site = make_site()
    site.newlist("sys-ters", domain=LOCAL_DOMAIN)
    before = site.files()
    for args in (["--apply"], []):
        err = site.mta("postfix", "sys-ters", "--alias", *args, code=1)
        assert "the alias way cannot route the list sys-ters" in err and "pipe transport" in err
    assert site.files() == before and not site.aliases.exists()


def test_alias_way_needs_a_domain_of_mydestination(site):
    err = site.mta("postfix", "systers", "--alias", "--apply", code=1)
    assert "%s is not among Postfix's mydestination domains" % DOMAIN in err


# Hypothesis: any formatting of the parameters comes back byte for byte ##########

def parameter_block(name, items):
    """name = items, written as a person might: spacing, continuations, comments."""
    return st.tuples(st.sampled_from(["=", " = ", "  =  ", "=\t"]), st.lists(
        st.tuples(st.sampled_from([", ", ",", " ", ",\n\t", "\n    ", ",\n# note\n  ", "\n\n  "])),
        min_size=len(items), max_size=len(items))).map(
        lambda t: name + t[0] + items[0] + "".join(sep[0] + item for sep, item in zip(t[1][1:], items[1:])) + "\n")


MAIN_CF_PARTS = st.tuples(
    st.one_of(st.just(""), parameter_block("relay_domains", ["a.example", "b.example"])),
    st.one_of(st.just(""), parameter_block("transport_maps", ["hash:/etc/postfix/transport"])),
    st.one_of(st.just(""), parameter_block("alias_maps", ["hash:/etc/aliases", "hash:/etc/more"])),
    st.sampled_from(["", "recipient_delimiter = +\n", "recipient_delimiter=-\n", "owner_request_special = no\n"]),
    st.sampled_from(["", "# trailing comment\n", "\n", "biff = no"]),
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=MAIN_CF_PARTS)
def test_any_main_cf_comes_back_byte_for_byte(make_site, parts):
    main_cf = "compatibility_level = 3.6\nmyhostname = vm\nmydestination = vm, localhost\n" + "".join(parts)
    site = make_site(main_cf=main_cf)
    site.newlist("systers")
    site.newlist("local", domain=LOCAL_DOMAIN)
    before = site.files()
    site.mta("postfix", "systers", "--apply")
    site.mta("postfix", "local", "--alias", "--apply")
    assert DOMAIN in site.get("relay_domains") and site.get("owner_request_special") == "no"
    site.mta("postfix", "systers", "--remove")
    site.mta("postfix", "local", "--alias", "--remove")
    assert site.files() == before


@given(st.lists(st.from_regex(r"[a-z0-9:/.]{1,12}|\{ [a-z]{1,5} [a-z]{1,5} \}", fullmatch=True), max_size=5),
       st.from_regex(r"[a-z0-9.:/]{1,12}", fullmatch=True), st.sampled_from([", ", " ", ",", ",\n  "]))
def test_an_added_item_is_taken_out_again(items, item, separator):
    """What mlmpipe adds to a list parameter (first or last) comes out again,
    leaving the rest as it was written."""
    assume(item not in items)
    value = separator.join(items)
    for added in ((value + ", " + item, item + ", " + value) if value else (item,)):
        assert mlmpipe.config_items(added) in (items + [item], [item] + items)
        assert mlmpipe.without_item(added, item) == value


# qmail ##################################################################

def test_qmail_virtual_domain_writes_qmail_default(site, tmp_path):
    home = tmp_path / "lists-home"
    home.mkdir()
    out = site.run("mta-config", "qmail", "systers", "--apply", "--dir=%s" % home)
    dot = home / ".qmail-default"
    assert dot.read_text() == "|%s\n" % site.command()
    assert stat.S_IMODE(dot.stat().st_mode) == 0o600 and dot.stat().st_uid == home.stat().st_uid
    owner = pwd.getpwuid(home.stat().st_uid).pw_name
    lines = out.splitlines()
    assert "  control/virtualdomains: the line %s:%s" % (DOMAIN, owner) in lines
    assert "  control/locals must not list %s (locals wins over virtualdomains)" % DOMAIN in lines
    assert any(".qmail-postmaster" in line for line in lines)
    assert any("doublebouncehost" in line for line in lines)
    assert any("kill -HUP" in line and "svc -h" in line for line in lines)
    assert "qmail_prefix = %s-" % owner in lines[-1] and "verp = qmail" in lines[-1]
    assert "qmailctl" not in out
    again = site.run("mta-config", "qmail", "systers", "--apply", "--dir=%s" % home)
    assert again.splitlines()[0] == "nothing to change: %s holds mlmpipe's line" % dot
    assert site.files(home) == {".qmail-default": ("|%s\n" % site.command()).encode()}
    (home / ".qmail-postmaster").write_text("&postmaster@example.net\n")
    out = site.run("mta-config", "qmail", "systers", "--remove", "--dir=%s" % home)
    assert out.splitlines()[0] == "removed %s" % dot
    assert site.files(home) == {".qmail-postmaster": b"&postmaster@example.net\n"}


def test_qmail_leaves_a_foreign_qmail_default_alone(site, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".qmail-default").write_text("./Maildir/\n")
    err = site.run("mta-config", "qmail", "systers", "--apply", "--dir=%s" % home, code=1)
    assert ".qmail-default exists and holds other lines" in err and site.command() in err
    out = site.run("mta-config", "qmail", "systers", "--remove", "--dir=%s" % home)
    assert out.startswith("left %s alone" % (home / ".qmail-default"))
    assert (home / ".qmail-default").read_text() == "./Maildir/\n"


def test_qmail_default_stays_while_another_list_uses_it(site, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    site.newlist("news")
    site.run("mta-config", "qmail", "systers", "--apply", "--dir=%s" % home)
    out = site.run("mta-config", "qmail", "systers", "--remove", "--dir=%s" % home)
    assert out == "kept %s: list news still uses it\n" % (home / ".qmail-default")
    assert (home / ".qmail-default").exists()


def test_qmail_alias_way_writes_and_removes_only_its_files(site, tmp_path):
    alias = tmp_path / "alias"
    alias.mkdir()
    (alias / ".qmail-postmaster").write_text("&root\n")
    site.newlist("sys-ters")                 # a hyphen is fine with qmail
    out = site.run("mta-config", "qmail", "sys-ters", "--alias", "--apply", "--dir=%s" % alias)
    for name in (".qmail-sys-ters", ".qmail-sys-ters-default"):
        assert (alias / name).read_text() == "|%s\n" % site.command()
        assert stat.S_IMODE((alias / name).stat().st_mode) == 0o600
    assert "must be in control/locals" in out and "qmail_prefix" not in out.splitlines()[-1].split(":")[0]
    after = site.files(alias)
    assert site.run("mta-config", "qmail", "sys-ters", "--alias", "--apply",
                    "--dir=%s" % alias).startswith("nothing to change")
    assert site.files(alias) == after
    site.run("mta-config", "qmail", "sys-ters", "--alias", "--remove", "--dir=%s" % alias)
    assert site.files(alias) == {".qmail-postmaster": b"&root\n"}


# Postfix: the LMTP way (README: LMTP) #######################################

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Answering:
    """Something on 127.0.0.1 that answers LHLO, as `mlmpipe lmtp` would."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.listen = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.greeted = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as f:
                f.write(b"220 test LMTP\r\n")
                f.flush()
                for line in f:
                    if line.upper().startswith(b"LHLO"):
                        self.greeted += 1
                    f.write(b"221 bye\r\n" if line.upper().startswith(b"QUIT") else b"250 test\r\n")
                    f.flush()


def lmtp_only(site):
    """The LMTP way needs no pipe(8) service and no recipient limit."""
    assert postconf(site.postfix, "-M", "mlmpipe/unix") == ""
    assert "mlmpipe_destination_recipient_limit = 1" not in site.files()["main.cf"].decode()


@pytest.mark.parametrize("kind", sorted(MAIN_CFS))
def test_lmtp_apply_routes_the_domain_to_lmtp_and_remove_restores(make_site, kind):
    site = make_site(main_cf=MAIN_CFS[kind])
    site.newlist("systers")
    before = site.files()
    port = free_port()                 # nothing listens there
    out = site.mta("postfix", "systers", "--listen=127.0.0.1:%d" % port, "--apply")
    assert query("postmap", site, DOMAIN, site.transport) == "lmtp:inet:127.0.0.1:%d" % port
    assert site.get("transport_maps").replace(",", " ").split()[0] == "hash:%s" % site.transport
    assert DOMAIN in site.get("relay_domains").replace(",", " ").split()
    lmtp_only(site)
    lines = out.splitlines()
    assert "%s: %s lmtp:inet:127.0.0.1:%d (postmap hash:%s)" % (site.transport, DOMAIN, port, site.transport) \
        in lines
    assert not any("master.cf" in line for line in lines)
    note = [line for line in lines if line.startswith("note: ")]
    assert note == ["note: nothing answers LHLO at 127.0.0.1:%d (Connection refused) yet; start it: systemctl "
                    "start mlmpipe-lmtp, or run: mlmpipe -c %s lmtp --listen=127.0.0.1:%d" % (port, site.cfg, port)]
    wired = site.files()
    assert site.mta("postfix", "systers", "--listen=127.0.0.1:%d" % port, "--apply").startswith(
        "nothing to change: %s already goes to mlmpipe" % DOMAIN)
    assert site.files() == wired
    out = site.mta("postfix", "systers", "--remove")
    assert site.files() == before, out


def test_lmtp_apply_says_nothing_of_a_listener_that_answers(site):
    listener = Answering()
    out = site.mta("postfix", "systers", "--listen=%s" % listener.listen, "--apply")
    assert listener.greeted == 1 and "note:" not in out, out


def test_lmtp_unix_socket_inside_the_queue_directory_is_relative(site):
    before = site.files()
    sock = site.root / "queue" / "mlmpipe" / "lmtp.sock"
    out = site.mta("postfix", "systers", "--listen=%s" % sock, "--apply")
    assert query("postmap", site, DOMAIN, site.transport) == "lmtp:unix:mlmpipe/lmtp.sock"
    assert "note: nothing answers LHLO at %s (No such file or directory) yet" % sock in out
    site.mta("postfix", "systers", "--remove")
    assert site.files() == before


def test_lmtp_unix_socket_outside_a_chrooted_lmtp_is_refused(site, tmp_path):
    assert postconf(site.postfix, "-F", "-h", "lmtp/unix/chroot") == "y"      # Debian's master.cf
    before = site.files()
    sock = tmp_path / "run" / "lmtp.sock"
    err = site.mta("postfix", "systers", "--listen=%s" % sock, "--apply", code=1)
    assert err.count("\n") == 1 and "runs chrooted in %s" % (site.root / "queue") in err
    assert "--listen=%s/mlmpipe/lmtp.sock" % (site.root / "queue") in err
    assert site.files() == before
    postconf(site.postfix, "-F", "lmtp/unix/chroot=n")
    before = site.files()
    site.mta("postfix", "systers", "--listen=%s" % sock, "--apply")
    assert query("postmap", site, DOMAIN, site.transport) == "lmtp:unix:%s" % sock
    site.mta("postfix", "systers", "--remove")
    assert site.files() == before


def test_lmtp_needs_postfixs_lmtp_service(site):
    postconf(site.postfix, "-MX", "lmtp/unix")
    before = site.files()
    err = site.mta("postfix", "systers", "--listen=127.0.0.1:%d" % free_port(), "--apply", code=1)
    assert "has no lmtp service" in err and err.count("\n") == 1
    assert site.files() == before


@pytest.mark.parametrize("kind", sorted(MAIN_CFS))
def test_switching_between_pipe_and_lmtp_replaces_the_entry_and_remove_restores(make_site, kind):
    site = make_site(main_cf=MAIN_CFS[kind])
    site.newlist("systers")
    before = site.files()
    site.mta("postfix", "systers", "--apply")
    listener = Answering()
    out = site.mta("postfix", "systers", "--listen=%s" % listener.listen, "--apply")
    assert query("postmap", site, DOMAIN, site.transport) == "lmtp:%s" % ("inet:" + listener.listen)
    assert "%s: %s lmtp:inet:%s (postmap hash:%s); it was mlmpipe:" % (
        site.transport, DOMAIN, listener.listen, site.transport) in out.splitlines()
    assert "master.cf: removed the service mlmpipe" in out.splitlines()
    lmtp_only(site)
    assert site.files()["master.cf"] == before["master.cf"]
    out = site.mta("postfix", "systers", "--apply")            # and back to the pipe
    assert query("postmap", site, DOMAIN, site.transport) == "mlmpipe:"
    assert "user=%s" % site.user.pw_name in postconf(site.postfix, "-M", "mlmpipe/unix")
    assert site.get("mlmpipe_destination_recipient_limit") == "1"
    site.mta("postfix", "systers", "--listen=%s" % listener.listen, "--apply")
    site.mta("postfix", "systers", "--remove")
    assert site.files() == before


def test_pipe_and_lmtp_domains_side_by_side(site):
    site.newlist("third", domain=OTHER_DOMAIN)
    before = site.files()
    site.mta("postfix", "systers", "--apply")
    listener = Answering()
    site.mta("postfix", "third", "--listen=%s" % listener.listen, "--apply")
    assert site.transport.read_text().splitlines()[-2:] == ["%s mlmpipe:" % DOMAIN,
                                                             "%s lmtp:inet:%s" % (OTHER_DOMAIN, listener.listen)]
    assert postconf(site.postfix, "-M", "mlmpipe/unix") != ""          # systers still needs it
    out = site.mta("postfix", "systers", "--remove")                   # the last pipe domain goes
    assert "master.cf: removed the service mlmpipe" in out.splitlines()
    assert "main.cf: removed mlmpipe_destination_recipient_limit (it was not set before)" in out.splitlines()
    lmtp_only(site)
    assert query("postmap", site, OTHER_DOMAIN, site.transport) == "lmtp:inet:%s" % listener.listen
    site.mta("postfix", "third", "--remove")
    assert site.files() == before


def test_lmtp_refusals(site):
    site.newlist("local", domain=LOCAL_DOMAIN)
    before = site.files()
    err = site.mta("postfix", "local", "--listen=127.0.0.1:8024", "--apply", code=1)
    assert "vm is one of Postfix's mydestination domains" in err and "the LMTP transport" in err
    err = site.mta("postfix", "systers", "--listen=nowhere", "--apply", code=1)
    assert "--listen takes HOST:PORT" in err
    err = site.mta("postfix", "systers", "--listen=127.0.0.1:8024", "--alias", "--apply", code=1)
    assert "neither qmail nor --alias" in err
    assert site.files() == before


# newlist --apply ##########################################################

def test_newlist_apply_routes_the_new_list(make_site):
    site = make_site()
    before = site.files()
    out = site.run("newlist", "systers", "--owner=owner@example.net", "--apply")
    lines = out.splitlines()
    assert lines[0] == "created list systers@%s" % DOMAIN
    assert "%s: %s mlmpipe: (postmap hash:%s)" % (site.transport, DOMAIN, site.transport) in lines
    assert DOMAIN in site.get("relay_domains")
    site.run("mta-config", "postfix", "systers", "--remove")
    assert site.files() == before


def test_newlist_apply_listen_routes_the_new_list_to_lmtp(make_site):
    site = make_site()
    before = site.files()
    listener = Answering()
    out = site.run("newlist", "systers", "--owner=owner@example.net", "--apply", "--listen=%s" % listener.listen)
    assert out.splitlines()[0] == "created list systers@%s" % DOMAIN
    assert query("postmap", site, DOMAIN, site.transport) == "lmtp:inet:%s" % listener.listen
    lmtp_only(site)
    site.run("mta-config", "postfix", "systers", "--remove")
    assert site.files() == before
    hint = site.run("newlist", "news", "--owner=owner@example.net", "--listen=127.0.0.1:8024")
    assert "'mlmpipe mta-config postfix news --listen=127.0.0.1:8024 --apply'" in hint
    assert site.files() == before


def test_newlist_listen_with_qmail_creates_nothing(make_site):
    site = make_site(verp="qmail")
    err = site.run("newlist", "systers", "--owner=owner@example.net", "--apply", "--listen=127.0.0.1:8024",
                   code=1)
    assert "neither qmail nor --alias" in err and err.count("\n") == 1
    assert "systers" not in site.run("lists")


def test_newlist_apply_that_fails_keeps_the_list_and_says_how_to_retry(make_site, tmp_path):
    site = make_site(verp="qmail")
    err = site.run("newlist", "systers", "--owner=owner@example.net", "--apply", code=1)
    assert err.startswith("mlmpipe newlist: the list systers@%s exists, but routing its mail failed: " % DOMAIN)
    assert err.rstrip().endswith("run 'mlmpipe mta-config qmail systers --apply'")
    assert "systers@%s" % DOMAIN in site.run("lists")


def test_newlist_hint_names_the_mta_of_the_configuration(make_site):
    assert "'mlmpipe mta-config postfix systers --apply'" in make_site().run(
        "newlist", "systers", "--owner=owner@example.net")
    assert "'mlmpipe mta-config qmail systers --apply'" in make_site(verp="qmail").run(
        "newlist", "systers", "--owner=owner@example.net")


# Printing and the examples ##################################################

def test_every_command_line_of_the_examples_names_the_configuration():
    """pipe(8), local(8) and qmail-local pass no $MLMPIPE_CONFIG: each example's command has -c."""
    root = Path(mlmpipe.__file__).parent
    commands = []
    for path in [root / "README.md"] + sorted((root / "examples").rglob("*")):
        if path.is_file() and path.suffix != ".py":
            commands += [(path.name, line) for line in path.read_text().splitlines()
                         if "mlmpipe deliver" in line and ("argv=" in line or "|" in line)]
    assert len(commands) >= 8, commands
    assert [c for c in commands if "mlmpipe deliver -c /etc/mlmpipe.cfg" not in c[1]] == []
    assert (root / "examples" / "dot-qmail" / ".qmail-postmaster").read_text().splitlines()[-1].startswith("&")



def test_printing_writes_nothing_and_every_command_line_has_the_config(site, tmp_path):
    before = site.files()
    pipe = site.mta("postfix", "systers")
    assert "  argv=%s --recipient=${recipient} --sender=${sender}" % site.command() in pipe.splitlines()
    assert "transport_maps = hash:%s" % site.transport in pipe.splitlines()
    assert "recipient_delimiter" not in pipe and "mlmpipe mta-config postfix systers --alias" in pipe
    site.newlist("local", domain=LOCAL_DOMAIN)
    alias = site.mta("postfix", "local", "--alias")
    assert 'local: "|%s"' % site.command() in alias.splitlines()
    assert "relay_domains" not in alias and "argv=" not in alias and "owner_request_special = no" in alias
    qmail = site.run("mta-config", "qmail", "systers", "--dir=%s" % tmp_path)
    assert "|%s" % site.command() in qmail.splitlines() and "virtualdomains" in qmail
    assert ".qmail-systers-default" not in qmail
    qmail_alias = site.run("mta-config", "qmail", "systers", "--alias", "--dir=%s" % tmp_path)
    assert ".qmail-systers-default" in qmail_alias and "virtualdomains" not in qmail_alias
    assert site.files() == before and not site.aliases.exists()
    assert not (tmp_path / ".qmail-default").exists()
