"""Malicious pickles for the safety tests: each, if unpickled, would create ``canary``.

NEVER unpickle anything this module returns, not even in a subprocess. The
bytes come from three sources, none of which runs a payload:

* a tiny assembler (:func:`assemble`) that writes opcodes for a call tree of
  ``Global`` and ``Call`` nodes, in every protocol 0-5, so no gadget module
  has to be imported here;
* ``pickle.dumps`` of :class:`Payload` objects, whose ``__reduce__`` returns
  ``(callable, args)`` for the pickler to write down (it never calls it), also
  planted inside real scikit-learn models and pandas frames;
* hand-written opcode streams for tricks the pickler never emits: INST/OBJ,
  NEWOBJ(_EX) with ``__setstate__`` smuggled through BUILD, memoized
  STACK_GLOBAL names, names computed at run time, extension codes,
  persistent ids, bytes after STOP and streams broken after the payload.

>>> from pathlib import Path
>>> corpus = malicious_pickles(Path("/nonexistent/canary"))
>>> len(corpus) >= 50, len({name for name, _ in corpus}) == len(corpus)
(True, True)
"""

from __future__ import annotations

import marshal
import os
import pickle
import shlex
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROTOCOLS = range(6)


@dataclass(frozen=True)
class Global:
    """``module.name`` as the pickle names it (GLOBAL or STACK_GLOBAL)."""

    module: str
    name: str


@dataclass(frozen=True)
class Call:
    """``func(*args)``: the arguments, then REDUCE."""

    func: Global | Call
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Raw:
    """Opcodes written as given."""

    data: bytes


@dataclass(frozen=True)
class Item:
    """One corpus entry and the name a refusal must mention."""

    name: str
    data: bytes
    offender: str


class Payload:
    """Pickles as ``func(*args)``; a never-called stand-in for the callable itself."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args

    def __call__(self, *args: Any) -> Any:  # pickle insists a reduce callable is callable
        raise RuntimeError("a corpus payload must never run")


def malicious_pickles(canary: Path) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` for every malicious pickle; each would create ``canary``."""
    return [(item.name, item.data) for item in malicious_corpus(canary)]


def malicious_corpus(canary: Path) -> list[Item]:
    """Every corpus entry with the global (or problem) its refusal must name."""
    cmd = _Commands(canary)
    items = [*_assembled(cmd), *_dumped(cmd), *_hand_written(cmd)]
    names = [item.name for item in items]
    assert len(names) == len(set(names)), "corpus names must be unique"
    return items


@dataclass(frozen=True)
class _Commands:
    """The payload arguments that create the canary three ways."""

    canary: Path

    @property
    def path(self) -> str:
        return str(self.canary)

    @property
    def shell(self) -> str:
        return f"touch {shlex.quote(self.path)}"

    @property
    def argv(self) -> list[str]:
        return ["touch", self.path]

    @property
    def source(self) -> str:
        return f"open({self.path!r}, 'w').close()"


# --- the assembler ---------------------------------------------------------


def assemble(node: Any, protocol: int) -> bytes:
    """A complete pickle that evaluates ``node`` (PROTO header from protocol 2)."""
    header = b"\x80" + bytes([protocol]) if protocol >= 2 else b""
    return header + _emit(node, protocol) + b"."


def _emit(value: Any, protocol: int) -> bytes:
    if isinstance(value, Raw):
        return value.data
    if isinstance(value, Global):
        return _global(value, protocol)
    if isinstance(value, Call):
        return _emit(value.func, protocol) + _emit(value.args, protocol) + b"R"
    if isinstance(value, tuple):
        return b"(" + b"".join(_emit(v, protocol) for v in value) + b"t"
    if isinstance(value, list):
        return b"(" + b"".join(_emit(v, protocol) for v in value) + b"l"
    if isinstance(value, dict):
        pairs = (_emit(k, protocol) + _emit(v, protocol) for k, v in value.items())
        return b"(" + b"".join(pairs) + b"d"
    return _scalar(value, protocol)


def _scalar(value: Any, protocol: int) -> bytes:
    if value is None:
        return b"N"
    if isinstance(value, bool):
        return b"I01\n" if value else b"I00\n"
    if isinstance(value, int):
        return b"I%d\n" % value
    if isinstance(value, str):
        return _string(value, protocol)
    if isinstance(value, bytes):
        if protocol >= 3:
            return b"B" + struct.pack("<I", len(value)) + value
        # What the pickler itself does for bytes before protocol 3.
        return _emit(
            Call(Global("_codecs", "encode"), (value.decode("latin1"), "latin1")), protocol
        )
    raise TypeError(f"cannot assemble {value!r}")


def _string(text: str, protocol: int) -> bytes:
    if protocol == 0:
        for char, escape in (("\\", "\\u005c"), ("\n", "\\u000a"), ("\r", "\\u000d")):
            text = text.replace(char, escape)
        return b"V" + text.encode("raw-unicode-escape") + b"\n"
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def _global(ref: Global, protocol: int) -> bytes:
    if protocol >= 4:
        return _string(ref.module, protocol) + _string(ref.name, protocol) + b"\x93"
    return b"c" + f"{ref.module}\n{ref.name}\n".encode()


# --- gadgets written by the assembler --------------------------------------


def _g(dotted: str) -> Global:
    module, _, name = dotted.rpartition(".")
    return Global(module, name)


def _gadgets(cmd: _Commands) -> dict[str, tuple[Any, str, range | tuple[int, ...]]]:
    """name -> (call tree, offender, protocols)."""
    getattr_ = _g("builtins.getattr")
    import_os = Call(_g("builtins.__import__"), ("os",))
    system = _g("os.system")
    inner = pickle.dumps(Payload(os.system, cmd.shell), protocol=2)
    code = marshal.dumps(compile(cmd.source, "<corpus>", "exec"))
    return {
        # Commands, in every protocol for the classic ones.
        "os_system": (Call(system, (cmd.shell,)), "os.system", PROTOCOLS),
        "subprocess_popen": (
            Call(_g("subprocess.Popen"), (cmd.argv,)),
            "subprocess.Popen",
            PROTOCOLS,
        ),
        "builtins_eval": (Call(_g("builtins.eval"), (cmd.source,)), "builtins.eval", PROTOCOLS),
        "builtins_exec": (Call(_g("builtins.exec"), (cmd.source,)), "builtins.exec", PROTOCOLS),
        "posix_system": (Call(_g("posix.system"), (cmd.shell,)), "posix.system", (0, 3)),
        "nt_system": (Call(_g("nt.system"), (cmd.shell,)), "nt.system", (1,)),
        "os_popen": (Call(_g("os.popen"), (cmd.shell,)), "os.popen", (2,)),
        "os_execvp": (Call(_g("os.execvp"), ("touch", cmd.argv)), "os.execvp", (4,)),
        "os_spawnlp": (
            Call(_g("os.spawnlp"), (0, "touch", "touch", cmd.path)),
            "os.spawnlp",
            (5,),
        ),
        "subprocess_run": (Call(_g("subprocess.run"), (cmd.argv,)), "subprocess.run", (1, 4)),
        "subprocess_check_output": (
            Call(_g("subprocess.check_output"), (cmd.argv,)),
            "subprocess.check_output",
            (2, 5),
        ),
        "subprocess_call": (Call(_g("subprocess.call"), (cmd.argv,)), "subprocess.call", (3,)),
        "subprocess_getoutput": (
            Call(_g("subprocess.getoutput"), (cmd.shell,)),
            "subprocess.getoutput",
            (0,),
        ),
        "pty_spawn": (Call(_g("pty.spawn"), (cmd.argv,)), "pty.spawn", (2,)),
        # Python 2 spellings the unpickler maps to builtins below protocol 3.
        "compat_builtin_eval": (
            Call(Global("__builtin__", "eval"), (cmd.source,)),
            "builtins.eval",
            (0, 1, 2),
        ),
        # Reaching os.system through getattr and import helpers.
        "getattr_import_os_system": (
            Call(Call(getattr_, (import_os, "system")), (cmd.shell,)),
            "builtins.getattr",
            (0, 2, 4, 5),
        ),
        "functools_partial_system": (
            Call(Call(_g("functools.partial"), (system, cmd.shell)), ()),
            "functools.partial",
            (2, 4),
        ),
        "operator_attrgetter": (
            Call(Call(Call(_g("operator.attrgetter"), ("system",)), (import_os,)), (cmd.shell,)),
            "operator.attrgetter",
            (1, 5),
        ),
        "operator_methodcaller": (
            Call(
                Call(_g("operator.methodcaller"), ("system", cmd.shell)),
                (Call(_g("importlib.import_module"), ("os",)),),
            ),
            "operator.methodcaller",
            (3, 4),
        ),
        "pkgutil_resolve_name": (
            Call(Call(_g("pkgutil.resolve_name"), ("os:system",)), (cmd.shell,)),
            "pkgutil.resolve_name",
            (2, 5),
        ),
        "importlib_import_module": (
            Call(
                Call(getattr_, (Call(_g("importlib.import_module"), ("os",)), "system")),
                (cmd.shell,),
            ),
            "importlib.import_module",
            (4,),
        ),
        "list_map_system": (
            Call(_g("builtins.list"), (Call(_g("builtins.map"), (system, [cmd.shell])),)),
            "builtins.map",
            (2,),
        ),
        # Running Python source.
        "code_interactive_interpreter": (
            Call(
                Call(_g("operator.methodcaller"), ("runsource", cmd.source)),
                (Call(_g("code.InteractiveInterpreter"), ()),),
            ),
            "code.InteractiveInterpreter",
            (2, 4),
        ),
        "runpy_run_code": (
            Call(
                _g("runpy._run_code"), (Call(_g("builtins.compile"), (cmd.source, "x", "exec")), {})
            ),
            "runpy._run_code",
            (3,),
        ),
        "timeit_timeit": (Call(_g("timeit.timeit"), (cmd.source,)), "timeit.timeit", (2,)),
        "cprofile_run": (Call(_g("cProfile.run"), (cmd.source,)), "cProfile.run", (4,)),
        "pydoc_pipepager": (Call(_g("pydoc.pipepager"), ("", cmd.shell)), "pydoc.pipepager", (3,)),
        "imaplib_stream": (
            Call(_g("imaplib.IMAP4_stream"), (cmd.shell,)),
            "imaplib.IMAP4_stream",
            (5,),
        ),
        "osx_support_read_output": (
            Call(_g("_osx_support._read_output"), (cmd.shell,)),
            "_osx_support._read_output",
            (2,),
        ),
        "marshal_function": (
            Call(Call(_g("types.FunctionType"), (Call(_g("marshal.loads"), (code,)), {})), ()),
            "marshal.loads",
            (3, 5),
        ),
        "pickle_loads_nested": (Call(_g("pickle.loads"), (inner,)), "pickle.loads", (2, 4)),
        "c_pickle_loads_nested": (Call(_g("_pickle.loads"), (inner,)), "_pickle.loads", (5,)),
        "ctypes_libc_system": (
            Call(
                Call(getattr_, (Call(_g("ctypes.CDLL"), (None,)), "system")), (cmd.shell.encode(),)
            ),
            "ctypes.CDLL",
            (3,),
        ),
        # Gadgets inside the allowed packages (functions, deny-listed classes, dotted names).
        "numpy_testing_runstring": (
            Call(_g("numpy.testing._private.utils.runstring"), (cmd.source, {})),
            "numpy.testing._private.utils.runstring",
            (2, 4, 5),
        ),
        "numpy_dotted_runstring": (
            Call(Global("numpy", "testing._private.utils.runstring"), (cmd.source, {})),
            "numpy.testing._private.utils.runstring",
            (4,),
        ),
        "numpy_module_os_attribute": (
            Call(Global("numpy._core._methods", "os.system"), (cmd.shell,)),
            "numpy._core._methods.os.system",
            (4, 5),
        ),
        "pandas_module_pickle_attribute": (
            Call(Global("pandas.core.generic", "pickle.loads"), (inner,)),
            "pandas.core.generic.pickle.loads",
            (4,),
        ),
        "numpy_memmap_creates_file": (
            Call(_g("numpy.memmap"), (cmd.path, "uint8", "w+", 0, (1,))),
            "numpy.memmap",
            (2, 5),
        ),
        "numpy_savetxt": (Call(_g("numpy.savetxt"), (cmd.path, [0])), "numpy.savetxt", (3,)),
        "numpy_ndarray_tofile": (
            Call(Global("numpy", "ndarray.tofile"), (Call(_g("numpy.zeros"), (1,)), cmd.path)),
            "numpy.ndarray.tofile",
            (4,),
        ),
        "pandas_to_csv": (
            Call(
                Global("pandas", "DataFrame.to_csv"), (Call(_g("pandas.DataFrame"), ()), cmd.path)
            ),
            "pandas.DataFrame.to_csv",
            (5,),
        ),
        "pandas_hdfstore": (Call(_g("pandas.HDFStore"), (cmd.path, "w")), "pandas.HDFStore", (4,)),
        "scipy_io_netcdf_file": (
            Call(_g("scipy.io.netcdf_file"), (cmd.path, "w")),
            "scipy.io.netcdf_file",
            (2,),
        ),
        "scipy_io_fortran_file": (
            Call(_g("scipy.io._fortran.FortranFile"), (cmd.path, "w")),
            "scipy.io._fortran.FortranFile",
            (4,),
        ),
        # Allowed reconstruction helpers handed a forbidden callable.
        "randomstate_ctor_with_system": (
            Call(_g("numpy.random._pickle.__randomstate_ctor"), (cmd.shell, system)),
            "os.system",
            (2, 5),
        ),
        "copyreg_reconstructor_popen": (
            Call(
                _g("copyreg._reconstructor"),
                (_g("subprocess.Popen"), _g("subprocess.Popen"), cmd.argv),
            ),
            "subprocess.Popen",
            (1, 4),
        ),
        # Files created directly.
        "builtins_open": (Call(_g("builtins.open"), (cmd.path, "w")), "builtins.open", (0, 4)),
        "io_open": (Call(_g("io.open"), (cmd.path, "w")), "io.open", (3,)),
        "codecs_open": (Call(_g("codecs.open"), (cmd.path, "w")), "codecs.open", (2,)),
        "shutil_copyfile": (
            Call(_g("shutil.copyfile"), (os.devnull, cmd.path)),
            "shutil.copyfile",
            (5,),
        ),
        "logging_file_handler": (
            Call(_g("logging.FileHandler"), (cmd.path,)),
            "logging.FileHandler",
            (2,),
        ),
        "zipfile_writer": (Call(_g("zipfile.ZipFile"), (cmd.path, "w")), "zipfile.ZipFile", (4,)),
        "pathlib_touch": (
            Call(Global("pathlib", "Path.touch"), (Call(_g("pathlib.Path"), (cmd.path,)),)),
            "pathlib.Path.touch",
            (4, 5),
        ),
    }


def _assembled(cmd: _Commands) -> list[Item]:
    return [
        Item(f"{name}_p{protocol}", assemble(tree, protocol), offender)
        for name, (tree, offender, protocols) in _gadgets(cmd).items()
        for protocol in protocols
    ]


# --- pickles written by pickle.dumps ---------------------------------------


def _dumped(cmd: _Commands) -> list[Item]:
    import builtins
    import functools
    import subprocess

    system = Payload(os.system, cmd.shell)
    items = [
        Item(f"dumps_reduce_os_system_p{p}", pickle.dumps(system, protocol=p), "posix.system")
        for p in PROTOCOLS
    ]
    chain = Payload(Payload(getattr, Payload(builtins.__import__, "os"), "system"), cmd.shell)
    items += [
        Item(f"dumps_getattr_chain_p{p}", pickle.dumps(chain, protocol=p), "builtins.getattr")
        for p in (2, 5)
    ]
    partial = Payload(functools.partial(os.system, cmd.shell))
    items.append(Item("dumps_functools_partial_p4", pickle.dumps(partial, 4), "functools.partial"))
    popen = Payload(subprocess.Popen, cmd.argv)
    items.append(Item("dumps_subprocess_popen_p3", pickle.dumps(popen, 3), "subprocess.Popen"))
    return items + _injected(cmd)


def _injected(cmd: _Commands) -> list[Item]:
    """Payloads planted in real models and frames, and pickles hidden after STOP."""
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    system = Payload(os.system, cmd.shell)
    items = []
    for p in (2, 4, 5):
        model = LogisticRegression().fit(x, y)
        model.calibration_ = system  # an attribute anyone would take for fitted state
        items.append(
            Item(f"sklearn_model_attribute_payload_p{p}", pickle.dumps(model, p), "posix.system")
        )
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    pipe.steps[0][1].mean_ = Payload(eval, cmd.source)
    items.append(Item("sklearn_pipeline_step_payload_p5", pickle.dumps(pipe, 5), "builtins.eval"))
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(x, y)
    forest.estimators_[1] = Payload(exec, cmd.source)
    items.append(
        Item("sklearn_forest_estimator_payload_p4", pickle.dumps(forest, 4), "builtins.exec")
    )
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    frame.attrs["note"] = system
    items.append(Item("pandas_attrs_payload_p5", pickle.dumps(frame, 5), "posix.system"))
    benign = pickle.dumps(LogisticRegression().fit(x, y), 5)
    for p in (2, 5):
        # pickle.loads stops at the first STOP; a loader that reads on finds the second.
        hidden = benign + pickle.dumps(system, p)
        items.append(Item(f"appended_after_stop_p{p}", hidden, "after the STOP"))
    return items


# --- hand-written opcode streams ------------------------------------------


def _hand_written(cmd: _Commands) -> list[Item]:
    shell0, shell4 = _string(cmd.shell, 0), _string(cmd.shell, 4)
    source4 = _string(cmd.source, 4)
    items = [
        Item("raw_global_os_system_p0", b"cos\nsystem\n(" + shell0 + b"tR.", "os.system"),
        Item("raw_inst_os_system_p0", b"(" + shell0 + b"ios\nsystem\n.", "os.system"),
        Item(
            "raw_inst_subprocess_popen_p0",
            b"(" + _emit(cmd.argv, 0) + b"isubprocess\nPopen\n.",
            "subprocess.Popen",
        ),
        Item(
            "raw_obj_builtins_eval_p1",
            b"(cbuiltins\neval\n" + _string(cmd.source, 1) + b"o.",
            "builtins.eval",
        ),
        Item(
            "raw_newobj_setstate_system_p2",
            _setstate_trick(cmd, 2, "os", "system", False),
            "os.system",
        ),
        Item(
            "raw_newobj_ex_setstate_exec_p4",
            _setstate_trick(cmd, 4, "builtins", "exec", True),
            "builtins.exec",
        ),
        Item("raw_stack_global_memoized_p4", _memoized_stack_global(shell4), "os.system"),
        Item("raw_stack_global_long_memo_p5", _long_memo_stack_global(shell4), "posix.system"),
        Item(
            "raw_stack_global_computed_module_p4",
            _computed_stack_global(cmd, via="_codecs"),
            "<unresolved STACK_GLOBAL>",
        ),
        Item(
            "raw_stack_global_computed_by_str_p5",
            _computed_stack_global(cmd, via="str"),
            "<unresolved STACK_GLOBAL>",
        ),
        Item(
            "raw_global_dotted_text_p4",
            b"\x80\x04cnumpy\ntesting._private.utils.runstring\n(" + source4 + b"}t" + b"R.",
            "numpy.testing._private.utils.runstring",
        ),
        Item(
            "raw_compat_copy_reg_popen_p0",
            b"ccopy_reg\n_reconstructor\n(csubprocess\nPopen\ncsubprocess\nPopen\n"
            + _emit(cmd.argv, 0)
            + b"tR.",
            "subprocess.Popen",
        ),
        Item(
            "raw_frame_p5",
            _framed(b"\x8c\x02os\x94\x8c\x06system\x94\x93" + shell4 + b"\x85R."),
            "os.system",
        ),
        Item("raw_persid_p0", b"P" + cmd.shell.encode() + b"\n.", "persistent id"),
        Item("raw_binpersid_p1", _string(cmd.shell, 1) + b"Q.", "persistent id"),
        Item(
            "raw_truncated_after_payload_p2",
            b"\x80\x02cos\nsystem\n" + shell4 + b"\x85R\xff\xfe",
            "Malformed",
        ),
        Item(
            "raw_no_stop_p4",
            b"\x80\x04\x8c\x02os\x8c\x06system\x93" + shell4 + b"\x85R",
            "Malformed",
        ),
    ]
    for opcode, code in (
        (b"\x82", b"\x01"),
        (b"\x83", b"\x01\x02"),
        (b"\x84", b"\x01\x00\x00\x01"),
    ):
        # Would import whatever copyreg.add_extension registered under the code.
        data = b"\x80\x02" + opcode + code + shell4 + b"\x85R."
        items.append(Item(f"raw_ext_{opcode.hex()}_p2", data, "<unresolved EXT"))
    return items


def _setstate_trick(cmd: _Commands, protocol: int, module: str, name: str, ex: bool) -> bytes:
    """NEWOBJ an OrderedDict, BUILD ``{'__setstate__': gadget}``, BUILD again with the payload.

    The second BUILD calls the instance attribute ``__setstate__`` with its state.
    """
    cls = _global(Global("collections", "OrderedDict"), protocol)
    make = cls + (b")}\x92" if ex else b")\x81")
    gadget = _global(Global(module, name), protocol)
    state = b"}" + _string("__setstate__", protocol) + gadget + b"s"
    argument = cmd.source if name == "exec" else cmd.shell
    return b"\x80" + bytes([protocol]) + make + state + b"b" + _string(argument, protocol) + b"b."


def _memoized_stack_global(shell: bytes) -> bytes:
    # Names pushed, memoized and popped early, fetched back right before STACK_GLOBAL.
    names = b"\x8c\x02os\x94" + b"0" + b"\x8c\x06system\x94" + b"0"
    return b"\x80\x04" + names + b"h\x00h\x01\x93" + shell + b"\x85R."


def _long_memo_stack_global(shell: bytes) -> bytes:
    names = b"\x8c\x05posixr\x10\x27\x00\x000\x8c\x06systemq\x07" + b"0"
    return b"\x80\x05" + names + b"j\x10\x27\x00\x00h\x07\x93" + shell + b"\x85R."


def _computed_stack_global(cmd: _Commands, via: str) -> bytes:
    """STACK_GLOBAL whose module name only exists once an allowed call has run."""
    if via == "_codecs":
        module = Call(Global("_codecs", "encode"), ("bf", "rot13"))  # rot13('bf') == 'os'
    else:
        module = Call(Global("builtins", "str"), ("os",))
    body = _emit(module, 4) + _string("system", 4) + b"\x93" + _string(cmd.shell, 4) + b"\x85R."
    return b"\x80\x04" + body


def _framed(body: bytes) -> bytes:
    return b"\x80\x05\x95" + struct.pack("<Q", len(body)) + body
