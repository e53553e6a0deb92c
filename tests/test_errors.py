"""One root for every error (minisgd.errors): each public error derives from MinisgdError and from the built-in
it refines, is defined in minisgd.errors, and reads as what it says; no non-exception is named like one."""
import inspect

import pytest

from minisgd import errors
from test_architecture import modules


def public_errors():
    for module_name, _ in modules():
        if module_name.startswith(("minisgd.experiments", "minisgd.cli", "minisgd.sweep", "minisgd.plotting",
                                   "minisgd.__main__")):
            continue
        module = __import__(module_name, fromlist=["_"])
        for attr, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and not attr.startswith("_") \
                    and obj.__module__.startswith("minisgd"):
                yield obj


def test_every_public_error_has_the_one_root_and_a_builtin_parent():
    found = set(public_errors())
    assert len(found) >= 15
    for cls in found:
        if cls.__name__ == "StopTraining":  # a signal, not an error
            assert not issubclass(cls, errors.MinisgdError)
            continue
        assert cls.__name__.endswith("Error"), cls
        assert issubclass(cls, errors.MinisgdError), cls
        assert cls.__module__ == "minisgd.errors", f"{cls} is defined outside minisgd.errors"
        builtin = [b for b in cls.__mro__ if b.__module__ == "builtins" and b not in (Exception, BaseException,
                                                                                      object)]
        assert builtin or cls is errors.MinisgdError, f"{cls} refines no built-in exception"


def test_no_public_non_exception_is_named_like_one():
    for module_name, _ in modules():
        if module_name == "minisgd.__main__":
            continue
        module = __import__(module_name, fromlist=["_"])
        for attr, obj in vars(module).items():
            if attr.endswith("Error") and inspect.isclass(obj):
                assert issubclass(obj, BaseException), f"{module_name}.{attr} is named like an exception"


@pytest.mark.parametrize("cls, builtin", [(errors.ShapeError, ValueError), (errors.DataError, ValueError),
                                          (errors.DownloadError, OSError), (errors.HessianTooLargeError, MemoryError),
                                          (errors.DivergenceError, RuntimeError),
                                          (errors.ExtraNotInstalledError, ImportError)])
def test_except_builtin_keeps_working(cls, builtin):
    kwargs = {"theta": None, "history": {}, "step": 0, "loss": 1.0, "opt_state": {}} if cls is errors.DivergenceError \
        else {}
    with pytest.raises(builtin):
        raise cls("what was wrong and what to do", **kwargs)
    assert str(cls("what was wrong and what to do", **kwargs)) == "what was wrong and what to do"
