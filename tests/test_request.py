"""L-request (README: Commands by mail): the commands of the addresses,
written in the subject or the first lines of the body; signatures and quoted
text ignored; an HTML-only body read as text; one answer listing what each
command did."""
from conftest import ALL_TEXT, FIRST_TEXT, make_msg, once_each, replies


def html_msg(author, to, subject, html):
    from email.message import EmailMessage
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = author, to, subject
    msg["Message-ID"] = "<html-request@example.org>"
    msg.set_content(html, subtype="html")
    return msg.as_bytes()


def request(ml, author, subject, body, html=False):
    raw = (html_msg if html else make_msg)(author, ml.addr("request"), subject, body)
    proc = ml.deliver(raw, to=ml.addr("request"))
    assert proc.returncode == 0, ml.explain(proc)
    calls = replies(ml.take())
    assert [c.recipients for c in calls] == [[author]], calls        # one answer
    return calls[0]


def test_commands_in_the_body_with_a_signature_and_quoted_text(mixed):
    body = ("set first\n"
            "watch visa deadline\n"
            "\n"
            "On Mon, 1 Mar 2027, Ann wrote:\n"
            "> unsubscribe\n"
            "> set nomail\n"
            "threads\n"
            "-- \n"
            "Ann Example\n"
            "unsubscribe\n")
    answer = request(mixed, ALL_TEXT, "Re: my settings", body)
    text = answer.msg.get_content()
    assert "asked for 3 commands" in text, text
    assert "> set first" in text and "> watch visa deadline" in text and "> threads" in text
    assert "> unsubscribe" not in text and "nomail" not in text.split("Open threads")[0]
    member = mixed.members()[ALL_TEXT]
    assert (member["preference"], member["status"]) == ("first", "active")
    listed = once_each(replies(mixed.command(ALL_TEXT, "watch")))[ALL_TEXT].msg.get_content()
    assert "  deadline visa  " in listed


def test_a_command_in_the_subject_and_an_html_only_body(mixed):
    html = ("<html><body><div dir=\"ltr\"><p>set text</p><p><b>unwatch</b> visa</p>"
            "<div class=\"gmail_quote\"><blockquote>&gt; help</blockquote></div></div></body></html>")
    mixed.command(FIRST_TEXT, "watch-visa")
    answer = request(mixed, FIRST_TEXT, "set both", html, html=True)
    text = answer.msg.get_content()
    assert "asked for 3 commands" in text, text
    assert mixed.members()[FIRST_TEXT]["format"] == "text"       # the body's "set text" came after the subject's
    assert "no longer watch: visa" in text


def test_subscribe_by_request_sends_one_answer_that_is_the_confirmation(mixed):
    answer = request(mixed, "newcomer@example.org", "subscribe", "")
    text = answer.msg.get_content()
    assert answer.msg["Reply-To"].startswith(mixed.name + "-confirm-") and "To confirm" in text
    assert "newcomer@example.org" not in mixed.members()


def test_nothing_understood_brings_the_help(mixed):
    answer = request(mixed, ALL_TEXT, "Question", "Please take me off this list, thanks!\nBest\nAnn\n")
    text = answer.msg.get_content()
    assert "asked for 0 commands" in text and "Not understood" in text and mixed.addr("unsubscribe") in text
    assert mixed.members()[ALL_TEXT]["status"] == "active"


def test_automated_mail_to_request_is_never_answered(mixed):
    raw = make_msg(ALL_TEXT, mixed.addr("request"), "set nomail", headers={"Auto-Submitted": "auto-replied"})
    proc = mixed.deliver(raw, to=mixed.addr("request"))
    assert proc.returncode == 0 and mixed.take() == []
    assert mixed.members()[ALL_TEXT]["status"] == "active"
