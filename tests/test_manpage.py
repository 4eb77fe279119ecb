"""The man page, mlmpipe.8: it formats without a warning, fits a terminal,
and names every subcommand (with its options), configuration key, list
setting and exit code that mlmpipe.py has, so it cannot drift from the code
unnoticed.  `mlmpipe --help` and a mistyped command point to it.

groff is needed (Debian: groff-base); without it these tests skip, except
under CI (CI=true), where that is a failure."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import mlmpipe  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "mlmpipe.8"
WIDTH = 80                # a terminal's columns; groff's man macros fill to 78


def need(program):
    if shutil.which(program) is None:
        reason = "%s is not installed (Debian: apt-get install %s)" % (
            program, "groff-base" if program == "groff" else program)
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true, so the man page tests may not skip: " + reason)
        pytest.skip(reason)


def groff(*options):
    need("groff")
    env = dict(os.environ, LC_ALL="C.UTF-8", GROFF_NO_SGR="1")
    return subprocess.run(["groff", "-man", "-Tutf8", *options, str(PAGE)], capture_output=True,
                          env=env, timeout=60)


@pytest.fixture(scope="module")
def rendered():
    """The page as man(1) shows it on a terminal, as plain text: overstrike
    bold and underline removed, and hyphen and minus signs read as '-'."""
    proc = groff()
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode("utf-8")
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = re.sub(".\b", "", text)
    return text.replace("\u2010", "-").replace("\u2212", "-")


def section(text, name):
    """The lines of one section (its heading at column 0) up to the next."""
    match = re.search(r"^%s\n(.*?)(?=^\S)" % re.escape(name), text, flags=re.M | re.S)
    assert match, "the page has no section %s" % name
    return match.group(1)


def tagged(body):
    """{tag: paragraph} of a section's .TP items: a tag starts at the
    section's indentation (7 columns) and its paragraph at 14, on the tag's
    own line when the tag is short, else on the next.  Other lines at 7 are
    the section's own paragraphs."""
    items, tag = {}, None
    lines = body.splitlines() + [""]
    for line, after in zip(lines, lines[1:]):
        short = re.match(r"^ {7}(\S+) +(?=\S)", line)
        if short and short.end() == 14:
            tag = short.group(1)
            items[tag] = line[14:]
        elif re.match(r"^ {7}\S", line) and after.startswith(" " * 14):
            tag = line.strip()
            items[tag] = ""
        elif line.startswith(" " * 14) and tag is not None:
            items[tag] += " " + line.strip()
        elif line.strip():
            tag = None
    return {tag: " ".join(text.split()) for tag, text in items.items()}


def usage_lines():
    """mlmpipe's own usage lines, from its docstring: {subcommand: line}."""
    usage = mlmpipe.__doc__.split("Usage:", 1)[1].split("\n\n", 1)[0]
    lines = {}
    for line in usage.splitlines():
        match = re.match(r"^\s+mlmpipe ([a-z][a-z-]*)\b(.*)$", line)
        if match:
            lines[match.group(1)] = match.group(2)
    return lines


def synopsis_entries(text):
    """{subcommand: its whole synopsis entry, wrapped lines joined}."""
    entries, current = {}, None
    for line in section(text, "SYNOPSIS").splitlines():
        match = re.match(r"^ {7}mlmpipe ([a-z][a-z-]*)(.*)$", line)
        if match:
            current = match.group(1)
            entries[current] = match.group(2)
        elif current is not None and line.startswith(" " * 8):
            entries[current] += " " + line.strip()
    return entries


def test_formats_without_a_warning():
    proc = groff("-ww", "-z")
    assert proc.returncode == 0
    assert proc.stderr.decode() == ""


def test_mandoc_lint_finds_nothing():
    need("mandoc")
    proc = subprocess.run(["mandoc", "-Tlint", "-Wstyle", str(PAGE)], capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.decode() + proc.stderr.decode() == ""


def test_fits_a_terminal(rendered):
    """Every line fits in 80 columns: nothing on the page needs more (the
    examples and addresses are written to fit)."""
    long = [line for line in rendered.splitlines() if len(line) > WIDTH]
    assert long == []


def test_nothing_is_hyphenated():
    """Paths, keys and addresses are never broken by hyphenation, where a
    reader would copy them: groff hyphenates at U+2010 on a UTF-8 terminal,
    which the page turns off."""
    proc = groff("-rHY=4")              # what man(1) may ask for; the page's own setting wins
    text = re.sub(".\b", "", proc.stdout.decode("utf-8"))
    assert [line for line in text.splitlines() if re.search("\\w\u2010$", line)] == []


def test_every_subcommand_is_in_the_synopsis_with_its_options(rendered):
    usage, entries = usage_lines(), synopsis_entries(rendered)
    assert len(usage) >= 19 and "deliver" in usage and "check" in usage
    assert set(entries) == set(usage), "synopsis and usage docstring name different subcommands"
    for name, line in usage.items():
        words = set(re.findall(r"--[a-z-]+=?|\b[A-Z][A-Z_]+\b|\b[a-z]+(?=[|)])|(?<=\|)[a-z]+", line))
        words.discard("[options]")
        missing = [w for w in sorted(words) if w.rstrip("=") not in entries[name]]
        assert missing == [], "the synopsis of %s lacks %s" % (name, ", ".join(missing))
        if "[options]" in line:
            assert "[-c FILE]" in entries[name], name


def test_every_subcommand_is_described(rendered):
    described = tagged(section(rendered, "COMMANDS"))
    assert set(usage_lines()) <= set(described)
    assert all(len(text) > 20 for text in described.values()), described


def test_every_option_is_described(rendered):
    options = set(re.findall(r"--[a-z-]+", mlmpipe.__doc__))
    described = section(rendered, "OPTIONS")
    assert options and [o for o in sorted(options) if o not in described] == []


def test_every_configuration_key_is_described_with_its_default(rendered):
    keys = tagged(section(rendered, "CONFIGURATION"))
    assert set(keys) == set(mlmpipe.DEFAULTS)
    for key, default in mlmpipe.DEFAULTS.items():
        if default:
            assert re.search(r"(?<![\w/])%s(?![\w/])" % re.escape(default), keys[key]), (key, default)
    for mode in mlmpipe.VERP_MODES:
        assert mode in keys["verp"]


def test_every_list_setting_is_described_with_its_choices_and_default(rendered):
    settings = tagged(section(rendered, "LIST SETTINGS"))
    assert set(settings) == set(mlmpipe.LIST_DEFAULTS)
    for key, choices in mlmpipe.LIST_CHOICES.items():
        assert [c for c in choices if not re.search(r"\b%s\b" % c, settings[key])] == [], key
        assert re.search(r"%s \([^)]*the default\)" % mlmpipe.LIST_DEFAULTS[key], settings[key]), key
    for key in mlmpipe.LIST_NUMBERS:
        default = mlmpipe.LIST_DEFAULTS[key]
        assert re.search(r"Default %s\.|\b%s \(the default\)" % (default, default), settings[key]), key
    assert "[LIST] " in settings["subject_prefix"]


def test_every_exit_code_is_described(rendered):
    body = section(rendered, "EXIT STATUS")
    sysexits = (mlmpipe.EX_OK, mlmpipe.EX_DATAERR, mlmpipe.EX_NOUSER, mlmpipe.EX_TEMPFAIL, mlmpipe.EX_NOPERM)
    for code in sysexits + tuple(mlmpipe.QMAIL_CODES.values()) + (1, 64):
        assert re.search(r"\b%d\b" % code, body), code
    codes = tagged(body)
    assert "%d (qmail %d)" % (mlmpipe.EX_TEMPFAIL, mlmpipe.QMAIL_CODES["temporary"]) in codes
    assert "%d (qmail %d)" % (mlmpipe.EX_NOUSER, mlmpipe.QMAIL_CODES["permanent"]) in codes


def test_environment_and_files(rendered):
    environment = tagged(section(rendered, "ENVIRONMENT"))
    for name in ("MLMPIPE_CONFIG", "ORIGINAL_RECIPIENT", "RECIPIENT", "SENDER", "MLMPIPE_NOW"):
        assert name in environment
    assert "RPLINE, DTLINE" in environment
    files = tagged(section(rendered, "FILES"))
    assert {mlmpipe.DEFAULTS["database"], mlmpipe.DEFAULTS["archive"], "/etc/mlmpipe.cfg"} <= set(files)
    assert mlmpipe.config_path(None, {}) in files


def test_sends_nobody_outside_the_repository(rendered):
    """No document outside the repository, and the command as installed
    (`mlmpipe`), not the file."""
    assert not re.search(r"SPEC|STYLE\.md|https?://", PAGE.read_text(encoding="utf-8"))
    assert "mlmpipe.py" not in rendered


def test_help_and_a_mistyped_command_point_to_the_page():
    run = [sys.executable, str(ROOT / "mlmpipe.py")]
    env = dict(os.environ)
    env.pop("MLMPIPE_CONFIG", None)
    helped = subprocess.run(run + ["--help"], capture_output=True, text=True, env=env, timeout=60)
    assert helped.returncode == 0
    assert "See mlmpipe(8) and README.md." in helped.stdout.split("Usage:")[0]
    wrong = subprocess.run(run + ["frobnicate"], capture_output=True, text=True, env=env, timeout=60)
    assert wrong.returncode == 64
    assert "'mlmpipe --help'" in wrong.stderr and "'man mlmpipe'" in wrong.stderr
