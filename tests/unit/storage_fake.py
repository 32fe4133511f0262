"""An in-memory stand-in for the Cloud Storage reads the holder makes (bucket(...).blob(...)
.download_as_bytes()), for pure unit tests and the interleaving explorer: objects by name,
NotFound for a missing one, as the official client raises. Writes are not modelled: the
holder never writes an object it reads (quarantine copies are tested on the emulator)."""

from __future__ import annotations

from google.api_core.exceptions import NotFound


class FakeBlob:
    def __init__(self, objects, name):
        self.objects, self.name = objects, name

    def download_as_bytes(self):
        if self.name not in self.objects:
            raise NotFound(self.name)
        return self.objects[self.name]


class FakeStorage:
    def __init__(self, objects: dict[str, bytes]):
        self.objects = objects

    def bucket(self, _name):
        return self

    def blob(self, name, generation=None):
        return FakeBlob(self.objects, name)
