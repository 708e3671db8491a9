"""OpenAI-compatible endpoints: the one client every LLM-backed stage uses.

::

    from interleaf.llm import Client
    client = Client("http://127.0.0.1:8000/v1", "qwen2.5-vl-7b", concurrency=32, cache="llm-cache.sqlite")
    answers = client.chat(["Say hi.", [{"role": "user", "content": "Say bye."}]])
    answers[0].text, answers[0].error, client.last_stats.as_dict()

The client is the only code in interleaf that talks to a network, and only to the endpoint it is
given (arguments, a recipe's ``llm:`` section, or ``INTERLEAF_LLM_BASE_URL`` /
``INTERLEAF_LLM_MODEL``).
"""

from interleaf.llm.cache import Cache, request_key
from interleaf.llm.client import REQUEST_PARAMS, STRUCTURED_MODES, Client, ImageResponse, Response, Stats
from interleaf.llm.images import DEFAULT_MAX_EDGE, image_part, image_urls, text_part
from interleaf.llm.parse import SYNJUDGE_DIMENSIONS, parse_failure, parse_json, parse_scores, parse_synjudge

__all__ = [
    "DEFAULT_MAX_EDGE",
    "REQUEST_PARAMS",
    "STRUCTURED_MODES",
    "SYNJUDGE_DIMENSIONS",
    "Cache",
    "Client",
    "ImageResponse",
    "Response",
    "Stats",
    "image_part",
    "image_urls",
    "parse_failure",
    "parse_json",
    "parse_scores",
    "parse_synjudge",
    "request_key",
    "text_part",
]
