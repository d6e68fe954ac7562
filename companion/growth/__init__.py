"""Growing a companion: wider (`--width`) or a longer day (`--context`), kept as a `growth` checkpoint.

* `plan`: what a growth would be (sizes, memory, checkpoint size) and every refusal, before anything runs;
* `measure`: measured time per training step before and after, for the preview;
* `stretch_night`: the short night on long windows that teaches a stretched model its new positions;
* `grow`: the one pipeline the CLI and the app's palette both run;
* `cli`: `companion grow`.

The model side (how weights are widened, how rotary positions are stretched) is `model.growth`.
"""
