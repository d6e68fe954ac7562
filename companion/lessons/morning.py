"""A fresh day's turns, laid down exactly as `companion.day.DaySession` lays them: the good-morning
line, then for each exchange the owner's line, the indicator lines due by then (the day's one quarter
rule, `companion.day.quarters_begun`), and the companion's reply. Torch-free.

The night trains lessons in such mornings and asks them back in one, so that what is measured is
what the owner would see on opening a new day and asking."""

from __future__ import annotations

from collections.abc import Sequence

from companion.day import quarters_begun
from companion.settings import Settings
from companion.transcript import Turn, count_tokens, encode_turn, encode_turns, reply_prompt
from companion.model.tokenizer import Tokenizer

__all__ = ["morning", "asked_prompt", "reply_ids"]


def morning(settings: Settings, tokenizer: Tokenizer, block_size: int,
            exchanges: Sequence[tuple[str, str | None]]) -> list[Turn]:
    """The turns of a new day holding `exchanges` (owner line, companion reply); a reply of None
    leaves the companion's turn open, as when the owner has just asked."""
    budget = int(block_size * settings.day.share)
    lines = settings.indicator_lines()
    turns = [Turn("inner", settings.greeting_line())]
    used = count_tokens(tokenizer, turns[0])
    injected = 0
    for owner, reply in exchanges:
        turn = Turn("owner", owner)
        turns.append(turn)
        used += count_tokens(tokenizer, turn)
        # every line due is chosen before any is added: one line's tokens never trigger the next
        for line in lines[injected:quarters_begun(used, budget)]:
            turn = Turn("inner", line)
            turns.append(turn)
            used += count_tokens(tokenizer, turn)
            injected += 1
        if reply is not None:
            turn = Turn("companion", reply)
            turns.append(turn)
            used += count_tokens(tokenizer, turn)
    return turns


def asked_prompt(settings: Settings, tokenizer: Tokenizer, block_size: int, question: str) -> list[int]:
    """The tokens before the companion's reply when `question` is asked first thing in a fresh day."""
    return reply_prompt(tokenizer, encode_turns(tokenizer, morning(settings, tokenizer, block_size,
                                                                  [(question, None)])).ids)


def reply_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    """The tokens the companion writes to say `text` after `asked_prompt`: its words and the turn's end."""
    return encode_turn(tokenizer, Turn("companion", text))[1:]
