"""`companion sleep [--day N]`: the night, headless, with a text progress bar (a scheduled run, a GPU box).

The same `run_night` as the app's trainer thread. Ctrl-C asks the night to stop at the next step
boundary (it is recorded interrupted, the weights untouched, and it resumes next time); a second
Ctrl-C stops at once, which is also safe: the weights file is only ever replaced atomically.
Exit status: 0 accepted or nothing to learn, 1 rolled back or failed, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

from companion.home import Home, resolve_root


def cmd_sleep(args) -> int:
    from companion.night.pending import night_day
    from companion.night.pipeline import run_night
    from companion.night.report import NightError, report_lines
    from companion.progress import CtrlC, ProgressBar
    from companion.settings import SettingsError
    from companion.store import Store

    home = Home.open(resolve_root(args.home), args.name)
    try:
        settings = home.load_settings()
    except SettingsError as exc:
        print(f"companion sleep: {exc}", file=sys.stderr)
        return 2
    bar = ProgressBar()
    first_step: list[float] = []  # when training began (for tokens per second)

    def on_event(event) -> None:
        if event.kind == "phase":
            if event.phase == "checking":
                bar.close()  # the training bar's line is done
            print(f"{event.phase}{': ' + event.text if event.text else ''}", file=sys.stderr)
            if event.phase == "training":
                first_step.append(time.monotonic())
        elif event.kind == "step":
            bar.update(SimpleNamespace(fraction=event.step / max(event.total, 1), step=event.step, loss=event.loss,
                                       heldout=None, lr=event.lr or 0.0, tokens=event.tokens, sample=None,
                                       elapsed=time.monotonic() - first_step[0]))
        elif event.kind == "note":
            print(f"note: {event.text}", file=sys.stderr)

    with CtrlC() as ctrl_c:  # Ctrl-C once: stop at the next step; twice: at once
        try:
            with home.lock(), Store.open(home.store_path) as store:
                from companion.safety.start import tidy_at_start

                for note in tidy_at_start(home, store):
                    print(f"note: {note}", file=sys.stderr)
                try:
                    day = night_day(store, args.day)
                except NightError as exc:
                    print(f"companion sleep: {exc}", file=sys.stderr)
                    return 2
                print(f"the night of day {day.number} begins", file=sys.stderr)
                from companion.compute.threads import training_claim

                with training_claim(settings.night.threads):  # `[night] threads`, 0 = the free cores
                    report = run_night(home, store, day.id, settings, on_event=on_event,
                                       should_stop=ctrl_c.stop.is_set)
        except KeyboardInterrupt:
            print("\nstopped: the night is recorded as interrupted only if it got that far; the weights are "
                  "untouched and the night resumes next time", file=sys.stderr)
            return 130
    print("\n".join(report_lines(report)))
    return {"accepted": 0, "nothing": 0, "interrupted": 130}.get(report.status, 1)
