"""Property-based tests (hypothesis) for reading, rules and exit codes: whatever a
post contains -- broken MIME, lying transfer encodings, odd charsets, 8-bit
and control bytes in headers, hostile HTML -- `deliver`

  a. exits 0, 65, 67 or 77 (never temporary: content is not the environment)
     and never prints a traceback;
  b. sends only copies whose header block is clean: every line a continuation
     or `Name: value` with a printable-ASCII name, no bare CR, no NUL, no 8-bit
     byte, one List-Id, one Message-ID, one From, and the stdlib parser finds
     the header/body separator;
  c. either distributes the post or holds it: a held (or quarantined) post
     has no outgoing copy and `held --json` lists it, a quarantine with a
     reason "error: ..."; a refused post has no outgoing copy either.

The strategies build raw bytes, as an MTA would hand them over.  Each example
goes to systers-new@ of a public list through a `deliver` subprocess; a
unique token (UNIQ, replaced per run) keeps examples and hypothesis' replays
of them from being discarded as duplicates.
"""
import base64
import itertools
import json
import quopri
import re
import string
from email import errors, policy
from email.parser import BytesParser

import pytest
from conftest import ALL_BOTH, ALL_HTML, ALL_TEXT, OWNER
from hypothesis import HealthCheck, currently_in_test_context, event, given, note, settings
from hypothesis import strategies as st

AUTHOR = "author@example.com"
MEMBERS = {ALL_TEXT: ("all", "text"), ALL_HTML: ("all", "html"), ALL_BOTH: ("all", "both")}
UNIQ = b"UNIQ"              # replaced by a fresh token for every run of an example
SEQ = itertools.count(1)
MAX_POST_KB = 40            # the list default; larger posts are held by policy

SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])


# Strategies: bodies ##########################################################

def rarely(n):
    """True about once in n + 1 draws; shrinks to False (the ordinary case)."""
    return st.integers(0, n).map(lambda i: i == n)


def usually(n):
    """False about once in n + 1 draws; shrinks to True (the ordinary case)."""
    return st.integers(0, n).map(lambda i: i != n)


LONG_LINE = st.builds(lambda chunk, n: chunk * n,
                      st.sampled_from([b"x", b"\xe9", b"ab ", b"<b>", b"\xc3\xa9", b"=", b"-"]),
                      st.integers(2000, 3000))
ODD_BYTES = st.sampled_from([b"\r", b"\x00", b"a\rb", b"\r\r\n", b"\x00\x00\x00", b"\x1b[31m",
                             b"\xff\xfe", b"\xef\xbb\xbf", b"=?utf-8?q?x?=", b"--", b".", b"From x"])
LATIN1 = st.text(alphabet=st.characters(max_codepoint=255), max_size=200).map(
    lambda s: s.encode("latin-1"))


def body_bytes(max_pieces=4):
    """Random body content: text in a few encodings, binary, bare CR, NUL,
    lines of 2000+ characters."""
    piece = st.one_of(
        st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
        LATIN1,
        st.binary(max_size=200),
        LONG_LINE,
        ODD_BYTES,
        st.just(b"Hello all,\n\nThe deadline is Friday.\n"),
    )
    return st.lists(piece, min_size=0, max_size=max_pieces).map(b"\n".join)


@st.composite
def transfer_encoded(draw, body, cte):
    """body under Content-Transfer-Encoding cte, sometimes lying about it."""
    if cte == "base64":
        how = draw(st.sampled_from(["good", "unwrapped", "truncated", "garbage", "raw"]))
        if how == "good":
            return base64.encodebytes(body)
        if how == "unwrapped":
            return base64.b64encode(body)
        if how == "truncated":
            return base64.encodebytes(body)[:max(0, len(body) - draw(st.integers(1, 5)))] + b"=\n"
        if how == "garbage":
            return draw(st.sampled_from([b"@@@@", b"====", b"YQ", b"Y\x00Q=\xff", b"!!notbase64!!\n"])) \
                + base64.b64encode(body)
        return body
    if cte == "quoted-printable":
        how = draw(st.sampled_from(["good", "bad-escapes", "raw"]))
        if how == "good":
            return quopri.encodestring(body)
        if how == "bad-escapes":
            bad = draw(st.lists(st.sampled_from([b"=ZZ", b"=\xff", b"=4", b"=", b"=\r", b"=0", b"==", b"=G1"]),
                                min_size=1, max_size=4))
            return quopri.encodestring(body) + b"".join(bad)
        return body
    return body


# Strategies: MIME trees ######################################################

CHARSETS = ["utf-8", "us-ascii", "latin-1", "idna", "punycode", "undefined", "rot13", "base64",
            "x-unknown", ""]
CTES = ["7bit", "8bit", "base64", "quoted-printable", "x-garbage"]
MULTIPARTS = ["mixed", "alternative", "related", "signed", "digest"]
LEAVES = ["text/plain", "text/html", "application/octet-stream", "message/rfc822"]
BCHARS = string.ascii_letters + string.digits + "'()+_,-./:=?"
BOUNDARY = st.one_of(
    st.text(alphabet=BCHARS, min_size=1, max_size=70),
    st.sampled_from(["", " ", "a b", "x" * 100, "\u00e9t\u00e9", "--", "=_", "b;c", 'q"uote']),
)


def render(headers, body):
    return b"\n".join(headers) + b"\n\n" + body


@st.composite
def mime_leaf(draw, depth=0, max_depth=6, types=LEAVES):
    """A leaf entity: (header lines, body)."""
    ctype = draw(st.sampled_from(types))
    headers = []
    if ctype == "message/rfc822" and depth < max_depth:
        inner = draw(st.one_of(mime_message_body(depth + 1, max_depth), body_bytes()))
        content = inner
    else:
        content = draw(body_bytes())
    if draw(usually(9)):        # sometimes no Content-Type at all
        line = b"Content-Type: " + ctype.encode()
        charset = draw(st.none() | st.sampled_from(CHARSETS))
        if charset is not None:
            quoted = draw(st.booleans())
            line += b"; charset=" + (b'"%s"' % charset.encode() if quoted else charset.encode())
        if ctype == "application/octet-stream" and draw(st.booleans()):
            line += b'; name="' + draw(st.sampled_from([b"a.bin", b"\xe9t\xe9.pdf", b"", b"x" * 300])) + b'"'
        headers.append(line)
    cte = draw(st.none() | st.sampled_from(CTES))
    if cte is not None:
        headers.append(b"Content-Transfer-Encoding: " + cte.encode())
        content = draw(transfer_encoded(content, cte))
    if draw(rarely(4)):
        headers.append(b"Content-Disposition: " + draw(st.sampled_from(
            [b"attachment", b'attachment; filename="notes.txt"', b"inline", b"attachment; filename=\xff\xfe",
             b"attachment; filename*=utf-8''%E2%9C%93.txt", b"bogus;;;"])))
    return headers, content


@st.composite
def mime_multipart(draw, depth=0, max_depth=6, subtypes=MULTIPARTS, first=None):
    """A multipart entity whose boundary may be missing, wrong or never closed;
    first: a strategy for its first child."""
    sub = draw(st.sampled_from(subtypes))
    boundary = draw(BOUNDARY).encode("utf-8")
    mode = draw(st.sampled_from(["ok", "ok", "ok", "quoted", "missing", "wrong", "empty"]))
    used = boundary
    if mode == "quoted":
        declared = b'"' + boundary + b'"'
    elif mode == "missing":
        declared = None
    elif mode == "wrong":
        declared, used = boundary, boundary + b"X" if draw(st.booleans()) else b"other-" + boundary
    elif mode == "empty":
        declared = b'""'
    else:
        declared = boundary
    line = b"Content-Type: multipart/" + sub.encode()
    if declared is not None:
        line += b"; boundary=" + declared
    if sub == "signed":
        line += b'; protocol="application/pgp-signature"; micalg=pgp-sha256'
    headers = [line]
    if draw(rarely(5)):
        headers.append(b"Content-Transfer-Encoding: " + draw(st.sampled_from(CTES)).encode())
    children = draw(st.lists(mime_entity(depth + 1, max_depth), min_size=0, max_size=5))
    if first is not None and draw(usually(5)):
        children.insert(0, draw(first))
    if sub == "signed" and draw(st.booleans()):
        children.append(render([b"Content-Type: application/pgp-signature"],
                               b"-----BEGIN PGP SIGNATURE-----\nAAAA\n-----END PGP SIGNATURE-----\n"))
    out = []
    if draw(st.booleans()):
        out.append(draw(st.sampled_from([b"This is a multi-part message in MIME format.", b"", b"\x00\r"])) + b"\n")
    for child in children:
        out.append(b"--" + used + b"\n" + child + b"\n")
    if draw(usually(3)):        # the close delimiter, sometimes missing
        out.append(b"--" + used + b"--\n")
    if draw(rarely(3)):
        out.append(draw(body_bytes(2)))
    return headers, b"".join(out)


def text_leaf():
    """A text/plain or text/html leaf entity as raw bytes."""
    return mime_leaf(0, 0, types=["text/plain", "text/html"]).map(lambda hb: render(*hb))


@st.composite
def mime_entity(draw, depth=0, max_depth=6):
    """Raw bytes of one entity (headers, blank line, body): nested multiparts
    near the top, leaves further down."""
    multi = depth < max_depth and draw(rarely(depth + 1))
    headers, body = draw(mime_multipart(depth, max_depth) if multi else mime_leaf(depth, max_depth))
    return render(headers, body)


@st.composite
def mime_message_body(draw, depth=0, max_depth=6):
    """An embedded message (message/rfc822 or digest part): a few headers and an entity."""
    headers, body = draw(st.one_of(mime_leaf(depth, max_depth), mime_multipart(depth, max_depth))) \
        if depth < max_depth else draw(mime_leaf(depth, max_depth))
    return render([b"From: inner@example.net", b"Subject: inner " + draw(LATIN1)[:40].replace(b"\n", b" ")]
                  + headers, body)


@st.composite
def deep_chain(draw):
    """Absurd nesting: a chain of single-child multiparts."""
    depth = draw(st.integers(7, 40))
    headers, body = draw(mime_leaf(0, 0))
    entity = render(headers, body)
    for level in range(depth):
        b = b"b%d" % level
        entity = render([b"Content-Type: multipart/%s; boundary=%s" % (draw(st.sampled_from(MULTIPARTS)).encode(), b)],
                        b"--" + b + b"\n" + entity + b"\n--" + b + b"--\n")
    return entity


@st.composite
def mime_messages(draw):
    """A whole post whose body is a random MIME tree (raw bytes, UNIQ inside)."""
    tree = draw(st.one_of(
        # what mail usually looks like: a text part, or multipart/mixed with
        # one first -- whose charset, encoding or boundaries are broken
        text_leaf(),
        mime_multipart(0, 6, subtypes=["mixed"], first=text_leaf()).map(lambda hb: render(*hb)),
        mime_multipart(0, 6, subtypes=["mixed"], first=mime_multipart(
            1, 6, subtypes=["alternative"], first=text_leaf()).map(lambda hb: render(*hb))).map(lambda hb: render(*hb)),
        mime_entity(0, 6),
        deep_chain()))
    head = [b"From: Author <author@example.com>",
            b"To: systers-new@lists.example.org",
            b"Subject: " + draw(st.sampled_from([b"Fellowship deadlines", b"Re: MIME test", b"notes"])),
            b"Date: Mon, 1 Jan 2024 10:00:00 +0000"]
    if draw(usually(5)):
        head.append(b"Message-ID: <" + UNIQ + b"@example.com>")
    else:
        head.append(b"X-Test-Seq: " + UNIQ)    # no Message-ID on purpose; the bytes still differ
    if draw(usually(4)):
        head.append(b"MIME-Version: 1.0")
    raw = b"\n".join(head) + b"\n" + tree
    if draw(rarely(9)):
        raw = raw.replace(b"\n", b"\r\n")
    return raw


# Strategies: header values ###################################################

INVALID_UTF8 = st.sampled_from([b"\xc3(", b"\xff\xfe", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80",
                                b"\x80", b"\xe2\x82"])
NASTY_TEXT = st.text(alphabet=st.sampled_from(list("ab \u00e9\u2713\U0001f600\r\n\x00\t?=_:<>@\"")), max_size=20)


@st.composite
def encoded_word(draw):
    """An RFC 2047 encoded word, often decoding to CR, LF or NUL, sometimes bogus."""
    charset = draw(st.sampled_from(["utf-8", "UTF-8", "iso-8859-1", "bogus", "", "unknown-8bit", "utf-7"]))
    enc = draw(st.sampled_from(["q", "b", "Q", "B", "x"]))
    text = draw(NASTY_TEXT)
    data = text.encode("utf-8", "surrogatepass")
    if enc.lower() == "b":
        payload = base64.b64encode(data)
        if draw(rarely(4)):
            payload = payload[:-1]             # broken padding
    elif enc.lower() == "q":
        payload = b"".join(b"_" if c == 32 else bytes([c]) if 33 <= c < 127 and c not in b"=?_" else b"=%02X" % c
                           for c in data)
        if draw(rarely(4)):
            payload += b"=Z"
    else:
        payload = data.replace(b"\n", b" ")
    return b"=?" + charset.encode() + b"?" + enc.encode() + b"?" + payload + b"?="


HEADER_PIECE = st.one_of(
    st.text(alphabet=string.printable.replace("\n", "").replace("\r", "").replace("\x0b", "").replace("\x0c", ""),
            max_size=30).map(str.encode),
    st.text(max_size=15).map(lambda s: s.encode("utf-8", "surrogatepass")),
    LATIN1.map(lambda b: b[:15]),
    INVALID_UTF8,
    st.sampled_from([b"\r", b"\x00", b"\n ", b"\n\t", b"\r\n ", b" ", b":", b"<", b">", b","]),
    encoded_word(),
    st.binary(max_size=12),
).map(lambda b: b.replace(b"\n", b"\n ").replace(b"\n  ", b"\n ").replace(b"\n \t", b"\n\t"))


def header_values():
    """A header value as raw bytes: 8-bit, control bytes, encoded words, folding."""
    return st.lists(HEADER_PIECE, min_size=0, max_size=6).map(b"".join)


MALFORMED_LINES = st.one_of(
    st.sampled_from([b"this line has no colon", b"From author@example.com Mon Jan  1 10:00:00 2024",
                     b">From somebody", b"\xe9t\xe9 sans deux-points", b"X-Bad Name: v", b"X-\xe9t\xe9: v",
                     b": no name", b"\x00", b"\r", b"-----", b"X-Null\x00Name: v"]),
    st.text(alphabet=string.ascii_letters + " -", min_size=1, max_size=30).map(str.encode),
)
SOMETIMES = st.integers(0, 2).map(lambda n: n > 0)


@st.composite
def header_messages(draw):
    """A plain post whose headers are the garbage (raw bytes, UNIQ inside)."""
    fields = []

    def maybe_garbage(name, sane):
        if draw(SOMETIMES):
            value = draw(header_values())
            if sane is not None and draw(st.booleans()):
                value = value + b" " + sane            # garbage around a usable value
            fields.append(name + b": " + value)
        elif sane is not None:
            fields.append(name + b": " + sane)

    maybe_garbage(b"Subject", b"Fellowship deadlines")
    maybe_garbage(b"From", b"Author <author@example.com>")
    maybe_garbage(b"To", b"systers-new@lists.example.org")
    maybe_garbage(b"Cc", None)
    mid = draw(st.sampled_from(["plain", "plain", "garbage", "absent"]))
    if mid == "plain":
        fields.append(b"Message-ID: <" + UNIQ + b"@example.com>")
    elif mid == "garbage":             # the token first: any way of reading the id finds it
        fields.append(b"Message-ID: <" + UNIQ + b"@example.com>" + draw(header_values()))
    else:
        fields.append(b"X-Test-Seq: " + UNIQ)
    maybe_garbage(b"In-Reply-To", None)
    maybe_garbage(b"References", None)
    for n in range(draw(st.integers(0, 3))):
        name = b"X-" + draw(st.sampled_from([b"Mailer", b"Custom", b"Weird-%d" % n, b"Original-To", b"Ab"]))
        fields.append(name + b": " + draw(header_values()))
    fields = list(draw(st.permutations(fields)))
    for _ in range(draw(st.integers(0, 3))):
        fields.insert(draw(st.integers(0, len(fields))), draw(MALFORMED_LINES))
    fields += [b"Date: Mon, 1 Jan 2024 10:00:00 +0000", b"MIME-Version: 1.0",
               b"Content-Type: text/plain; charset=utf-8", b"Content-Transfer-Encoding: 8bit"]
    return b"\n".join(fields) + b"\n\nHello all,\n\nThe deadline is Friday.\n"


# Strategies: HTML ############################################################

ENTITIES = st.sampled_from(["&amp;", "&#x110000;", "&#0;", "&bogus;", "&", "&#", "&#xZZ;", "&#99999999999;",
                            "&nbsp;", "&lt;", "&#xD800;", "&#13;", "&#x0a;"])
SPECIALS = st.sampled_from(["<![ endif]>", "<!--[if mso]>", "<![endif]-->", "<!", "</", "<", "<!-- open comment",
                            "\x00", "<!DOCTYPE html>", "<?xml version='1.0'?>", "]]>", "<![CDATA[x", ">", "</>",
                            "<p", "<a href=", "\r", "<td colspan=999999>", "<ol start=-5>", "<li value=99999999999>"])
HTML_TEXT = st.text(alphabet=st.sampled_from(list("ab \n\t\u00e9\u2713<>&\"'=/\x00\r")), max_size=20)
TAGS = ["p", "div", "ol", "li", "table", "tr", "td", "pre", "a", "img", "br", "script", "style",
        "span", "ul", "blockquote", "h1", "b"]


@st.composite
def html_attrs(draw, tag):
    out = ""
    if tag in ("a", "img") or draw(rarely(3)):
        name = {"a": "href", "img": "src"}.get(tag, draw(st.sampled_from(["class", "style", "width", "x"])))
        value = draw(st.sampled_from(["http://example.org/a b", "javascript:alert(1)", "mailto:x@y",
                                      "", "\u00e9\x00", "cid:part1", "x" * 300]))
        quote = draw(st.sampled_from(['"', "'", "", 'missing']))
        if quote == "missing":
            out += ' %s="%s' % (name, value)
        else:
            out += " %s=%s%s%s" % (name, quote, value, quote)
    if tag == "img" and draw(st.booleans()):
        out += ' alt="%s"' % draw(HTML_TEXT)
    return out


def html_fragments():
    """Random nesting of tags, text, entities and debris; some tags unclosed."""
    base = st.one_of(HTML_TEXT, ENTITIES, SPECIALS, st.sampled_from(["<br>", "<br/>", "<img>", "<hr>"]))

    @st.composite
    def element(draw, children):
        tag = draw(st.sampled_from(TAGS))
        inner = "".join(draw(st.lists(children, max_size=4)))
        if tag in ("script", "style"):
            inner = draw(st.sampled_from(["alert('</scr' + 'ipt>')", "p{color:red}", "<!--", "</", inner]))
        close = "" if draw(rarely(3)) else "</%s>" % tag
        return "<%s%s>%s%s" % (tag, draw(html_attrs(tag)), inner, close)

    return st.recursive(base, lambda children: element(children), max_leaves=40).map(
        lambda x: x if isinstance(x, str) else "".join(x))


@st.composite
def html_documents(draw):
    parts = draw(st.lists(html_fragments(), min_size=1, max_size=5))
    doc = "".join(parts)
    if draw(rarely(6)):             # deep nesting of lists or tables
        depth = draw(st.integers(10, 60))
        opener, closer = draw(st.sampled_from([("<ol><li>", "</li></ol>"), ("<div>", "</div>"),
                                               ("<table><tr><td>", "</td></tr></table>"), ("<blockquote>", "")]))
        doc = opener * depth + doc + closer * depth
    if draw(st.booleans()):
        doc = "<html><head><title>t</title></head><body>" + doc + "</body></html>"
    return doc


@st.composite
def html_messages(draw):
    """A post carrying a random HTML body, alone or beside a text part."""
    doc = draw(html_documents())
    charset = draw(st.sampled_from(["utf-8", "latin-1", "us-ascii", "x-unknown", ""]))
    data = doc.encode("utf-8", "surrogatepass") if charset != "latin-1" else doc.encode("latin-1", "replace")
    cte = draw(st.sampled_from(["8bit", "quoted-printable", "base64"]))
    encoded = {"8bit": data, "quoted-printable": quopri.encodestring(data),
               "base64": base64.encodebytes(data)}[cte]
    html_part = render([b"Content-Type: text/html; charset=" + charset.encode(),
                        b"Content-Transfer-Encoding: " + cte.encode()], encoded)
    head = [b"From: Author <author@example.com>", b"To: systers-new@lists.example.org",
            b"Subject: HTML test", b"Date: Mon, 1 Jan 2024 10:00:00 +0000",
            b"Message-ID: <" + UNIQ + b"@example.com>", b"MIME-Version: 1.0"]
    if draw(st.booleans()):
        return b"\n".join(head) + b"\n" + html_part
    text = render([b"Content-Type: text/plain; charset=utf-8"], b"Hello all (text part).\n")
    return (b"\n".join(head) + b"\nContent-Type: multipart/alternative; boundary=alt\n\n--alt\n" + text
            + b"\n--alt\n" + html_part + b"\n--alt--\n")


# Running a post and checking it ##############################################

@pytest.fixture
def plist(make_list):
    """A public list of three members (text, html, both), one per test function."""
    ml = make_list(MEMBERS)
    ml.cli("config", ml.name, "post_policy", "public")
    take(ml)
    ml.held_tokens = set()
    return ml


def fresh(raw):
    return raw.replace(UNIQ, b"hyp%d" % next(SEQ))


def say(text, label=None):
    """note() (and event(), for --hypothesis-show-statistics) inside a
    hypothesis test, nothing outside one."""
    if currently_in_test_context():
        note(text)
        if label:
            event(label)


def show(raw, limit=600):
    return repr(raw[:limit]) + (" ... (%d bytes)" % len(raw) if len(raw) > limit else "")


HEADER_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+:")


def header_problems(raw):
    """What is wrong with an outgoing copy's header block (property b)."""
    lines, separated = [], False
    for line in raw.split(b"\n"):
        if line in (b"", b"\r"):
            separated = True
            break
        lines.append(line[:-1] if line.endswith(b"\r") else line)
    problems = [] if separated else ["no empty line after the header block"]
    names = []
    for i, line in enumerate(lines):
        if line[:1] in (b" ", b"\t") and i > 0:
            pass
        elif HEADER_LINE.match(line):
            names.append(line.split(b":", 1)[0].lower())
        else:
            problems.append("not a header line: %r" % line[:120])
        if b"\r" in line:
            problems.append("bare CR: %r" % line[:120])
        if b"\x00" in line:
            problems.append("NUL: %r" % line[:120])
        if any(c >= 0x80 for c in line):
            problems.append("8-bit byte: %r" % line[:120])
    for name in (b"list-id", b"message-id", b"from"):
        if names.count(name) != 1:
            problems.append("%d %s lines" % (names.count(name), name.decode()))
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    if any(isinstance(d, errors.MissingHeaderBodySeparatorDefect) for d in msg.defects):
        problems.append("MissingHeaderBodySeparatorDefect")
    return problems


def new_held(ml):
    """held --json entries that appeared since the last look."""
    held = ml.json("held", ml.name)
    new = [h for h in held if h["token"] not in ml.held_tokens]
    ml.held_tokens.update(h["token"] for h in held)
    return new


def take(ml):
    """ml.take(), then forget the spool's records: take() re-reads every
    record each time, which grows quadratic over hundreds of examples."""
    calls = ml.take()
    for path in ml.spool.glob("*.json"):
        path.unlink()
    return calls


def post(ml, raw, check_a=True, check_b=True, check_c=True, hold_expected=None):
    """deliver raw to L-new and check the properties asked for.

    hold_expected: why this example may be held by policy (None: only a
    quarantine, reason "error: ...", may hold it)."""
    raw = fresh(raw)
    say("message: " + show(raw, 3000))
    proc = ml.deliver(raw, to=ml.addr("new"), sender=AUTHOR)
    calls = take(ml)
    copies = [c for c in calls if not c.is_reply]
    told_owner = any(OWNER in c.recipients for c in calls if c.is_reply)
    say("exit %d, stderr %r, %d copies, %d notices" % (proc.returncode, proc.stderr_text[-500:],
                                                       len(copies), len(calls) - len(copies)),
        "exit %d, %s" % (proc.returncode, "copies" if copies else "no copy"))
    if check_a:
        assert proc.returncode in (0, 65, 67, 77), ml.explain(proc)
        assert b"Traceback" not in proc.stdout + proc.stderr, ml.explain(proc)
    if check_b:
        for call in copies:
            problems = header_problems(call.raw)
            assert not problems, "copy to %s: %s\nheader block: %s" % (
                call.recipients, "; ".join(problems), show(call.raw.partition(b"\n\n")[0], 1500))
    if check_c:
        if proc.returncode in (65, 67, 77):
            assert not copies, "refused (exit %d) yet %d copies went out" % (proc.returncode, len(copies))
        held = new_held(ml) if (told_owner or not copies or check_c == "always") else []
        say("held: %s" % json.dumps(held),
            "held: " + ", ".join(sorted({(h["reason"] or "").split(" ")[0] for h in held})) if held else None)
        if proc.returncode == 0 and not copies:
            assert held, "exit 0, no copy sent and nothing held: the post vanished"
        for entry in held:
            assert not copies, "held (%r) yet %d copies went out" % (entry["reason"], len(copies))
            reason = entry["reason"] or ""
            if hold_expected is None and len(raw) < (MAX_POST_KB - 4) * 1024:
                assert reason.startswith("error:"), "held with reason %r on a public list" % reason
    return proc, copies


# Properties ##################################################################

def test_plain_post_passes_the_checks(plist):
    """The harness itself: an ordinary post is distributed and passes a, b, c."""
    raw = (b"From: Author <author@example.com>\nTo: systers-new@lists.example.org\nSubject: Hello\n"
           b"Message-ID: <" + UNIQ + b"@example.com>\nMIME-Version: 1.0\n"
           b"Content-Type: text/plain; charset=utf-8\n\nHello all.\n")
    proc, copies = post(plist, raw, check_c="always")
    assert proc.returncode == 0 and len(copies) >= 1


@settings(max_examples=80, **SETTINGS)
@given(raw=mime_messages())
def test_mime_never_temporary_nor_traceback(plist, raw):
    """a: any MIME tree exits 0/65/67/77 and prints no traceback."""
    post(plist, raw, check_b=False, check_c=False)


@settings(max_examples=60, **SETTINGS)
@given(raw=mime_messages())
def test_mime_copies_have_clean_headers(plist, raw):
    """b: every outgoing copy of any MIME tree has a clean header block."""
    post(plist, raw, check_a=False, check_c=False)


@settings(max_examples=50, **SETTINGS)
@given(raw=mime_messages(),
       trigger=st.sampled_from([None, None, None, "auto-submitted", "precedence", "big"]))
def test_mime_held_or_quarantined_are_not_sent(plist, raw, trigger):
    """c: a held or quarantined post sends nothing and is listed by held --json."""
    if trigger == "auto-submitted":
        raw = b"Auto-Submitted: auto-generated\n" + raw
    elif trigger == "precedence":
        raw = b"Precedence: bulk\n" + raw
    elif trigger == "big":
        raw = raw.replace(b"\nSubject:", b"\nX-Padding: " + b"p" * (MAX_POST_KB * 1024 + 100) + b"\nSubject:", 1)
    post(plist, raw, check_a=False, check_b=False, check_c="always", hold_expected=trigger)


@settings(max_examples=80, **SETTINGS)
@given(raw=header_messages())
def test_header_garbage(plist, raw):
    """a, b, c for posts whose headers carry 8-bit, CR, NUL, bad encoded words, colon-less lines."""
    post(plist, raw)


@settings(max_examples=50, **SETTINGS)
@given(raw=html_messages())
def test_html_garbage(plist, raw):
    """a, b, c for posts with hostile HTML bodies."""
    post(plist, raw)
