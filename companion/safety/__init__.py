"""Keeping the owner's things whole and private through crashes, kills, full disks and damage.

One short module per job: `private` (modes 0700/0600 whatever the umask), `leftovers` (temporary files
a kill left behind), `room` (is there room for a night), `text` (lone surrogates at the edge),
`store_repair` (a damaged store set aside and restored from the newest verified backup), `errors`
(one sentence for any error a command can end in) and `start` (what runs when a companion is opened).
Nothing here imports torch or Textual.
"""
