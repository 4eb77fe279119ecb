#!/usr/bin/env python3
"""Write the hostile corpus: one .eml file per case plus MANIFEST.json.

Run once by hand (`python3 tests/data/hostile/make.py`); the tests read the
files it wrote and never run this.  It is deterministic: no clock, no
randomness, so running it again rewrites the same bytes.

Each case is (file name, why, expect, bytes).  expect is what a post of the
file to systers-new@lists.example.org on a public list must come to:
"delivered", "quarantined", "discarded" or "delivered|quarantined".
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
LIST_ADDR = b"systers-new@lists.example.org"
DATE = b"Mon, 01 Jan 2024 12:00:00 +0000"
CASES = []


def case(name, why, expect="delivered"):
    def register(fn):
        CASES.append((name, why, expect, fn(name)))
        return fn
    return register


def head(name, subject=None, ctype=b"text/plain; charset=us-ascii", cte=None,
         extra=(), frm=b"Hostile Tester <author@example.com>", msgid=True, mime=True):
    """Header lines (LF) for a case; extra lines go before the Content-* ones."""
    lines = []
    if frm is not None:
        lines.append(b"From: " + frm)
    lines.append(b"To: " + LIST_ADDR)
    lines.append(b"Subject: " + (subject if subject is not None
                                 else b"hostile corpus: " + name.encode()))
    lines.append(b"Date: " + DATE)
    if msgid:
        lines.append(b"Message-ID: <" + name.encode() + b"@hostile.example.com>")
    lines += list(extra)
    if mime:
        lines.append(b"MIME-Version: 1.0")
    if ctype is not None:
        lines.append(b"Content-Type: " + ctype)
    if cte is not None:
        lines.append(b"Content-Transfer-Encoding: " + cte)
    return b"\n".join(lines) + b"\n"


def msg(name, body, **kw):
    return head(name, **kw) + b"\n" + body


def text(name):
    return ("This is the hostile corpus case %s.\nIt must reach the list readably "
            "or be quarantined, never retried.\n" % name).encode()


# 1. MIME structure ###########################################################

@case("mime-mixed-no-boundary.eml",
      "A broken mailer's multipart/mixed without a boundary parameter: parsers see one opaque body.")
def _(n):
    return msg(n, b"--zzz\nContent-Type: text/plain\n\n" + text(n) + b"--zzz--\n",
               ctype=b"multipart/mixed")


@case("mime-alternative-no-boundary.eml",
      "multipart/alternative with no boundary, as some bulk mailers emit: no parts can be found.")
def _(n):
    return msg(n, b"--alt\nContent-Type: text/plain\n\n" + text(n)
               + b"--alt\nContent-Type: text/html\n\n<p>html</p>\n--alt--\n",
               ctype=b"multipart/alternative")


@case("mime-boundary-never-occurs.eml",
      "A boundary that never occurs in the body (mangled by a relay that rewrote the delimiters).")
def _(n):
    return msg(n, b"preamble only\n--other\nContent-Type: text/plain\n\n" + text(n) + b"--other--\n",
               ctype=b'multipart/mixed; boundary="never-here"')


@case("mime-missing-close-delimiter.eml",
      "A multipart truncated before its close delimiter (a message cut short in transit).")
def _(n):
    return msg(n, b"--b1\nContent-Type: text/plain\n\n" + text(n)
               + b"--b1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
               + b"AAECAwQFBgcICQ==\n",
               ctype=b'multipart/mixed; boundary="b1"')


@case("mime-empty-multipart.eml",
      "A multipart/mixed with only its close delimiter and no part at all.")
def _(n):
    return msg(n, b"--b2--\n", ctype=b'multipart/mixed; boundary="b2"')


@case("mime-empty-multipart-no-body.eml",
      "A multipart/alternative whose body is completely empty (an editor that sent before attaching).")
def _(n):
    return msg(n, b"", ctype=b'multipart/alternative; boundary="b3"')


@case("mime-empty-boundary.eml",
      "boundary=\"\": an empty boundary makes every line starting with -- a delimiter.")
def _(n):
    return msg(n, b"--\nContent-Type: text/plain\n\n" + text(n) + b"----\n",
               ctype=b'multipart/mixed; boundary=""')


@case("mime-content-type-garbage.eml",
      "A Content-Type with no subtype and stray separators, from a hand-rolled script.")
def _(n):
    return msg(n, text(n), ctype=b"text/;;; charset==; ===")


@case("mime-unknown-transfer-encoding.eml",
      "An unknown Content-Transfer-Encoding (x-uuencode-ish) on a text part.")
def _(n):
    return msg(n, b"begin 644 x\n" + text(n) + b"end\n", ctype=b"text/plain; charset=utf-8",
               cte=b"x-base65")


@case("mime-only-attachment.eml",
      "A post that is nothing but an attachment: multipart/mixed whose first part is an image.")
def _(n):
    return msg(n, b"--b4\nContent-Type: image/png\nContent-Disposition: attachment; filename=x.png\n"
               b"Content-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--b4--\n",
               ctype=b'multipart/mixed; boundary="b4"')


@case("mime-toplevel-rfc822.eml",
      "A forward sent as a bare message/rfc822 body (some clients' 'forward as attachment').")
def _(n):
    return msg(n, b"From: inner@example.com\nSubject: inner\n\n" + text(n), ctype=b"message/rfc822")


# 2. 8-bit and broken bytes in headers #######################################

@case("hdr-raw-utf8-from-subject.eml",
      "Raw, unencoded UTF-8 in the From display name and Subject, as many mobile clients send.")
def _(n):
    return msg(n, "Héllo wörld — 日本語の件名 ✓\n".encode() + text(n),
               frm="Zoë Ünïcødé 山田 <author@example.com>".encode(),
               subject="Café naïve — 日本語の件名 ✓".encode(), ctype=b"text/plain; charset=utf-8",
               cte=b"8bit")


@case("hdr-raw-latin1-subject.eml",
      "A Subject in raw Latin-1 bytes (an old European mail client).")
def _(n):
    return msg(n, "R\xe9union d'\xe9t\xe9\n".encode("latin-1") + text(n),
               subject="R\xe9union d'\xe9t\xe9 \xe0 la fa\xe7on".encode("latin-1"),
               ctype=b"text/plain; charset=iso-8859-1", cte=b"8bit")


@case("hdr-invalid-utf8.eml",
      "Invalid UTF-8 byte sequences in headers and body (a transcoding bug upstream).")
def _(n):
    return msg(n, b"bad \xff\xfe \xc3\x28 \xe2\x82 \xed\xa0\x80 \xf8\x88\x80\x80\x80\n" + text(n),
               frm=b"Bro\xc3\x28ken \xff <author@example.com>",
               subject=b"Bad \xff\xfe\xc3\x28 bytes \xe2\x82",
               extra=[b"X-Junk: \x80\x81\x82\xc0\xaf", b"Comments: \xed\xa0\x80 surrogate"],
               ctype=b"text/plain; charset=utf-8", cte=b"8bit")


@case("hdr-name-8bit.eml",
      "A header whose name holds 8-bit bytes (X-T\\xc3\\xabst:), which is no header at all to RFC 5322.")
def _(n):
    return msg(n, text(n), extra=["X-Tëst: value".encode(), b"X-Ok: fine"])


@case("hdr-raw-nul.eml",
      "A raw NUL byte in the Subject and in the text body.")
def _(n):
    return msg(n, b"before\x00after\n" + text(n), subject=b"nul \x00 inside",
               ctype=b"text/plain; charset=utf-8")


# 3. Charsets and transfer encodings #########################################

def charset_case(n, charset, body=None):
    return msg(n, (body if body is not None else "caf\xe9 ".encode() + text(n)),
               ctype=b"text/plain; charset=" + charset, cte=b"8bit")


@case("cs-idna.eml",
      "charset=idna: Python's idna codec refuses the 'replace' error handler (UnicodeError).")
def _(n):
    return charset_case(n, b"idna", b"xn--bcher-kva.example " + b"x" * 70 + b".example\n"
                        + "caf\u00e9".encode() + b"\n" + text(n))


@case("cs-punycode.eml",
      "charset=punycode with 8-bit bytes: the punycode codec chokes on non-ASCII input.")
def _(n):
    return charset_case(n, b"punycode", b"abc-\xff\xfe-- mnchen-3ya\n" + text(n))


@case("cs-undefined.eml",
      "charset=undefined: Python's 'undefined' codec raises on every decode.")
def _(n):
    return charset_case(n, b"undefined")


@case("cs-rot13.eml",
      "charset=rot13: a str-to-str codec that bytes.decode rejects with LookupError.")
def _(n):
    return charset_case(n, b"rot13")


@case("cs-base64.eml",
      "charset=base64: a bytes-to-bytes codec named as a text charset.")
def _(n):
    return charset_case(n, b"base64", b"aGVsbG8=\n" + text(n))


@case("cs-nul.eml",
      "charset=\"utf-8\\x00\": a NUL in the charset name makes codecs.lookup raise ValueError.")
def _(n):
    return charset_case(n, b'"utf-8\x00"')


@case("cs-unknown.eml",
      "An unknown charset (x-klingon-9) from an exotic client.")
def _(n):
    return charset_case(n, b"x-klingon-9")


@case("cs-utf16-odd.eml",
      "charset=utf-16 with an odd number of bytes and no BOM: a truncated UTF-16 body.")
def _(n):
    return charset_case(n, b"utf-16", "hello wörld".encode("utf-16-le") + b"\x00\xd8\x41")


@case("cs-base64-broken.eml",
      "A Latin-1 base64 part with bad padding and non-alphabet characters (a corrupted relay).")
def _(n):
    import base64
    good = base64.b64encode(text(n)).decode()
    broken = good[:20] + "!!*~" + good[20:40] + "\n" + good[40:-2] + "=\n===\n#%%\nQUJD\nQQ\n"
    return msg(n, broken.encode(), ctype=b"text/plain; charset=iso-8859-1", cte=b"base64")


@case("cs-qp-broken.eml",
      "quoted-printable with broken escapes (=ZZ, =4 at line end, a lone = and 8-bit bytes).")
def _(n):
    return msg(n, b"caf=E9 =ZZ =4\nsoft=\nbreak =\n=\nlone = sign =3\nraw \xe9 byte =E\n" + text(n),
               ctype=b"text/plain; charset=iso-8859-1", cte=b"quoted-printable")


@case("cs-encoded-word-broken.eml",
      "Encoded words with an unknown charset, broken base64 and a language tag, in Subject and From.")
def _(n):
    return msg(n, text(n), subject=b"=?x-unknown?b?SGVsbG8=?= =?utf-8?b?!!!w6k?= "
               b"=?utf-8*en?q?caf=C3=A9?= =?utf-8?q?=ZZ?= =?idna?q?x?=",
               frm=b"=?utf-8?b?w6k?= =?rot13?q?nopq?= <author@example.com>")


@case("cs-rfc2231-broken.eml",
      "RFC 2231 parameters with a bogus charset, bad percent escapes and a missing continuation.")
def _(n):
    return msg(n, b"--b5\nContent-Type: text/plain\n\n" + text(n)
               + b"--b5\nContent-Type: application/octet-stream; name*0*=bogus''%ff%fe; name*2=\"x\"\n"
               b"Content-Disposition: attachment; filename*=x-unknown''%zz%e9.txt\n"
               b"Content-Transfer-Encoding: base64\n\nAAAA\n--b5--\n",
               ctype=b'multipart/mixed; boundary="b5"')


# 4. HTML-only posts ##########################################################

def html_post(n, markup, cte=b"8bit"):
    return msg(n, markup, ctype=b"text/html; charset=utf-8", cte=cte)


@case("html-endif-space.eml",
      "Outlook-style '<![ endif]>' that makes Python 3.11's html.parser raise AssertionError.",
      "delivered|quarantined")
def _(n):
    return html_post(n, b"<html><head><!--[if gte mso 9]><xml></xml><![endif]--></head><body>\n"
                     b"<p>" + text(n) + b"</p>\n<![ endif]>\n<p>after the marked section</p>\n"
                     b"</body></html>\n")


@case("html-mso-unclosed.eml",
      "Outlook '<!--[if mso]>' conditional comments that are never closed.")
def _(n):
    return html_post(n, b"<html><body>\n<p>" + text(n) + b"</p>\n<!--[if mso]><table><tr><td>\n"
                     b"<p>inside the conditional</p>\n<!--[if !mso]><!-- <p>more</p>\n</body></html>\n")


@case("html-a-lt-b.eml",
      "36 KB of 'a<b ' repeated: html.parser re-scans the tail at every '<' (quadratic).",
      "delivered|quarantined")
def _(n):
    return html_post(n, b"<html><body><p>" + text(n) + b"</p>" + b"a<b " * 9000 + b"\n")


@case("html-blank-lines.eml",
      "39 KB of mostly blank lines inside one <p> (html2text needs about 25 s for it).",
      "delivered|quarantined")
def _(n):
    return html_post(n, b"<html><body><p>" + text(n) + b"\n" * 38900 + b"end</p></body></html>\n")


@case("html-nested-ol.eml",
      "35 KB of <ol><li> nested 4,000+ deep: html2text's indented output explodes to tens of MB.",
      "delivered|quarantined")
def _(n):
    return html_post(n, b"<html><body><p>" + text(n) + b"</p>" + b"<ol><li>" * 4300 + b"\n")


@case("html-table-500.eml",
      "A <table> nested 500 deep, as table-layout newsletters degrade to.",
      "delivered|quarantined")
def _(n):
    return html_post(n, b"<html><body><p>" + text(n) + b"</p>" + b"<table><tr><td>x" * 500
                     + b"</td></tr></table>" * 500 + b"\n")


@case("html-pre-unclosed.eml",
      "An unclosed <pre> holding 30 KB of log output pasted into a rich-text editor.")
def _(n):
    return html_post(n, b"<html><body><p>" + text(n) + b"</p><pre>"
                     + b"2024-01-01 12:00:00 ERROR something failed & <retry>\n" * 560 + b"\n")


@case("html-huge-attribute.eml",
      "A 30 KB attribute value (an inline data: image), as editors embed pasted screenshots.")
def _(n):
    return html_post(n, b"<html><body><p>" + text(n) + b'</p><img alt="x" src="data:image/png;base64,'
                     + b"iVBORw0KGgo" * 2800 + b'"><p title="' + b"&quot;" * 200 + b'">end</p></body></html>\n')


@case("html-nul.eml",
      "NUL bytes inside HTML tags, attributes and text.")
def _(n):
    return html_post(n, b"<html><body>\x00<p>" + text(n) + b"</p><p\x00 class=\"a\x00b\">x\x00y</p>"
                     b"<\x00script>z</body></html>\n")


@case("html-script-style-unclosed.eml",
      "<script> and <style> that never end: everything after them is raw text to the parser.")
def _(n):
    return html_post(n, b"<html><head><style>p { color: red }\n</head><body><p>" + text(n)
                     + b"</p><script>var x = '</scr' + 'ipt>';\n<p>hidden?</p>\n")


@case("html-charrefs.eml",
      "Numeric character references out of range (&#99999999999;, &#x110000;, &#0;, &#xD800;).")
def _(n):
    return html_post(n, b"<html><body><p>" + text(n) + b"</p><p>&#99999999999; &#x110000; &#0; "
                     b"&#xD800; &#x; &#; &bogus; &#128512;</p></body></html>\n")


# 5. Nesting and breadth ######################################################

@case("nest-250-multipart.eml",
      "multipart/mixed nested 250 deep with text/plain at the bottom (a recursion bomb).",
      "delivered|quarantined")
def _(n):
    depth = 250
    out = []
    for i in range(depth):
        out.append(b"--n%d\nContent-Type: multipart/mixed; boundary=\"n%d\"\n\n" % (i, i + 1))
    out.append(b"--n%d\nContent-Type: text/plain\n\n" % depth + text(n) + b"--n%d--\n" % depth)
    for i in reversed(range(depth)):
        out.append(b"--n%d--\n" % i)
    return msg(n, b"".join(out), ctype=b'multipart/mixed; boundary="n0"')


@case("nest-2000-siblings.eml",
      "2,000 sibling parts in one multipart/mixed (a parser and per-part cost bomb).",
      "delivered|quarantined")
def _(n):
    parts = [b"--s\nContent-Type: text/plain\n\n" + text(n)]
    parts += [b"--s\n\n%d\n" % i for i in range(2000)]
    return msg(n, b"".join(parts) + b"--s--\n", ctype=b'multipart/mixed; boundary="s"')


# 6. Header block oddities ####################################################

@case("hdr-no-colon-line.eml",
      "A header line with no colon in the middle of the block: parsers disagree where the body starts.")
def _(n):
    return (b"From: Hostile Tester <author@example.com>\nTo: " + LIST_ADDR
            + b"\nMessage-ID: <" + n.encode() + b"@hostile.example.com>\nDate: " + DATE
            + b"\nX-Foo: a\nthis line has no colon\nSubject: x\n"
            b"MIME-Version: 1.0\nContent-Type: text/plain\n\n" + text(n))


@case("hdr-bare-cr.eml",
      "A bare CR inside a header value that smuggles a List-Unsubscribe for parsers splitting on CR.")
def _(n):
    return msg(n, text(n), extra=[b"X-Foo: a\rList-Unsubscribe: <mailto:evil@evil.test>"])


@case("hdr-encoded-crlf-subject.eml",
      "An encoded-word Subject carrying CR/LF to inject a Bcc header once decoded.")
def _(n):
    return msg(n, text(n), subject=b"=?utf-8?q?Hello=0D=0ABcc:_victim@evil.test?=")


@case("hdr-encoded-nul.eml",
      "An encoded word that decodes to a NUL byte, in Subject and the From display name.")
def _(n):
    return msg(n, text(n), subject=b"=?utf-8?q?nul=00here?=",
               frm=b"=?utf-8?b?AGV2aWw=?= <author@example.com>")


@case("hdr-two-message-ids.eml",
      "Two Message-ID headers (a broken gateway added its own).")
def _(n):
    return msg(n, text(n), extra=[b"Message-ID: <second-" + n.encode() + b"@hostile.example.com>"])


@case("hdr-message-id-spaces.eml",
      "A Message-ID with spaces and angle brackets inside it.")
def _(n):
    return msg(n, text(n), msgid=False,
               extra=[b"Message-ID: <a b <c> d@hostile.example.com> <e f>"])


@case("hdr-no-message-id.eml",
      "No Message-ID at all (qmail-inject with QMAILINJECT without 'i', or a script).")
def _(n):
    return msg(n, text(n), msgid=False)


@case("hdr-no-from.eml",
      "No From header: qmail-smtpd adds none, so a script's mail arrives without one.")
def _(n):
    return msg(n, text(n), frm=None)


@case("hdr-from-comma-list.eml",
      "From: root,attacker@evil.test: an address list where a mailbox belongs (argument splitting).")
def _(n):
    return msg(n, text(n), frm=b"root,attacker@evil.test")


@case("hdr-from-dash-f.eml",
      "From: \"-fevil\"@x: a local part that becomes a sendmail option without '--'.")
def _(n):
    return msg(n, text(n), frm=b'"-fevil"@x')


@case("hdr-duplicate-from-subject.eml",
      "Two From and two Subject headers (RFC 5322 allows one each).")
def _(n):
    return msg(n, text(n), extra=[b"From: Second <second@example.com>", b"Subject: second subject"])


@case("hdr-20kb-line.eml",
      "A single 20 KB header line (a runaway X- header from a spam filter).")
def _(n):
    return msg(n, text(n), extra=[b"X-Long: " + b"abcdefghij" * 2048])


@case("hdr-5000-lines.eml",
      "5,000 header lines (a header-count bomb).")
def _(n):
    return msg(n, text(n), extra=[b"X: %d" % (i % 10) for i in range(5000)])


@case("hdr-folded-whitespace-only.eml",
      "A Subject folded with continuation lines made only of whitespace.")
def _(n):
    return msg(n, text(n), subject=b"folded\n   \n\t\n \t \n end of subject")


@case("hdr-starts-with-space.eml",
      "A header block whose first line starts with a space (a continuation of nothing).")
def _(n):
    return b" leading: continuation of nothing\n" + msg(n, text(n))


@case("hdr-references-1200.eml",
      "1,200 message ids in References and In-Reply-To (a thread-lookup cost bomb).")
def _(n):
    ids = [b"<r%d@hostile.example.com>" % i for i in range(1200)]
    return msg(n, text(n), extra=[b"In-Reply-To: " + b" ".join(ids[:100]),
                                  b"References: " + b" ".join(ids)])


@case("loop-list-id.eml",
      "A copy that already went through this list (it carries its List-Id): a mail loop.",
      "discarded")
def _(n):
    return msg(n, text(n), extra=[b"List-Id: <systers.lists.example.org>",
                                  b"Precedence: list"])


# 7. Line endings and body lines ##############################################

@case("body-mixed-line-endings.eml",
      "CRLF headers and a body mixing CRLF, bare LF and bare CR (Windows, Unix and classic Mac joined).")
def _(n):
    header = head(n).replace(b"\n", b"\r\n")
    return header + b"\r\n" + b"crlf line\r\nlf line\ncr line\rmixed\r\r\n\n\r" + text(n)


@case("body-dot-line.eml",
      "A body line holding only '.', which ends an SMTP/sendmail message without -i.")
def _(n):
    return msg(n, b"before\n.\nafter the dot\n..\n. \n" + text(n) + b".\n")


@case("body-2000-byte-line.eml",
      "A 2,000-byte line without spaces in a 7bit body (over RFC 5322's 998 limit).")
def _(n):
    return msg(n, text(n) + b"x" * 2000 + b"\n", cte=b"7bit")


# 8. Structures around attachments ###########################################

@case("struct-signed-broken.eml",
      "multipart/signed with one part and no signature, protocol missing (a mangled PGP/MIME post).")
def _(n):
    return msg(n, b"--sig\nContent-Type: text/plain\n\n" + text(n) + b"--sig\n--sig--\n",
               ctype=b'multipart/signed; micalg=pgp-sha256; boundary="sig"')


@case("struct-rfc822-broken.eml",
      "A message/rfc822 attachment that is itself broken (no separator, multipart without boundary).")
def _(n):
    return msg(n, b"--r\nContent-Type: text/plain\n\n" + text(n)
               + b"--r\nContent-Type: message/rfc822\nContent-Disposition: attachment\n\n"
               b"Content-Type: multipart/mixed\nSubject: =?utf-8?q?inner=0D=0A?=\nno colon here\n"
               b"--x\n\xff\xfe\n--r--\n",
               ctype=b'multipart/mixed; boundary="r"')


@case("struct-path-traversal-filename.eml",
      "A text/plain attachment named ../../etc/passwd (archive path traversal).")
def _(n):
    return msg(n, b"--p\nContent-Type: text/plain\n\n" + text(n)
               + b"--p\nContent-Type: text/plain; name=\"../../etc/passwd\"\n"
               b"Content-Disposition: attachment; filename=\"../../etc/passwd\"\n\n"
               b"root:x:0:0:root:/root:/bin/sh\n--p--\n",
               ctype=b'multipart/mixed; boundary="p"')


def main():
    manifest = []
    for name, why, expect, data in CASES:
        assert len(data) < 40 * 1000, (name, len(data))
        with open(os.path.join(HERE, name), "wb") as out:
            out.write(data)
        manifest.append({"file": name, "why": why, "expect": expect})
    with open(os.path.join(HERE, "MANIFEST.json"), "w") as out:
        json.dump(manifest, out, indent=1, ensure_ascii=True)
        out.write("\n")
    print("%d cases written" % len(CASES))


if __name__ == "__main__":
    main()
