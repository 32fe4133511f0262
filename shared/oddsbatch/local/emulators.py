"""Google's own emulators from the Cloud SDK: where they are, how to start them, whether they answer.

The stack runs the Java servers directly (not `gcloud emulators ... start`, a wrapper: killing it
leaves the Java server running), each in its own process group, so `oddsbatch down` stops the
group by its PID. Both answer `GET /` with 200 "Ok" once they serve, which is the readiness probe.

    python -m oddsbatch.local.emulators --check   # one line and exit 1 when something is missing

Where the SDK is: $ODDSBATCH_CLOUD_SDK_ROOT, else the SDK of the `gcloud` on PATH (its
`platform/` directory holds the emulators), else /usr/lib/google-cloud-sdk (Debian's packages).
Debian packages: google-cloud-cli-firestore-emulator, google-cloud-cli-pubsub-emulator (the Cloud
SDK's apt repository) and openjdk-17-jre-headless.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
APT_PACKAGES = {"firestore": "google-cloud-cli-firestore-emulator", "pubsub": "google-cloud-cli-pubsub-emulator",
                "java": "openjdk-17-jre-headless"}
_DEFAULT_SDK = Path("/usr/lib/google-cloud-sdk")


class EmulatorMissing(Exception):
    """A Cloud SDK emulator or Java is not installed; the message says which package to install."""


def sdk_root() -> Path:
    env = os.environ.get("ODDSBATCH_CLOUD_SDK_ROOT")
    if env:
        return Path(env)
    gcloud = shutil.which("gcloud")
    if gcloud:
        root = Path(gcloud).resolve().parent.parent  # <sdk>/bin/gcloud
        if (root / "platform").is_dir():
            return root
    return _DEFAULT_SDK


def java() -> str:
    found = shutil.which("java")
    if not found:
        raise EmulatorMissing(f"java is not on PATH: install {APT_PACKAGES['java']}")
    return found


def firestore_jar() -> Path:
    jar = sdk_root() / "platform" / "cloud-firestore-emulator" / "cloud-firestore-emulator.jar"
    if not jar.is_file():
        raise EmulatorMissing(f"Google's Firestore emulator is missing ({jar}): install {APT_PACKAGES['firestore']}")
    return jar


def pubsub_jar() -> Path:
    lib = sdk_root() / "platform" / "pubsub-emulator" / "lib"
    jars = sorted(lib.glob("cloud-pubsub-emulator-*.jar")) if lib.is_dir() else []
    if not jars:
        raise EmulatorMissing(f"Google's Pub/Sub emulator is missing ({lib}): install {APT_PACKAGES['pubsub']}")
    return jars[-1]


@dataclass(frozen=True)
class Emulator:
    name: str        # what `oddsbatch status` prints
    argv: tuple      # the Java server itself, bound to 127.0.0.1:port


def firestore_emulator(port: int) -> Emulator:
    # What the SDK's own launcher (platform/cloud-firestore-emulator/cloud_firestore_emulator) runs.
    return Emulator("Google Cloud Firestore emulator (Cloud SDK)",
                    (java(), "-Duser.language=en", "-cp", str(firestore_jar()),
                     "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
                     "--host", HOST, "--port", str(port)))


def pubsub_emulator(port: int) -> Emulator:
    # What platform/pubsub-emulator/bin/cloud-pubsub-emulator runs; its flags take `=` only.
    return Emulator("Google Cloud Pub/Sub emulator (Cloud SDK)",
                    (java(), "-jar", str(pubsub_jar()), f"--host={HOST}", f"--port={port}"))


def check() -> list[str]:
    """One line per missing piece (empty: all present)."""
    problems = []
    for probe in (java, firestore_jar, pubsub_jar):
        try:
            probe()
        except EmulatorMissing as exc:
            problems.append(str(exc))
    return problems


def main(argv: list[str] | None = None) -> int:
    problems = check()
    if problems:
        print("emulators: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"emulators: Java, Firestore and Pub/Sub emulators present under {sdk_root()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
