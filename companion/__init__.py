"""companion: one small language model, kept and taught by its owner for life.

`companion` is the only top-level import package. The design card keeps the network (`model/`), the
Textual widgets (`widgets/`) and the themes (`themes/`) as top-level folders of the source tree; an
installed companion has them inside this package (pyproject.toml maps them), and in a source checkout
they are found beside it, so `companion.model` means the same thing either way and a user's own
`model.py` or the unrelated `themes` package on the index can never shadow ours.
"""

from pathlib import Path as _Path

_source_tree = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "model").is_dir() and (_source_tree / "model" / "transformer.py").is_file():
    __path__.append(str(_source_tree))  # noqa: F821  (a package's __path__; see the docstring)
