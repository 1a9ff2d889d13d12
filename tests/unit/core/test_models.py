"""Phone models: families, part numbers, default firmware, and --models mixes."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fleetkey.core.device.models import (
    check_model,
    deal_models,
    default_firmware,
    family,
    parse_model_mix,
    part_number,
    wire_model,
)
from fleetkey.errors import InputError


@pytest.mark.parametrize(
    ("model", "family_", "part", "firmware"),
    [
        ("VVX_500", "VVX", "3111-44500-001", "5.9.7.4477"),
        ("SPIP_670", "SoundPointIP", "2345-12670-001", "4.0.15.1047"),
        ("SSIP_7000", "SoundStationIP", "3111-40000-001", "4.0.15.1047"),
        ("VVX_9999", "VVX", "", "5.9.7.4477"),
    ],
)
def test_each_model_has_its_family_part_number_and_firmware(
    model: str, family_: str, part: str, firmware: str
) -> None:
    assert (family(model), part_number(model), default_firmware(model)) == (family_, part, firmware)


class TestMix:
    def test_a_mix_is_models_and_shares(self) -> None:
        assert parse_model_mix("VVX_500:60%, SPIP_670:40%") == (
            ("VVX_500", 60.0),
            ("SPIP_670", 40.0),
        )

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("", "'' is not a model name"),
            ("VVX_500", "'VVX_500' is not MODEL:PERCENT%"),
            ("VVX_500:60", "'VVX_500:60' is not MODEL:PERCENT%"),
            ("VVX_500:x%", "'VVX_500:x%' is not MODEL:PERCENT%"),
            ("VVX_500:60%,SPIP_670:30%", "the shares add up to 90 %, expected 100 %"),
            ("VVX_500:60%,SPIP_670:60%", "the shares add up to 120 %, expected 100 %"),
            ("VVX_500:0%,SPIP_670:100%", "VVX_500 has a share of 0 %"),
            ("VVX_500:50%,VVX500:50%", "VVX_500 is named twice"),
            ("VVX_500:100%,", "'' is not a model name"),
            ("--:50%,VVX_500:50%", "'--' is not a model name"),
            ("VVX_\u00e9:100%", "'VVX_\u00e9' is not a model name"),
            ("V" * 65 + ":100%", "is not a model name: 1-64 printable ASCII characters"),
        ],
    )
    def test_a_malformed_mix_is_refused_saying_what_is_wrong(self, text: str, message: str) -> None:
        with pytest.raises(InputError, match="--models") as caught:
            parse_model_mix(text)
        assert message in caught.value.message
        assert caught.value.field == "models"

    def test_a_model_is_named_as_phones_write_it_however_it_was_given(self) -> None:
        assert parse_model_mix("vvx500:50%,SPIP-670:50%") == (
            ("VVX_500", 50.0),
            ("SPIP_670", 50.0),
        )

    def test_a_model_the_inventory_takes_but_the_catalogue_lacks_is_taken_too(self) -> None:
        """VVX_410 is no model of PART_NUMBERS: ``phones import`` took it and ``--models``
        refused it. It has no part number (no part-number-specific image) and its family's
        firmware."""
        assert parse_model_mix("VVX_410:50%,VVX 500:50%") == (
            ("VVX_410", 50.0),
            ("VVX_500", 50.0),
        )
        assert (part_number("VVX_410"), default_firmware("VVX_410")) == ("", "5.9.7.4477")

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=64))
    @example(" ")  # refused with the stripped name's words, by the inventory and by a mix
    def test_a_mix_takes_exactly_the_models_the_inventory_takes(self, text: str) -> None:
        """One rule (``check_model``) for both: a name the inventory's import takes is taken
        by a mix (the mix's own separators, ``,`` and ``:``, aside) as ``wire_model`` writes
        it, and a name it refuses is refused by both with the same words."""
        if "," in text or ":" in text:
            return
        text = text.strip()  # a mix strips around its separators (``VVX_500 : 60%``)
        try:
            accepted = check_model(text)
        except InputError as exc:
            refused = exc.message
        else:
            refused = None
        if refused is not None:
            with pytest.raises(InputError) as caught:
                parse_model_mix(f"{text}:100%")
            assert refused in caught.value.message
            return
        assert parse_model_mix(f"{text}:100%") == ((wire_model(accepted), 100.0),)
        assert wire_model(wire_model(accepted)) == wire_model(accepted)  # already as phones say

    def test_phones_are_dealt_by_share_and_interleaved(self) -> None:
        mix = parse_model_mix("VVX_500:60%,SPIP_670:40%")
        dealt = deal_models(mix, 10)
        assert Counter(dealt) == {"VVX_500": 6, "SPIP_670": 4}
        assert Counter(dealt[:5]) == {"VVX_500": 3, "SPIP_670": 2}

    @pytest.mark.parametrize("phones", [1, 2, 3, 7, 100, 10_001])
    def test_every_phone_gets_a_model_and_counts_follow_the_largest_remainder(
        self, phones: int
    ) -> None:
        mix = parse_model_mix("VVX_500:33.3%,SPIP_670:33.3%,VVX_1500:33.4%")
        dealt = Counter(deal_models(mix, phones))
        assert sum(dealt.values()) == phones
        for model, share in mix:
            assert abs(dealt[model] - share / 100 * phones) < 1
