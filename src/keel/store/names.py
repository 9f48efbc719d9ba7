"""Readable default run names such as ``brave-otter-417``."""

from __future__ import annotations

import secrets

_ADJECTIVES = (
    "amber agile bold brave bright calm clever crisp daring eager fair fast gentle glad "
    "grand keen kind lucid merry neat nimble noble polite proud quick quiet rapid sharp "
    "shy smart snappy solid steady sunny swift tidy vivid warm wise witty zesty"
).split()
_NOUNS = (
    "badger bear bee bison crane deer dolphin eagle falcon finch fox gecko hare hawk heron "
    "ibex koala lark lemur lynx mole moose newt otter owl panda puffin quail raven robin "
    "seal shark sloth snail swan tapir tiger toad trout viper whale wolf wren yak zebra"
).split()


def generate_run_name() -> str:
    """A random ``adjective-noun-NNN`` name.

    >>> len(generate_run_name().split("-"))
    3
    """
    return (
        f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(1000):03d}"
    )
