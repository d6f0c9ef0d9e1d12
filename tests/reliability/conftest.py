"""The `tiny` preset of the zoo tests (a 4 x 2 Dense converted from 32 bytes): the cache
machinery without big files."""

from tests.zoo.test_registry import tiny  # noqa: F401
