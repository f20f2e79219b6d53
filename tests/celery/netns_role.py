"""Turn the current mount namespace into one "machine" of test_namespaces.py, then exec the role's command.

Run by the test as root, already inside a fresh network and mount namespace::

    ip netns exec NS unshare --mount --propagation private -- python netns_role.py ROLE TAG -- COMMAND...

It changes only this (private) mount namespace:

* every mount except ``/proc`` is remounted read-only, so nothing a role writes
  outside its own tmpfs can land on the host's disk, where another role could read it;
* a fresh tmpfs goes over ``/tmp``, ``/var/tmp`` and ``/dev/shm``: the only writable
  places, seen by this role alone (the host's ``/tmp``, pytest's ``tmp_path`` included, is hidden);
* the app (``$NS_APP_SOURCE``) is written into ``/tmp/app/ns_app.py``, the role's own copy,
  and a probe file ``/tmp/bgcb-probe-ROLE-TAG`` that no other role may see.

It proves the shared tree is read-only (a write next to this file must fail)
before it execs COMMAND from ``/tmp/app`` with ``HOME``/``TMPDIR`` on the tmpfs.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

PRIVATE = ("/tmp", "/var/tmp", "/dev/shm")


def mount_points() -> list[str]:
    points: list[str] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # \040 and friends
        if point not in points:
            points.append(point)
    return points


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"netns_role: mount {' '.join(args)} failed: {done.stderr.strip()}")


def main(argv: list[str]) -> None:
    role, tag, sep, *command = argv
    if sep != "--" or not command:
        sys.exit("usage: netns_role.py ROLE TAG -- COMMAND...")
    # The code every machine has (this repository, the Python environment) may itself live under a
    # private point (CI clones into /tmp): hold it open, and bind it back, read-only, over the tmpfs.
    code = {Path(__file__).resolve().parents[2], Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    hidden = [(c, os.open(c, os.O_RDONLY | os.O_DIRECTORY)) for c in sorted(code) if any(c.is_relative_to(p) for p in PRIVATE)]
    for point in mount_points():
        if point == "/proc" or point.startswith("/proc/"):
            continue
        mount("-o", "remount,bind,ro", point)
    for point in PRIVATE:
        mount("-t", "tmpfs", "-o", "mode=1777,size=256m", f"bgcb-{role}", point)
    for path, fd in hidden:  # back where it was, read-only, on the role's own tmpfs (bound from the held descriptor)
        path.mkdir(parents=True, exist_ok=True)
        os.set_inheritable(fd, True)
        bind = ["mount", "--no-canonicalize", "--bind", f"/proc/self/fd/{fd}", str(path)]
        done = subprocess.run(bind, capture_output=True, text=True, pass_fds=[fd])
        if done.returncode:
            sys.exit(f"netns_role: cannot bring {path} back over the private tmpfs: {done.stderr.strip()}")
        mount("-o", "remount,bind,ro", str(path))
        os.close(fd)
    try:
        Path(__file__).with_name(f".netns-write-{role}-{tag}").write_text("must not be possible")
    except OSError as err:
        if err.errno != errno.EROFS:
            raise
    else:
        sys.exit("netns_role: the shared tree is still writable after the read-only remount")
    app = Path("/tmp/app")
    app.mkdir()
    Path("/tmp/home").mkdir()
    source = os.environ.pop("NS_APP_SOURCE", None)
    if source is not None:
        (app / "ns_app.py").write_text(source)
    Path(f"/tmp/bgcb-probe-{role}-{tag}").write_text(f"{role} {os.getpid()}\n")
    os.environ.update(HOME="/tmp/home", TMPDIR="/tmp", PYTHONPATH=str(app), PYTHONDONTWRITEBYTECODE="1")
    os.chdir(app)
    mnt = os.readlink("/proc/self/ns/mnt")
    print(f"netns_role: {role} in {mnt}: shared tree read-only, private tmpfs on {', '.join(PRIVATE)}", file=sys.stderr)
    sys.stderr.flush()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
