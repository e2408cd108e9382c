"""numpydoc validation of every public docstring, as scikit-learn's sklearn/tests/test_docstrings.py does.

The public API is ``__all__`` of :mod:`skflow` and of its public submodules; for a class, its public methods
and properties defined in skflow are checked too (those inherited from scikit-learn or torch are not ours).
No name is excluded: a docstring that fails is fixed, not listed here.
"""

import importlib
import inspect

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

PUBLIC_MODULES = (
    "skflow",
    "skflow.datasets",
    "skflow.diagnostics",
    "skflow.diffusion",
    "skflow.distributed",
    "skflow.exceptions",
    "skflow.inspection",
    # the estimators' modules: also the feature networks of VarProNet and RKHS's length-scale rule
    "skflow.node",
    "skflow.rkhs",
    "skflow.varpro",
    "skflow.varpronet",
)

#: The error codes checked (numpydoc.validate.ERROR_MSGS names them all). Chosen: every public name has a
#: docstring; its Parameters section documents exactly the signature's parameters, in order, each with a type
#: and a description; what it returns or yields is documented; the sections are known, in numpydoc's order,
#: and the summary is a sentence. Not checked: an Examples / See Also / extended summary on every name
#: (EX01, SA01, ES01), a one-line summary (SS06) and the style of descriptions (PR08, PR09, RT04, RT05).
CHECKED = {
    "GL03",  # double line break
    "GL06",  # unknown section
    "GL07",  # sections in the wrong order
    "GL08",  # no docstring
    "GL09",  # Deprecation warning placement
    "GL10",  # reST directives with the wrong syntax
    "SS01",  # no summary
    "SS02",  # summary does not start with a capital letter
    "SS03",  # summary does not end with a period
    "PR01",  # parameters not documented
    "PR02",  # unknown parameters documented
    "PR03",  # parameters in the wrong order
    "PR04",  # parameter without a type
    "PR05",  # parameter type ending with a period
    "PR06",  # parameter type 'integer' / 'boolean' / 'string' instead of int / bool / str
    "PR07",  # parameter without a description
    "PR10",  # no space before the colon of a parameter
    "RT01",  # no Returns section
    "RT03",  # return value without a description
    "YD01",  # no Yields section
}


def _public_objects():
    """(qualified name, object) of every public function, class, and public method of those classes."""
    seen = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # constants (e.g. distributed.DEFAULT_TIMEOUT) carry no docstring of their own
            qualname = f"{obj.__module__}.{obj.__qualname__}"
            seen.setdefault(qualname, obj)
            if inspect.isclass(obj):
                for attr in dir(obj):
                    if attr.startswith("_"):
                        continue
                    member = inspect.getattr_static(obj, attr)
                    func = member.fget if isinstance(member, property) else member
                    func = getattr(func, "__func__", func)  # staticmethod / classmethod
                    if inspect.isfunction(func) and func.__module__.startswith("skflow"):
                        seen.setdefault(f"{qualname}.{attr}", func)
    return sorted(seen)


PUBLIC_NAMES = _public_objects()


def test_the_public_api_is_found():
    assert "skflow.node.MeanFieldNODERegressor.fit" in PUBLIC_NAMES
    assert "skflow.varpronet.VarProNetClassifier.predict_proba" in PUBLIC_NAMES
    assert len(PUBLIC_NAMES) > 60


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_docstring(name):
    result = numpydoc_validate.validate(name)
    errors = [f"{code}: {message}" for code, message in result["errors"] if code in CHECKED]
    assert not errors, f"{name} ({result['file']}:{result['file_line']}):\n" + "\n".join(errors)
