"""Sender URLs from SURGE_SMTP_SENDERS."""

from __future__ import annotations

import pytest

from surge.config import Settings
from surge.delivery.senders import SenderConfig, load_senders, parse_sender
from surge.errors import Invalid


def test_full_url_sets_every_option() -> None:
    sender = parse_sender(
        "smtp://api%40user:p%40ss%3Aword@smtp.example.org:2587?tls=starttls&max_connections=4"
        "&rate=250.5&burst=500&name=primary&from_domain=mail.example.org&timeout=12"
        "&ca_file=/etc/ca.pem&verify=false"
    )
    assert sender == SenderConfig(
        name="primary",
        host="smtp.example.org",
        port=2587,
        tls="starttls",
        username="api@user",
        password="p@ss:word",
        max_connections=4,
        rate=250.5,
        burst=500,
        from_domain="mail.example.org",
        timeout=12.0,
        ca_file="/etc/ca.pem",
        verify=False,
    )


def test_defaults_are_starttls_on_587_named_after_the_host() -> None:
    sender = parse_sender("smtp://relay.example.org")
    assert (sender.name, sender.port, sender.tls) == ("relay.example.org", 587, "starttls")
    assert (sender.max_connections, sender.rate, sender.burst) == (10, 100.0, 100)
    assert sender.username is None and sender.password is None


def test_smtps_is_implicit_tls_on_465_and_plain_is_port_25() -> None:
    assert parse_sender("smtps://relay.example.org").tls == "implicit"
    assert parse_sender("smtps://relay.example.org").port == 465
    assert parse_sender("smtp://relay.example.org?tls=none").port == 25


def test_burst_defaults_to_one_second_of_rate() -> None:
    assert parse_sender("smtp://h?rate=20").burst == 20
    assert parse_sender("smtp://h?rate=0.5").burst == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://relay.example.org",
        "smtp://",
        "smtp://relay.example.org:notaport",
        "smtp://relay.example.org:99999",
        "smtp://relay.example.org/path",
        "smtp://relay.example.org?tls=maybe",
        "smtps://relay.example.org?tls=starttls",
        "smtp://relay.example.org?rate=fast",
        "smtp://relay.example.org?rate=0",
        "smtp://relay.example.org?rate=-5",
        "smtp://relay.example.org?rate=inf",
        "smtp://relay.example.org?max_connections=2.5",
        "smtp://relay.example.org?verify=perhaps",
        "smtp://relay.example.org?ratee=5",
    ],
)
def test_bad_urls_are_invalid_smtp_senders(url: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_sender(url)
    assert caught.value.field == "smtp_senders"


def test_errors_and_repr_never_show_the_password() -> None:
    with pytest.raises(Invalid) as caught:
        parse_sender("smtp://user:hunter2@relay.example.org?tls=maybe")
    assert "hunter2" not in caught.value.message
    assert "hunter2" not in repr(parse_sender("smtp://user:hunter2@relay.example.org"))


def test_several_senders_are_separated_by_spaces() -> None:
    settings = Settings(smtp_senders=" smtp://a.example?name=a \n smtps://b.example?name=b ")
    assert [s.name for s in load_senders(settings)] == ["a", "b"]


def test_duplicate_names_are_invalid() -> None:
    with pytest.raises(Invalid, match="share a name"):
        load_senders(Settings(smtp_senders="smtp://a.example?name=x smtp://b.example?name=x"))


def test_no_senders_means_the_development_sink() -> None:
    [sink] = load_senders(Settings(smtp_sink_host="127.0.0.1", smtp_sink_port=2626))
    assert (sink.name, sink.host, sink.port, sink.tls) == ("sink", "127.0.0.1", 2626, "none")
