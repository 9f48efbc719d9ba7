"""What a pickle would import, read from its opcodes without running any of it.

Unpickling can only call what the pickle names as a *global* (``module.name``):
every ``os.system`` gadget and every class of a model appears here. The walk
simulates just enough of the pickle machine's stack to resolve
``STACK_GLOBAL`` (protocol 4+) whose module and name come from earlier string
pushes or the memo; anything it cannot resolve is reported as unresolved,
which callers must treat as unsafe.

>>> import pickle, collections
>>> scan = scan_pickle(pickle.dumps(collections.OrderedDict(a=1), protocol=5))
>>> [ref.dotted for ref in scan.globals]
['collections.OrderedDict']

This module only reads bytes; deciding what is allowed is the loader's job.
"""

from __future__ import annotations

import io
import pickletools
from dataclasses import dataclass

from keel.errors import InvalidParameter

UNRESOLVED = "?"

# Opcodes whose argument is the string they push.
_STRING_PUSHES = frozenset(
    {
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "UNICODE",
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE8",
    }
)
_MEMO_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_EXTENSIONS = frozenset({"EXT1", "EXT2", "EXT4"})
_PERSISTENT = frozenset({"PERSID", "BINPERSID"})


class _Mark:
    """The MARK sentinel on the simulated stack."""


class _Unknown:
    """A value the walk does not track (numbers, containers, built objects)."""


_MARK = _Mark()
_UNKNOWN = _Unknown()


@dataclass(frozen=True, slots=True)
class GlobalRef:
    """One global a pickle references: ``module.name``, the opcode and its byte offset.

    ``module`` and ``name`` are ``"?"`` when the walk could not resolve them
    (a computed STACK_GLOBAL or an extension-registry code).
    """

    module: str
    name: str
    opcode: str
    position: int

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"

    @property
    def resolved(self) -> bool:
        return UNRESOLVED not in (self.module, self.name)

    @property
    def top_module(self) -> str:
        return self.module.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class PickleScan:
    """Everything a pickle references, in order of appearance (duplicates removed)."""

    protocol: int
    globals: tuple[GlobalRef, ...] = ()
    persistent_ids: int = 0
    modules: tuple[str, ...] = ()
    trailing_bytes: int = 0

    @property
    def unresolved(self) -> tuple[GlobalRef, ...]:
        return tuple(g for g in self.globals if not g.resolved)


def scan_pickle(data: bytes) -> PickleScan:
    """Walk one pickle's opcodes and list the globals it references.

    Raises InvalidParameter (naming the offset) when the bytes are not a
    well-formed pickle: a loader must then refuse the file. Bytes after the
    pickle's STOP are counted in ``trailing_bytes``; the unpickler never reads
    them, but a loader should not accept a file that hides data there.
    """
    machine = _Machine()
    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(data)):
            machine.step(op, arg, pos or 0)
    except (ValueError, EOFError, IndexError, KeyError) as exc:
        raise InvalidParameter(f"Malformed pickle near byte {machine.end}: {exc}") from exc
    refs = tuple(machine.refs.values())
    return PickleScan(
        protocol=machine.protocol,
        globals=refs,
        persistent_ids=machine.persistent,
        modules=tuple(dict.fromkeys(g.top_module for g in refs if g.resolved)),
        trailing_bytes=len(data) - machine.end,
    )


# How each opcode moves the simulated stack, precomputed once: the walk runs
# for every opcode of every model loaded, tens of thousands per large model.
_GENERIC, _MARK_OP, _PUT, _MEMO, _GET, _DUP = range(6)
_RECORDS = frozenset({"PROTO", "GLOBAL", "INST", "STACK_GLOBAL"}) | _EXTENSIONS | _PERSISTENT


def _effect(op: pickletools.OpcodeInfo) -> tuple[int, bool, bool, int, int, bool]:
    """(kind, records, marked, pops, pushes, pushes_string) for one opcode."""
    name = op.name
    records = name in _RECORDS
    special = {"MARK": _MARK_OP, "MEMOIZE": _MEMO, "DUP": _DUP}
    if name in special:
        return special[name], records, False, 0, 0, False
    if name in _MEMO_PUTS:
        return _PUT, records, False, 0, 0, False
    if name in _MEMO_GETS:
        return _GET, records, False, 0, 0, False
    before = op.stack_before
    marked = pickletools.markobject in before
    pops = before.index(pickletools.markobject) if marked else len(before)
    return _GENERIC, records, marked, pops, len(op.stack_after), name in _STRING_PUSHES


_EFFECTS = {op.code: _effect(op) for op in pickletools.opcodes}


class _Machine:
    """The pickle machine's stack and memo, tracking only strings and marks."""

    def __init__(self) -> None:
        self.stack: list[object] = []
        self.memo: dict[int, object] = {}
        self.refs: dict[tuple[str, str], GlobalRef] = {}
        self.protocol = 0
        self.persistent = 0
        self.end = 0
        self._op = ""
        self._pos = 0

    def step(self, op: pickletools.OpcodeInfo, arg: object, pos: int) -> None:
        kind, records, marked, pops, pushes, pushes_string = _EFFECTS[op.code]
        if records:
            self._op, self._pos = op.name, pos
            self._note(op.name, arg)
        stack = self.stack
        if kind == _GET:
            stack.append(self.memo.get(arg, _UNKNOWN))  # type: ignore[call-overload]
        elif kind == _MEMO:
            self.memo[len(self.memo)] = stack[-1] if stack else self._empty(op, pos)
        elif kind == _GENERIC:
            if marked:
                self._pop_to_mark(op, pos)
            if pops:
                if pops > len(stack):
                    raise self._fail(op, pos, "underflows the stack")
                del stack[-pops:]
            if pushes_string:
                stack.append(arg if isinstance(arg, str) else str(arg))
            elif pushes:
                stack.extend([_UNKNOWN] * pushes)
        elif kind == _MARK_OP:
            stack.append(_MARK)
        elif kind == _PUT:
            self.memo[arg] = stack[-1] if stack else self._empty(op, pos)  # type: ignore[index]
        else:  # _DUP
            stack.append(stack[-1] if stack else self._empty(op, pos))
        # STOP is one byte; every other opcode's end is where the next begins.
        self.end = pos + 1

    def _note(self, name: str, arg: object) -> None:
        if name == "PROTO":
            self.protocol = int(str(arg))
        elif name in ("GLOBAL", "INST"):
            module, _, qualname = str(arg).partition(" ")
            self._record(module, qualname)
        elif name == "STACK_GLOBAL":
            pair = self.stack[-2:]
            if len(pair) == 2 and isinstance(pair[0], str) and isinstance(pair[1], str):
                self._record(pair[0], pair[1])
            else:
                self._record(UNRESOLVED, UNRESOLVED)
        elif name in _EXTENSIONS:
            self._record(UNRESOLVED, f"extension code {arg}")
        else:  # PERSID, BINPERSID
            self.persistent += 1

    def _record(self, module: str, name: str) -> None:
        self.refs.setdefault((module, name), GlobalRef(module, name, self._op, self._pos))

    @staticmethod
    def _fail(op: pickletools.OpcodeInfo, pos: int, problem: str) -> InvalidParameter:
        return InvalidParameter(f"Malformed pickle: {op.name} at byte {pos} {problem}.")

    def _empty(self, op: pickletools.OpcodeInfo, pos: int) -> object:
        raise self._fail(op, pos, "finds an empty stack")

    def _pop_to_mark(self, op: pickletools.OpcodeInfo, pos: int) -> None:
        stack = self.stack
        while stack:
            if stack.pop() is _MARK:
                return
        raise self._fail(op, pos, "has no MARK")
