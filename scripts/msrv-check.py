#!/usr/bin/env python3
"""Keeps `rust-version` true as the lock file moves.

Walks the resolved dependency graph (`cargo metadata`, for this host's platform) from
every workspace crate that can be published, through normal and build dependencies
(what a user compiles), and fails unless the workspace's `rust-version` is at least the
highest `rust-version` any of those dependencies declares. No other toolchain can be
downloaded here, so the MSRV is checked from what the dependencies declare.

Usage: python3 scripts/msrv-check.py   (exit 1 when the claim is too low)
"""
import json
import subprocess
import sys


def version_key(text):
    return tuple(int(part) for part in text.split("."))


def main():
    host = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    target = next(line.split(": ", 1)[1] for line in host.splitlines() if line.startswith("host: "))
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--filter-platform", target, "--locked"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    members = set(meta["workspace_members"])
    roots = [m for m in members if packages[m].get("publish") != []]
    claimed = {packages[m].get("rust_version") for m in roots}
    if len(claimed) != 1 or None in claimed:
        print(f"msrv: the publishable crates must all declare one rust-version, found {claimed}")
        return 1
    claimed = claimed.pop()

    seen, stack = set(), list(roots)
    while stack:
        node = nodes[stack.pop()]
        for dep in node["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            if kinds & {None, "build"} and dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                stack.append(dep["pkg"])
    declared = [
        (packages[d]["rust_version"], packages[d]["name"], packages[d]["version"])
        for d in seen
        if d not in members and packages[d].get("rust_version")
    ]
    declared.sort(key=lambda entry: version_key(entry[0]))
    highest = declared[-1] if declared else ("0", "none", "")
    print(f"msrv: rust-version {claimed}; the highest a dependency declares is {highest[0]} ({highest[1]} {highest[2]}), over {len(seen)} dependencies")
    if version_key(claimed) < version_key(highest[0]):
        print(f"msrv: rust-version {claimed} is lower than {highest[1]} {highest[2]} needs ({highest[0]})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
