"""Sphinx configuration of tapeloop's API reference: `make docs` builds it offline into
docs/api/_build/html, and fails (-W -n) on any warning or reference it cannot resolve."""

project = "tapeloop"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
autodoc_typehints = "signature"  # the typed signature, as Python shows it
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # Attributes: as fields of the class, not separate entries
html_theme = "alabaster"
html_theme_options = {"nosidebar": False}
exclude_patterns = ["_build"]
# Types from other libraries (TensorFlow, NumPy, the standard library) have no pages
# here; every name of tapeloop's own must resolve.
nitpick_ignore_regex = [
    ("py:.*", r"(tf|tensorflow|keras|np|numpy|pathlib|typing|collections|abc|absl|flags)\b.*"),
    ("py:.*", r"(Path|Callable|Iterable|Sequence|Mapping|Any|ArrayLike|NDArray|Tensor)"),
    ("py:.*", r"(int|float|str|bool|dict|list|tuple|set|frozenset|object|None|type)"),
]
