#!/usr/bin/env bash
# Launch the real app in tmux on a tiny companion, type a message; once the candidates are done, type
# the next message beginning with w, r, l and a digit (keys that are commands on the cards) and send it:
# it must arrive whole, on the screen and in the store, and the highlighted card must be taken as the
# reply (an implicit pick). Then Esc to the cards and pick one explicitly, and check the reply is on the
# screen (capture-pane) and in the store. Exits non-zero on failure. No network.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
# COMPANION_BIN: the installed console script, run outside the checkout (what CI launches); without it,
# the checkout's own `python -m companion`.
if [ -n "${COMPANION_BIN:-}" ]; then APP=$COMPANION_BIN; else APP="$PY -m companion"; fi
WORK=$(mktemp -d)
SESSION="companion-smoke-$$"
trap 'tmux kill-session -t "$SESSION" 2>/dev/null || true; rm -rf "$WORK"' EXIT
command -v tmux >/dev/null || { echo "tmux is not installed"; exit 2; }

"$PY" scripts/smoke_home.py make "$WORK/companions" >/dev/null
export COMPANION_CONFIG="$WORK/config"

tmux new-session -d -s "$SESSION" -x 120 -y 40 \
  "cd '$( [ -n "${COMPANION_BIN:-}" ] && echo "$WORK" || echo "$PWD")' && $APP --home '$WORK/companions'; echo EXITED \$? > '$WORK/exit'; sleep 30"

pane() { tmux capture-pane -p -t "$SESSION" -J; }
wait_for() {  # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  for _ in $(seq 1 150); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  echo "FAIL: timed out waiting for $what"; pane | tail -40; exit 1
}
greeted() { pane | grep -q "Good morning, Scout"; }
state_has() { "$PY" scripts/smoke_home.py state "$WORK/companions" | grep -q "$1"; }

wait_for "the greeting" greeted
wait_for "the model" bash -c "tmux capture-pane -p -t '$SESSION' | grep -q 'Write a message'"
tmux send-keys -t "$SESSION" -l "Hello Scout, how are you?"
tmux send-keys -t "$SESSION" Enter
wait_for "the candidates" state_has "candidates=3"
wait_for "the candidates to finish" bash -c "tmux capture-pane -p -t '$SESSION' | grep -q 'Enter replies and takes card'"
# Typing is safe: these keys are commands only on the cards, and the focus stays in the message.
SECOND="wrl7 well, really: lol 7 ok?"
tmux send-keys -t "$SESSION" -l "$SECOND"
tmux send-keys -t "$SESSION" Enter
wait_for "the second message" state_has "typed=2"
wait_for "the implicit pick" state_has "chosen=1"
wait_for "the second candidates" state_has "candidates=6"
wait_for "the candidates to finish" bash -c "tmux capture-pane -p -t '$SESSION' | grep -q 'Enter replies and takes card'"
tmux send-keys -t "$SESSION" Escape
wait_for "the cards" bash -c "tmux capture-pane -p -t '$SESSION' | grep -q 'Cards: 1-K pick'"
tmux send-keys -t "$SESSION" 1
wait_for "the pick" state_has "chosen=2"
sleep 0.5
pane > "$WORK/pane.txt"
"$PY" scripts/smoke_home.py check "$WORK/companions" "$WORK/pane.txt" "$SECOND"
tmux send-keys -t "$SESSION" C-q
wait_for "the app to quit" test -f "$WORK/exit"
grep -q "EXITED 0" "$WORK/exit" || { echo "FAIL: the app exited with $(cat "$WORK/exit")"; exit 1; }
echo "tmux smoke: OK"
