"""Growth of a network: wider (`widen`) and a longer context (`stretch`), each keeping what it computed.

Adding tokens lives with the tokenizer's import side (one implementation, shared with base-model import).
Nothing here knows of days or owners: each function takes a `Transformer` and returns a new one.
"""

from companion.model.growth.stretch import StretchError, stretch, stretch_config
from companion.model.growth.widen import WidenError, widen, widen_config

__all__ = ["StretchError", "WidenError", "stretch", "stretch_config", "widen", "widen_config"]
