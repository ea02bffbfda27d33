"""PII masking and language ID on literal texts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from conftest import LID_MODEL, requires_lid
from lmbuild.filter import langid, pii

ALL = {"emails": True, "ip_addresses": True, "phone_numbers": True}


@pytest.mark.parametrize("text,expected,kind", [
    ("write to jane.doe+news@mail.example.co.uk today", "write to |||EMAIL_ADDRESS||| today", "emails"),
    ("server at 10.0.0.254 is down", "server at |||IP_ADDRESS||| is down", "ip_addresses"),
    ("ping 2001:0db8:85a3:0000:0000:8a2e:0370:7334 now", "ping |||IP_ADDRESS||| now", "ip_addresses"),
    ("ping 2001:db8::8a2e:370:7334 now", "ping |||IP_ADDRESS||| now", "ip_addresses"),
    ("call (555) 123-4567", "call |||PHONE_NUMBER|||", "phone_numbers"),
    ("call +44 555.123.4567!", "call |||PHONE_NUMBER|||!", "phone_numbers"),
])
def test_pii_is_masked_with_typed_placeholders(text, expected, kind):
    masked, counts = pii.mask(pa.array([text]), ALL)
    assert masked.to_pylist() == [expected]
    assert counts[kind].tolist() == [1]


@pytest.mark.parametrize("text", [
    "", "version 3.11.7 released", "999.1.1.1 is not an address", "slice a[1::2] and a[::3]",
    "meeting at 12:30:45", "Привет, мир", "user@localhost has no domain", "isbn 978-3-16-148410-0",
])
def test_pii_leaves_lookalikes_alone(text):
    masked, counts = pii.mask(pa.array([text]), ALL)
    assert masked.to_pylist() == [text]
    assert sum(int(c.sum()) for c in counts.values()) == 0


def test_pii_kinds_can_be_switched_off():
    text = "mail a@b.org or call (555) 123-4567"
    masked, counts = pii.mask(pa.array([text]), {"emails": True, "ip_addresses": True, "phone_numbers": False})
    assert masked.to_pylist() == ["mail |||EMAIL_ADDRESS||| or call (555) 123-4567"]
    assert counts["phone_numbers"].tolist() == [0]


@requires_lid
def test_langid_on_several_scripts():
    texts = pa.array(["The committee published its annual report on the state of the river.",
                      "Le comité a publié son rapport annuel sur l'état de la rivière.",
                      "Комитетът публикува годишния си доклад за състоянието на реката.",
                      "委员会发布了关于河流状况的年度报告。",
                      "",
                      "line one\nline two of the English text\nthree"])
    langs, scores = langid.predict(texts, str(LID_MODEL), 1000)
    assert langs.to_pylist()[:4] == ["en", "fr", "bg", "zh"]
    assert langs[5].as_py() == "en"
    keep = langid.keep_mask(langs, scores, ["en"], 0.65)
    assert keep.tolist() == [True, False, False, False, False, keep[5]]
    assert np.all((scores >= 0) & (scores <= 1.0001))


@requires_lid
def test_langid_truncates_to_max_chars():
    text = "This sentence is plainly written in English. " * 2 + "Dies ist ein deutscher Satz ohne Zweifel. " * 200
    short, _ = langid.predict(pa.array([text]), str(LID_MODEL), 80)
    full, _ = langid.predict(pa.array([text]), str(LID_MODEL), 100000)
    assert short.to_pylist() == ["en"] and full.to_pylist() == ["de"]


def test_missing_model_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make setup"):
        langid.load_model(str(tmp_path / "nope.ftz"))
