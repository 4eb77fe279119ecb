"""Write EXPECTED.json beside this file from flufl.bounce's own tests.

    python tests/data/flufl-bounce/derive_expected.py [PATH-TO-UNPACKED-SDIST]

PATH defaults to /tmp/fb/sd/flufl_bounce-6.0.0 (`pip download --no-binary :all:
--no-deps flufl.bounce==6.0.0` and untar).  Only the sdist's tests are read:
nothing is run, and flufl.bounce need not be installed.  README.md says what
comes out and why; HAND below holds the few judgements no flufl test makes.
"""
import ast
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SDIST = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/fb/sd/flufl_bounce-6.0.0")
TESTS = SDIST / "tests"

# What flufl's tests cannot say (they know only "failed addresses" and
# "temporary addresses"): kinds besides the derived one that also agree,
# and doubts.  Keyed by file.
HAND = {
    "qmail_08.txt": {
        "accept": ["unknown", "autoreply"],
        "note": "An auto reply (Subject: Auto reply, Precedence: auto_reply); flufl only asserts that its qmail "
                "detector finds nothing. autoreply is the better answer, unknown agrees with flufl.",
    },
    "groupwise_03.txt": {
        "note": "Not a bounce: a person's reply (with Disposition-Notification-To). flufl asserts only that its "
                "GroupWise detector finds nothing.",
    },
    "dumbass_01.txt": {
        "note": "A real permanent failure (InterScan: 'Exceeded Maximum Delivery Attempts') that names no "
                "recipient; the only addresses are in the returned message. flufl: nothing (whole pipeline).",
    },
    "simple_43.txt": {
        "note": "A real permanent failure that names no recipient (only the returned message's Received header "
                "does). flufl asserts only that SimpleMatch finds nothing.",
    },
    "simple_42.txt": {
        "accept": ["unknown", "failed"],
        "note": "A real Exim permanent failure whose address the corpus obfuscated to 'david...@gmail.com' (not "
                "a valid address). flufl asserts only that SimpleMatch finds nothing; its DSN detector (first in "
                "the pipeline) would report the obfuscated address. Agreement: unknown, or failed naming nobody.",
    },
    "dsn_08.txt": {
        "note": "Postfix delay warning (Action: delayed, 4.0.0). flufl's DSN detector says temporary; its Postfix "
                "and SimpleMatch detectors, not asserted, would call the same address permanent.",
    },
    "simple_22.txt": {
        "note": "Symantec gateway: 'could not be delivered ... Delivery attempts will continue to be made for 5 "
                "day(s)' under Subject 'Delivery failure notification'. flufl: temporary (SimpleWarning).",
    },
}


def literal(node):
    return ast.literal_eval(node)


def addresses(values):
    return sorted({(v.decode() if isinstance(v, bytes) else v).lower() for v in values})


def detector_table():
    """test_detectors.py's DETECTORS: (module, file, addresses, is_temporary), one test_detector case each."""
    tree = ast.parse((TESTS / "test_detectors.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["DETECTORS"]:
            for module, name, expected, temporary in literal(node.value):
                test = f"tests/test_detectors.py::test_detector[{module}-{name}-{'T' if temporary else 'P'}]"
                scope = f"detector {module}"
                if temporary:
                    yield name, test, scope, {"temporary": addresses(expected)}
                else:
                    yield name, test, scope, {"permanent": addresses(expected)}
            return
    raise SystemExit("no DETECTORS table in test_detectors.py")


def function_tests(path):
    """Test functions that _parse() one corpus file and assert on scan_message(), all_failures() or a
    detector's process(): `scan_message(msg) == {...}`, `temporary == ...`, `permanent == ...`, `not x`."""
    tree = ast.parse(path.read_text())
    for func in tree.body:
        if not (isinstance(func, ast.FunctionDef) and func.name.startswith("test_")):
            continue
        files = [literal(n.args[0]) for n in ast.walk(func) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", None) == "_parse" and n.args and isinstance(n.args[0], ast.Constant)]
        if not files:
            continue
        [name] = files
        calls = {getattr(n.func, "id", None) or getattr(n.func, "attr", None)
                 for n in ast.walk(func) if isinstance(n, ast.Call)}
        detectors = [n.func.value.func.id for n in ast.walk(func) if isinstance(n, ast.Call)
                     and getattr(n.func, "attr", None) == "process" and isinstance(n.func.value, ast.Call)]
        scope = ("all_failures" if "all_failures" in calls else f"detector {detectors[0]}" if detectors
                 else "scan_message")
        facts = {}
        for stmt in func.body:
            if not isinstance(stmt, ast.Assert):
                continue
            test = stmt.test
            if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and isinstance(test.operand, ast.Name):
                facts[test.operand.id] = []
            elif isinstance(test, ast.Compare) and isinstance(test.ops[0], ast.Eq):
                left = test.left
                if isinstance(left, ast.Call) and getattr(left.func, "id", None) == "scan_message":
                    facts["permanent"] = addresses(literal(test.comparators[0]))
                    facts.setdefault("_scopes", set()).add("scan_message")
                elif isinstance(left, ast.Name) and left.id in ("temporary", "permanent"):
                    value = test.comparators[0]
                    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "set" and not value.args:
                        facts[left.id] = []
                    else:
                        facts[left.id] = addresses(literal(value))
        facts.pop("_scopes", None)
        if facts:
            yield name, f"tests/{path.name}::{func.name}", scope, facts


def pipeline_tests():
    """test_pipeline.py: scan_message() over (file, permanent) pairs."""
    tree = ast.parse((TESTS / "test_pipeline.py").read_text())
    for func in tree.body:
        if isinstance(func, ast.FunctionDef):
            for deco in func.decorator_list:
                if isinstance(deco, ast.Call) and getattr(deco.func, "attr", None) == "parametrize":
                    for name, permanent in literal(deco.args[1]):
                        yield name, f"tests/test_pipeline.py::{func.name}[{name}]", "scan_message", {
                            "permanent": addresses(permanent)}


def main():
    files = sorted(p.name for p in (TESTS / "data").glob("*.txt"))
    facts = {name: [] for name in files}
    found = list(detector_table()) + list(function_tests(TESTS / "test_detectors.py")) + list(pipeline_tests())
    # The other test modules build their messages inline and use no corpus file.
    for path in sorted(TESTS.glob("test_*.py")):
        if path.name not in ("test_detectors.py", "test_pipeline.py") and "_parse(" in path.read_text():
            raise SystemExit(f"{path.name} reads corpus files: teach derive_expected.py about it")
    for name, test, scope, fact in found:
        facts[name].append({"test": test, "scope": scope, **fact})
    expected = {}
    for name in files:
        asserted = facts[name]
        permanent = sorted({a for f in asserted for a in f.get("permanent", [])})
        temporary = sorted({a for f in asserted for a in f.get("temporary", [])})
        kind = "failed" if permanent else "delayed" if temporary else "unknown" if asserted else "untested"
        entry = {"kind": kind, "permanent": permanent, "temporary": temporary, "flufl_tests": asserted}
        entry.update(HAND.get(name, {}))
        expected[name] = entry
    out = {
        "corpus": "flufl.bounce 6.0.0 sdist, tests/data/*.txt (Apache-2.0)",
        "derived_by": "tests/data/flufl-bounce/derive_expected.py from the sdist's tests/test_*.py (see README.md)",
        "messages": expected,
    }
    (HERE / "EXPECTED.json").write_text(json.dumps(out, indent=1, sort_keys=False) + "\n")
    counts = {}
    for entry in expected.values():
        counts[entry["kind"]] = counts.get(entry["kind"], 0) + 1
    print(len(expected), "messages:", counts)


if __name__ == "__main__":
    main()
