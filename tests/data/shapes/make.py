#!/usr/bin/env python3
"""Write the shapes corpus: one .eml file per case plus MANIFEST.json.

Run once by hand (`python3 tests/data/shapes/make.py`); the tests read the
files it wrote and never run this.  It is deterministic: no clock, no
randomness (the "random" bytes of signatures, keys and cipher text are
SHA-256 chains of fixed seeds), so running it again rewrites the same bytes.

Each case is a function returning the message's bytes, registered with
case(slug, client, why, text_has, html_has, attachments, signed, defects);
the cases are numbered in the order they are registered.  After writing,
check() parses every file with the standard library and fails loudly when a
manifest entry does not hold (see README).
"""
import base64
import datetime
import email
import email.policy
import email.utils
import hashlib
import html
import io
import json
import os
import quopri
import re
import struct
import textwrap
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
LIST = "systers@lists.example.org"
MAX_BYTES = 40 * 1024          # max_post_kb's default
CASES = []


def case(slug, client, why, text_has, html_has=None, attachments=(), signed=False, defects=()):
    """Register a case.  defects: the names of the email-package defect
    classes the message is meant to carry (each is explained in `why`)."""
    def register(fn):
        name = "%02d-%s.eml" % (len(CASES) + 1, slug)
        CASES.append({"file": name, "client": client, "why": why, "attachments": list(attachments),
                      "signed": signed, "text_has": text_has, "html_has": html_has,
                      "defects": sorted(defects), "raw": fn()})
        return fn
    return register


# Building blocks #############################################################

def t(text):
    """Template text: dedented, the first newline dropped; a "\u2420" marks a
    space a line must end with (format=flowed soft breaks, the "-- " line),
    a "\u21b5" at the end of a line joins it to the next (long lines)."""
    return textwrap.dedent(text).lstrip("\n").replace("\u21b5\n", "").replace("\u2420", " ")


def head(*lines):
    """A header block (no blank line after it); every line must be ASCII."""
    return "\n".join(lines).encode("ascii")


def part(headers, body):
    """A MIME entity: header lines, a blank line, the body bytes."""
    return head(*headers) + b"\n\n" + body


def multipart(boundary, parts, preamble=b"", epilogue=b""):
    """A multipart body: each part ends with a line break and a blank line
    (the line break before a delimiter belongs to the delimiter)."""
    out = preamble
    for each in parts:
        out += b"--" + boundary.encode("ascii") + b"\n" + each
        out += b"\n" if each.endswith(b"\n") else b"\n\n"
    return out + b"--" + boundary.encode("ascii") + b"--\n" + epilogue


def b64(data, width=76):
    text = base64.b64encode(data)
    return b"".join(text[i:i + width] + b"\n" for i in range(0, len(text), width))


def qp(text, charset="utf-8"):
    return quopri.encodestring(text.encode(charset))


DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def date(day, time, zone="+0000", month=1, year=2027, pad=False):
    weekday = DAYS[datetime.date(year, month, day).weekday()]
    return "%s, %s %s %d %s %s" % (weekday, "%02d" % day if pad else day, MONTHS[month - 1], year, time, zone)


def unix(day, time, month=1, year=2027):
    h, m, s = (int(x) for x in time.split(":"))
    return int(datetime.datetime(year, month, day, h, m, s, tzinfo=datetime.timezone.utc).timestamp())


Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


def _word(text, charset, mode):
    data = text.encode(charset)
    if mode == "B":
        payload = base64.b64encode(data).decode("ascii")
    else:
        payload = "".join(chr(b) if b in Q_SAFE else "_" if b == 32 else "=%02X" % b for b in data)
    return "=?%s?%s?%s?=" % (charset, mode, payload)


def ew(text, charset="UTF-8", mode="Q", limit=66):
    """RFC 2047 encoded words for text, folded; each chunk is encoded on its
    own, so stateful charsets (ISO-2022-JP) end every word in ASCII."""
    words, chunk = [], ""
    for ch in text:
        if chunk and len(_word(chunk + ch, charset, mode)) > limit:
            words.append(_word(chunk, charset, mode))
            chunk = ch
        else:
            chunk += ch
    words.append(_word(chunk, charset, mode))
    return "\n ".join(words)


def addr(name, address, charset="UTF-8", mode="Q"):
    if not name.isascii():
        return "%s <%s>" % (ew(name, charset, mode), address)
    if re.search(r"[^A-Za-z0-9 !#$%&'*+/=?^_`{|}~-]", name):
        return '"%s" <%s>' % (name, address)
    return "%s <%s>" % (name, address)


def stream(seed, n):
    """n deterministic bytes that look random."""
    out, i = b"", 0
    while len(out) < n:
        out += hashlib.sha256(("%s/%d" % (seed, i)).encode()).digest()
        i += 1
    return out[:n]


def hexid(seed, n):
    return stream(seed, n).hex()[:n]


def uuid(seed, upper=False):
    h = stream(seed, 16).hex()
    u = "%s-%s-4%s-a%s-%s" % (h[:8], h[8:12], h[13:16], h[17:20], h[20:32])
    return u.upper() if upper else u


# Small files: real, valid and tiny ###########################################

def png(width, height, pixel):
    """A truecolour PNG; pixel(x, y) -> (r, g, b)."""
    rows = b"".join(b"\x00" + bytes(c for x in range(width) for c in pixel(x, y)) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def logo_png():
    """16x16: a purple square with a white diagonal."""
    return png(16, 16, lambda x, y: (255, 255, 255) if abs(x - y) < 2 else (106, 27, 154))


def chart_png():
    """24x16: four bars on white."""
    heights = (5, 8, 11, 15)
    return png(24, 16, lambda x, y: (0, 121, 107) if x % 6 < 4 and 16 - y <= heights[x // 6] else (255, 255, 255))


def screenshot_png():
    """32x20: a grey window with a blue title bar and one dark text line."""
    def pixel(x, y):
        if y < 4:
            return (33, 99, 201)
        if y == 9 and 3 <= x < 26:
            return (40, 40, 40)
        return (236, 236, 236)
    return png(32, 20, pixel)


def dot_png():
    return png(1, 1, lambda x, y: (255, 255, 255))


def jpeg():
    """An 8x8 grey baseline JPEG: one block whose coefficients are all 0,
    Huffman tables of one code each (DC category 0, AC end-of-block)."""
    def seg(marker, data):
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(data) + 2) + data
    return (b"\xff\xd8"
            + seg(0xE0, b"JFIF\x00\x01\x01\x00\x00\x48\x00\x48\x00\x00")
            + seg(0xDB, b"\x00" + b"\x01" * 64)
            + seg(0xC0, struct.pack(">BHHB", 8, 8, 8, 1) + b"\x01\x11\x00")
            + seg(0xC4, b"\x00" + b"\x01" + b"\x00" * 15 + b"\x00")
            + seg(0xC4, b"\x10" + b"\x01" + b"\x00" * 15 + b"\x00")
            + seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
            + b"\x3f"                                  # DC "0", EOB "0", padded with ones
            + b"\xff\xd9")


def pdf(lines):
    """A one-page PDF 1.4 showing lines (ASCII) in Helvetica, with a correct xref."""
    def esc(s):
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    content = "BT\n/F1 14 Tf\n18 TL\n72 770 Td\n" + "".join("(%s) Tj T*\n" % esc(s) for s in lines) + "ET\n"
    content = content.encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >>"
        b" /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"endstream",
        b"<< /Producer (mlmpipe test corpus) /Title (%s) >>" % esc(lines[0]).encode("ascii"),
    ]
    out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % at for at in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


def zipped(files):
    """A zip archive of (name, bytes), deflated, with fixed timestamps."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=(2027, 1, 14, 21, 5, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buf.getvalue()


def docx(paragraphs):
    """A minimal valid .docx: content types, package relationships, document."""
    xml = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    types = (xml + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
             '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
             '<Default Extension="xml" ContentType="application/xml"/>'
             '<Override PartName="/word/document.xml" ContentType="application/'
             'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
    rels = (xml + '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
            'relationships/officeDocument" Target="word/document.xml"/></Relationships>')
    body = "".join("<w:p><w:r><w:t>%s</w:t></w:r></w:p>" % html.escape(p) for p in paragraphs)
    document = (xml + '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
                "<w:body>%s</w:body></w:document>" % body)
    return zipped([("[Content_Types].xml", types.encode()), ("_rels/.rels", rels.encode()),
                   ("word/document.xml", document.encode())])


# OpenPGP and S/MIME: well-formed packets and DER, made-up numbers ###########

def crc24(data):
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def armor(kind, data):
    text = base64.b64encode(data).decode("ascii")
    lines = ["-----BEGIN PGP %s-----" % kind, ""] + [text[i:i + 64] for i in range(0, len(text), 64)]
    lines += ["=" + base64.b64encode(crc24(data).to_bytes(3, "big")).decode("ascii"), "-----END PGP %s-----" % kind]
    return "\n".join(lines) + "\n"


def mpi(data):
    data = data.lstrip(b"\x00")
    return struct.pack(">H", (len(data) - 1) * 8 + data[0].bit_length()) + data


def packet(tag, body):
    n = len(body)
    if n < 192:
        length = bytes([n])
    elif n < 8384:
        length = bytes([((n - 192) >> 8) + 192, (n - 192) & 0xFF])
    else:
        length = b"\xff" + struct.pack(">I", n)
    return bytes([0xC0 | tag]) + length + body


def subpacket(kind, data):
    return bytes([len(data) + 1, kind]) + data


def pgp_signature(seed, created, sigtype=0x00, rsa=False):
    """A v4 signature packet (EdDSA or RSA, SHA-256) by a made-up key, armored."""
    fpr = stream(seed + "/key", 20)
    hashed = subpacket(33, b"\x04" + fpr) + subpacket(2, struct.pack(">I", created))
    unhashed = subpacket(16, fpr[-8:])
    if rsa:
        algo, numbers = 1, mpi(bytes([0x80 | stream(seed + "/s", 1)[0]]) + stream(seed + "/s2", 383))
    else:
        algo, numbers = 22, mpi(b"\x4f" + stream(seed + "/r", 31)) + mpi(b"\x2b" + stream(seed + "/s", 31))
    body = (bytes([4, sigtype, algo, 8]) + struct.pack(">H", len(hashed)) + hashed
            + struct.pack(">H", len(unhashed)) + unhashed + stream(seed + "/left16", 2) + numbers)
    return armor("SIGNATURE", packet(2, body))


def pgp_message(seed, size):
    """A public-key encrypted session key (ECDH) and an integrity-protected
    encrypted data packet of made-up bytes, armored."""
    pkesk = (b"\x03" + stream(seed + "/keyid", 8) + b"\x12" + mpi(b"\x40" + stream(seed + "/eph", 32))
             + b"\x30" + stream(seed + "/wrapped", 48))
    return armor("MESSAGE", packet(1, pkesk) + packet(18, b"\x01" + stream(seed + "/data", size)))


def autocrypt_keydata(seed, uid, created):
    """A v4 EdDSA public key packet and user ID packet, base64 folded for an Autocrypt header."""
    key = (b"\x04" + struct.pack(">I", created) + b"\x16" + b"\x09\x2b\x06\x01\x04\x01\xda\x47\x0f\x01"
           + mpi(b"\x40" + stream(seed + "/pub", 32)))
    data = packet(6, key) + packet(13, uid.encode())
    text = base64.b64encode(data).decode("ascii")
    return "\n".join(" " + text[i:i + 76] for i in range(0, len(text), 76))


def der(tag, content):
    n = len(content)
    if n < 128:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def oid(dotted):
    numbers = [int(x) for x in dotted.split(".")]
    out = bytes([40 * numbers[0] + numbers[1]])
    for n in numbers[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.insert(0, 0x80 | (n & 0x7F))
            n >>= 7
        out += bytes(chunk)
    return der(0x06, out)


def seq(*items):
    return der(0x30, b"".join(items))


def setof(*items):
    return der(0x31, b"".join(items))


def integer(n):
    return der(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def smime_signature(seed, signer_cn, when):
    """A detached CMS SignedData (RFC 5652) for a made-up certificate: valid
    DER, a SHA-256 message digest and an RSA signature of made-up bytes."""
    sha256 = seq(oid("2.16.840.1.101.3.4.2.1"), der(0x05, b""))
    issuer = seq(setof(seq(oid("2.5.4.10"), der(0x0C, b"Example Test CA"))),
                 setof(seq(oid("2.5.4.3"), der(0x0C, b"Example Test CA S/MIME Issuing"))))
    attributes = der(0xA0, b"".join([
        seq(oid("1.2.840.113549.1.9.3"), setof(oid("1.2.840.113549.1.7.1"))),
        seq(oid("1.2.840.113549.1.9.5"), setof(der(0x17, when.encode("ascii")))),
        seq(oid("1.2.840.113549.1.9.4"), setof(der(0x04, stream(seed + "/digest", 32)))),
    ]))
    signer = seq(integer(1), seq(issuer, integer(int.from_bytes(stream(seed + "/serial", 16), "big"))),
                 sha256, attributes, seq(oid("1.2.840.113549.1.1.1"), der(0x05, b"")),
                 der(0x04, stream(seed + "/signature:" + signer_cn, 256)))
    signed_data = seq(integer(1), setof(sha256), seq(oid("1.2.840.113549.1.7.1")), setof(signer))
    return seq(oid("1.2.840.113549.1.7.2"), der(0xA0, signed_data))


# 1. text/plain, in many charsets and transfer encodings #####################

@case("plain-utf8-8bit-thunderbird", "Thunderbird 128 (Linux)",
      "The everyday plain-text post: UTF-8 sent 8bit with format=flowed (soft line breaks end in a space), "
      "umlauts, ß and an en dash, a Q-encoded Subject and From name, a URL alone on its line and a '-- ' signature.",
      "Die Frist endet am Freitag")
def _():
    body = t("""
        Hallo zusammen,

        wir laden euch herzlich zum nächsten Mentoring-Abend ein. Er findet am\u2420
        Donnerstag, dem 11. Februar, um 18:30 Uhr in den Räumen der\u2420
        Bücherhalle Süd statt.

        Die Frist endet am Freitag, dem 22. Januar – bitte meldet euch bis\u2420
        dahin über das Formular an:

        https://example.org/mentoring/anmeldung

        Für Kinderbetreuung ist gesorgt, Getränke und Brezeln gibt es auch.

        Viele Grüße
        Jutta

        --\u2420
        Jutta Weiß
        Koordination Mentoring, Systers Hamburg
        """)
    return head(
        "Message-ID: <%s@example.org>" % uuid("tb-plain"),
        "Date: " + date(11, "08:42:17", "+0100"),
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "Content-Language: de-DE",
        "To: " + LIST,
        "From: " + addr("Jutta Weiß", "jutta.weiss@example.org"),
        "Subject: " + ew("Einladung zum Mentoring-Abend – Anmeldung bis Freitag"),
        "Content-Type: text/plain; charset=UTF-8; format=flowed",
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n\n" + body.encode("utf-8")


@case("plain-utf8-qp-evolution", "Evolution 3.50 (GNOME)",
      "UTF-8 text/plain in quoted-printable with long unwrapped paragraphs, so the encoding inserts soft line "
      "breaks (=\\n) in the middle of words and escapes every accented letter.",
      "La reunión será el jueves 14 de enero")
def _():
    body = t("""
        Hola a todas:

        La reunión será el jueves 14 de enero a las 19:00 en la sala Ada Lovelace del tercer piso, no en la \u21b5
        biblioteca como anunciamos la semana pasada. El ascensor principal está en obras, así que usad la \u21b5
        escalera junto a la cafetería.

        Traed vuestros portátiles: María preparará un taller práctico de pruebas automatizadas con pytest, \u21b5
        y habrá café y churros para todas.

        ¡Nos vemos!
        Lucía
        """)
    return head(
        "Subject: " + ew("Reunión del grupo de Madrid: cambio de sala"),
        "From: " + addr("Lucía Fernández", "lucia.fernandez@example.net"),
        "To: " + LIST,
        "Date: " + date(12, "19:05:44", "+0100"),
        "Message-ID: <%s.camel@example.net>" % hexid("evolution", 40),
        "Content-Type: text/plain; charset=\"UTF-8\"",
        "Content-Transfer-Encoding: quoted-printable",
        "User-Agent: Evolution 3.50.3-1",
        "MIME-Version: 1.0",
    ) + b"\n\n" + qp(body)


@case("plain-utf8-base64-gmail-plaintext-mode", "Gmail (web, plain text mode)",
      "Gmail's plain text mode sends a lone text/plain part and picks base64 when most of the text is not ASCII: "
      "Greek with an emoji outside the BMP (4-byte UTF-8), a B-encoded Subject.",
      "Η συνάντηση μεταφέρεται την Τρίτη")
def _():
    body = t("""
        Γεια σας,

        Η συνάντηση μεταφέρεται την Τρίτη 19 Ιανουαρίου, στις έξι το απόγευμα.
        Το θέμα παραμένει το ίδιο: εισαγωγή στη Rust για αρχάριες. 🦀

        Φιλικά,
        Ελένη
        """)
    return head(
        "MIME-Version: 1.0",
        "From: " + addr("Ελένη Παπαδοπούλου", "eleni.papadopoulou@example.com", mode="B"),
        "Date: " + date(13, "10:21:09", "+0200"),
        "Message-ID: <CAJ%s@mail.example.com>" % hexid("gmail-greek", 44),
        "Subject: " + ew("Αλλαγή ημερομηνίας: η συνάντηση μεταφέρεται", mode="B"),
        "To: " + LIST,
        "Content-Type: text/plain; charset=\"UTF-8\"",
        "Content-Transfer-Encoding: base64",
    ) + b"\n\n" + b64(body.encode("utf-8"))


@case("plain-latin1-qp-eudora", "Eudora 7 (Windows)",
      "ISO-8859-1 text/plain in quoted-printable with guillemets and accented capitals, Eudora's header "
      "spelling (Mime-Version, a quoted charset) and an ISO-8859-1 Q-encoded Subject.",
      "commence à neuf heures précises")
def _():
    body = t("""
        Bonjour à toutes,

        L'atelier « Premiers pas avec Git » commence à neuf heures précises samedi ;
        l'accueil ouvre dès 8 h 30. Pensez à apporter votre ordinateur chargé.
        Le déjeuner est offert par l'école.

        À bientôt,
        Hélène
        """)
    return head(
        "X-Mailer: QUALCOMM Windows Eudora Version 7.1.0.9",
        "Date: " + date(12, "09:30:15", "+0100"),
        "To: " + LIST,
        "From: " + addr("Hélène Dubois", "helene.dubois@example.net", "iso-8859-1"),
        "Subject: " + ew("Atelier Git : début à 9 h précises", "iso-8859-1"),
        "Message-Id: <7.1.0.9.2.20270112093015.02a4b8c0@example.net>",
        "Mime-Version: 1.0",
        "Content-Type: text/plain; charset=\"iso-8859-1\"; format=flowed",
        "Content-Transfer-Encoding: quoted-printable",
    ) + b"\n\n" + qp(body, "iso-8859-1")


@case("plain-windows1252-qp-outlook", "Outlook 2016 (Windows, plain text format)",
      "Windows-1252 text/plain in quoted-printable: curly quotes (=93 =94), a right single quote, the euro "
      "sign (=80), an en dash and an ellipsis -- bytes that ISO-8859-1 would misread as C1 controls.",
      "the “early bird” price is €40")
def _():
    body = t("""
        Hi everyone,

        Quick update on the conference tickets: the “early bird” price is €40 until 31 January – after that it \u21b5
        goes up to €65. Student tickets stay at €15…

        If your employer won’t cover it, reply to me off-list; we have six sponsored places.

        Thanks,
        Siobhán
        """)
    return head(
        "From: " + addr("Siobhán Kelly", "siobhan.kelly@example.com", "iso-8859-1"),
        "To: " + LIST,
        "Subject: Conference tickets: early bird ends 31 January",
        "Date: " + date(13, "16:47:02", "+0000"),
        "Message-ID: <000a01db65d3$4f2e8c10$ed8ba430$@example.com>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain;\n\tcharset=\"windows-1252\"",
        "Content-Transfer-Encoding: quoted-printable",
        "X-Mailer: Microsoft Outlook 16.0",
        "Thread-Index: AdtlxpQW5nVzT0mXRkGJ3xXl8CxK2A==",
        "Content-Language: en-ie",
    ) + b"\n\n" + qp(body, "windows-1252")


@case("plain-iso8859-2-qp-thunderbird2", "Thunderbird 2 (Windows, Polish locale default charset)",
      "ISO-8859-2 text/plain in quoted-printable with Polish letters (ą ę ł ś ż ź), which Latin-1 would turn "
      "into other letters; From name and Subject Q-encoded in ISO-8859-2.",
      "Spotkanie odbędzie się w środę")
def _():
    body = t("""
        Cześć,

        Spotkanie odbędzie się w środę o godzinie 18:00 w sali 2.14 na Wydziale Matematyki.
        Proszę, żeby każda z was przyniosła pomysł na krótką prezentację (pięć minut).

        Pozdrawiam serdecznie
        Małgorzata Żółkiewska
        """)
    return head(
        "Message-ID: <4B9E2F1A.7030405@example.org>",
        "Date: " + date(14, "11:02:33", "+0100"),
        "From: " + addr("Małgorzata Żółkiewska", "malgorzata.zolkiewska@example.org", "ISO-8859-2"),
        "User-Agent: Thunderbird 2.0.0.24 (Windows/20100228)",
        "MIME-Version: 1.0",
        "To: " + LIST,
        "Subject: " + ew("Spotkanie w środę, sala 2.14", "ISO-8859-2"),
        "Content-Type: text/plain; charset=ISO-8859-2; format=flowed",
        "Content-Transfer-Encoding: quoted-printable",
    ) + b"\n\n" + qp(body, "iso-8859-2")


@case("plain-koi8r-8bit-thebat", "The Bat! 3.99 (Windows)",
      "KOI8-R text/plain sent as raw 8bit bytes (no transfer encoding), Russian; B-encoded KOI8-R Subject.",
      "Встреча переносится на четверг")
def _():
    body = t("""
        Здравствуйте, коллеги!

        Встреча переносится на четверг, 21 января, в 19:00.
        Адрес прежний: библиотека имени Некрасова, второй этаж.
        Пожалуйста, подтвердите участие до вторника.

        --\u2420
        С уважением,
        Ольга Смирнова
        """)
    return head(
        "Date: " + date(15, "13:14:52", "+0300"),
        "From: " + addr("Ольга Смирнова", "olga.smirnova@example.net", "koi8-r", "B"),
        "X-Mailer: The Bat! (v3.99.3) Professional",
        "Reply-To: " + addr("Ольга Смирнова", "olga.smirnova@example.net", "koi8-r", "B"),
        "X-Priority: 3 (Normal)",
        "Message-ID: <1420659381.20270115131452@example.net>",
        "To: " + LIST,
        "Subject: " + ew("Перенос встречи на четверг", "koi8-r", "B"),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=koi8-r",
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n\n" + body.encode("koi8-r")


@case("plain-shift-jis-base64-mobile", "Japanese carrier mail on a mobile phone",
      "Shift_JIS text/plain in base64, Japanese; B-encoded Shift_JIS Subject and From name.",
      "会議は金曜日に延期します")
def _():
    body = t("""
        皆さま

        今週の会議は金曜日に延期します。
        場所は変わらず、三階の会議室です。
        資料は当日配布します。

        よろしくお願いします。
        佐藤
        """)
    return head(
        "From: " + addr("佐藤 美咲", "misaki.sato@example.com", "Shift_JIS", "B"),
        "To: " + LIST,
        "Subject: " + ew("会議の延期について", "Shift_JIS", "B"),
        "Date: " + date(15, "07:58:20", "+0900"),
        "Message-ID: <20270115075820.7c1e.misaki@mobile.example.com>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=Shift_JIS",
        "Content-Transfer-Encoding: base64",
    ) + b"\n\n" + b64(body.encode("shift_jis"))


@case("plain-iso2022jp-7bit-becky", "Becky! Internet Mail 2.81 (Windows, Japanese)",
      "The classic Japanese mail encoding: ISO-2022-JP text/plain sent 7bit (escape sequences switch the "
      "character set), ISO-2022-JP B-encoded Subject and From name.",
      "来週の勉強会の資料を送ります")
def _():
    body = t("""
        山田です。

        来週の勉強会の資料を送ります。
        テーマは「テスト駆動開発の基本」です。
        初めての方も歓迎しますので、お気軽にご参加ください。

        --
        山田 花子
        """)
    return head(
        "Date: " + date(16, "22:10:05", "+0900"),
        "From: " + addr("山田 花子", "hanako.yamada@example.org", "ISO-2022-JP", "B"),
        "To: " + LIST,
        "Subject: " + ew("勉強会の資料", "ISO-2022-JP", "B"),
        "Message-Id: <20270116221005.5E8C.A7B9C2D1@example.org>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=\"ISO-2022-JP\"",
        "Content-Transfer-Encoding: 7bit",
        "X-Mailer: Becky! ver. 2.81.04 [ja]",
    ) + b"\n\n" + body.encode("iso-2022-jp")


@case("plain-gb2312-base64-foxmail", "Foxmail 7.2 (Windows, Chinese)",
      "GB2312 text/plain in base64, simplified Chinese with full-width punctuation and curly quotes; "
      "B-encoded GB2312 Subject and From name.",
      "技术分享会将于星期三下午三点举行")
def _():
    body = t("""
        各位好：

        本月的技术分享会将于星期三下午三点举行，地点在图书馆二楼报告厅。
        主题是“开源社区中的女性贡献者”，欢迎大家带朋友参加。

        谢谢！
        李娜
        """)
    return head(
        "Date: " + date(17, "15:36:48", "+0800"),
        "From: " + addr("李娜", "li.na@example.com", "gb2312", "B"),
        "To: " + LIST,
        "Subject: " + ew("技术分享会通知", "gb2312", "B"),
        "X-Priority: 3",
        "X-GUID: %s" % uuid("foxmail", upper=True),
        "X-Has-Attach: no",
        "X-Mailer: Foxmail 7.2.25.254[cn]",
        "Mime-Version: 1.0",
        "Message-ID: <202701171536482319871@example.com>",
        "Content-Type: text/plain;\n\tcharset=\"gb2312\"",
        "Content-Transfer-Encoding: base64",
    ) + b"\n\n" + b64(body.encode("gb2312"))


@case("plain-big5-8bit-outlook-express", "Outlook Express 6 (Windows XP, Traditional Chinese)",
      "Big5 text/plain as raw 8bit bytes, traditional Chinese (some Big5 second bytes are ASCII letters, "
      "backslash or @-range bytes); B-encoded Big5 Subject; Outlook Express's X-MimeOLE and priority fields.",
      "請於週五前回覆報名表")
def _():
    body = t("""
        大家好：

        請於週五前回覆報名表，名額只有二十個。
        工作坊會介紹如何參與開源專案，以及如何撰寫第一個修補程式。

        謝謝大家！
        陳怡君
        """)
    return head(
        "Message-ID: <001a01db6612$3c4d5e60$0201a8c0@example.net>",
        "From: " + addr("陳怡君", "yijun.chen@example.net", "big5", "B"),
        "To: " + LIST,
        "Subject: " + ew("開源工作坊報名", "big5", "B"),
        "Date: " + date(18, "20:45:31", "+0800"),
        "MIME-Version: 1.0",
        "Content-Type: text/plain;\n\tcharset=\"big5\"",
        "Content-Transfer-Encoding: 8bit",
        "X-Priority: 3",
        "X-MSMail-Priority: Normal",
        "X-Mailer: Microsoft Outlook Express 6.00.2900.5931",
        "X-MimeOLE: Produced By Microsoft MimeOLE V6.00.2900.6157",
    ) + b"\n\n" + body.encode("big5")


@case("plain-ks-c-5601-base64-outlook", "Outlook 365 (Windows, Korean locale)",
      "Korean in text/plain with Outlook's charset label ks_c_5601-1987 (an alias Python maps to EUC-KR), "
      "base64; B-encoded Subject in the same label.",
      "다음 모임은 1월 25일 월요일 저녁 7시에 열립니다")
def _():
    body = t("""
        안녕하세요,

        다음 모임은 1월 25일 월요일 저녁 7시에 열립니다.
        장소는 판교 도서관 세미나실입니다.
        발표를 원하시는 분은 이번 주까지 알려 주세요.

        감사합니다.
        김지원 드림
        """)
    return head(
        "From: " + addr("김지원", "jiwon.kim@example.org", "ks_c_5601-1987", "B"),
        "To: " + LIST,
        "Subject: " + ew("1월 모임 안내", "ks_c_5601-1987", "B"),
        "Date: " + date(18, "09:12:40", "+0900"),
        "Message-ID: <002b01db6620$1a2b3c40$4e5f6a70$@example.org>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain;\n\tcharset=\"ks_c_5601-1987\"",
        "Content-Transfer-Encoding: base64",
        "X-Mailer: Microsoft Outlook 16.0",
        "Thread-Index: AdtmIBorPEBOX2pwQzJvR3d5Z0p1Tg==",
        "Content-Language: ko",
    ) + b"\n\n" + b64(body.encode("euc_kr"))


@case("plain-latin1-label-cp1252-bytes", "Outlook Express 6 (Windows, Western European)",
      "Mislabelled, as Windows mail clients often did: declared ISO-8859-1 but the quoted-printable bytes are "
      "Windows-1252 (=92 apostrophe, =93/=94 quotes, =96 en dash).  Python's latin-1 decodes those to C1 "
      "controls; browsers (WHATWG) read the label as windows-1252.  The phrase avoids them.",
      "please bring your laptop and a charger")
def _():
    body = t("""
        Hi all,

        For Saturday’s install party please bring your laptop and a charger – the room has only a few
        sockets. Pizza arrives at 12:30, with vegan options.

        “Installing Linux is easier with friends”, as Noor says.

        Rachel
        """)
    return head(
        "Message-ID: <003c01db6633$7a8b9ca0$0302a8c0@example.com>",
        "From: " + addr("Rachel Green", "rachel.green@example.com"),
        "To: " + LIST,
        "Subject: Install party on Saturday",
        "Date: " + date(19, "18:03:11", "+0000"),
        "MIME-Version: 1.0",
        "Content-Type: text/plain;\n\tcharset=\"iso-8859-1\"",
        "Content-Transfer-Encoding: quoted-printable",
        "X-Priority: 3",
        "X-MSMail-Priority: Normal",
        "X-Mailer: Microsoft Outlook Express 6.00.2900.5931",
    ) + b"\n\n" + qp(body, "windows-1252")


@case("plain-ascii-mutt-reply", "Mutt 2.2 (Linux)",
      "A plain US-ASCII reply with '> ' quoting, an attribution line, In-Reply-To and References, Mutt's "
      "Content-Disposition: inline on the lone text part and a '-- ' signature.",
      "I reviewed the patch series")
def _():
    body = t("""
        On Tue, Jan 19, 2027 at 09:14:02PM +0100, Wanjiru Kamau wrote:
        > Could someone review the patch series for the bounce handler before
        > Friday? It touches the retry logic.

        I reviewed the patch series last night. Patches 1-3 look good to me;
        patch 4 needs a test for the case where the retry counter wraps.

        > The branch is bounce-rework on the usual repository.

        Pushed my comments there as well.

        --\u2420
        Beatriz
        """)
    return head(
        "Date: " + date(20, "08:55:19", "+0100"),
        "From: Beatriz Souza <beatriz.souza@example.net>",
        "To: " + LIST,
        "Subject: Re: Review needed: bounce handler patches",
        "Message-ID: <Z4xq2v8KpL3mTn7R@example.net>",
        "References: <20270119201402.GA41872@example.org>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Disposition: inline",
        "In-Reply-To: <20270119201402.GA41872@example.org>",
        "User-Agent: Mutt/2.2.12 (2023-09-09)",
    ) + b"\n\n" + body.encode("ascii")


# 2. text/html alone ##########################################################

@case("html-only-utf8-8bit-thunderbird", "Thunderbird 128 (Send HTML only)",
      "A lone text/html part, UTF-8 8bit, a complete document (DOCTYPE, head with meta charset, body) with "
      "Thunderbird's indented markup and its moz-signature block; no text/plain alternative.",
      "Il workshop si terrà a Milano il 30 gennaio", "Il workshop si terrà a Milano il 30 gennaio")
def _():
    body = t("""
        <!DOCTYPE html>
        <html>
          <head>

            <meta http-equiv="content-type" content="text/html; charset=UTF-8">
          </head>
          <body>
            <p>Ciao a tutte,</p>
            <p>Il workshop si terrà a Milano il 30 gennaio, dalle 10 alle 17,
              presso la sede di via Solferino. Il pranzo è offerto.</p>
            <p>Iscrizioni sul <a href="https://example.org/milano/workshop">modulo
                online</a> fino a esaurimento posti.</p>
            <p>A presto,<br>
            </p>
            <div class="moz-signature">-- <br>
              Giulia Ferraro<br>
              Systers Milano</div>
          </body>
        </html>
        """)
    return head(
        "Message-ID: <%s@example.org>" % uuid("tb-html-only"),
        "Date: " + date(14, "17:20:00", "+0100"),
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "Content-Language: it",
        "To: " + LIST,
        "From: Giulia Ferraro <giulia.ferraro@example.org>",
        "Subject: " + ew("Workshop a Milano: si terrà il 30 gennaio"),
        "Content-Type: text/html; charset=UTF-8",
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n\n" + body.encode("utf-8")


@case("html-only-fragment-latin1-php-form", "A website contact form (PHP mail())",
      "A lone text/html part that is only a fragment -- no <html>, <head> or <body> -- in ISO-8859-1 sent "
      "8bit, with <b>Label:</b> value lines joined by <br>, as site scripts send it.",
      "A inscrição está aberta até sexta-feira", "A inscrição está aberta até sexta-feira")
def _():
    body = t("""
        <h3>Nova mensagem do formulário de contato</h3>
        <p><b>Nome:</b> Conceição Araújo<br>
        <b>E-mail:</b> conceicao.araujo@example.com<br>
        <b>Assunto:</b> Oficina de Python</p>
        <p><b>Mensagem:</b><br>
        Olá! A inscrição está aberta até sexta-feira? Gostaria de saber se ainda há vagas para iniciantes
        e se a oficina será gravada.</p>
        <hr>
        <small>Enviado pelo site em 15/01/2027 às 14:02</small>
        """)
    return head(
        "To: " + LIST,
        "Subject: " + ew("Formulário de contato: Oficina de Python", "ISO-8859-1"),
        "X-PHP-Originating-Script: 1000:contato.php",
        "From: " + addr("Site Systers Lisboa", "no-reply@example.com"),
        "Reply-To: conceicao.araujo@example.com",
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=ISO-8859-1",
        "Content-Transfer-Encoding: 8bit",
        "Message-Id: <20270115140211.6A2F4C1B9E@www.example.com>",
        "Date: " + date(15, "14:02:11", "+0000", pad=True),
    ) + b"\n\n" + body.encode("iso-8859-1")


@case("html-only-windows1251-base64-webmail", "A webmail's HTML-only compose (Ukrainian locale)",
      "A lone text/html part in windows-1251, base64, Ukrainian (і ї є, which KOI8-R lacks); a fragment of "
      "<div>s with &nbsp; spacer lines and no <html>/<body>.",
      "Семінар відбудеться у вівторок", "Семінар відбудеться у вівторок")
def _():
    body = ("<div>Доброго дня!</div><div>&nbsp;</div>"
            "<div>Семінар відбудеться у вівторок о 18:00 в коворкінгу на Подолі.</div>"
            "<div>Тема: безпека вебзастосунків, практичні вправи для початківців.</div>"
            "<div>&nbsp;</div><div>Будь ласка, візьміть із собою ноутбук.</div><div>&nbsp;</div>"
            "<div>З повагою,<br>Оксана Ковальчук</div>")
    return head(
        "Date: " + date(15, "10:44:07", "+0200"),
        "From: " + addr("Оксана Ковальчук", "oksana.kovalchuk@example.net", "windows-1251", "B"),
        "Subject: " + ew("Семінар у вівторок", "windows-1251", "B"),
        "To: " + LIST,
        "Message-ID: <1768466647.412583911.r@webmail.example.net>",
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=windows-1251",
        "Content-Transfer-Encoding: base64",
    ) + b"\n\n" + b64(body.encode("windows-1251"))


@case("html-only-gbk-base64-webmail", "A Chinese webmail's HTML-only compose",
      "A lone text/html part declared GBK, base64, with a name character (喆) that GB2312 lacks, so a decoder "
      "that narrows the label to GB2312 shows a replacement character; minimal <html><body> wrapper.",
      "欢迎参加我们的编程工作坊", "欢迎参加我们的编程工作坊")
def _():
    body = ("<html><body><div>各位：</div><div><br></div>"
            "<div>欢迎参加我们的编程工作坊，本周六上午九点开始。</div>"
            "<div>请提前安装好 Python 3 和一个文本编辑器。</div><div><br></div>"
            "<div>负责人：王喆</div></body></html>")
    return head(
        "Date: " + date(16, "12:00:36", "+0800"),
        "From: " + addr("王喆", "wang.zhe@example.com", "GBK", "B"),
        "To: " + LIST,
        "Subject: " + ew("编程工作坊（本周六）", "GBK", "B"),
        "Message-ID: <tencent_%s@example.com>" % hexid("gbk-html", 40).upper(),
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=\"GBK\"",
        "Content-Transfer-Encoding: base64",
    ) + b"\n\n" + b64(body.encode("gbk"))


# 3. multipart/alternative as each client writes it ##########################

OUTLOOK_STYLE = t("""
    <style><!--
    /* Font Definitions */
    @font-face
    \t{font-family:"Cambria Math";
    \tpanose-1:2 4 5 3 5 4 6 3 2 4;}
    @font-face
    \t{font-family:Aptos;}
    /* Style Definitions */
    p.MsoNormal, li.MsoNormal, div.MsoNormal
    \t{margin:0cm;
    \tfont-size:12.0pt;
    \tfont-family:"Aptos",sans-serif;
    \tmso-ligatures:standardcontextual;
    \tmso-fareast-language:EN-US;}
    a:link, span.MsoHyperlink
    \t{mso-style-priority:99;
    \tcolor:#467886;
    \ttext-decoration:underline;}
    span.EmailStyle17
    \t{mso-style-type:personal-compose;
    \tfont-family:"Aptos",sans-serif;
    \tcolor:windowtext;}
    .MsoChpDefault
    \t{mso-style-type:export-only;
    \tfont-size:11.0pt;
    \tmso-fareast-language:EN-US;}
    @page WordSection1
    \t{size:612.0pt 792.0pt;
    \tmargin:72.0pt 72.0pt 72.0pt 72.0pt;}
    div.WordSection1
    \t{page:WordSection1;}
    --></style><!--[if gte mso 9]><xml>
    <o:shapedefaults v:ext="edit" spidmax="1026" />
    </xml><![endif]--><!--[if gte mso 9]><xml>
    <o:shapelayout v:ext="edit">
    <o:idmap v:ext="edit" data="1" />
    </o:shapelayout></xml><![endif]-->
    """)

OUTLOOK_HTML_OPEN = t("""
    <html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" \u21b5
    xmlns:w="urn:schemas-microsoft-com:office:word" xmlns:m="http://schemas.microsoft.com/office/2004/12/omml" \u21b5
    xmlns="http://www.w3.org/TR/REC-html40">
    <head>
    <meta http-equiv="Content-Type" content="text/html; charset=%s">
    <meta name="Generator" content="Microsoft Word 15 (filtered medium)">
    """)


def outlook_html(paragraphs, charset="utf-8", lang="EN-GB"):
    """Word's HTML: namespaces, the filtered-medium style sheet, conditional
    comments, MsoNormal paragraphs with <o:p> and <o:p>&nbsp;</o:p> spacers."""
    body = "\n".join('<p class="MsoNormal">%s<o:p></o:p></p>' % p if p else
                     '<p class="MsoNormal"><o:p>&nbsp;</o:p></p>' for p in paragraphs)
    return (OUTLOOK_HTML_OPEN % charset + OUTLOOK_STYLE + "</head>\n"
            '<body lang="%s" link="#467886" vlink="#96607D" style="word-wrap:break-word">\n'
            '<div class="WordSection1">\n%s\n</div>\n</body>\n</html>\n' % (lang, body))


def outlook_id(seed):
    return "DB9PR02MB7412%s" % hexid(seed, 20).upper()


def outlook_head(seed, sender, subject, when, extra=()):
    mid = outlook_id(seed)
    return mid, [
        "From: " + sender,
        "To: " + LIST,
        "Subject: " + subject,
        "Thread-Topic: " + subject,
        "Thread-Index: " + base64.b64encode(stream(seed + "/ti", 22)).decode("ascii"),
        "Date: " + when,
        "Message-ID: <%s@DB9PR02MB7412.eurprd02.prod.example.com>" % mid,
        "Accept-Language: en-GB, en-US",
        "Content-Language: en-GB",
    ] + list(extra)


@case("alt-outlook-windows", "Outlook for Microsoft 365 (Windows)",
      "multipart/alternative as Exchange sends it: the text part base64 (with Outlook's 'text<URL>' link style) "
      "and Word's HTML in quoted-printable -- xmlns:o, <o:p>, MsoNormal classes, <!--[if gte mso 9]> "
      "conditional comments, and the '<b>Deadline</b>: Friday' pattern.",
      "We are looking for mentors for the spring cohort", "We are looking for mentors for the spring cohort")
def _():
    text = t("""
        Hi all,

        We are looking for mentors for the spring cohort, which starts on 1 March. Mentoring takes about two \u21b5
        hours a month.

        Deadline: Friday 29 January

        Sign up here<https://example.org/mentors/spring> – it takes five minutes.

        Best wishes,
        Priya

        Priya Raman | Programme Lead
        Systers Mentoring Circle
        """)
    markup = outlook_html([
        "Hi all,", "",
        "We are looking for mentors for the spring cohort, which starts on 1&nbsp;March. Mentoring takes "
        "about two hours a month.", "",
        "<b>Deadline</b>: Friday 29 January", "",
        '<a href="https://example.org/mentors/spring">Sign up here</a> – it takes five minutes.', "",
        "Best wishes,", "Priya", "",
        '<span style="font-size:10.0pt;color:#7030A0">Priya Raman | Programme Lead</span>',
        '<span style="font-size:10.0pt;color:#7030A0">Systers Mentoring Circle</span>',
    ])
    mid, lines = outlook_head("outlook-alt", "Priya Raman <priya.raman@example.com>",
                              ew("Call for mentors – spring cohort"), date(12, "14:03:51"),
                              ["X-MS-Has-Attach:", "X-MS-TNEF-Correlator:"])
    boundary = "_000_%sDB9PR02MB7412eurp_" % mid
    return head(*lines, "Content-Type: multipart/alternative;\n\tboundary=\"%s\"" % boundary,
                "MIME-Version: 1.0") + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/plain; charset=\"utf-8\"", "Content-Transfer-Encoding: base64"],
             b64(text.encode())),
        part(["Content-Type: text/html; charset=\"utf-8\"", "Content-Transfer-Encoding: quoted-printable"],
             qp(markup)),
    ])


@case("alt-gmail-reply", "Gmail (web)",
      "A Gmail reply: multipart/alternative with Gmail's boundary style and no preamble; the HTML is one long "
      "line in quoted-printable with <div dir=\"ltr\">, the gmail_attr attribution and a gmail_quote "
      "blockquote; the text part quotes with '> '.",
      "I can lend two laptops", "I can lend two laptops")
def _():
    text = t("""
        Yes, count me in! I can lend two laptops (both with 16 GB RAM) from the week of 18 January.

        On Sun, 10 Jan 2027 at 21:14, Rosa Delgado <rosa.delgado@example.org> wrote:

        > Hi all,
        >
        > Does anyone have a spare laptop they could lend to a bootcamp participant
        > for six weeks? We will cover insurance.
        >
        > Rosa
        >
        """)
    markup = ('<div dir="ltr">Yes, count me in! I can lend two laptops (both with 16 GB RAM) from the week of '
              '18 January.</div><br><div class="gmail_quote gmail_quote_container"><div dir="ltr" '
              'class="gmail_attr">On Sun, 10 Jan 2027 at 21:14, Rosa Delgado &lt;<a '
              'href="mailto:rosa.delgado@example.org">rosa.delgado@example.org</a>&gt; wrote:<br></div>'
              '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid '
              'rgb(204,204,204);padding-left:1ex"><div dir="ltr">Hi all,<div><br></div><div>Does anyone have a '
              'spare laptop they could lend to a bootcamp participant for six weeks? We will cover insurance.'
              '</div><div><br></div><div>Rosa</div></div>\n</blockquote></div>\n')
    boundary = "000000000000d3f1a2062b7c9e41"
    return head(
        "MIME-Version: 1.0",
        "References: <7f2e1c9a-3b4d-4e5f-8a6b-0c1d2e3f4a5b@example.org>",
        "In-Reply-To: <7f2e1c9a-3b4d-4e5f-8a6b-0c1d2e3f4a5b@example.org>",
        "From: Amara Okafor <amara.okafor@example.net>",
        "Date: " + date(11, "07:31:56", "+0000"),
        "Message-ID: <CAF3x9QmZ7rVb2YtN8pLk4Hs1Dw6Ej0Uc5Ga3Ti9Ko2Rn7Mf@mail.example.com>",
        "Subject: Re: Laptop loan scheme for the bootcamp",
        "To: " + LIST,
        "Content-Type: multipart/alternative; boundary=\"%s\"" % boundary,
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/plain; charset=\"UTF-8\"", "Content-Transfer-Encoding: quoted-printable"],
             qp(text)),
        part(["Content-Type: text/html; charset=\"UTF-8\"", "Content-Transfer-Encoding: quoted-printable"],
             qp(markup)),
    ])


@case("alt-apple-mail", "Apple Mail 16 (macOS)",
      "Apple Mail's multipart/alternative: an Apple-Mail=_UUID boundary, a blank line before the first "
      "delimiter, 'Mime-Version: 1.0 (Mac OS X Mail ...)' with a comment, part fields in the order CTE then "
      "Content-Type, quoted-printable parts, a body with -webkit- styles and class=\"\" / <br class=\"\">.",
      "Les diapositives sont en ligne", "Les diapositives sont en ligne")
def _():
    text = t("""
        Bonsoir à toutes,

        Merci pour la soirée d’hier ! Les diapositives sont en ligne sur le wiki : https://example.org/wiki/soirees
        Prochaine rencontre : mardi 2 février, même endroit.

        Chloé
        """)
    markup = ('<html aria-label="message body"><head><meta http-equiv="content-type" content="text/html; '
              'charset=utf-8"></head><body style="overflow-wrap: break-word; -webkit-nbsp-mode: space; '
              'line-break: after-white-space;" class="">Bonsoir à toutes,<div class=""><br class=""></div>'
              '<div class="">Merci pour la soirée d’hier&nbsp;! Les diapositives sont en ligne sur <a '
              'href="https://example.org/wiki/soirees" class="">le wiki</a>.</div><div class="">Prochaine '
              'rencontre&nbsp;: mardi 2&nbsp;février, même endroit.</div><div class=""><br class=""></div>'
              '<div class="">Chloé</div><div class=""><br class=""></div></body></html>')
    boundary = "Apple-Mail=_%s" % uuid("apple-alt", upper=True)
    return head(
        "From: " + addr("Chloé Martin", "chloe.martin@example.com", "utf-8"),
        "Content-Type: multipart/alternative;\n\tboundary=\"%s\"" % boundary,
        "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3826.300.87.4.3\\))",
        "Subject: " + ew("Merci pour hier soir — diapositives", "utf-8"),
        "Message-Id: <%s@example.com>" % uuid("apple-alt-id", upper=True),
        "Date: " + date(13, "21:48:12", "+0100"),
        "To: " + LIST,
        "X-Mailer: Apple Mail (2.3826.300.87.4.3)",
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Transfer-Encoding: quoted-printable", "Content-Type: text/plain;\n\tcharset=utf-8"],
             qp(text)),
        part(["Content-Transfer-Encoding: quoted-printable", "Content-Type: text/html;\n\tcharset=utf-8"],
             qp(markup)),
    ], preamble=b"\n")


@case("alt-thunderbird-reply", "Thunderbird 128 (Windows)",
      "A Thunderbird reply: 'This is a multi-part message in MIME format.' preamble, a format=flowed 8bit "
      "text part and 8bit HTML with <div class=\"moz-cite-prefix\"> and a cite blockquote holding "
      "<pre class=\"moz-quote-pre\">.",
      "ich übernehme gerne die Kapitel 3 und 4", "ich übernehme gerne die Kapitel 3 und 4")
def _():
    parent = "<%s@example.org>" % uuid("tb-parent")
    text = t("""
        Hallo Sabine,

        ich übernehme gerne die Kapitel 3 und 4 der Übersetzung.
        Bis Ende Januar sollte ich damit fertig sein.

        Liebe Grüße
        Anke

        Am 09.01.27 um 17:22 schrieb Sabine Krüger:
        > Wer hat Zeit, bei der Übersetzung der Dokumentation ins Deutsche zu\u2420
        > helfen? Es sind sieben Kapitel.
        """)
    markup = t("""
        <!DOCTYPE html>
        <html>
          <head>
            <meta http-equiv="Content-Type" content="text/html; charset=UTF-8">
          </head>
          <body>
            <p>Hallo Sabine,</p>
            <p>ich übernehme gerne die Kapitel 3 und 4 der Übersetzung.<br>
              Bis Ende Januar sollte ich damit fertig sein.</p>
            <p>Liebe Grüße<br>
              Anke</p>
            <div class="moz-cite-prefix">Am 09.01.27 um 17:22 schrieb Sabine
              Krüger:<br>
            </div>
            <blockquote type="cite"
              cite="mid:%s">
              <pre class="moz-quote-pre" wrap="">Wer hat Zeit, bei der Übersetzung der Dokumentation ins \u21b5
        Deutsche zu helfen? Es sind sieben Kapitel.
        </pre>
            </blockquote>
          </body>
        </html>
        """) % parent[1:-1]
    boundary = "------------Zq3XhA0bTf7Lw2Ns9Ke1Vd5R"
    return head(
        "Content-Type: multipart/alternative;\n boundary=\"%s\"" % boundary,
        "Message-ID: <%s@example.org>" % uuid("tb-reply"),
        "Date: " + date(12, "06:58:41", "+0100"),
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "Subject: " + ew("Re: Übersetzung der Dokumentation"),
        "Content-Language: de-DE",
        "To: " + LIST,
        "References: " + parent,
        "From: Anke Vogel <anke.vogel@example.org>",
        "In-Reply-To: " + parent,
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/plain; charset=UTF-8; format=flowed", "Content-Transfer-Encoding: 8bit"],
             text.encode()),
        part(["Content-Type: text/html; charset=UTF-8", "Content-Transfer-Encoding: 8bit"], markup.encode()),
    ], preamble=b"This is a multi-part message in MIME format.\n")


@case("alt-iphone-mail", "iPhone Mail (iOS 18)",
      "iPhone Mail's reply: an Apple-Mail-UUID boundary without quotes, 'Mime-Version: 1.0 (1.0)', emoji in "
      "Subject and body, 'Sent from my iPhone', <body dir=\"auto\">, <blockquote type=\"cite\"> and the "
      "U+FEFF iOS leaves at the start of the quoted HTML.",
      "I’ll be there around 19:15", "I’ll be there around 19:15")
def _():
    parent = "<%s@example.org>" % uuid("hacknight")
    text = t("""
        Train is delayed, I’ll be there around 19:15. Start without me! 🙏

        Sent from my iPhone

        > On 14 Jan 2027, at 17:02, Rosa Delgado <rosa.delgado@example.org> wrote:
        >\u2420
        > Reminder: hack night tonight at 18:30, room 2.14.
        """)
    markup = ('<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head>'
              '<body dir="auto"><div dir="ltr">Train is delayed, I’ll be there around 19:15. Start without me! '
              '🙏</div><div dir="ltr"><br><div dir="ltr">Sent from my iPhone</div><div dir="ltr"><br>'
              '<blockquote type="cite">On 14 Jan 2027, at 17:02, Rosa Delgado &lt;rosa.delgado@example.org&gt; '
              'wrote:<br><br></blockquote></div><blockquote type="cite"><div dir="ltr">\ufeff<div dir="ltr">'
              'Reminder: hack night tonight at 18:30, room 2.14.</div></div></blockquote></div></body></html>')
    boundary = "Apple-Mail-%s" % uuid("iphone-alt", upper=True)
    return head(
        "Content-Type: multipart/alternative; boundary=%s" % boundary,
        "Content-Transfer-Encoding: 7bit",
        "From: Naledi Dlamini <naledi.dlamini@example.net>",
        "Mime-Version: 1.0 (1.0)",
        "Date: " + date(14, "17:09:33", "+0000"),
        "Subject: " + ew("Re: Hack night tonight 🙈", "utf-8"),
        "Message-Id: <%s@example.net>" % uuid("iphone-alt-id", upper=True),
        "References: " + parent,
        "In-Reply-To: " + parent,
        "To: " + LIST,
        "X-Mailer: iPhone Mail (22C152)",
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/plain;\n\tcharset=utf-8", "Content-Transfer-Encoding: quoted-printable"],
             qp(text)),
        part(["Content-Type: text/html;\n\tcharset=utf-8", "Content-Transfer-Encoding: quoted-printable"],
             qp(markup)),
    ], preamble=b"\n")


@case("alt-samsung-email-arabic", "Samsung Email (Android)",
      "A phone client's multipart/alternative with both parts base64: Arabic (right-to-left) text, "
      "<div dir=\"auto\"> lines, the 'Sent from my Galaxy' signature block.",
      "ستبدأ ورشة العمل يوم السبت", "ستبدأ ورشة العمل يوم السبت")
def _():
    text = t("""
        مرحباً بالجميع،

        ستبدأ ورشة العمل يوم السبت في الساعة العاشرة صباحاً.
        أرجو إحضار حواسيبكم المحمولة.

        فاطمة


        Sent from my Galaxy
        """)
    markup = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=UTF-8"></head><body>'
              '<div dir="auto">مرحباً بالجميع،</div><div dir="auto"><br></div>'
              '<div dir="auto">ستبدأ ورشة العمل يوم السبت في الساعة العاشرة صباحاً.</div>'
              '<div dir="auto">أرجو إحضار حواسيبكم المحمولة.</div><div dir="auto"><br></div>'
              '<div dir="auto">فاطمة</div><div dir="auto"><br></div><div dir="auto"><br></div>'
              '<div id="composer_signature" dir="auto"><div style="font-size:85%;color:#575757" dir="auto">'
              'Sent from my Galaxy</div></div></body></html>')
    boundary = "--_com.samsung.android.email_1768560731873310"
    return head(
        "Message-ID: <%s.2a9f@email.android.example.com>" % hexid("samsung", 24),
        "Date: " + date(16, "13:12:11", "+0300"),
        "Subject: " + ew("ورشة العمل يوم السبت", "UTF-8", "B"),
        "From: " + addr("فاطمة الزهراء", "fatima.zahra@example.org", "UTF-8", "B"),
        "To: " + LIST,
        "MIME-Version: 1.0",
        "Content-Type: multipart/alternative; boundary=\"%s\"" % boundary,
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: base64"], b64(text.encode())),
        part(["Content-Type: text/html; charset=UTF-8", "Content-Transfer-Encoding: base64"], b64(markup.encode())),
    ])


@case("alt-outlook-web-latin1", "Outlook on the web / new Outlook",
      "Outlook on the web picks ISO-8859-1 when the text fits: both parts quoted-printable in Latin-1, the HTML "
      "with an 'elementToProof' div, an Aptos font stack and a style block in the head.",
      "Vi ses på torsdag klockan 17", "Vi ses på torsdag klockan 17")
def _():
    text = t("""
        Hej allihop!

        Vi ses på torsdag klockan 17 på kontoret i Göteborg. Vi bjuder på fika.

        Hälsningar
        Åsa
        """)
    font = ("font-family: Aptos, Aptos_EmbeddedFont, Aptos_MSFontService, Calibri, Helvetica, sans-serif; "
            "font-size: 12pt; color: rgb(0, 0, 0);")
    markup = ('<html>\n<head>\n<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">\n'
              '<style type="text/css" style="display:none;"> P {margin-top:0;margin-bottom:0;} </style>\n'
              '</head>\n<body dir="ltr">\n'
              '<div class="elementToProof" style="%s">\nHej allihop!</div>\n'
              '<div class="elementToProof" style="%s">\n<br>\n</div>\n'
              '<div class="elementToProof" style="%s">\nVi ses på torsdag klockan 17 på kontoret i Göteborg. '
              'Vi bjuder på fika.</div>\n'
              '<div class="elementToProof" style="%s">\n<br>\n</div>\n'
              '<div class="elementToProof" style="%s">\nHälsningar</div>\n'
              '<div class="elementToProof" style="%s">\nÅsa</div>\n</body>\n</html>\n') % ((font,) * 6)
    mid, lines = outlook_head("owa", addr("Åsa Lindqvist", "asa.lindqvist@example.com", "iso-8859-1"),
                              ew("Träff på torsdag", "iso-8859-1"), date(18, "10:05:29"),
                              ["msip_labels:"])
    boundary = "_000_%sDB9PR02MB7412eurp_" % mid
    return head(*lines, "Content-Type: multipart/alternative;\n\tboundary=\"%s\"" % boundary,
                "MIME-Version: 1.0") + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/plain; charset=\"iso-8859-1\"", "Content-Transfer-Encoding: quoted-printable"],
             qp(text, "iso-8859-1")),
        part(["Content-Type: text/html; charset=\"iso-8859-1\"", "Content-Transfer-Encoding: quoted-printable"],
             qp(markup, "iso-8859-1")),
    ])


@case("alt-yahoo-mail-turkish", "Yahoo Mail (web)",
      "Yahoo Mail's multipart/alternative: a ----=_Part_ boundary, quoted-printable UTF-8 with Turkish dotless "
      "ı and ş, HTML inside a 'yahoo-style-wrap' div with data-setdir attributes.",
      "yarınki toplantı iptal edildi", "yarınki toplantı iptal edildi")
def _():
    text = t("""
        Merhaba arkadaşlar,

        Maalesef yarınki toplantı iptal edildi; yeni tarih şubat başında duyurulacak.

        Sevgiler,
        Zeynep
        """)
    markup = ('<html><head></head><body><div class="yahoo-style-wrap" style="font-family:Helvetica Neue, '
              'Helvetica, Arial, sans-serif;font-size:13px;"><div dir="ltr" data-setdir="false">Merhaba '
              'arkadaşlar,</div><div dir="ltr" data-setdir="false"><br></div><div dir="ltr" '
              'data-setdir="false">Maalesef yarınki toplantı iptal edildi; yeni tarih şubat başında '
              'duyurulacak.</div><div dir="ltr" data-setdir="false"><br></div><div dir="ltr" '
              'data-setdir="false">Sevgiler,</div><div dir="ltr" data-setdir="false">Zeynep</div></div>'
              '</body></html>')
    boundary = "----=_Part_4187621_1304752318.1768820412345"
    return head(
        "Date: " + date(19, "11:00:12", "+0000", pad=False).replace("+0000", "+0000 (UTC)"),
        "From: " + addr("Zeynep Yılmaz", "zeynep.yilmaz@example.com"),
        "To: " + LIST,
        "Message-ID: <%d.%d@mail.example.com>" % (1468213907, 4187622),
        "Subject: " + ew("Yarınki toplantı iptal"),
        "MIME-Version: 1.0",
        "Content-Type: multipart/alternative;\n\tboundary=\"%s\"" % boundary,
        "X-Mailer: WebService/1.1.23040 YMailNorrin",
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: quoted-printable"], qp(text)),
        part(["Content-Type: text/html; charset=UTF-8", "Content-Transfer-Encoding: quoted-printable"], qp(markup)),
    ])


# 4. multipart/mixed with attachments #########################################

AGENDA_PDF = pdf(["Planning meeting, Saturday 16 January 2027", "1. Spring events", "2. Mentoring cohort",
                  "3. Budget", "4. Any other business"])


@case("mixed-text-pdf-thunderbird", "Thunderbird 128 (macOS)",
      "The simplest attachment shape: multipart/mixed with a format=flowed text part and a small valid PDF "
      "(name and filename parameters, base64).",
      "Attached is the agenda for the planning meeting", attachments=["agenda-2027-01-16.pdf"])
def _():
    text = t("""
        Hi everyone,

        Attached is the agenda for the planning meeting on Saturday. Please add
        topics to the shared document by Thursday evening.

        Cheers,
        Maren
        """)
    boundary = "------------3Hn8WpQ2Lr5Tv7Xz9Bc1Df4G"
    return head(
        "Content-Type: multipart/mixed; boundary=\"%s\"" % boundary,
        "Message-ID: <%s@example.net>" % uuid("tb-pdf"),
        "Date: " + date(12, "20:17:03", "+0100"),
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "Content-Language: en-GB",
        "To: " + LIST,
        "From: Maren Holm <maren.holm@example.net>",
        "Subject: Agenda for Saturday's planning meeting",
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/plain; charset=UTF-8; format=flowed", "Content-Transfer-Encoding: 7bit"],
             text.encode()),
        part(["Content-Type: application/pdf; name=\"agenda-2027-01-16.pdf\"",
              "Content-Disposition: attachment; filename=\"agenda-2027-01-16.pdf\"",
              "Content-Transfer-Encoding: base64"], b64(AGENDA_PDF)),
    ], preamble=b"This is a multi-part message in MIME format.\n")


@case("mixed-gmail-alt-image-zip", "Gmail (web)",
      "Gmail with attachments: multipart/mixed > [multipart/alternative, image/png, application/zip]; each "
      "attachment with Content-ID and X-Attachment-Id (f_...); the HTML bolds the phrase and writes the "
      "apostrophe as &#39;.",
      "accessibility testing", "accessibility testing", attachments=["contrast-checker.png", "a11y-slides.zip"])
def _():
    text = t("""
        Hi all,

        Here are the slides from yesterday's talk on accessibility testing, plus a screenshot of the contrast \u21b5
        checker we used.

        Noor
        """)
    markup = ('<div dir="ltr">Hi all,<div><br></div><div>Here are the slides from yesterday&#39;s talk on '
              '<b>accessibility testing</b>, plus a screenshot of the contrast checker we used.</div><div><br>'
              '</div><div>Noor</div></div>\n')
    slides = zipped([("a11y-slides/README.txt", b"Slides: accessibility testing, Systers meetup 14 Jan 2027.\n"),
                     ("a11y-slides/slides.md", "# Accessibility testing\n\n- Contrast\n- Keyboard\n"
                      "- Screen readers\n\nThanks — Noor\n".encode())])
    outer, inner = "000000000000b7e02c062b81f5a3", "000000000000b7e02a062b81f5a1"
    return head(
        "MIME-Version: 1.0",
        "From: Noor Haddad <noor.haddad@example.com>",
        "Date: " + date(15, "09:02:44", "+0100"),
        "Message-ID: <CAN8kT4pQ2wRz7Yh3Lm9Xv5Bs1Df6Gj0Kc2Na8Pe4Ut7Wq@mail.example.com>",
        "Subject: Slides: accessibility testing",
        "To: " + LIST,
        "Content-Type: multipart/mixed; boundary=\"%s\"" % outer,
    ) + b"\n\n" + multipart(outer, [
        part(["Content-Type: multipart/alternative; boundary=\"%s\"" % inner], multipart(inner, [
            part(["Content-Type: text/plain; charset=\"UTF-8\""], text.encode()),
            part(["Content-Type: text/html; charset=\"UTF-8\""], markup.encode()),
        ])),
        part(["Content-Type: image/png; name=\"contrast-checker.png\"",
              "Content-Disposition: attachment; filename=\"contrast-checker.png\"",
              "Content-Transfer-Encoding: base64", "Content-ID: <f_mk4x2c8a0>", "X-Attachment-Id: f_mk4x2c8a0"],
             b64(screenshot_png())),
        part(["Content-Type: application/zip; name=\"a11y-slides.zip\"",
              "Content-Disposition: attachment; filename=\"a11y-slides.zip\"",
              "Content-Transfer-Encoding: base64", "Content-ID: <f_mk4x2c9b1>", "X-Attachment-Id: f_mk4x2c9b1"],
             b64(slides)),
    ])


def outlook_attachment(ctype, name, data, when, extra=()):
    return part(["Content-Type: %s;\n\tname=\"%s\"" % (ctype, name),
                 "Content-Description: %s" % name,
                 "Content-Disposition: attachment;\n\tfilename=\"%s\"; size=%d;\n\tcreation-date=\"%s\";\n"
                 "\tmodification-date=\"%s\"" % (name, len(data), when, when)] + list(extra)
                + ["Content-Transfer-Encoding: base64"], b64(data))


@case("mixed-outlook-several-attachments", "Outlook for Microsoft 365 (Windows)",
      "Outlook with three attachments after its alternative: a minimal valid .docx, a UTF-8 CSV with accented "
      "names, and a text/plain file marked attachment (which must not be taken for the body); Outlook's "
      "Content-Description and size/creation-date/modification-date disposition parameters.",
      "Please find attached the minutes of the steering group", "Please find attached the minutes",
      attachments=["minutes-2027-01-12.docx", "budget-2027.csv", "rooms.txt"])
def _():
    text = t("""
        Dear all,

        Please find attached the minutes of the steering group meeting on 12 January, the updated budget and \u21b5
        the list of rooms we can book.

        Kind regards,
        Grace
        """)
    markup = outlook_html([
        "Dear all,", "",
        "Please find attached the minutes of the steering group meeting on 12 January, the updated budget and "
        "the list of rooms we can book.", "",
        "Kind regards,", "Grace"])
    minutes = docx(["Steering group minutes, 12 January 2027",
                    "Present: Grace, Priya, Rosa, Amara.",
                    "1. The spring programme was approved.",
                    "2. The budget for 2027 was approved with one change (travel grants +500 EUR)."])
    budget = t("""
        item;owner;amount_eur
        Venue (spring);Zoë Åberg;1200
        Travel grants;Inés Müller;2500
        Catering;Grace O'Brien;640
        """).encode("utf-8").replace(b"\n", b"\r\n")
    rooms = b"Room 2.14  - 30 seats, projector\nLibrary hall - 80 seats\nCafe corner - 12 seats\n"
    when = "Wed, 13 Jan 2027 09:10:11 GMT"
    mid, lines = outlook_head("outlook-several", "Grace O'Brien <grace.obrien@example.com>",
                              "Minutes, budget and rooms", date(13, "09:12:30"),
                              ["X-MS-Has-Attach: yes", "X-MS-TNEF-Correlator:"])
    outer, inner = "_004_%sDB9PR02MB7412eurp_" % mid, "_000_%sDB9PR02MB7412eurp_" % mid
    return head(*lines, "Content-Type: multipart/mixed;\n\tboundary=\"%s\"" % outer,
                "MIME-Version: 1.0") + b"\n\n" + multipart(outer, [
        part(["Content-Type: multipart/alternative;\n\tboundary=\"%s\"" % inner], multipart(inner, [
            part(["Content-Type: text/plain; charset=\"us-ascii\"", "Content-Transfer-Encoding: quoted-printable"],
                 qp(text, "ascii")),
            part(["Content-Type: text/html; charset=\"us-ascii\"", "Content-Transfer-Encoding: quoted-printable"],
                 qp(markup.replace("charset=utf-8", "charset=us-ascii"), "ascii")),
        ])),
        outlook_attachment("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                           "minutes-2027-01-12.docx", minutes, when),
        outlook_attachment("text/csv", "budget-2027.csv", budget, when),
        outlook_attachment("text/plain", "rooms.txt", rooms, when),
    ], preamble=b"")


PRESENTATION_PDF = pdf(["Presentation - reunion d'ete 2027", "Systers Lyon", "Ordre du jour et budget"])


@case("mixed-apple-mail-rfc2231-filename", "Apple Mail 16 (macOS)",
      "Apple Mail attaching a PDF whose name is not ASCII: the disposition carries RFC 2231 "
      "filename*=utf-8''Pr%C3%A9sentation..., the Content-Type carries x-unix-mode and an RFC 2047 word "
      "inside name=\"...\" (the email package notes InvalidHeaderDefect 'encoded word inside quoted string' "
      "-- intended); Apple puts a second text/plain part after the attachment (the closing lines).",
      "Voici la présentation pour la réunion", attachments=["Présentation réunion d’été.pdf"],
      defects=["InvalidHeaderDefect"])
def _():
    name = "Présentation réunion d’été.pdf"
    quoted = "".join(c if c.isascii() and (c.isalnum() or c in "-._") else
                     "".join("%%%02X" % b for b in c.encode()) for c in name)
    boundary = "Apple-Mail=_%s" % uuid("apple-2231", upper=True)
    return head(
        "From: " + addr("Amélie Roux", "amelie.roux@example.org"),
        "Content-Type: multipart/mixed;\n\tboundary=\"%s\"" % boundary,
        "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3826.300.87.4.3\\))",
        "Subject: " + ew("Présentation pour la réunion d’été"),
        "Message-Id: <%s@example.org>" % uuid("apple-2231-id", upper=True),
        "Date: " + date(14, "18:30:00", "+0100"),
        "To: " + LIST,
        "X-Mailer: Apple Mail (2.3826.300.87.4.3)",
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Transfer-Encoding: quoted-printable", "Content-Type: text/plain;\n\tcharset=utf-8"],
             qp("Bonjour à toutes,\n\nVoici la présentation pour la réunion d’été, avec l’ordre du jour et le "
                "budget.\n\n")),
        part(["Content-Disposition: attachment;\n\tfilename*=utf-8''%s" % quoted,
              "Content-Type: application/pdf;\n\tx-unix-mode=0644;\n\tname=\"%s\"" % ew(name, "utf-8", "Q", 200),
              "Content-Transfer-Encoding: base64"], b64(PRESENTATION_PDF)),
        part(["Content-Transfer-Encoding: quoted-printable", "Content-Type: text/plain;\n\tcharset=utf-8"],
             qp("\nBonne soirée,\nAmélie\n")),
    ], preamble=b"\n")


def rfc2231(param, value, width=40):
    """RFC 2231 continuations param*0*=UTF-8''..; param*1*=.. as Thunderbird
    folds them (each segment ends at a character boundary)."""
    chunks, chunk = [], ""
    for c in value:
        encoded = c if c.isascii() and (c.isalnum() or c in "-._") else "".join("%%%02X" % b for b in c.encode())
        if chunk and len(chunk) + len(encoded) > width:
            chunks.append(chunk)
            chunk = ""
        chunk += encoded
    chunks.append(chunk)
    return ";\n ".join("%s*%d*=%s%s" % (param, i, "UTF-8''" if i == 0 else "", c) for i, c in enumerate(chunks))


@case("mixed-thunderbird-rfc2231-continuations-vcard", "Thunderbird 128 (Windows, Japanese file name)",
      "Thunderbird attaching a file with a long Japanese name: RFC 2231 continuations (filename*0*=UTF-8''..; "
      "filename*1*=..) in the disposition and an RFC 2047 word inside name=\"...\" on the Content-Type (email "
      "package: InvalidHeaderDefect, intended), plus the sender's vCard (text/vcard).",
      "Japanese translation of the code of conduct",
      attachments=["行動規範_日本語訳_2027年1月版.txt", "Keiko Tanaka.vcf"], defects=["InvalidHeaderDefect"])
def _():
    name = "行動規範_日本語訳_2027年1月版.txt"
    text = t("""
        Hello everyone,

        Attached is the Japanese translation of the code of conduct, reviewed by
        Yui and Mariko. I also attached my contact card.

        Keiko
        """)
    conduct = t("""
        行動規範（日本語訳）

        私たちは、誰もが安心して参加できるコミュニティを目指します。
        嫌がらせや差別的な発言は認められません。
        """).encode("utf-8")
    vcard = t("""
        BEGIN:VCARD
        VERSION:4.0
        FN:Keiko Tanaka
        N:Tanaka;Keiko;;;
        EMAIL;PREF=1:keiko.tanaka@example.com
        ORG:Systers Tokyo
        END:VCARD
        """).encode("utf-8").replace(b"\n", b"\r\n")
    boundary = "------------b2Xk7Lq9Rz4Wm1Tp6Vn3Hs8J"
    return head(
        "Content-Type: multipart/mixed; boundary=\"%s\"" % boundary,
        "Message-ID: <%s@example.com>" % uuid("tb-2231"),
        "Date: " + date(15, "13:45:20", "+0900"),
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "Content-Language: en-US",
        "To: " + LIST,
        "From: Keiko Tanaka <keiko.tanaka@example.com>",
        "Subject: Code of conduct: Japanese translation",
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/plain; charset=UTF-8; format=flowed", "Content-Transfer-Encoding: 7bit"],
             text.encode()),
        part(["Content-Type: text/plain; charset=UTF-8; name=\"%s\"" % ew(name, "UTF-8", "B", 200),
              "Content-Disposition: attachment;\n " + rfc2231("filename", name),
              "Content-Transfer-Encoding: base64"], b64(conduct)),
        part(["Content-Type: text/vcard; charset=UTF-8; name=\"Keiko Tanaka.vcf\"",
              "Content-Disposition: attachment; filename=\"Keiko Tanaka.vcf\"",
              "Content-Transfer-Encoding: base64"], b64(vcard)),
    ], preamble=b"This is a multi-part message in MIME format.\n")


@case("mixed-forward-as-attachment-rfc822", "Thunderbird 128 (Forward As Attachment)",
      "A forward as attachment: a short text part, then the original message as message/rfc822 with its own "
      "complete header (From, Date, Message-ID) and its own multipart/alternative body.",
      "Forwarding the call for speakers", attachments=["Call for speakers - Open Source Summit 2027.eml"])
def _():
    inner_text = t("""
        Dear community,

        The call for speakers for the Open Source Summit 2027 is open until 5 February.
        Talks of 25 minutes; first-time speakers are very welcome and can ask for a mentor.

        The programme committee
        """)
    inner_html = ("<html><body><p>Dear community,</p><p>The call for speakers for the <b>Open Source Summit "
                  "2027</b> is open until 5 February.<br>Talks of 25 minutes; first-time speakers are very "
                  "welcome and can ask for a mentor.</p><p>The programme committee</p></body></html>\n")
    ib = "=_cfs_6f1d2a9c"
    original = head(
        "Return-Path: <announce-bounces@example.net>",
        "From: Open Source Summit <cfp@example.net>",
        "To: announce@example.net",
        "Subject: Call for speakers: Open Source Summit 2027",
        "Date: " + date(28, "10:00:00", "+0000", month=12, year=2026),
        "Message-ID: <cfs-2027-01@example.net>",
        "MIME-Version: 1.0",
        "Content-Type: multipart/alternative; boundary=\"%s\"" % ib,
    ) + b"\n\n" + multipart(ib, [
        part(["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 7bit"], inner_text.encode()),
        part(["Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: 7bit"], inner_html.encode()),
    ])
    name = "Call for speakers - Open Source Summit 2027.eml"
    boundary = "------------Q8mW3zK1pY7dR5vT2nB9xL4c"
    return head(
        "Content-Type: multipart/mixed; boundary=\"%s\"" % boundary,
        "Message-ID: <%s@example.org>" % uuid("tb-forward"),
        "Date: " + date(16, "09:41:27", "+0100"),
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "Content-Language: en-GB",
        "To: " + LIST,
        "From: Ines Moreau <ines.moreau@example.org>",
        "Subject: Fwd: Call for speakers: Open Source Summit 2027",
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/plain; charset=UTF-8; format=flowed", "Content-Transfer-Encoding: 8bit"],
             "Forwarding the call for speakers – the deadline is 5 February. Who wants to submit\n"
             "together?\n\nInès\n".encode()),
        part(["Content-Type: message/rfc822; charset=UTF-8; name=\"%s\"" % name,
              "Content-Disposition: attachment; filename=\"%s\"" % name], original),
    ], preamble=b"This is a multi-part message in MIME format.\n")


@case("mixed-outlook-rfc2047-filename", "Outlook for Microsoft 365 (Windows, German)",
      "Outlook naming a non-ASCII attachment with RFC 2047 inside the quoted name and filename parameters "
      "(not RFC 2231) -- what Outlook and many webmails really send; the email package decodes it but notes "
      "InvalidHeaderDefect 'encoded word inside quoted string' (intended).",
      "anbei die Übersicht der Teilnehmerinnen", "anbei die Übersicht der Teilnehmerinnen",
      attachments=["Teilnehmerinnen Übersicht.pdf"], defects=["InvalidHeaderDefect"])
def _():
    name = "Teilnehmerinnen Übersicht.pdf"
    text = t("""
        Hallo zusammen,

        anbei die Übersicht der Teilnehmerinnen für den Workshop am Samstag.

        Viele Grüße
        Birgit
        """)
    markup = outlook_html(["Hallo zusammen,", "", "anbei die Übersicht der Teilnehmerinnen für den Workshop am "
                           "Samstag.", "", "Viele Grüße", "Birgit"], lang="DE")
    data = pdf(["Teilnehmerinnen Workshop 23.01.2027", "18 Anmeldungen, 4 auf der Warteliste"])
    encoded = ew(name, "utf-8", "B", 200)
    when = "Mon, 18 Jan 2027 16:20:05 GMT"
    mid, lines = outlook_head("outlook-2047", addr("Birgit Schäfer", "birgit.schaefer@example.org"),
                              ew("Übersicht Teilnehmerinnen Workshop"), date(18, "17:21:40", "+0100"),
                              ["X-MS-Has-Attach: yes", "X-MS-TNEF-Correlator:"])
    outer, inner = "_004_%sDB9PR02MB7412eurp_" % mid, "_000_%sDB9PR02MB7412eurp_" % mid
    return head(*lines, "Content-Type: multipart/mixed;\n\tboundary=\"%s\"" % outer,
                "MIME-Version: 1.0") + b"\n\n" + multipart(outer, [
        part(["Content-Type: multipart/alternative;\n\tboundary=\"%s\"" % inner], multipart(inner, [
            part(["Content-Type: text/plain; charset=\"utf-8\"", "Content-Transfer-Encoding: base64"],
                 b64(text.encode())),
            part(["Content-Type: text/html; charset=\"utf-8\"", "Content-Transfer-Encoding: base64"],
                 b64(markup.encode())),
        ])),
        part(["Content-Type: application/pdf; name=\"%s\"" % encoded,
              "Content-Description: %s" % encoded,
              "Content-Disposition: attachment;\n\tfilename=\"%s\"; size=%d;\n\tcreation-date=\"%s\";\n"
              "\tmodification-date=\"%s\"" % (encoded, len(data), when, when),
              "Content-Transfer-Encoding: base64"], b64(data)),
    ])


@case("mixed-google-calendar-invite", "Google Calendar (invitation sent from Gmail)",
      "A calendar invitation: multipart/mixed > [multipart/alternative > [text/plain, text/html, "
      "text/calendar; method=REQUEST], application/ics invite.ics].  The text/calendar alternative has no "
      "file name (so it is not listed) but is what calendar clients act on.",
      "Monthly mentoring circle", "Monthly mentoring circle", attachments=["invite.ics"])
def _():
    ics = t("""
        BEGIN:VCALENDAR
        PRODID:-//Google Inc//Google Calendar 70.9054//EN
        VERSION:2.0
        CALSCALE:GREGORIAN
        METHOD:REQUEST
        BEGIN:VEVENT
        DTSTART:20270127T180000Z
        DTEND:20270127T193000Z
        DTSTAMP:20270113T101500Z
        ORGANIZER;CN=Rosa Delgado:mailto:rosa.delgado@example.org
        UID:5k2j9h3g1f0d8s7a6p4o3i2u1y@example.org
        ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=
         TRUE;CN=systers@lists.example.org;X-NUM-GUESTS=0:
         mailto:systers@lists.example.org
        CREATED:20270113T101452Z
        DESCRIPTION:Monthly mentoring circle. Bring a question you are stuck on.
        LAST-MODIFIED:20270113T101452Z
        LOCATION:Room 2.14\\, City Library
        SEQUENCE:0
        STATUS:CONFIRMED
        SUMMARY:Monthly mentoring circle
        TRANSP:OPAQUE
        END:VEVENT
        END:VCALENDAR
        """).replace("\n", "\r\n").encode()
    text = t("""
        Monthly mentoring circle
        Wednesday 27 January 2027 · 19:00 – 20:30 (Central European Time - Berlin)

        Location
        Room 2.14, City Library

        Bring a question you are stuck on.

        Organiser
        Rosa Delgado rosa.delgado@example.org

        Reply for systers@lists.example.org
        Yes: https://example.org/calendar/event?action=RESPOND&rst=1
        No: https://example.org/calendar/event?action=RESPOND&rst=2
        Maybe: https://example.org/calendar/event?action=RESPOND&rst=3

        Invitation from Google Calendar
        """)
    markup = ('<p><span itemprop="name"><b>Monthly mentoring circle</b></span></p>\n'
              '<p>Wednesday 27 January 2027 &middot; 19:00 &ndash; 20:30 (Central European Time - Berlin)</p>\n'
              '<h3>Location</h3><p>Room 2.14, City Library</p>\n<p>Bring a question you are stuck on.</p>\n'
              '<table role="presentation"><tr><td><a href="https://example.org/calendar/event?action=RESPOND'
              '&amp;rst=1">Yes</a></td><td><a href="https://example.org/calendar/event?action=RESPOND&amp;rst=2">'
              'No</a></td><td><a href="https://example.org/calendar/event?action=RESPOND&amp;rst=3">Maybe</a>'
              '</td></tr></table>\n<p style="color:#70757a">Invitation from Google Calendar</p>\n')
    outer, inner = "000000000000a3c91f062b84d1e7", "000000000000a3c91e062b84d1e5"
    return head(
        "MIME-Version: 1.0",
        "Reply-To: Rosa Delgado <rosa.delgado@example.org>",
        "Sender: Google Calendar <calendar-notification@example.com>",
        "Message-ID: <calendar-%s@example.com>" % uuid("gcal"),
        "Date: " + date(13, "10:15:00", "+0000"),
        "Subject: Invitation: Monthly mentoring circle @ Wed 27 Jan 2027 19:00 - 20:30 (CET) "
        "(systers@lists.example.org)",
        "From: Rosa Delgado <rosa.delgado@example.org>",
        "To: " + LIST,
        "Content-Type: multipart/mixed; boundary=\"%s\"" % outer,
    ) + b"\n\n" + multipart(outer, [
        part(["Content-Type: multipart/alternative; boundary=\"%s\"" % inner], multipart(inner, [
            part(["Content-Type: text/plain; charset=\"UTF-8\"; format=flowed; delsp=yes",
                  "Content-Transfer-Encoding: base64"], b64(text.encode())),
            part(["Content-Type: text/html; charset=\"UTF-8\"", "Content-Transfer-Encoding: quoted-printable"],
                 qp(markup)),
            part(["Content-Type: text/calendar; charset=\"UTF-8\"; method=REQUEST",
                  "Content-Transfer-Encoding: 7bit"], ics.replace(b"\r\n", b"\n")),
        ])),
        part(["Content-Type: application/ics; name=\"invite.ics\"",
              "Content-Disposition: attachment; filename=\"invite.ics\"", "Content-Transfer-Encoding: base64"],
             b64(ics)),
    ])


@case("mixed-apple-mail-image-between-text", "Apple Mail 16 (macOS, plain text with a photo placed mid-text)",
      "Apple Mail's multipart/mixed > [text/plain, image/jpeg (disposition inline), text/plain]: the text goes on "
      "after the picture in a second text part, which a reader that takes only the first part loses.",
      "Here is the photo of our stand", attachments=["IMG_0042.jpeg"])
def _():
    boundary = "Apple-Mail=_%s" % uuid("apple-jpeg", upper=True)
    return head(
        "From: Tove Andersen <tove.andersen@example.net>",
        "Content-Type: multipart/mixed;\n\tboundary=\"%s\"" % boundary,
        "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3826.300.87.4.3\\))",
        "Subject: Our stand at the career fair",
        "Message-Id: <%s@example.net>" % uuid("apple-jpeg-id", upper=True),
        "Date: " + date(17, "16:02:55", "+0100"),
        "To: " + LIST,
        "X-Mailer: Apple Mail (2.3826.300.87.4.3)",
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Transfer-Encoding: 7bit", "Content-Type: text/plain;\n\tcharset=us-ascii"],
             b"Hi all,\n\nHere is the photo of our stand at the career fair:\n\n"),
        part(["Content-Disposition: inline;\n\tfilename=IMG_0042.jpeg",
              "Content-Type: image/jpeg;\n\tx-unix-mode=0644;\n\tname=\"IMG_0042.jpeg\"",
              "Content-Transfer-Encoding: base64"], b64(jpeg())),
        part(["Content-Transfer-Encoding: 7bit", "Content-Type: text/plain;\n\tcharset=us-ascii"],
             b"\n\nThe banner arrived just in time. Thanks to everyone who staffed it!\n\nTove\n"),
    ], preamble=b"\n")


# 5. multipart/related: HTML with inline images ###############################

@case("related-in-alternative-apple-mail", "Apple Mail 16 (macOS, image pasted into the message)",
      "Related inside alternative, Apple style: multipart/alternative > [text/plain, multipart/related; "
      "type=\"text/html\" > [text/html with <img src=\"cid:...\">, image/png inline with Content-Id]].",
      "Our new logo is below", "Our new logo is below", attachments=["systers-logo.png"])
def _():
    cid = "%s@example.com" % uuid("apple-cid", upper=True)
    text = "Hi all,\n\nOur new logo is below \u2013 what do you think?\n\n\n\nLena\n"
    markup = ('<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head>'
              '<body style="overflow-wrap: break-word; -webkit-nbsp-mode: space; line-break: after-white-space;">'
              'Hi all,<div><br></div><div>Our new logo is below \u2013 what do you think?</div><div><br></div>'
              '<div><img apple-inline="yes" id="%s" src="cid:%s" alt="systers-logo.png" width="16" height="16">'
              '</div><div><br></div><div>Lena</div></body></html>') % (uuid("apple-img", upper=True), cid)
    outer = "Apple-Mail=_%s" % uuid("apple-rel-outer", upper=True)
    inner = "Apple-Mail=_%s" % uuid("apple-rel-inner", upper=True)
    return head(
        "From: Lena Fischer <lena.fischer@example.com>",
        "Content-Type: multipart/alternative;\n\tboundary=\"%s\"" % outer,
        "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3826.300.87.4.3\\))",
        "Subject: New logo draft",
        "Message-Id: <%s@example.com>" % uuid("apple-rel-id", upper=True),
        "Date: " + date(19, "12:40:18", "+0100"),
        "To: " + LIST,
        "X-Mailer: Apple Mail (2.3826.300.87.4.3)",
    ) + b"\n\n" + multipart(outer, [
        part(["Content-Transfer-Encoding: quoted-printable", "Content-Type: text/plain;\n\tcharset=utf-8"],
             qp(text)),
        part(["Content-Type: multipart/related;\n\ttype=\"text/html\";\n\tboundary=\"%s\"" % inner],
             multipart(inner, [
                 part(["Content-Transfer-Encoding: quoted-printable",
                       "Content-Type: text/html;\n\tcharset=utf-8"], qp(markup)),
                 part(["Content-Transfer-Encoding: base64", "Content-Disposition: inline;\n\tfilename=systers-logo.png",
                       "Content-Type: image/png;\n\tx-unix-mode=0644;\n\tname=\"systers-logo.png\"",
                       "Content-Id: <%s>" % cid], b64(logo_png())),
             ], preamble=b"\n")),
    ], preamble=b"\n")


@case("related-outlook-alternative-in-related", "Outlook for Microsoft 365 (Windows, chart pasted in)",
      "Alternative inside related, Outlook style: multipart/related; type=\"multipart/alternative\" > "
      "[multipart/alternative > [text/plain with Outlook's [cid:...] placeholder, Word HTML with <img "
      "src=\"cid:image001.png@01DB...\">], image/png image001.png inline with size and dates].",
      "The chart below shows sign-ups per month", "The chart below shows sign-ups per month",
      attachments=["image001.png"])
def _():
    cid = "image001.png@01DB6A2C.7E1F3B90"
    text = t("""
        Hello all,

        The chart below shows sign-ups per month since September.

        [cid:%s]

        Membership has nearly tripled.

        Dana
        """) % cid
    markup = outlook_html([
        "Hello all,", "",
        "The chart below shows sign-ups per month since September.", "",
        '<img width="24" height="16" style="width:.25in;height:.1666in" id="Picture_x0020_1" src="cid:%s" '
        'alt="Sign-ups per month">' % cid, "",
        "Membership has nearly tripled.", "", "Dana"])
    data = chart_png()
    when = "Tue, 19 Jan 2027 08:30:44 GMT"
    mid, lines = outlook_head("outlook-related", "Dana Cohen <dana.cohen@example.net>",
                              "Sign-ups per month", date(19, "09:31:02", "+0100"),
                              ["X-MS-Has-Attach: yes", "X-MS-TNEF-Correlator:"])
    outer, inner = "_005_%sDB9PR02MB7412eurp_" % mid, "_000_%sDB9PR02MB7412eurp_" % mid
    return head(*lines, "Content-Type: multipart/related;\n\tboundary=\"%s\";\n\ttype=\"multipart/alternative\""
                % outer, "MIME-Version: 1.0") + b"\n\n" + multipart(outer, [
        part(["Content-Type: multipart/alternative;\n\tboundary=\"%s\"" % inner], multipart(inner, [
            part(["Content-Type: text/plain; charset=\"us-ascii\"", "Content-Transfer-Encoding: quoted-printable"],
                 qp(text, "ascii")),
            part(["Content-Type: text/html; charset=\"us-ascii\"", "Content-Transfer-Encoding: quoted-printable"],
                 qp(markup.replace("charset=utf-8", "charset=us-ascii"), "ascii")),
        ])),
        part(["Content-Type: image/png; name=\"image001.png\"", "Content-Description: image001.png",
              "Content-Disposition: inline; filename=\"image001.png\"; size=%d;\n\tcreation-date=\"%s\";\n"
              "\tmodification-date=\"%s\"" % (len(data), when, when),
              "Content-ID: <%s>" % cid, "Content-Transfer-Encoding: base64"], b64(data)),
    ])


@case("related-thunderbird-html-only", "Thunderbird 128 (Send HTML only, image inserted)",
      "multipart/related at the top with no text alternative: [text/html with <img moz-do-not-send=\"false\" "
      "src=\"cid:part1...\">, image/png inline with Thunderbird's random file name and Content-Id]; "
      "Norwegian text.",
      "Her er kartet over lokalet", "Her er kartet over lokalet", attachments=["Rj3nX0pLq8dW2sKv.png"])
def _():
    cid = "part1.Kp3dQ8sZ.Hy5xWm2N@example.org"
    markup = t("""
        <!DOCTYPE html>
        <html>
          <head>

            <meta http-equiv="content-type" content="text/html; charset=UTF-8">
          </head>
          <body>
            <p>Hei alle sammen,</p>
            <p>Her er kartet over lokalet på Grünerløkka. Inngangen er fra
              bakgården.</p>
            <p><img moz-do-not-send="false" src="cid:%s" alt="Kart"
                width="24" height="16"></p>
            <p>Hilsen<br>
              Ingrid</p>
          </body>
        </html>
        """) % cid
    boundary = "------------Ue5Rx2Cf8Ym0Lh3Gs7Dk1Pz9"
    return head(
        "Content-Type: multipart/related; boundary=\"%s\"" % boundary,
        "Message-ID: <%s@example.org>" % uuid("tb-related"),
        "Date: " + date(20, "19:22:36", "+0100"),
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "Content-Language: nb",
        "To: " + LIST,
        "From: Ingrid Bakken <ingrid.bakken@example.org>",
        "Subject: " + ew("Kart over lokalet på Grünerløkka"),
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/html; charset=UTF-8", "Content-Transfer-Encoding: 8bit"], markup.encode()),
        part(["Content-Type: image/png; name=\"Rj3nX0pLq8dW2sKv.png\"",
              "Content-Disposition: inline; filename=\"Rj3nX0pLq8dW2sKv.png\"",
              "Content-Id: <%s>" % cid, "Content-Transfer-Encoding: base64"], b64(chart_png())),
    ], preamble=b"This is a multi-part message in MIME format.\n")


@case("related-gmail-inline-image", "Gmail (web, image inserted inline)",
      "Gmail's inline image: multipart/related > [multipart/alternative > [text/plain with '[image: ...]', "
      "text/html with <img src=\"cid:ii_...\">], image/png with Content-ID <ii_...> and X-Attachment-Id].",
      "Sign-ups doubled after the podcast episode", "Sign-ups doubled after the podcast episode",
      attachments=["signups.png"])
def _():
    text = t("""
        Sign-ups doubled after the podcast episode!

        [image: signups.png]

        Thanks to everyone who shared it.
        Mei
        """)
    markup = ('<div dir="ltr"><div>Sign-ups doubled after the podcast episode!</div><div><br></div><div><img '
              'src="cid:ii_mk5b7d2e0" alt="signups.png" width="24" height="16"><br></div><div><br></div><div>'
              'Thanks to everyone who shared it.</div><div>Mei</div></div>\n')
    outer, inner = "000000000000f1c2d3062b8a90b4", "000000000000f1c2d2062b8a90b3"
    return head(
        "MIME-Version: 1.0",
        "From: Mei Lin <mei.lin@example.com>",
        "Date: " + date(20, "15:03:39", "+0800"),
        "Message-ID: <CAM5hR8vT2xQ9nW4yL7pK3bZ6dF1gJ0sC8mA2eU5tY9rX3wN@mail.example.com>",
        "Subject: Podcast effect",
        "To: " + LIST,
        "Content-Type: multipart/related; boundary=\"%s\"" % outer,
    ) + b"\n\n" + multipart(outer, [
        part(["Content-Type: multipart/alternative; boundary=\"%s\"" % inner], multipart(inner, [
            part(["Content-Type: text/plain; charset=\"UTF-8\""], text.encode()),
            part(["Content-Type: text/html; charset=\"UTF-8\""], markup.encode()),
        ])),
        part(["Content-Type: image/png; name=\"signups.png\"", "Content-Disposition: inline; filename=\"signups.png\"",
              "Content-Transfer-Encoding: base64", "Content-ID: <ii_mk5b7d2e0>", "X-Attachment-Id: ii_mk5b7d2e0"],
             b64(chart_png())),
    ])


# 6. nested multiparts ########################################################

POSTER_PDF = pdf(["Poster draft: International Women's Day 2027", "8 March, City Library, 18:00"])


@case("nested-mixed-alternative-related-apple", "Apple Mail 16 (macOS, inline image and an attached PDF)",
      "Four levels: multipart/mixed > [multipart/alternative > [text/plain, multipart/related > [text/html, "
      "image/png inline]], application/pdf attachment].",
      "the poster draft is attached", "the poster draft is attached",
      attachments=["poster-teaser.png", "poster-draft.pdf"])
def _():
    cid = "%s@example.org" % uuid("apple-nested-cid", upper=True)
    text = t("""
        Hi all,

        Here is a teaser of the design; the poster draft is attached as a PDF.

        Comments by Sunday please!
        Adaeze
        """)
    markup = ('<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head>'
              '<body style="overflow-wrap: break-word; -webkit-nbsp-mode: space; line-break: after-white-space;">'
              'Hi all,<div><br></div><div>Here is a teaser of the design; the poster draft is attached as a PDF.'
              '</div><div><br></div><div><img apple-inline="yes" id="%s" src="cid:%s" alt="poster-teaser.png">'
              '</div><div><br></div><div>Comments by Sunday please!</div><div>Adaeze</div></body></html>'
              % (uuid("apple-nested-img", upper=True), cid))
    b1, b2, b3 = ("Apple-Mail=_%s" % uuid("apple-nested-%d" % i, upper=True) for i in (1, 2, 3))
    return head(
        "From: Adaeze Nwosu <adaeze.nwosu@example.org>",
        "Content-Type: multipart/mixed;\n\tboundary=\"%s\"" % b1,
        "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3826.300.87.4.3\\))",
        "Subject: Poster draft for 8 March",
        "Message-Id: <%s@example.org>" % uuid("apple-nested-id", upper=True),
        "Date: " + date(21, "22:14:50", "+0100"),
        "To: " + LIST,
        "X-Mailer: Apple Mail (2.3826.300.87.4.3)",
    ) + b"\n\n" + multipart(b1, [
        part(["Content-Type: multipart/alternative;\n\tboundary=\"%s\"" % b2], multipart(b2, [
            part(["Content-Transfer-Encoding: 7bit", "Content-Type: text/plain;\n\tcharset=us-ascii"],
                 text.encode()),
            part(["Content-Type: multipart/related;\n\ttype=\"text/html\";\n\tboundary=\"%s\"" % b3],
                 multipart(b3, [
                     part(["Content-Transfer-Encoding: 7bit", "Content-Type: text/html;\n\tcharset=us-ascii"],
                          markup.encode()),
                     part(["Content-Transfer-Encoding: base64",
                           "Content-Disposition: inline;\n\tfilename=poster-teaser.png",
                           "Content-Type: image/png;\n\tx-unix-mode=0644;\n\tname=\"poster-teaser.png\"",
                           "Content-Id: <%s>" % cid], b64(logo_png())),
                 ], preamble=b"\n")),
        ], preamble=b"\n")),
        part(["Content-Disposition: attachment;\n\tfilename=poster-draft.pdf",
              "Content-Type: application/pdf;\n\tx-unix-mode=0644;\n\tname=\"poster-draft.pdf\"",
              "Content-Transfer-Encoding: base64"], b64(POSTER_PDF)),
    ], preamble=b"\n")


@case("nested-mixed-text-then-mixed-gateway", "A relay that wraps posts (a sister list's bridge)",
      "multipart/mixed > [text/plain note added by the relay, multipart/mixed > [text/plain, application/pdf]]: "
      "the author's own text and attachment sit one level down, after the relay's note.",
      "This post was relayed from the systers-berlin list",
      attachments=["flyer-iwd-2027.pdf"])
def _():
    note = ("This post was relayed from the systers-berlin list by its bridge. Replies go to both lists.\n")
    text = t("""
        Hallo alle,

        hier ist der Flyer für den Internationalen Frauentag. Druckt ihn gern aus
        und hängt ihn in euren Büros auf.

        Sibel
        """)
    flyer = pdf(["International Women's Day 2027", "Berlin, 8 March, 17:00", "Free entry"])
    outer, inner = "==relay_7c1e9a3b4d==", "==inner_2f6b8d0c1e=="
    return head(
        "From: " + addr("Sibel Yıldız", "sibel.yildiz@example.net"),
        "To: " + LIST,
        "Subject: Flyer: Internationaler Frauentag",
        "Date: " + date(22, "08:10:33", "+0100"),
        "Message-ID: <relay.%s@bridge.example.net>" % hexid("relay", 16),
        "X-Relayed-From: systers-berlin@lists.example.net",
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed; boundary=\"%s\"" % outer,
    ) + b"\n\n" + multipart(outer, [
        part(["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit",
              "Content-Disposition: inline"], note.encode()),
        part(["Content-Type: multipart/mixed; boundary=\"%s\"" % inner], multipart(inner, [
            part(["Content-Type: text/plain; charset=UTF-8; format=flowed", "Content-Transfer-Encoding: 8bit"],
                 text.encode()),
            part(["Content-Type: application/pdf; name=\"flyer-iwd-2027.pdf\"",
                  "Content-Disposition: attachment; filename=\"flyer-iwd-2027.pdf\"",
                  "Content-Transfer-Encoding: base64"], b64(flyer)),
        ], preamble=b"This is a multi-part message in MIME format.\n")),
    ], preamble=b"This is a multi-part message in MIME format.\n")


@case("nested-outlook-mixed-related-alternative", "Outlook for Microsoft 365 (Windows, logo signature and attachment)",
      "Outlook's shape when the signature has a logo and a file is attached: multipart/mixed > "
      "[multipart/related > [multipart/alternative > [text/plain, text/html], image/png image001.png], "
      "application/pdf].",
      "Please review the schedule before Thursday", "Please review the schedule before Thursday",
      attachments=["image001.png", "spring-schedule.pdf"])
def _():
    cid = "image001.png@01DB6C11.2A3B4C50"
    text = t("""
        Hi team,

        Please review the schedule before Thursday; the venue needs our numbers by Friday.

        Thanks,
        Olu

        [cid:%s]
        Oluwaseun Adeyemi | Events
        """) % cid
    markup = outlook_html([
        "Hi team,", "",
        "Please review the schedule before Thursday; the venue needs our numbers by Friday.", "",
        "Thanks,", "Olu", "",
        '<img width="16" height="16" style="width:.1666in;height:.1666in" id="Picture_x0020_1" src="cid:%s" '
        'alt="Systers logo">' % cid,
        '<span style="font-size:10.0pt;color:#6A1B9A">Oluwaseun Adeyemi | Events</span>'])
    logo = logo_png()
    schedule = pdf(["Spring schedule 2027", "Feb 11 - Mentoring evening", "Mar 8 - IWD", "Apr 17 - Hack day"])
    when = "Thu, 21 Jan 2027 14:02:10 GMT"
    mid, lines = outlook_head("outlook-nested", "Oluwaseun Adeyemi <olu.adeyemi@example.com>",
                              "Spring schedule for review", date(21, "14:05:00"),
                              ["X-MS-Has-Attach: yes", "X-MS-TNEF-Correlator:"])
    b1, b2, b3 = ("_%03d_%sDB9PR02MB7412eurp_" % (n, mid) for n in (6, 5, 0))
    return head(*lines, "Content-Type: multipart/mixed;\n\tboundary=\"%s\"" % b1,
                "MIME-Version: 1.0") + b"\n\n" + multipart(b1, [
        part(["Content-Type: multipart/related;\n\tboundary=\"%s\";\n\ttype=\"multipart/alternative\"" % b2],
             multipart(b2, [
                 part(["Content-Type: multipart/alternative;\n\tboundary=\"%s\"" % b3], multipart(b3, [
                     part(["Content-Type: text/plain; charset=\"us-ascii\"",
                           "Content-Transfer-Encoding: quoted-printable"], qp(text, "ascii")),
                     part(["Content-Type: text/html; charset=\"us-ascii\"",
                           "Content-Transfer-Encoding: quoted-printable"],
                          qp(markup.replace("charset=utf-8", "charset=us-ascii"), "ascii")),
                 ])),
                 part(["Content-Type: image/png; name=\"image001.png\"", "Content-Description: image001.png",
                       "Content-Disposition: inline; filename=\"image001.png\"; size=%d;\n\tcreation-date=\"%s\";\n"
                       "\tmodification-date=\"%s\"" % (len(logo), when, when),
                       "Content-ID: <%s>" % cid, "Content-Transfer-Encoding: base64"], b64(logo)),
             ])),
        outlook_attachment("application/pdf", "spring-schedule.pdf", schedule, when),
    ])


@case("nested-apple-alternative-mixed-html-fragments", "Apple Mail 16 (macOS, PDF placed inside HTML text)",
      "Apple Mail's notorious shape: multipart/alternative > [text/plain, multipart/mixed > [text/html, "
      "application/pdf (disposition inline), text/html]] -- the HTML is cut in two around the PDF, and the "
      "attachment lives inside the alternative.  The closing sentence is only in the second HTML fragment.",
      "Here is the signed venue contract", "Here is the signed venue contract",
      attachments=["venue-contract-signed.pdf"])
def _():
    text = t("""
        Hi all,

        Here is the signed venue contract.



        Let me know if anything is missing.

        Jo
        """)
    style = ('<html><head><meta http-equiv="content-type" content="text/html; charset=us-ascii"></head>'
             '<body style="overflow-wrap: break-word; -webkit-nbsp-mode: space; line-break: after-white-space;">')
    first = style + ('Hi all,<div><br></div><div>Here is the signed venue contract.</div><div><br></div>'
                     '<div></div></body></html>')
    second = style + ('<div></div><div><br></div><div>Let me know if anything is missing.</div><div><br></div>'
                      '<div>Jo</div></body></html>')
    contract = pdf(["Venue contract (signed)", "City Library, Room 2.14", "Saturdays, February to June 2027"])
    b1, b2 = ("Apple-Mail=_%s" % uuid("apple-frag-%d" % i, upper=True) for i in (1, 2))
    return head(
        "From: Jo Whitfield <jo.whitfield@example.com>",
        "Content-Type: multipart/alternative;\n\tboundary=\"%s\"" % b1,
        "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3826.300.87.4.3\\))",
        "Subject: Signed venue contract",
        "Message-Id: <%s@example.com>" % uuid("apple-frag-id", upper=True),
        "Date: " + date(22, "11:47:09", "+0000"),
        "To: " + LIST,
        "X-Mailer: Apple Mail (2.3826.300.87.4.3)",
    ) + b"\n\n" + multipart(b1, [
        part(["Content-Transfer-Encoding: 7bit", "Content-Type: text/plain;\n\tcharset=us-ascii"], text.encode()),
        part(["Content-Type: multipart/mixed;\n\tboundary=\"%s\"" % b2], multipart(b2, [
            part(["Content-Transfer-Encoding: 7bit", "Content-Type: text/html;\n\tcharset=us-ascii"],
                 first.encode()),
            part(["Content-Disposition: inline;\n\tfilename=venue-contract-signed.pdf",
                  "Content-Type: application/pdf;\n\tx-unix-mode=0644;\n\tname=\"venue-contract-signed.pdf\"",
                  "Content-Transfer-Encoding: base64"], b64(contract)),
            part(["Content-Transfer-Encoding: 7bit", "Content-Type: text/html;\n\tcharset=us-ascii"],
                 second.encode()),
        ], preamble=b"\n")),
    ], preamble=b"\n")


# 7. signed and encrypted #####################################################

@case("signed-pgp-mime-thunderbird", "Thunderbird 128 (OpenPGP)",
      "PGP/MIME as Thunderbird sends it: multipart/signed; micalg=pgp-sha256; protocol=\"application/pgp-signature\" "
      "> [multipart/mixed; protected-headers=\"v1\" (with copies of From/To/Subject/Message-ID) > [text/plain], "
      "application/pgp-signature OpenPGP_signature.asc]; an Autocrypt header.  The signature is a well-formed "
      "EdDSA packet by a made-up key (it does not verify).",
      "nyckelsignering på träffen", attachments=["OpenPGP_signature.asc"], signed=True)
def _():
    mid = "<%s@example.org>" % uuid("tb-pgp")
    sender = "Hanna Berg <hanna.berg@example.org>"
    subject = ew("Nyckelsignering på träffen på onsdag")
    text = t("""
        Hej allihop,

        Vi kör nyckelsignering på träffen på onsdag. Ta med ett id-kort och\u2420
        fingeravtrycket för din nyckel utskrivet på papper.

        /Hanna
        """)
    inner = "------------Xy2Wv4Ut6Sr8Qp0On2Ml4Kj6"
    outer = "------------Ab3dE5fG7hJ9kL1mN3pQ5rS7"
    signed_part = part([
        "Content-Type: multipart/mixed; boundary=\"%s\";\n protected-headers=\"v1\"" % inner,
        "To: " + LIST, "From: " + sender, "Message-ID: " + mid, "Subject: " + subject,
    ], multipart(inner, [
        part(["Content-Type: text/plain; charset=UTF-8; format=flowed",
              "Content-Transfer-Encoding: quoted-printable"], qp(text)),
    ]))
    created = unix(20, "18:44:02")
    return head(
        "Message-ID: " + mid,
        "Date: " + date(20, "19:44:02", "+0100"),
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "Content-Language: sv-SE",
        "To: " + LIST,
        "From: " + sender,
        "Autocrypt: addr=hanna.berg@example.org; keydata=\n"
        + autocrypt_keydata("hanna", sender, created - 86400 * 400),
        "Subject: " + subject,
        "Content-Type: multipart/signed; micalg=pgp-sha256;\n protocol=\"application/pgp-signature\";\n"
        " boundary=\"%s\"" % outer,
    ) + b"\n\n" + multipart(outer, [
        signed_part,
        part(["Content-Type: application/pgp-signature; name=\"OpenPGP_signature.asc\"",
              "Content-Description: OpenPGP digital signature",
              "Content-Disposition: attachment; filename=\"OpenPGP_signature.asc\""],
             pgp_signature("hanna", created, 0x01).encode()),
    ], preamble=b"This is an OpenPGP/MIME signed message (RFC 4880 and 3156)\n")


@case("signed-pgp-mime-mutt", "Mutt 2.2 with GnuPG",
      "PGP/MIME as Mutt sends it: multipart/signed > [text/plain us-ascii with Content-Disposition: inline, "
      "application/pgp-signature name=\"signature.asc\" (name only, no disposition)]; a made-up RSA-3072 "
      "signature packet.",
      "The release tarball for v2.3.0", attachments=["signature.asc"], signed=True)
def _():
    text = t("""
        Hi,

        The release tarball for v2.3.0 of the mentorship bot is up, signed with my
        usual key. Checksum:

          sha256  9f2c4e1ab07d35c8e6f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7  mentorbot-2.3.0.tar.gz

        Cheers,
        Bea

        --\u2420
        Beatriz Souza -- mentorbot maintainer
        """)
    boundary = "k3jXwZ9qR2vT5yB8"
    created = unix(21, "07:12:40")
    return head(
        "Date: " + date(21, "08:12:40", "+0100"),
        "From: Beatriz Souza <beatriz.souza@example.net>",
        "To: " + LIST,
        "Subject: [ANN] mentorbot 2.3.0",
        "Message-ID: <Z5qR3tV8xN2mKc7P@example.net>",
        "MIME-Version: 1.0",
        "Content-Type: multipart/signed; micalg=pgp-sha256;\n\tprotocol=\"application/pgp-signature\"; "
        "boundary=\"%s\"" % boundary,
        "Content-Disposition: inline",
        "User-Agent: Mutt/2.2.12 (2023-09-09)",
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/plain; charset=us-ascii", "Content-Disposition: inline"], text.encode()),
        part(["Content-Type: application/pgp-signature; name=\"signature.asc\"",
              "Content-Description: Digital signature"], pgp_signature("bea", created, 0x00, rsa=True).encode()),
    ])


@case("signed-smime-thunderbird", "Thunderbird 128 (S/MIME)",
      "S/MIME as Thunderbird sends it: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256 "
      "> [text/plain quoted-printable, application/pkcs7-signature smime.p7s base64] -- the .p7s is valid DER "
      "(CMS SignedData with signed attributes) with made-up digest and signature bytes.",
      "the grant report is final", attachments=["smime.p7s"], signed=True)
def _():
    text = t("""
        Hi all,

        the grant report is final – I’ve signed this mail with my new certificate
        from the university, so you can check it really comes from me.

        Best,
        Ruth
        """)
    boundary = "------------ms050108030205090104020903"
    return head(
        "Message-ID: <%s@example.com>" % uuid("tb-smime"),
        "Date: " + date(21, "16:30:12", "+0200"),
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "Content-Language: en-US",
        "To: " + LIST,
        "From: Ruth Levi <ruth.levi@example.com>",
        "Subject: Grant report (final)",
        "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256;\n"
        " boundary=\"%s\"" % boundary,
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/plain; charset=UTF-8; format=flowed", "Content-Language: en-US",
              "Content-Transfer-Encoding: quoted-printable"], qp(text)),
        part(["Content-Type: application/pkcs7-signature; name=\"smime.p7s\"",
              "Content-Transfer-Encoding: base64", "Content-Disposition: attachment; filename=\"smime.p7s\"",
              "Content-Description: S/MIME Cryptographic Signature"],
             b64(smime_signature("ruth", "Ruth Levi", "270121143012Z"))),
    ], preamble=b"This is a cryptographically signed message in MIME format.\n")


@case("signed-smime-outlook-x-pkcs7", "Outlook for Microsoft 365 (Windows, S/MIME)",
      "S/MIME as Outlook sends it: protocol=\"application/x-pkcs7-signature\" and the OID form "
      "micalg=2.16.840.1.101.3.4.2.1, the signed part a multipart/alternative (text + Word HTML), the signature "
      "part application/x-pkcs7-signature smime.p7s.",
      "The audit of our accounts is complete", "The audit of our accounts is complete",
      attachments=["smime.p7s"], signed=True)
def _():
    text = t("""
        Dear members,

        The audit of our accounts is complete and the auditors found nothing to correct.
        The report will be presented at the general meeting.

        Kind regards,
        Margit Nagy
        Treasurer
        """)
    markup = outlook_html(["Dear members,", "",
                           "The audit of our accounts is complete and the auditors found nothing to correct. "
                           "The report will be presented at the general meeting.", "",
                           "Kind regards,", "Margit Nagy", "Treasurer"])
    mid, lines = outlook_head("outlook-smime", "Margit Nagy <margit.nagy@example.org>",
                              "Audit complete", date(22, "10:20:31", "+0100"))
    outer = "----=_NextPart_000_0040_01DB6CB8.7E1F3B90"
    inner = "----=_NextPart_001_0041_01DB6CB8.7E1F3B90"
    return head(*lines, "MIME-Version: 1.0",
                "Content-Type: multipart/signed;\n\tprotocol=\"application/x-pkcs7-signature\";\n"
                "\tmicalg=2.16.840.1.101.3.4.2.1;\n\tboundary=\"%s\"" % outer,
                ) + b"\n\n" + multipart(outer, [
        part(["Content-Type: multipart/alternative;\n\tboundary=\"%s\"" % inner], multipart(inner, [
            part(["Content-Type: text/plain;\n\tcharset=\"us-ascii\"", "Content-Transfer-Encoding: 7bit"],
                 text.encode()),
            part(["Content-Type: text/html;\n\tcharset=\"us-ascii\"", "Content-Transfer-Encoding: quoted-printable"],
                 qp(markup.replace("charset=utf-8", "charset=us-ascii"), "ascii")),
        ], preamble=b"\n")),
        part(["Content-Type: application/x-pkcs7-signature;\n\tname=\"smime.p7s\"",
              "Content-Transfer-Encoding: base64", "Content-Disposition: attachment;\n\tfilename=\"smime.p7s\""],
             b64(smime_signature("margit", "Margit Nagy", "270122092031Z"))),
    ], preamble=b"This is a multipart message in MIME format.\n")


@case("inline-pgp-clearsigned", "Claws Mail 4.2 (PGP/Inline)",
      "A clear-signed message inside a plain text/plain part (-----BEGIN PGP SIGNED MESSAGE-----, Hash: SHA256, "
      "a dash-escaped '- -- ' line, the armored signature).  Not multipart/signed, but the body must reach "
      "members byte for byte or the signature breaks.",
      "the board approved the travel grants")
def _():
    signed = t("""
        Hello list,

        I confirm that the board approved the travel grants for the five
        speakers at its meeting on 13 January. Recipients will hear from
        the treasurer this week.

        - --\u2420
        Ingrid Solberg
        Chair
        """)
    body = ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n" + signed
            + pgp_signature("ingrid", unix(22, "13:05:40"), 0x01))
    return head(
        "Date: " + date(22, "14:05:40", "+0100"),
        "From: Ingrid Solberg <ingrid.solberg@example.org>",
        "To: " + LIST,
        "Subject: Travel grants approved",
        "Message-ID: <20270122140540.5c2a91e3@example.org>",
        "X-Mailer: Claws Mail 4.2.0 (GTK 3.24.41; x86_64-pc-linux-gnu)",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=US-ASCII",
        "Content-Transfer-Encoding: 7bit",
    ) + b"\n\n" + body.encode("ascii")


@case("signed-in-mixed-list-footer", "Mutt, then a Mailman 2 list that added its footer",
      "A signed post that came through another list first: multipart/mixed > [multipart/signed > [text/plain, "
      "application/pgp-signature], text/plain footer] -- Mailman wraps rather than touch the signed part; the "
      "signed part is a top-level child.",
      "Slides for the FOSDEM devroom are ready", attachments=["signature.asc"], signed=True)
def _():
    text = t("""
        Hi all,

        Slides for the FOSDEM devroom are ready for review in the usual folder.
        Please leave comments before Wednesday.

        Thanks,
        Carmen
        """)
    footer = t("""
        _______________________________________________
        women-in-foss mailing list
        women-in-foss@lists.example.net
        https://lists.example.net/mailman/listinfo/women-in-foss
        """)
    outer, signed = "===============4830178212374091552==", "Qx7bN2vL9kR4tY1w"
    return head(
        "Date: " + date(23, "10:02:18", "+0100"),
        "From: Carmen Ortiz <carmen.ortiz@example.net>",
        "To: " + LIST,
        "Subject: [women-in-foss] FOSDEM devroom slides",
        "Message-ID: <Z5oP1rT6vN9mKc2Q@example.net>",
        "MIME-Version: 1.0",
        "User-Agent: Mutt/2.2.12 (2023-09-09)",
        "List-Id: women-in-foss <women-in-foss.lists.example.net>",
        "List-Post: <mailto:women-in-foss@lists.example.net>",
        "Content-Type: multipart/mixed; boundary=\"%s\"" % outer,
    ) + b"\n\n" + multipart(outer, [
        part(["Content-Type: multipart/signed; micalg=pgp-sha256;\n\tprotocol=\"application/pgp-signature\"; "
              "boundary=\"%s\"" % signed, "Content-Disposition: inline"], multipart(signed, [
                  part(["Content-Type: text/plain; charset=us-ascii", "Content-Disposition: inline"], text.encode()),
                  part(["Content-Type: application/pgp-signature; name=\"signature.asc\"",
                        "Content-Description: Digital signature"],
                       pgp_signature("carmen", unix(23, "09:02:18")).encode()),
              ])),
        part(["Content-Type: text/plain; charset=\"us-ascii\"", "MIME-Version: 1.0",
              "Content-Transfer-Encoding: 7bit", "Content-Disposition: inline"], footer.encode()),
    ])


@case("encrypted-pgp-mime-thunderbird", "Thunderbird 128 (OpenPGP, encrypted)",
      "PGP/MIME encryption: multipart/encrypted; protocol=\"application/pgp-encrypted\" > [application/pgp-encrypted "
      "'Version: 1', application/octet-stream encrypted.asc (-----BEGIN PGP MESSAGE-----)]; the Subject is "
      "'...' because Thunderbird hides the real one inside.  No readable text at all (text_has is empty).",
      "", attachments=["encrypted.asc"])
def _():
    boundary = "------------Lm4Nb6Vc8Xz0As2Df4Gh6Jk8"
    return head(
        "Message-ID: <%s@example.org>" % uuid("tb-encrypted"),
        "Date: " + date(23, "21:15:09", "+0100"),
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "To: " + LIST,
        "From: Hanna Berg <hanna.berg@example.org>",
        "Subject: ...",
        "Content-Type: multipart/encrypted;\n protocol=\"application/pgp-encrypted\";\n boundary=\"%s\"" % boundary,
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Type: application/pgp-encrypted", "Content-Description: PGP/MIME version identification"],
             b"Version: 1\n"),
        part(["Content-Type: application/octet-stream; name=\"encrypted.asc\"",
              "Content-Description: OpenPGP encrypted message",
              "Content-Disposition: inline; filename=\"encrypted.asc\""],
             pgp_message("hanna-encrypted", 900).encode()),
    ], preamble=b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\n")


# 8. nothing but an attachment; no text; a lone link ##########################

@case("only-attachment-pdf-scanner", "A multifunction printer's scan-to-email",
      "The whole message is one PDF: Content-Type: application/pdf at the top with Content-Disposition: "
      "attachment and no text at all (text_has is empty).",
      "", attachments=["scan_20270118_093012.pdf"])
def _():
    data = pdf(["Scanned document", "Receipts: catering 14 Jan 2027"])
    return head(
        "From: Scanner 3rd floor <scanner-3f@example.com>",
        "To: " + LIST,
        "Subject: Scanned document scan_20270118_093012.pdf",
        "Date: " + date(18, "09:30:14", "+0100", pad=True),
        "Message-ID: <20270118093014.0001.scanner-3f@example.com>",
        "MIME-Version: 1.0",
        "X-Mailer: MFP Scan-to-Email 2.1",
        "Content-Type: application/pdf; name=\"scan_20270118_093012.pdf\"",
        "Content-Disposition: attachment; filename=\"scan_20270118_093012.pdf\"",
        "Content-Transfer-Encoding: base64",
    ) + b"\n\n" + b64(data)


@case("only-image-inline-phone-share", "An Android gallery app's 'share by e-mail'",
      "The whole message is one JPEG, inline: Content-Type: image/jpeg at the top with Content-Disposition: "
      "inline; filename=...; no text (text_has is empty).",
      "", attachments=["IMG_20270119_181522.jpg"])
def _():
    return head(
        "Message-ID: <%s@phone.example.net>" % hexid("share", 32),
        "Date: " + date(19, "18:15:40", "+0100"),
        "From: Kasia Nowak <kasia.nowak@example.net>",
        "To: " + LIST,
        "Subject: IMG_20270119_181522.jpg",
        "MIME-Version: 1.0",
        "Content-Type: image/jpeg; name=\"IMG_20270119_181522.jpg\"",
        "Content-Disposition: inline; filename=\"IMG_20270119_181522.jpg\"",
        "Content-Transfer-Encoding: base64",
    ) + b"\n\n" + b64(jpeg())


@case("empty-body-k9", "K-9 Mail / Thunderbird for Android",
      "A text/plain message whose body is empty (nothing after the blank line): everything is in the Subject "
      "(text_has is empty).",
      "")
def _():
    return head(
        "MIME-Version: 1.0",
        "Date: " + date(20, "12:01:07", "+0100"),
        "Message-ID: <%s@example.com>" % uuid("k9-empty"),
        "User-Agent: K-9 Mail for Android",
        "Subject: Room 2.14 is free now, come over (EOM)",
        "From: Priya Raman <priya.raman@example.com>",
        "To: " + LIST,
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 7bit",
    ) + b"\n\n"


@case("empty-body-gmail-with-attachment", "Gmail (web)",
      "Gmail when only a file is attached: multipart/mixed > [multipart/alternative > [text/plain of one line "
      "break, text/html '<div dir=\"ltr\"><br></div>'], application/pdf] (text_has is empty).",
      "", attachments=["train-ticket-oslo.pdf"])
def _():
    outer, inner = "000000000000c4d5e6062b90a1f2", "000000000000c4d5e5062b90a1f0"
    return head(
        "MIME-Version: 1.0",
        "From: Ingrid Bakken <ingrid.bakken@example.org>",
        "Date: " + date(24, "08:44:12", "+0100"),
        "Message-ID: <CAE7pN2qR5sT8vW1xY4zA7bC0dF3gH6jK9mL2nP5rS8tV1w@mail.example.com>",
        "Subject: Ticket for the Oslo trip",
        "To: " + LIST,
        "Content-Type: multipart/mixed; boundary=\"%s\"" % outer,
    ) + b"\n\n" + multipart(outer, [
        part(["Content-Type: multipart/alternative; boundary=\"%s\"" % inner], multipart(inner, [
            part(["Content-Type: text/plain; charset=\"UTF-8\""], b"\n"),
            part(["Content-Type: text/html; charset=\"UTF-8\""], b"<div dir=\"ltr\"><br></div>\n"),
        ])),
        part(["Content-Type: application/pdf; name=\"train-ticket-oslo.pdf\"",
              "Content-Disposition: attachment; filename=\"train-ticket-oslo.pdf\"",
              "Content-Transfer-Encoding: base64", "Content-ID: <f_mk9q1w2e0>", "X-Attachment-Id: f_mk9q1w2e0"],
             b64(pdf(["Train ticket", "Bergen - Oslo, 29 Jan 2027, seat 42"]))),
    ])


@case("link-only-gmail", "Gmail (Android app)",
      "The whole text is one link: the text part is the URL alone, the HTML an <a> whose text is the URL.",
      "https://example.org/events/2027/hackathon", "https://example.org/events/2027/hackathon")
def _():
    url = "https://example.org/events/2027/hackathon"
    boundary = "000000000000e9f0a1062b91b2c3"
    return head(
        "MIME-Version: 1.0",
        "From: Amara Okafor <amara.okafor@example.net>",
        "Date: " + date(24, "19:03:51", "+0000"),
        "Message-ID: <CAF3x9QnB4cD7eF0gH3iJ6kL9mN2oP5qR8sT1uV4wX7yZ0a@mail.example.com>",
        "Subject: Hackathon",
        "To: " + LIST,
        "Content-Type: multipart/alternative; boundary=\"%s\"" % boundary,
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/plain; charset=\"UTF-8\""], (url + "\n").encode()),
        part(["Content-Type: text/html; charset=\"UTF-8\""],
             ('<div dir="auto"><a href="%s">%s</a></div>\n' % (url, url)).encode()),
    ])


# 9. newsletter-style HTML: tables, lists, quotes, emphasis, links ############

@case("newsletter-alternative-tables", "A newsletter tool (listmonk-style campaign)",
      "A newsletter: multipart/alternative whose HTML is nested layout tables, an events table with <th>, a "
      "<ul>, a button link whose text is not its URL, a 1x1 tracking pixel, '<b>Deadline</b>: Friday' and "
      "'<strong>Room 2.14</strong>.'; List-Unsubscribe headers.",
      "Scholarships for the Grace Hopper Celebration", "Scholarships for the Grace Hopper Celebration")
def _():
    text = t("""
        SYSTERS MONTHLY - JANUARY 2027

        Scholarships for the Grace Hopper Celebration
        We have ten scholarships covering travel and registration.
        Deadline: Friday 29 January
        Apply: https://example.org/r/gh2027?c=jan

        EVENTS

        Date     Event                 Where
        11 Feb   Mentoring evening     Room 2.14
        8 Mar    Women's Day meetup    City Library
        17 Apr   Hack day              Online

        VOLUNTEERS WANTED
        * Welcome desk
        * Newsletter editing
        * Code review buddies

        Unsubscribe: https://example.org/u/8f3a2c
        """)
    rows = "".join('<tr><td style="padding:4px 8px">%s</td><td style="padding:4px 8px">%s</td>'
                   '<td style="padding:4px 8px">%s</td></tr>\n' % r for r in
                   (("11 Feb", "Mentoring evening", "<strong>Room 2.14</strong>."),
                    ("8 Mar", "Women&#8217;s Day meetup", "City Library"),
                    ("17 Apr", "Hack day", "<em>Online</em>")))
    markup = t("""
        <!doctype html>
        <html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
        <title>Systers Monthly</title>
        <style>body{margin:0;background:#f4f1f8} .btn{background:#6a1b9a;color:#fff}</style></head>
        <body>
        <table role="presentation" width="100%%" cellpadding="0" cellspacing="0" bgcolor="#f4f1f8"><tr>
        <td align="center">
        <table role="presentation" width="600" cellpadding="0" cellspacing="0" bgcolor="#ffffff"><tr>
        <td style="padding:24px;font-family:Arial,sans-serif">
        <h1 style="color:#6a1b9a">Systers Monthly &ndash; January 2027</h1>
        <h2>Scholarships for the Grace Hopper Celebration</h2>
        <p>We have ten scholarships covering travel and registration.</p>
        <p><b>Deadline</b>: Friday 29 January</p>
        <p><a class="btn" href="https://example.org/r/gh2027?c=jan&amp;u=8f3a2c" style="padding:10px 18px">\u21b5
        Apply now</a></p>
        <h2>Events</h2>
        <table border="1" cellpadding="0" cellspacing="0" style="border-collapse:collapse">
        <tr><th>Date</th><th>Event</th><th>Where</th></tr>
        %s</table>
        <h2>Volunteers wanted</h2>
        <ul><li>Welcome desk</li><li>Newsletter editing</li><li>Code review buddies</li></ul>
        <p style="font-size:11px;color:#888">You receive this because you joined Systers.
        <a href="https://example.org/u/8f3a2c">Unsubscribe</a></p>
        </td></tr></table>
        </td></tr></table>
        <img src="https://example.org/o/8f3a2c.gif" width="1" height="1" alt="">
        </body></html>
        """) % rows
    boundary = "b1_%s" % hexid("newsletter", 32)
    return head(
        "Date: " + date(25, "07:00:00", "+0000"),
        "To: " + LIST,
        "From: Systers Monthly <newsletter@example.org>",
        "Subject: " + ew("Systers Monthly – January 2027"),
        "Message-ID: <%s@newsletter.example.org>" % uuid("newsletter"),
        "List-Unsubscribe: <https://example.org/u/8f3a2c>, <mailto:unsubscribe@example.org?subject=8f3a2c>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "X-Mailer: listmonk",
        "MIME-Version: 1.0",
        "Content-Type: multipart/alternative; boundary=\"%s\"" % boundary,
    ) + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"], qp(text)),
        part(["Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"], qp(markup)),
    ])


@case("html-only-lists-blockquote-emphasis", "A web-based campaign editor (HTML only)",
      "A lone text/html part (UTF-8, quoted-printable) built from headings, an <ol> with a nested <ul>, a "
      "<blockquote> quotation, <strong>/<em> mid-sentence followed by ':' ',' and '.', and links whose text "
      "differs from the URL -- what the text rendering has to make readable.",
      "Three ways to get involved this month", "Three ways to get involved this month")
def _():
    markup = t("""
        <html><body style="font-family:Georgia,serif">
        <h2>Three ways to get involved this month</h2>
        <ol>
          <li><strong>Mentor</strong>: one hour a week with someone starting out.</li>
          <li><strong>Speak</strong>: give a <em>lightning talk</em>, five minutes on anything you like.
            <ul>
              <li>Slots on 11 February and 8 March</li>
              <li>First-timers get a rehearsal with <a href="https://example.org/people/rosa">Rosa</a>.</li>
            </ul>
          </li>
          <li><strong>Write</strong>: our blog needs <em>your</em> story, <em>however short</em>.</li>
        </ol>
        <blockquote style="border-left:3px solid #6a1b9a;padding-left:12px">
          <p>Nobody is too new to help someone newer.</p>
          <p>&mdash; Grace, at the December meetup</p>
        </blockquote>
        <p>Sign up on the <a href="https://example.org/volunteer?src=campaign-jan">volunteering page</a>
        or simply reply to this message.</p>
        </body></html>
        """)
    return head(
        "From: Systers Volunteers <volunteers@example.org>",
        "To: " + LIST,
        "Subject: Three ways to get involved this month",
        "Date: " + date(25, "12:30:00", "+0000"),
        "Message-ID: <%s@campaigns.example.org>" % hexid("campaign", 24),
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
    ) + b"\n\n" + qp(markup)


@case("alt-announcement-emphasis-punctuation", "Outlook on the web (announcement with rich formatting)",
      "An announcement full of formatting next to punctuation: '<b>Deadline</b>: Friday', '<em>not</em>,', "
      "'<strong>Room 2.14</strong>.', '(<a>form</a>)', '<i>FAQ</i>;' -- the traps where an HTML-to-text "
      "converter writes '**Deadline** :' or '_not_ ,'.  The text part has the same words without markers.",
      "Applications must be submitted online", "Applications must be submitted online")
def _():
    text = t("""
        Hello everyone,

        Applications must be submitted online this year.
        Deadline: Friday 5 February, 17:00 CET.
        Paper forms will not, even if posted before the deadline, be accepted.
        Interviews take place in Room 2.14.
        Questions? See the FAQ; or use the contact form (https://example.org/contact).

        Nadia
        """)
    p = '<div class="elementToProof" style="font-family: Aptos, Calibri, sans-serif; font-size: 12pt;">%s</div>'
    markup = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>'
              '<body dir="ltr">\n' + "\n".join(p % s for s in [
                  "Hello everyone,", "<br>",
                  "Applications must be submitted online this year.",
                  "<b>Deadline</b>: Friday 5 February, 17:00 CET.",
                  "Paper forms will <em>not</em>, even if posted before the deadline, be accepted.",
                  "Interviews take place in <strong>Room 2.14</strong>.",
                  'Questions? See the <i>FAQ</i>; or use the contact (<a href="https://example.org/contact">'
                  "form</a>).", "<br>", "Nadia"]) + "\n</body></html>\n")
    mid, lines = outlook_head("owa-announce", "Nadia Benali <nadia.benali@example.net>",
                              "Applications open: deadline Friday 5 February", date(26, "09:00:41", "+0100"))
    boundary = "_000_%sDB9PR02MB7412eurp_" % mid
    return head(*lines, "Content-Type: multipart/alternative;\n\tboundary=\"%s\"" % boundary,
                "MIME-Version: 1.0") + b"\n\n" + multipart(boundary, [
        part(["Content-Type: text/plain; charset=\"us-ascii\"", "Content-Transfer-Encoding: quoted-printable"],
             qp(text, "ascii")),
        part(["Content-Type: text/html; charset=\"utf-8\"", "Content-Transfer-Encoding: quoted-printable"],
             qp(markup)),
    ])


@case("html-only-forum-notification-entities", "A forum's reply notification (Discourse-style)",
      "A lone text/html fragment in US-ASCII where every non-ASCII letter is a named or numeric entity "
      "(&eacute;, &#8217;, &mdash;), with a blockquote and a table.  The phrase has accents that exist only as "
      "entities: a converter that maps &eacute; to a bare 'e' (html2text without unicode_snob) loses it.",
      "Renée replied to", "replied to your topic")
def _():
    markup = t("""
        <div style="font-family:sans-serif">
        <p><a href="https://forum.example.org/u/renee">Ren&eacute;e</a> replied to your topic
        <a href="https://forum.example.org/t/onboarding-checklist/412/7">Onboarding checklist</a>:</p>
        <blockquote style="border-left:4px solid #ddd;padding-left:10px">
        <p>Ren&eacute;e replied to the checklist with one addition: a &#8220;first issue&#8221; label for
        newcomers &mdash; we&#8217;ve used it at the caf&eacute; sprints and it works.</p>
        </blockquote>
        <table cellpadding="4"><tr><td>Replies</td><td>7</td></tr><tr><td>Likes</td><td>12</td></tr></table>
        <p><a href="https://forum.example.org/t/onboarding-checklist/412/7">Visit the topic</a> or reply to
        this e-mail.</p>
        </div>
        """)
    return head(
        "Date: " + date(26, "18:22:05", "+0000"),
        "From: Systers Forum <forum-notifications@example.org>",
        "To: " + LIST,
        "Subject: [Systers Forum] [Onboarding] Onboarding checklist",
        "Message-ID: <topic/412/7.%s@forum.example.org>" % hexid("forum", 12),
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=US-ASCII",
        "Content-Transfer-Encoding: 7bit",
    ) + b"\n\n" + markup.encode("ascii")


# Checks ######################################################################

ADDRESS_RE = re.compile(r"[\w.+=-]+@((?:[\w-]+\.)+[a-z]{2,})")
ALLOWED = re.compile(r"(?:^|\.)example\.(?:com|org|net)$")


def leaves(entity):
    """The parts of a message, not descending into message/rfc822."""
    if entity.is_multipart() and entity.get_content_type() != "message/rfc822":
        for sub in entity.iter_parts():
            yield from leaves(sub)
    else:
        yield entity


def shape(entity):
    ctype = entity.get_content_type()
    if entity.is_multipart() and ctype != "message/rfc822":
        return "%s[%s]" % (ctype, ", ".join(shape(sub) for sub in entity.iter_parts()))
    bits = [ctype]
    if entity.get_content_maintype() == "text":
        bits.append(entity.get_content_charset() or "us-ascii")
    cte = entity.get("content-transfer-encoding")
    if cte:
        bits.append(str(cte).strip().lower())
    return " ".join(bits)


def html_text(markup):
    """Text of HTML for the phrase check: tags out, entities decoded, spaces collapsed."""
    markup = re.sub(r"(?is)<(style|script)\b.*?</\1>|<!--.*?-->", " ", markup)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]*>", " ", markup)))


def all_defects(msg):
    found = []
    for entity in msg.walk():
        found += [type(d).__name__ for d in entity.defects]
        for _, value in entity.items():
            found += [type(d).__name__ for d in getattr(value, "defects", ())]
    return sorted(set(found))


def check(entry, raw):
    """Fail loudly when the message does not match its manifest entry."""
    name = entry["file"]
    assert b"\r" not in raw and len(raw) <= MAX_BYTES, name
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert all_defects(msg) == entry["defects"], (name, all_defects(msg))
    for field in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
        assert msg[field] is not None, (name, field)
    assert str(msg["To"]) == LIST, name
    when = email.utils.parsedate_to_datetime(str(msg["Date"]))
    assert datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc) <= when \
        <= datetime.datetime(2027, 2, 28, tzinfo=datetime.timezone.utc), name
    texts, htmls, names, seen = [], [], [], [raw.decode("latin-1")]
    for leaf in leaves(msg):
        filename = leaf.get_filename()
        if filename:
            names.append(filename)
        ctype = leaf.get_content_type()
        if ctype in ("text/plain", "text/html"):
            content = leaf.get_content()
            seen.append(content)
            if not filename and leaf.get_content_disposition() != "attachment":
                (texts if ctype == "text/plain" else htmls).append(content)
    for _, value in msg.items():
        seen.append(str(value))
    assert sorted(names) == sorted(entry["attachments"]), (name, names)
    top = msg.get_content_type()
    children = list(msg.iter_parts()) if msg.is_multipart() and top != "message/rfc822" else []
    signed = top == "multipart/signed" or any(c.get_content_type() == "multipart/signed" for c in children)
    assert signed == entry["signed"], name
    phrase = entry["text_has"]
    if phrase:
        assert texts or htmls, name
        assert not texts or phrase in texts[0], (name, phrase)
        assert not htmls or re.sub(r"\s+", " ", phrase) in html_text(htmls[0]), (name, phrase)
    if entry["html_has"] is not None:
        assert htmls and entry["html_has"] in htmls[0], (name, entry["html_has"])
    for text in seen:
        for domain in ADDRESS_RE.findall(text):
            assert ALLOWED.search(domain), (name, domain)
    return shape(msg)


def main():
    assert len(CASES) >= 44, len(CASES)
    ids = set()
    manifest = []
    for entry in CASES:
        raw = entry.pop("raw")
        entry["shape"] = check(entry, raw)
        mid = email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
        assert mid not in ids, entry["file"]
        ids.add(mid)
        with open(os.path.join(HERE, entry["file"]), "wb") as out:
            out.write(raw)
        manifest.append({key: entry[key] for key in
                         ("file", "client", "shape", "why", "attachments", "signed", "text_has", "html_has")})
    stale = {n for n in os.listdir(HERE) if n.endswith(".eml")} - {e["file"] for e in manifest}
    assert not stale, "remove the old files %s" % sorted(stale)
    with open(os.path.join(HERE, "MANIFEST.json"), "w") as out:
        json.dump(manifest, out, indent=1, ensure_ascii=True)
        out.write("\n")
    print("%d messages written and checked" % len(manifest))


if __name__ == "__main__":
    main()
