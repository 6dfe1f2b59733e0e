"""The Python peer of the interop suite.

A thin command-line wrapper around the PyPI library ``resumable-stream`` (0.2.0), with
the same interface and exit codes as our CLI's ``state``, ``produce`` and ``resume``
subcommands, so that the orchestrator (run.py) can drive the three languages alike::

    python python_peer.py produce --redis URL --prefix P --id ID --chunks FILE [--delay-ms D] [--hold-ms H]
    python python_peer.py resume  --redis URL --prefix P --id ID [--skip N] [--existing] [--unit U] [--ack-timeout-ms MS]
    python python_peer.py state   --redis URL --prefix P --id ID

Exit codes: 0 clean end, 1 library error (message on stderr), 2 usage, 3 done ("DONE"
on stderr), 4 not found. Run it with the interpreter of the venv that
scripts/interop.sh makes (outside the source tree).
"""

import argparse
import asyncio
import json
import os
import sys

from resumable_stream import (
    CreateResumableStreamContextOptions,
    RedisPublisher,
    RedisSubscriber,
    create_resumable_stream_context,
)

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DONE = 3
EXIT_NOT_FOUND = 4


def parse_args():
    parser = argparse.ArgumentParser(prog="python_peer")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("produce", "resume", "state"):
        command = commands.add_parser(name)
        command.add_argument("--redis", default=os.environ.get("REDIS_URL") or os.environ.get("KV_URL"))
        command.add_argument("--prefix", default="resumable-stream")
        command.add_argument("--id", required=True)
        if name == "produce":
            command.add_argument("--chunks", required=True)
            command.add_argument("--delay-ms", type=int, default=0)
            command.add_argument("--hold-ms", type=int)
        if name == "resume":
            command.add_argument("--skip", type=int)
            command.add_argument("--existing", action="store_true")
            command.add_argument("--unit", choices=("utf16", "codepoint", "byte"), default="utf16")
            command.add_argument("--ack-timeout-ms", type=int)
    args = parser.parse_args()
    if not args.redis:
        parser.error("no Redis URL: pass --redis or set REDIS_URL or KV_URL")
    return args


def paced(chunks, delay, hold):
    """The chunks, each after `delay` seconds, then the end after `hold` seconds."""

    async def source():
        for chunk in chunks:
            await asyncio.sleep(delay)
            yield chunk
        await asyncio.sleep(hold)

    return source


async def empty():
    return
    yield  # an async generator with nothing in it


def write(chunk):
    # Binary-safe: exactly the UTF-8 bytes of what was received.
    sys.stdout.buffer.write(chunk.encode())
    sys.stdout.buffer.flush()


async def copy_to_stdout(stream):
    async for chunk in stream:
        write(chunk)


async def run(args):
    # The documented `create_resumable_stream_context(redis_url=..., key_prefix=...)`
    # raises TypeError in 0.2.0 (redis_url is passed on to the options dataclass), and
    # its own clients connect in a task nobody awaits; so we make and connect the
    # library's Redis clients ourselves and pass them in.
    publisher = RedisPublisher(args.redis)
    subscriber = RedisSubscriber(args.redis)
    await publisher.connect()
    await subscriber.connect()
    # The producer's work after its local reader ends is handed to wait_until.
    background = []
    ctx = create_resumable_stream_context(
        CreateResumableStreamContextOptions(
            key_prefix=args.prefix,
            publisher=publisher,
            subscriber=subscriber,
            wait_until=background.append,
        )
    )
    code, message = 0, None
    try:
        if args.command == "state":
            state = await ctx.has_existing_stream(args.id)
            print("none" if state is None else "done" if state == "DONE" else "active", flush=True)
        elif args.command == "produce":
            with open(args.chunks, encoding="utf-8") as file:
                chunks = json.load(file)
            delay = args.delay_ms / 1000
            hold = delay if args.hold_ms is None else args.hold_ms / 1000
            stream = await ctx.resumable_stream(args.id, paced(chunks, delay, hold))
            if stream is None:
                code, message = EXIT_DONE, "DONE"
            else:
                await copy_to_stdout(stream)
        else:
            if args.unit != "utf16":
                print("python_peer: --unit is ignored: v1 has no unit, this library counts code points", file=sys.stderr)
            made = []
            if args.existing:
                stream = await ctx.resume_existing_stream(args.id, args.skip)
            else:
                # As our CLI: an id that did not exist is not found (exit 4), though the
                # call made it an empty, finished stream (the source is asked for only then).
                def source():
                    made.append(True)
                    return empty()

                stream = await ctx.resumable_stream(args.id, source, args.skip)
            if stream == "NOT_FOUND":
                code, message = EXIT_NOT_FOUND, "NOT_FOUND"
            elif stream is None:
                code, message = EXIT_DONE, "DONE"
            else:
                await copy_to_stdout(stream)
                if made:
                    code = EXIT_NOT_FOUND
                    message = f"NOT_FOUND: no stream {args.id!r} existed; it now holds an empty, finished stream"
        if background:
            await asyncio.gather(*background)
    except Exception as error:  # a library error: exit 1 with its message
        code, message = EXIT_ERROR, f"{type(error).__name__}: {error}"
    if message:
        print(message, file=sys.stderr)
    await subscriber.close()
    await publisher.close()
    return code


def main():
    args = parse_args()
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
