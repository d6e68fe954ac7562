"""The companion's side of interop: export a checkpoint for other tools, be born from an open base.

The formats themselves live in `model.interop` (which knows nothing of days or owners); here they get
the companion's story (its name, birth and days for the model card) and its home.
"""
