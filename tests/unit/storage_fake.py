"""An in-memory stand-in for the Cloud Storage reads the holder makes (bucket(...).blob(...)
.download_as_bytes()), for pure unit tests and the interleaving explorer: objects by name,
NotFound for a missing one, as the official client raises. Writes are not modelled: the
holder never writes an object it reads (quarantine copies are tested on the emulator).

An object stored gzip-compressed with `Content-Encoding: gzip` (`encodings`) is served as
stored when the download asks for the raw bytes, decompressed otherwise: Cloud Storage's
decompressive transcoding (https://cloud.google.com/storage/docs/transcoding), which the
Python client gets by decoding the response it asked for with `Accept-Encoding: gzip`."""

from __future__ import annotations

import gzip

from google.api_core.exceptions import NotFound


class FakeBlob:
    def __init__(self, objects, name, encodings=None):
        self.objects, self.name = objects, name
        self.content_encoding = None  # known once downloaded, as the client reads it from the response
        self.encodings = encodings or {}

    def download_as_bytes(self, raw_download=False):
        if self.name not in self.objects:
            raise NotFound(self.name)
        data = self.objects[self.name]
        self.content_encoding = self.encodings.get(self.name)
        if self.content_encoding == "gzip" and not raw_download:
            return gzip.decompress(data)
        return data


class FakeStorage:
    def __init__(self, objects: dict[str, bytes], encodings: dict[str, str] | None = None):
        self.objects = objects
        self.encodings = {} if encodings is None else encodings  # name -> Content-Encoding

    def bucket(self, _name):
        return self

    def blob(self, name, generation=None):
        return FakeBlob(self.objects, name, self.encodings)
