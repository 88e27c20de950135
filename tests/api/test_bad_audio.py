"""Damaged, lying and hostile input audio through POST /v1/chat/completions.

Each case of ``tests/support/bad_audio.py`` gets either a 400 in OpenAI's error shape
with the case's code, or an answer from an engine that heard as many seconds as the
file holds; and the server answers the next request as if nothing had happened.
"""

from __future__ import annotations

import json
import os
import re
import time

import openai
import pytest
from openai.types.chat import ChatCompletion

from tests.support.bad_audio import CASES, TOO_LONG, BadAudio
from tests.support.live_server import LiveServer
from tests.support.media import b64

MODEL = "gpt-4o-audio-preview"
HI = [{"role": "user", "content": "hi"}]
DATA_PARAM = "messages[0].content[0].input_audio.data"
# The fake engine answers "You said: 1.2 seconds of audio"; one decimal is shown.
HEARD = re.compile(r"You said: (\d+\.\d) seconds of audio")
HEARD_TOLERANCE_S = 0.051
# Only for the ten hours of silence, whose decoding stops at the limit by construction
# (a unit test counts the decoded seconds): a loose bound that decoding it all breaks.
TEN_HOURS_REFUSED_WITHIN_S = 30.0
REPORT = os.environ.get("OMNIVOX_BAD_AUDIO_REPORT")  # JSON lines: each case, its outcome, time


def ask(client: openai.OpenAI, case: BadAudio) -> ChatCompletion:
    part = {
        "type": "input_audio",
        "input_audio": {"data": b64(case.data), "format": case.declared_format},
    }
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": [part]}],
        timeout=120,
    )


@pytest.mark.parametrize("name", CASES)
def test_bad_audio_is_refused_clearly_or_answered_and_the_server_goes_on(
    fake_server: LiveServer, client: openai.OpenAI, ffmpeg: str, name: str
) -> None:
    case = CASES[name]()
    started = time.perf_counter()
    if case.refusal is None:
        answer = ask(client, case).choices[0].message.content or ""
        heard = HEARD.fullmatch(answer)
        assert heard is not None, answer
        assert float(heard.group(1)) == pytest.approx(case.heard_s, abs=HEARD_TOLERANCE_S)
    else:
        with pytest.raises(openai.BadRequestError) as caught:
            ask(client, case)
        error = caught.value.body
        assert isinstance(error, dict)
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"
        assert error["code"] == case.refusal
        if case.refusal == TOO_LONG:
            assert error["param"] == DATA_PARAM
            assert "more than 600 s" in error["message"]
        else:
            assert error["param"] == "messages"
            assert error["message"] == "This model does not support the format you provided."
    elapsed_s = time.perf_counter() - started
    if REPORT:
        outcome = f"answered, heard {case.heard_s:g} s" if case.refusal is None else case.refusal
        line = {"case": name, "outcome": outcome, "ms": round(1000 * elapsed_s)}
        with open(REPORT, "a") as report:
            report.write(json.dumps(line) + "\n")
    if name == "ogg-opus-ten-hours-of-silence":
        assert elapsed_s < TEN_HOURS_REFUSED_WITHIN_S
    after = client.chat.completions.create(model=MODEL, messages=HI)
    assert after.choices[0].message.content == "You said: hi"
