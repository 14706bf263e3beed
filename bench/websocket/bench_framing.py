#!/usr/bin/env python3
"""WebSocket framing throughput: FlowCoro's C core vs the `websockets` library.

    .venv/bin/python bench/websocket/bench_framing.py [--seconds 0.5] [--rounds 5]

For each payload size, a stream of client frames (masked, as a server
receives them) of ~4 MiB is parsed and unmasked into messages:

* flowcoro:   flowcoro.websocket.FrameParser(client=False).feed(stream)
* websockets: websockets' sans-IO ServerProtocol (state OPEN, no extension):
              receive_data(stream) + events_received(); its frame parser is
              Python, with masking in C (websockets.speedups).

and the same frames are built (masked, client side):

* flowcoro:   FrameBuilder(client=True).binary(payload)
* websockets: Frame(OP_BINARY, payload).serialize(mask=True)

Reported: payload MB/s (10^6 bytes) and messages/s, best of --rounds rounds
(each round runs for about --seconds of CPU time), and the ratio flowcoro / websockets.
Binary messages (text would add UTF-8 validation on both sides:
--text measures that instead).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from flowcoro.websocket import FrameBuilder, FrameParser  # noqa: E402

SIZES = [64, 1024, 16 * 1024, 256 * 1024]
STREAM_BYTES = 4 * 1024 * 1024


def best(fn, seconds, rounds):
    """Best per-call CPU time of fn() over rounds of ~seconds each.

    CPU time of this process (time.process_time), not wall time: the
    machine is shared, and a round in which another job held the core would
    otherwise count the wait.  Everything measured runs in this thread."""
    out = float("inf")
    for _ in range(rounds):
        n, t0 = 0, time.process_time()
        while True:
            fn()
            n += 1
            t = time.process_time() - t0
            if t >= seconds:
                break
        out = min(out, t / n)
    return out


def make_stream(size, text):
    b = FrameBuilder(client=True)
    payload = (b"a" * size) if text else os.urandom(size)
    count = max(1, STREAM_BYTES // size)
    one = b.text(payload.decode()) if text else b.binary(payload)
    frames = [one] * count
    return b"".join(frames), count, payload


def bench_parse(size, text, seconds, rounds):
    from websockets.frames import Frame  # noqa: F401 - imported for the version check
    from websockets.protocol import State
    from websockets.server import ServerProtocol

    stream, count, payload = make_stream(size, text)

    def fc():
        out = FrameParser(client=False, max_message=None).feed(stream)
        assert len(out) == count

    def ws():
        p = ServerProtocol(state=State.OPEN, max_size=None)
        p.receive_data(stream)
        out = p.events_received()
        assert len(out) == count

    fc(), ws()
    t_fc, t_ws = best(fc, seconds, rounds), best(ws, seconds, rounds)
    return count, size * count, t_fc, t_ws


def bench_build(size, seconds, rounds):
    from websockets.frames import Frame, Opcode
    payload = os.urandom(size)
    count = max(1, 1024 * 1024 // size)
    b = FrameBuilder(client=True)

    def fc():
        for _ in range(count):
            b.binary(payload)

    def ws():
        for _ in range(count):
            Frame(Opcode.BINARY, payload).serialize(mask=True)

    return count, size * count, best(fc, seconds, rounds), best(ws, seconds, rounds)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--text", action="store_true", help="text messages (UTF-8 validated)")
    args = ap.parse_args()
    import websockets
    print(f"# websockets {websockets.__version__}, Python {sys.version.split()[0]}; "
          f"best of {args.rounds} x ~{args.seconds}s; payload MB/s = 10^6 B/s")
    kind = "text" if args.text else "binary"
    print(f"\nparse + unmask ({kind}, server side, ~4 MiB of frames per call)")
    print(f"{'payload':>9} | {'flowcoro MB/s':>13} {'msg/s':>10} | {'websockets MB/s':>15} "
          f"{'msg/s':>10} | ratio")
    for size in SIZES:
        count, total, t_fc, t_ws = bench_parse(size, args.text, args.seconds, args.rounds)
        print(f"{size:>9} | {total / t_fc / 1e6:>13,.0f} {count / t_fc:>10,.0f} | "
              f"{total / t_ws / 1e6:>15,.0f} {count / t_ws:>10,.0f} | {t_ws / t_fc:5.1f}x")
    print("\nbuild (binary, client side: masked; ~1 MiB of payload per call)")
    print(f"{'payload':>9} | {'flowcoro MB/s':>13} {'msg/s':>10} | {'websockets MB/s':>15} "
          f"{'msg/s':>10} | ratio")
    for size in SIZES:
        count, total, t_fc, t_ws = bench_build(size, args.seconds, args.rounds)
        print(f"{size:>9} | {total / t_fc / 1e6:>13,.0f} {count / t_fc:>10,.0f} | "
              f"{total / t_ws / 1e6:>15,.0f} {count / t_ws:>10,.0f} | {t_ws / t_fc:5.1f}x")


if __name__ == "__main__":
    main()
