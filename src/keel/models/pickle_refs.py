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
        self._op, self._pos = op.name, pos
        name = op.name
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
        elif name in _PERSISTENT:
            self.persistent += 1
        self._apply(op, arg)
        # STOP is one byte; every other opcode's end is where the next begins.
        self.end = pos + 1

    def _record(self, module: str, name: str) -> None:
        self.refs.setdefault((module, name), GlobalRef(module, name, self._op, self._pos))

    def _fail(self, problem: str) -> InvalidParameter:
        return InvalidParameter(f"Malformed pickle: {self._op} at byte {self._pos} {problem}.")

    def _top(self) -> object:
        if not self.stack:
            raise self._fail("finds an empty stack")
        return self.stack[-1]

    def _pop(self, n: int) -> None:
        if n > len(self.stack):
            raise self._fail("underflows the stack")
        del self.stack[len(self.stack) - n :]

    def _pop_to_mark(self) -> None:
        while self.stack:
            if self.stack.pop() is _MARK:
                return
        raise self._fail("has no MARK")

    def _apply(self, op: pickletools.OpcodeInfo, arg: object) -> None:
        name = op.name
        if name == "MARK":
            self.stack.append(_MARK)
        elif name in _MEMO_PUTS:
            self.memo[int(str(arg))] = self._top()
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self._top()
        elif name in _MEMO_GETS:
            self.stack.append(self.memo.get(int(str(arg)), _UNKNOWN))
        elif name == "DUP":
            self.stack.append(self._top())
        else:
            before = op.stack_before
            if pickletools.markobject in before:
                self._pop_to_mark()
                self._pop(before.index(pickletools.markobject))
            else:
                self._pop(len(before))
            if name in _STRING_PUSHES:
                self.stack.append(arg if isinstance(arg, str) else str(arg))
            else:
                self.stack.extend(_UNKNOWN for _ in op.stack_after)
