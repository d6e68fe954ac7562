"""The night: when the day is full, the companion dreams about it and learns from it.

`pipeline.run_night` is the whole night in order (dream, probe, recall, prepare, train, check, save);
`material` draws what a step trains on, `optimizer` owns the optimizer and the learning-rate schedule,
`preferences` turns picks and ratings into a preference loss, `guards` is the probe that can roll a
night back, `dream` and `teacher` write the dream, `thread` runs a night off the UI thread, `books` is
the folder of texts the night reads, `report` and `days` are the torch-free parts the screens show.
This file imports nothing, so a screen can import `companion.night.report` without torch.
"""
