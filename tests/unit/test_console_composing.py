"""The pure parts of the composer, the live message view and the charts: template errors per
field, previews, test addresses, amounts typed in major units, sent-per-second series."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surge.console import charts
from surge.console.composer import form_field, message_in
from surge.console.inputs import major_units, minor_units, utc_time
from surge.console.message_figures import BUCKET, WINDOW, rate_series, recent_rate
from surge.dispatch import proofs
from surge.errors import Invalid

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_every_field_with_a_broken_template_gets_its_own_error_with_the_line() -> None:
    shown = proofs.preview(
        "Hi {{ first_name",
        "<p>\n{{ frist_name }}</p>",
        "ok {{ email }}",
        proofs.NOBODY,
        "https://x",
    )
    assert shown.errors["subject"].startswith("line 1:")
    assert shown.errors["html"] == (
        "line 2: unknown variable 'frist_name'; use one of attributes, email, first_name,"
        " last_name, preferences_url, unsubscribe_url"
    )
    assert "text" not in shown.errors and shown.subject is None


def test_preview_renders_for_the_sample_and_its_links_lead_nowhere() -> None:
    sample = proofs.Sample("grace@example.org", "Grace", "Hopper", {"city": "York"}, 7)
    shown = proofs.preview(
        "Hello {{ first_name }}",
        '<p>{{ attributes.city }} <a href="{{ unsubscribe_url }}">stop</a></p>',
        None,
        sample,
        "https://surge.example/",
    )
    assert shown.errors == {} and shown.subject == "Hello Grace"
    assert shown.html == '<p>York <a href="https://surge.example/u/test-email">stop</a></p>'
    assert shown.text is not None and "York" in shown.text


def test_a_template_failing_for_this_contact_names_its_field() -> None:
    sample = proofs.Sample("a@example.org", attributes={"n": "text"})
    shown = proofs.preview("S", None, "{{ attributes.n | default(0) + 1 }}", sample, "https://x")
    assert list(shown.errors) == ["text"] and "fails for a@example.org" in shown.errors["text"]


def test_test_addresses_are_split_deduplicated_and_bounded() -> None:
    assert proofs.check_addresses("a@x.org; b@x.org,\nA@x.org") == ["a@x.org", "b@x.org"]
    with pytest.raises(Invalid, match="1 to 5"):
        proofs.check_addresses(", ".join(f"p{i}@x.org" for i in range(6)))
    with pytest.raises(Invalid, match="not an email address"):
        proofs.check_addresses("a@x.org, nope")


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [("25", "USD", 2500), ("1,250.50", "USD", 125050), ("1250", "JPY", 1250), (" ", "USD", None)],
)
def test_amounts_are_typed_in_major_units(text: str, currency: str, minor: int | None) -> None:
    assert minor_units("goal", text, currency) == minor


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("12.345", "2 decimal places"),
        ("1.5", "no decimals"),
        ("-3", "positive"),
        ("lots", "not an amount"),
    ],
)
def test_a_bad_amount_is_refused_by_its_field(text: str, reason: str) -> None:
    currency = "JPY" if reason == "no decimals" else "USD"
    with pytest.raises(Invalid, match=reason) as refused:
        minor_units("goal", text, currency)
    assert refused.value.field == "goal"


@given(st.integers(min_value=0, max_value=10**15), st.sampled_from(["USD", "JPY", "KWD"]))
def test_an_amount_shown_in_a_form_reads_back_the_same(amount: int, currency: str) -> None:
    assert minor_units("amount", major_units(amount, currency), currency) == amount


def test_times_are_read_as_utc() -> None:
    assert utc_time("send_at", "2026-12-02T09:30") == datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    with pytest.raises(Invalid, match="YYYY-MM-DD"):
        utc_time("send_at", "tomorrow")


def _form(**extra: str) -> dict[str, str]:
    return {"subject": "Hi", "html": "<p>x</p>", "from_email": "a@x.org", "when": "now", **extra}


def test_the_composer_form_becomes_the_message_the_api_takes() -> None:
    body = message_in(_form(track_opens="1", segment_id="4"), [3, 9], NOW)
    assert (body.subject, body.list_ids, body.segment_id, body.send_at) == ("Hi", [3, 9], 4, None)
    assert body.track_opens and not body.track_clicks
    later = message_in(_form(when="later", send_at="2026-12-01T10:00"), [3], NOW)
    assert later.send_at == NOW + timedelta(hours=1)
    ab = message_in(_form(ab_test="1", subject_b="Hey", ab_percent="10", ab_wait="30"), [3], NOW)
    assert ab.subject is None and ab.ab_test is not None
    assert ab.ab_test.subjects == ["Hi", "Hey"] and ab.ab_test.test_percent == 10


def test_composer_errors_land_on_the_composer_fields() -> None:
    with pytest.raises(Invalid) as no_lists:
        message_in(_form(), [], NOW)
    assert form_field(no_lists.value.field) == "list_ids"
    with pytest.raises(Invalid, match="has passed") as past:
        message_in(_form(when="later", send_at="2026-11-30T10:00"), [1], NOW)
    assert past.value.field == "send_at"
    with pytest.raises(Invalid) as share:
        message_in(_form(ab_test="1", subject_b="Hey", ab_percent="90"), [1], NOW)
    assert form_field(share.value.field) == "ab_percent"
    assert form_field("ab_test.subjects[1]") == "subject_b"


def test_sent_per_second_comes_from_the_pollers_samples() -> None:
    samples: deque[tuple[float, int]] = deque((1000.0 + t, 50 * t) for t in range(0, 61))
    series = rate_series(samples, 1060.0)
    assert len(series) == WINDOW // BUCKET
    assert series[: (WINDOW - 60) // BUCKET] == [None] * ((WINDOW - 60) // BUCKET)
    assert series[-1] == pytest.approx(50.0)
    assert recent_rate(samples) == pytest.approx(50.0)
    assert recent_rate(deque([(1.0, 0)])) is None


def test_charts_are_named_described_and_scaled_to_a_round_top() -> None:
    assert [charts.nice_top(v) for v in (0, 7, 10, 11, 230, 2400)] == [1, 10, 10, 20, 250, 2500]
    drawn = charts.bars(
        "c", "Sent <per> second", "Peak 9.", [None, 3.0, 9.0], charts.Axis("a", "b")
    )
    assert 'role="img" aria-labelledby="c-title c-desc"' in drawn
    assert '<title id="c-title">Sent &lt;per&gt; second</title>' in drawn
    assert drawn.count("<rect") == 2 and ">10<" in drawn
    line = charts.line("d", "Raised", "desc", [(0.0, 0.0), (1.0, 5.0)], charts.Axis("0", "1"))
    assert "<polyline" in line and "<polygon" in line
