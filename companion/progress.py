"""Text progress for the headless commands (`companion birth`, `nursery`, `sleep`) and the night's
report: a one-line bar redrawn in place on a terminal, durations as h:mm:ss, and counts with their
nouns in the right number. No torch here."""

from __future__ import annotations

import signal
import sys
import threading
import time


def format_duration(seconds: float) -> str:
    """`h:mm:ss`, for progress lines and reports."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 reply`, `2 replies`, `0 steps`: a count with its noun in the right number."""
    if n == 1:
        return f"{n:,} {word}"
    if many is None:
        many = word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"
    return f"{n:,} {many}"


class ProgressBar:
    """A one-line text progress bar for the nursery (and the night), redrawn in place on a terminal."""

    def __init__(self, stream=sys.stderr, width: int = 24) -> None:
        self.stream, self.width = stream, width
        self.tty = stream.isatty()
        self.last_line = 0.0
        self.heldout: float | None = None

    def update(self, p) -> None:
        if p.heldout is not None:
            self.heldout = p.heldout
        filled = int(p.fraction * self.width)
        eta = p.elapsed / p.fraction - p.elapsed if p.fraction > 0 else 0
        held = f"{self.heldout:.3f}" if self.heldout is not None else "-"
        line = (f"[{'#' * filled}{'.' * (self.width - filled)}] {p.fraction:4.0%} step {p.step}"
                f" loss {p.loss:.3f} held-out {held} lr {p.lr:.1e} {p.tokens / max(p.elapsed, 1e-9):,.0f} tok/s"
                f" eta {format_duration(eta)}")
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        elif p.heldout is not None or time.monotonic() - self.last_line > 30:
            self.stream.write(line + "\n")
            self.last_line = time.monotonic()
        if p.sample is not None:
            self.stream.write(("\n" if self.tty else "") + f"  sample: {p.sample!r}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


class CtrlC:
    """Ctrl-C during a long headless run (a night, a growth): the first asks it to stop at its next step
    (`stop.is_set` is its `should_stop`), the second stops at once (KeyboardInterrupt). A context
    manager: the previous handler comes back on exit."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stop, self.stream, self._previous = threading.Event(), stream, None

    def _ask(self, signum, frame) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        print("\nstopping at the next step (Ctrl-C again to stop at once)", file=self.stream)

    def __enter__(self) -> "CtrlC":
        self._previous = signal.signal(signal.SIGINT, self._ask)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)


NOT_CONFIRMED = "not confirmed; run it in a terminal, or add --yes"


def ask_yes(question: str, assume_yes: bool = False) -> bool | None:
    """The owner's answer to a "[y/N]" question at the terminal: True for yes, False for anything else
    (end of input included). None when there is no terminal to ask: a command that changes things then
    refuses with `NOT_CONFIRMED`. `assume_yes` (the commands' --yes) answers for the owner."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        return None
    try:
        answer = input(f"{question} [y/N] ").strip().lower()
    except EOFError:
        answer = ""
    return answer in ("y", "yes")
