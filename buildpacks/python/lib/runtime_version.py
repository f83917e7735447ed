#!/usr/bin/env python3
"""The python version an app asks for (runtime.txt, .python-version) against the stack's.

    python3 runtime_version.py FILE STACK_VERSION

FILE's first line that is neither blank nor a `#` comment is the request: `python-3.11.4`,
`3.11.4`, `3.11`, `python-3.11` (or `system`: whatever the stack has). Prints nothing when it
matches, one warning line when only the patch differs (the stack's 3.11.x is the same line,
with its own fixes), and exits 1 with the message when major.minor differ or the request
cannot be read: builds use the stack's python3, nothing is downloaded.
"""

import re
import sys


def requested(text):
    """The request in a version file's text, or None when there is none."""
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    return None


def parse(request):
    """(major, minor, patch or None) of a request; None when it is not a CPython version."""
    m = re.fullmatch(r"(?:python-?)?(\d+)\.(\d+)(?:\.(\d+))?", request.strip(), re.IGNORECASE)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), (int(m.group(3)) if m.group(3) else None)


def check(name, text, stack):
    """(ok, message): ok False means the build must fail with message; message may be ''."""
    want = requested(text)
    if want is None or want == "system":
        return True, ""
    have = parse(stack)
    asked = parse(want)
    if asked is None:
        return False, (
            f"{name} asks for '{want}', which is not a python version this buildpack reads "
            f"(expected e.g. python-{have[0]}.{have[1]} or {have[0]}.{have[1]}). "
            f"The stack has python {stack}: fix or remove {name}."
        )
    if asked[:2] != have[:2]:
        return False, (
            f"{name} asks for python {want.removeprefix('python-')}, but the stack has python {stack}. "
            f"Builds use the stack's python3 (runtimes are not downloaded): change {name} to "
            f"{'python-' if name == 'runtime.txt' else ''}{have[0]}.{have[1]} if the app runs on it, "
            f"or install python {asked[0]}.{asked[1]} on the server as python3."
        )
    if asked[2] is not None and asked[2] != have[2]:
        return True, (
            f"{name} asks for python {asked[0]}.{asked[1]}.{asked[2]}; building with the stack's "
            f"python {stack} (same {asked[0]}.{asked[1]} line)"
        )
    return True, ""


def main():
    name, stack = sys.argv[1], sys.argv[2]
    with open(name, encoding="utf-8", errors="replace") as f:
        ok, message = check(name, f.read(), stack)
    if message:
        print(message)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
