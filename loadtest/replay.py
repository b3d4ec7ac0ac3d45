#!/usr/bin/env python3
"""The service's own script calls, taken from `redis-cli MONITOR` output, for
compare.sh to replay with redis-benchmark (so the bench never spells a
script's keys or arguments itself: it sends what the service sent).

  replay.py MONITOR_FILE SHA PREFIX --count
      how many client EVALSHA calls of SHA touching PREFIX the file holds
  replay.py MONITOR_FILE SHA PREFIX [--vary] [--keep VALUE]... [--describe FILE]
      the command to replay, NUL-separated on stdout (EVALSHA sha numkeys ...);
      without --vary the last call as it was sent; with --vary the first and
      the last call are compared and, in every argument where they differ,
      the last ':'-separated part that differs becomes redis-benchmark's
      __rand_int__ (a part longer than 12 characters keeps its length: only
      its last 12 characters change, so a UUID stays UUID-shaped). A part
      equal to a --keep VALUE in either call stays as in the first call.
      --describe writes one line saying which KEYS/ARGV vary and which stay.

MONITOR prints each command as `<time> [<db> <client>] "arg" "arg" ...`, every
argument quoted with C-like escapes (\\\\, \\", \\n, \\r, \\t, \\a, \\b, \\xHH);
the parser decodes them to bytes. Calls made from inside scripts (`[0 lua]`)
are skipped. An argument with a NUL byte cannot be passed to redis-benchmark
(argv is C strings): that is an error.
"""

import sys

ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("a"): 7, ord("b"): 8,
           ord('"'): 34, ord("\\"): 92}
RAND = b"__rand_int__"


def parse(line):
    """(client, [arg bytes]) of one MONITOR line, or None for other lines."""
    start, end = line.find(b" ["), line.find(b"] ")
    if start < 0 or end < start:
        return None
    client = line[start + 2:end]
    rest, args, j = line[end + 2:], [], 0
    while j < len(rest):
        if rest[j] == 0x20:
            j += 1
            continue
        if rest[j] != 0x22:
            raise ValueError("unquoted argument in MONITOR line: %r" % line[:200])
        j += 1
        buf = bytearray()
        while True:
            c = rest[j]
            if c == 0x5C:
                d = rest[j + 1]
                if d == ord("x"):
                    buf.append(int(rest[j + 2:j + 4], 16))
                    j += 4
                else:
                    buf.append(ESCAPES[d])
                    j += 2
            elif c == 0x22:
                j += 1
                break
            else:
                buf.append(c)
                j += 1
        args.append(bytes(buf))
    return client, args


def calls(path, sha, prefix):
    """Every client EVALSHA of `sha` with an argument containing `prefix`."""
    found = []
    with open(path, "rb") as f:
        for line in f.read().split(b"\n"):
            parsed = parse(line.rstrip(b"\r"))
            if not parsed:
                continue
            client, args = parsed
            if client.endswith(b" lua") or len(args) < 3:
                continue
            if args[0].upper() != b"EVALSHA" or args[1].lower() != sha:
                continue
            if any(prefix in a for a in args[3:]):
                found.append(args)
    return found


def vary(a, b, keep):
    """`a` with its last part that differs from `b`'s made random; (arg, how)."""
    if a == b:
        return a, None
    pa, pb = a.split(b":"), b.split(b":")
    if len(pa) != len(pb):
        pa, pb = [a], [b]
    differ = [i for i in range(len(pa)) if pa[i] != pb[i]]
    if any(pa[i] in keep or pb[i] in keep for i in differ):
        return a, "kept"
    i = differ[-1]
    part = pa[i]
    pa[i] = (part[:-len(RAND)] if len(part) > len(RAND) else b"") + RAND
    return b":".join(pa), "random"


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    path, sha, prefix = argv[1], argv[2].lower().encode(), argv[3].encode()
    opts, keep, describe, i = set(), set(), None, 4
    while i < len(argv):
        if argv[i] == "--keep":
            keep.add(argv[i + 1].encode())
            i += 2
        elif argv[i] == "--describe":
            describe = argv[i + 1]
            i += 2
        else:
            opts.add(argv[i])
            i += 1
    found = calls(path, sha, prefix)
    if "--count" in opts:
        print(len(found))
        return
    if not found or ("--vary" in opts and len(found) < 2):
        sys.exit("replay.py: %d EVALSHA %s under %s in %s, %s needed"
                 % (len(found), sha.decode(), prefix.decode(), path,
                    2 if "--vary" in opts else 1))
    cmd, notes = list(found[-1]), {"random": [], "kept": []}
    if "--vary" in opts:
        first, last = found[0], found[-1]
        if len(first) != len(last) or first[2] != last[2]:
            sys.exit("replay.py: the two calls differ in their number of arguments")
        nkeys = int(first[2])
        cmd = first[:3]
        for n, (a, b) in enumerate(zip(first[3:], last[3:])):
            arg, how = vary(a, b, keep)
            cmd.append(arg)
            if how:
                notes[how].append("KEYS[%d]" % (n + 1) if n < nkeys else "ARGV[%d]" % (n + 1 - nkeys))
    if any(b"\0" in a for a in cmd):
        sys.exit("replay.py: an argument holds a NUL byte; redis-benchmark cannot send it")
    if describe:
        with open(describe, "w") as f:
            parts = []
            if notes["random"]:
                parts.append("random " + " ".join(notes["random"]))
            if notes["kept"]:
                parts.append("kept " + " ".join(notes["kept"]))
            f.write(("; ".join(parts) if parts else "as sent") + "\n")
    sys.stdout.buffer.write(b"\0".join(cmd) + b"\0")


if __name__ == "__main__":
    main(sys.argv)
