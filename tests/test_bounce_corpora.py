"""bounce_report against bounce corpora that others collected and labelled
(vendored with their licences under tests/data/<corpus>/; nothing is downloaded).

Each corpus has an EXPECTED.json derived from that project's own tests (its
README.md says how): per message the expected kind, the permanently failed
addresses (null: the upstream test asserts a failure but not who failed, so
only the kind is compared), the temporarily failed ones, and optionally the
other kinds that also agree ("accept").  Kinds "untested" and "excluded" are
left out of the figures.

The agreement table is printed on every run (capsys.disabled(), so `make test`
shows it too); BOUNCE_CORPORA_VERBOSE=1 also lists each message that disagrees.
"""
import json
import os
import sys
from functools import lru_cache
from pathlib import Path

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import mlmpipe  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
KINDS = {"failed", "delayed", "autoreply", "delivered", "unknown"}
NOT_SCORED = {"untested", "excluded"}
NOT_MESSAGES = {"LICENSE", "README.md", "EXPECTED.json", "derive_expected.py"}

# Agreement (kind and addresses both right, over the scored messages) that
# bounce_report must keep on each corpus: just under what it reached when
# flufl.bounce's detectors came in (100 % and 96.8 %), so a regression shows.
FLOOR = {
    "flufl-bounce": 0.98,
    "mail-deliverystatus-bounceparser": 0.95,
}
CORPORA = tuple(FLOOR)


def expected(corpus):
    return json.loads((DATA / corpus / "EXPECTED.json").read_text())["messages"]


@lru_cache(maxsize=None)
def results(corpus):
    """{file: (kind, addresses) or the exception bounce_report raised}."""
    out = {}
    for name in sorted(expected(corpus)):
        raw = (DATA / corpus / name).read_bytes()
        try:
            out[name] = mlmpipe.bounce_report(raw)
        except Exception as exc:  # reported by test_never_raises
            out[name] = exc
    return out


def agrees(want, got):
    """Kind among those accepted; a failure names exactly the expected addresses (when upstream asserts
    them); any other kind names nobody."""
    kind, addresses = got
    if kind not in want.get("accept", [want["kind"]]):
        return False
    if kind == "failed":
        return want["permanent"] is None or sorted(addresses) == sorted(want["permanent"])
    return not addresses


def score(corpus):
    want, got = expected(corpus), results(corpus)
    row = {"corpus": corpus, "messages": len(want), "scored": 0, "agree": 0, "failed": 0, "failed_right": 0,
           "failed_kind_only": 0, "non_failures": 0, "false_failed": 0, "raised": 0, "disagree": []}
    for name, w in sorted(want.items()):
        g = got[name]
        if isinstance(g, Exception):
            row["raised"] += 1
            g = ("<raised>", [])
        if w["kind"] in NOT_SCORED:
            continue
        row["scored"] += 1
        ok = agrees(w, g)
        row["agree"] += ok
        if not ok:
            named = "(addresses not asserted)" if w["permanent"] is None else w["permanent"] or w["temporary"]
            row["disagree"].append((name, w["kind"], named, g))
        if w["kind"] == "failed":
            row["failed"] += 1
            row["failed_kind_only"] += w["permanent"] is None
            row["failed_right"] += g[0] == "failed" and (w["permanent"] is None or sorted(g[1]) == w["permanent"])
        if "failed" not in w.get("accept", [w["kind"]]):
            row["non_failures"] += 1
            row["false_failed"] += g[0] == "failed"
    return row


def pct(n, d):
    return f"{n}/{d} ({100.0 * n / d:.1f}%)" if d else "-"


def table(rows):
    head = ("corpus", "messages", "scored", "agreement", "failures counted right", "false 'failed'")
    lines = [(r["corpus"], str(r["messages"]), str(r["scored"]), pct(r["agree"], r["scored"]),
              pct(r["failed_right"], r["failed"]) + (f" [{r['failed_kind_only']} kind only]"
                                                     if r["failed_kind_only"] else ""),
              pct(r["false_failed"], r["non_failures"])) for r in rows]
    widths = [max(len(x[i]) for x in [head] + lines) for i in range(len(head))]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    out = ["", "bounce_report against external corpora (tests/data/<corpus>/EXPECTED.json):", fmt.format(*head)]
    out += [fmt.format(*x) for x in lines]
    out.append("agreement: kind and addresses both as expected; failures counted right: expected failures "
               "classified failed with exactly the expected addresses ('kind only': upstream names none); "
               "false 'failed': messages expected not to be failures that came out failed.")
    if os.environ.get("BOUNCE_CORPORA_VERBOSE"):
        for r in rows:
            for name, kind, addresses, got in r["disagree"]:
                out.append(f"  {r['corpus']}/{name}: expected {kind} {addresses}, got {got[0]} {got[1]}")
    return "\n".join(out)


def test_corpora_are_complete():
    """Every vendored file has exactly one expectation, in the known kinds, and each corpus has its licence."""
    for corpus in CORPORA:
        folder = DATA / corpus
        assert (folder / "LICENSE").is_file() and (folder / "README.md").is_file(), corpus
        files = {p.name for p in folder.iterdir() if p.is_file()} - NOT_MESSAGES
        want = expected(corpus)
        assert files == set(want), (corpus, sorted(files ^ set(want)))
        for name, w in want.items():
            assert w["kind"] in KINDS | NOT_SCORED, (corpus, name)
            assert set(w.get("accept", [w["kind"]])) <= KINDS | NOT_SCORED, (corpus, name)
            assert w["permanent"] is None or w["permanent"] == sorted(a.lower() for a in w["permanent"])
            assert bool(w["permanent"] or w["permanent"] is None) == (w["kind"] == "failed"), (corpus, name)


@pytest.mark.parametrize("corpus", CORPORA)
def test_never_raises(corpus):
    """bounce_report answers every message, with a known kind and addresses only for a failure."""
    for name, got in results(corpus).items():
        assert not isinstance(got, Exception), f"{corpus}/{name}: {got!r}"
        kind, addresses = got
        assert kind in KINDS, (corpus, name, got)
        assert isinstance(addresses, list) and all(isinstance(a, str) for a in addresses), (corpus, name, got)
        assert addresses == sorted({a.lower() for a in addresses}), (corpus, name, got)
        assert kind == "failed" or not addresses, (corpus, name, got)


@pytest.mark.parametrize("corpus", CORPORA)
def test_warnings_are_not_failures(corpus):
    """A message the corpus says is a temporary failure only never makes those addresses failed."""
    for name, w in expected(corpus).items():
        got = results(corpus)[name]
        if w["temporary"] and not w["permanent"] and not isinstance(got, Exception):
            kind, addresses = got
            wrong = set(addresses) & {a.lower() for a in w["temporary"]} if kind == "failed" else set()
            assert not wrong, f"{corpus}/{name}: a delay warning for {sorted(wrong)} classified failed"


def test_agreement(capsys):
    rows = [score(corpus) for corpus in CORPORA]
    with capsys.disabled():
        print(table(rows))
    for r in rows:
        assert r["agree"] / r["scored"] >= FLOOR[r["corpus"]], (r["corpus"], r["agree"], r["scored"])
