#!/usr/bin/env bash
# The README's first command on a fresh home: launch the installed `companion` in tmux with no
# companion yet, type a name and an owner (Enter walks the fields, then adopts the bundled seedling),
# and find the day's greeting on the screen and a whole companion on disk. Exits non-zero on failure.
set -euo pipefail
APP=${COMPANION_BIN:-companion}
WORK=$(mktemp -d)
SESSION="companion-first-$$"
trap 'tmux kill-session -t "$SESSION" 2>/dev/null || true; rm -rf "$WORK"' EXIT
command -v tmux >/dev/null || { echo "tmux is not installed"; exit 2; }
export COMPANION_HOME="$WORK/companions" COMPANION_CONFIG="$WORK/config"

tmux new-session -d -s "$SESSION" -x 120 -y 40 \
  "cd '$WORK' && $APP; echo EXITED \$? > '$WORK/exit'; sleep 30"
pane() { tmux capture-pane -p -t "$SESSION" -J; }
wait_for() {  # wait_for DESCRIPTION SECONDS COMMAND...
  local what=$1 seconds=$2; shift 2
  for _ in $(seq 1 $((seconds * 5))); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  echo "FAIL: timed out waiting for $what"; pane | tail -40; exit 1
}
wait_for "the welcome screen" 60 bash -c "tmux capture-pane -p -t '$SESSION' | grep -q 'bring a companion into being'"
tmux send-keys -t "$SESSION" -l "Scout"; tmux send-keys -t "$SESSION" Enter
tmux send-keys -t "$SESSION" -l "Trey"; tmux send-keys -t "$SESSION" Enter
wait_for "the day's greeting after adopting the seedling" 400 bash -c "tmux capture-pane -p -t '$SESSION' | grep -q 'Good morning, Scout'"
wait_for "the model" 300 bash -c "tmux capture-pane -p -t '$SESSION' | grep -q 'Write a message'"
for f in companion.toml tokenizer.json companion.db checkpoints/CURRENT; do
  [ -e "$COMPANION_HOME/Scout/$f" ] || { echo "FAIL: $COMPANION_HOME/Scout/$f is missing"; exit 1; }
done
if ls -a "$COMPANION_HOME" | grep -q unborn; then echo "FAIL: an unborn folder was left"; exit 1; fi
tmux send-keys -t "$SESSION" C-q
wait_for "the app to quit" 30 test -f "$WORK/exit"
grep -q "EXITED 0" "$WORK/exit" || { echo "FAIL: the app exited with $(cat "$WORK/exit")"; exit 1; }
echo "tmux first run (adopt the seedling, reach the day): OK"
