"""A refused credential stops a source with a message that says what to check. Was:
Reddit's token request refused said "reddit token: HTTP 401 (credentials refused)" or
"HTTP 403 (access forbidden)", not which setting to look at (Reddit refuses a generic
user_agent with a 403 as well)."""

from __future__ import annotations

from unittest.mock import patch

import httpx
import pytest

from listener import backoff
from listener.backoff import TransientError
from listener.sources.base import SourceFatalError
from listener.sources.reddit import RedditClient, RedditConfig
from tests.unit.test_source_live import T0, RecordingClock

REDDIT = {"client_id": "id", "client_secret": "s", "user_agent": "ua", "searches": ["x"]}


@pytest.mark.parametrize(
    ("status", "words"),
    [(401, "check client_id and client_secret"), (403, "describe it in user_agent")],
)
async def test_a_refused_reddit_token_says_which_settings_to_check(status: int, words: str) -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"message": "Unauthorized", "error": status})

    config = RedditConfig.model_validate(REDDIT)
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        client = RedditClient(config, http, RecordingClock(T0))
        with pytest.raises(SourceFatalError) as caught:
            await client.since("/search", {"q": "x"}, 0)
    assert str(caught.value).startswith(f"reddit token: HTTP {status}")
    assert words in str(caught.value)


async def test_the_reddit_token_answer_is_read_bounded_like_every_api_answer() -> None:
    """The README: "an API answer up to 20 MB: a larger one is an error ..., never held in
    memory". Was: the token request was read whole, whatever its size."""

    def serve(request: httpx.Request) -> httpx.Response:
        body = b'{"access_token": "t", "expires_in": 3600, "pad": "' + b"x" * 1_000 + b'"}'
        return httpx.Response(200, content=body)

    config = RedditConfig.model_validate(REDDIT)
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        client = RedditClient(config, http, RecordingClock(T0))
        with (
            patch.object(backoff, "MAX_API_BYTES", 500),
            pytest.raises(TransientError, match="reddit token: an answer larger than"),
        ):
            await client.since("/search", {"q": "x"}, 0)
