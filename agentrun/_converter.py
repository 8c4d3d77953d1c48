"""pydantic's payload converter, every instance on one JSON converter.

The SDK builds a new payload converter for each task it serializes when external
storage is on (``DataConverter`` rebuilds it from ``payload_converter_class`` to bind
the task's storage context): every activity start and completion, every heartbeat and
every workflow activation. pydantic's converter keeps its type adapters per instance,
so each of those built its own again (a type adapter per type it decoded), and a
pydantic schema serializer: a tenth of the main thread of a worker whose turns only
sleep (BENCHMARKS.md, #17). This class is what ``DataConverter`` instantiates instead;
its instances differ only in what the SDK sets on them.
"""

from __future__ import annotations

from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DefaultPayloadConverter,
    EncodingPayloadConverter,
    JSONPlainPayloadConverter,
)

__all__ = ["SharedPydanticPayloadConverter"]

# One JSON converter (and its cache of type adapters) for the process: its cache is a
# ``functools.lru_cache``, safe across the worker's threads. The other encodings are
# the SDK's, shared already.
_JSON = PydanticJSONPlainPayloadConverter()
_ENCODINGS: tuple[EncodingPayloadConverter, ...] = tuple(
    _JSON if isinstance(converter, JSONPlainPayloadConverter) else converter
    for converter in DefaultPayloadConverter.default_encoding_payload_converters
)


class SharedPydanticPayloadConverter(CompositePayloadConverter):
    """``temporalio.contrib.pydantic.PydanticPayloadConverter``'s encodings, in its order,
    on the process's one pydantic JSON converter."""

    def __init__(self) -> None:
        """The SDK's default encodings with pydantic's JSON in place of its plain JSON."""
        super().__init__(*_ENCODINGS)
