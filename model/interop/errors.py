"""The one error of import and export: what is refused, naming the file and what is unsupported."""


class InteropError(ValueError):
    """A file or folder that cannot be imported or exported as asked; nothing was created."""
