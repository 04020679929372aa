import pytest

from surge.api.admission import Admission, Overloaded


async def test_requests_past_the_limit_are_refused_and_slots_come_back() -> None:
    admission = Admission(2)
    async with admission, admission:
        with pytest.raises(Overloaded):
            async with admission:
                pass
        assert admission.in_flight == 2
    assert admission.in_flight == 0
    async with admission:
        assert admission.in_flight == 1


async def test_a_failing_request_gives_its_slot_back() -> None:
    admission = Admission(1)
    with pytest.raises(ValueError):
        async with admission:
            raise ValueError("boom")
    assert admission.in_flight == 0
