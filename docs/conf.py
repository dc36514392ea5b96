"""Sphinx configuration of the skseg documentation."""

import contextlib
import os
import re
import warnings

import skseg
import skseg.cli

project = "skseg"
author = "skseg developers"
copyright = "2026, skseg developers"
release = version = skseg.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
exclude_patterns = ["_build", "**.ipynb_checkpoints", "sg_execution_times.rst", "generated_benchmarks"]
templates_path = ["_templates"]

html_theme = "pydata_sphinx_theme"
html_title = "skseg"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}

# offline builds: no intersphinx inventories are fetched
intersphinx_mapping = {}

# the command line page includes every command's --help, written here from the parser
# itself so that the page cannot drift from the code
os.environ["COLUMNS"] = "88"  # argparse wraps at the terminal's width
_CLI_HELP = os.path.join(os.path.dirname(__file__), "generated", "cli")
os.makedirs(_CLI_HELP, exist_ok=True)
for _name in ("segment", "train-segnet"):
    with open(os.path.join(_CLI_HELP, f"{_name}.txt"), "w") as _file:
        with contextlib.redirect_stdout(_file), contextlib.suppress(SystemExit):
            skseg.cli.build_parser().parse_args([_name, "--help"])

os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("skseg",),
}


def _skip_metadata_requests(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated ``set_fit_request``: its docstring links to
    scikit-learn's glossary, which an offline build cannot resolve."""
    return True if re.fullmatch(r"set_\w+_request", name) else None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
