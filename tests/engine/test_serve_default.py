"""``omnivox serve`` with no engine flags: the embedded cascade, driven by the official SDK."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from tests.conftest import sdk_client
from tests.support.media import ffmpeg_decode
from tests.support.subprocess_server import omnivox_serve

pytestmark = pytest.mark.engine


def test_default_server_hears_a_question_and_speaks_the_answer(tmp_path, ffmpeg: str) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    question = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "140", "--stdout", "What is the capital of France?"],
        capture_output=True,
        check=True,
    ).stdout
    with omnivox_serve([], tmp_path) as base_url:
        client = sdk_client(base_url)
        completion = client.chat.completions.create(
            model="gpt-4o-audio-preview",
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "mp3"},
            temperature=0,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "input_audio",
                            "input_audio": {
                                "data": base64.b64encode(question).decode(),
                                "format": "wav",
                            },
                        }
                    ],
                }
            ],
        )
        audio = completion.choices[0].message.audio
        assert audio is not None
        assert "paris" in audio.transcript.lower()
        spoken_s = len(ffmpeg_decode(base64.b64decode(audio.data))) / 48_000
        assert spoken_s > 0.5
        usage = completion.usage
        assert usage is not None and usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.audio_tokens > 10  # about 2 s of question at 10/s
        assert usage.completion_tokens_details is not None
        assert usage.completion_tokens_details.audio_tokens >= int(spoken_s * 20) - 2
