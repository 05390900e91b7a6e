#!/usr/bin/env python3
"""Prints a GGUF file's header facts as read by llama.cpp's own `gguf` package.

Test oracle for kvarn's C++ reader (tests/model/gguf_real_test.cc prints the same lines from
its own view and compares them). Run it with the cache venv made by scripts/fetch_models.sh:
    $KVARN_CACHE/venv/bin/python tests/reference/gguf_dump_check.py FILE.gguf

Output, one fact per line (the C++ side must format identically):
    version V / tensor_count N / kv_count N / alignment A / data_offset D
    kv KEY TYPE VALUE        scalars: integers in decimal, floats as %.9g, bools 0/1,
                             strings as "len:L <escaped first 48 bytes>"
    kv KEY array ELEMTYPE COUNT
    tensor NAME TYPEID ne0,ne1,.. OFFSET NBYTES   (OFFSET relative to the data section)
"""
import sys

import gguf  # pinned in scripts/fetch_models.sh
import numpy as np

TYPE_NAMES = {
    gguf.GGUFValueType.UINT8: "uint8", gguf.GGUFValueType.INT8: "int8",
    gguf.GGUFValueType.UINT16: "uint16", gguf.GGUFValueType.INT16: "int16",
    gguf.GGUFValueType.UINT32: "uint32", gguf.GGUFValueType.INT32: "int32",
    gguf.GGUFValueType.FLOAT32: "float32", gguf.GGUFValueType.BOOL: "bool",
    gguf.GGUFValueType.STRING: "string", gguf.GGUFValueType.ARRAY: "array",
    gguf.GGUFValueType.UINT64: "uint64", gguf.GGUFValueType.INT64: "int64",
    gguf.GGUFValueType.FLOAT64: "float64",
}


def escape(raw: bytes) -> str:
    # Printable ASCII except backslash and space stays; everything else is \xNN, so a line
    # never breaks and both implementations agree byte for byte.
    return "".join(chr(c) if 0x21 <= c < 0x7F and c != 0x5C else "\\x%02x" % c
                   for c in raw[:48])


def scalar(vtype, part) -> str:
    v = part[0]
    if vtype in (gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.FLOAT64):
        return "%.9g" % float(v)
    if vtype == gguf.GGUFValueType.BOOL:
        return "1" if bool(v) else "0"
    return str(int(v))


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: gguf_dump_check.py FILE.gguf", file=sys.stderr)
        return 2
    r = gguf.GGUFReader(sys.argv[1], "r")
    fields = [f for f in r.fields.values() if not f.name.startswith("GGUF.")]
    print("version %d" % int(r.fields["GGUF.version"].parts[-1][0]))
    print("tensor_count %d" % len(r.tensors))
    print("kv_count %d" % len(fields))
    print("alignment %d" % int(r.alignment))
    print("data_offset %d" % int(r.data_offset))
    for f in fields:
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            print("kv %s array %s %d" % (f.name, TYPE_NAMES[f.types[-1]], len(f.data)))
        elif t == gguf.GGUFValueType.STRING:
            raw = bytes(f.parts[-1].tobytes())
            print("kv %s string len:%d %s" % (f.name, len(raw), escape(raw)))
        else:
            print("kv %s %s %s" % (f.name, TYPE_NAMES[t], scalar(t, f.parts[-1])))
    for t in r.tensors:
        shape = ",".join(str(int(d)) for d in np.asarray(t.shape))
        print("tensor %s %d %s %d %d" % (t.name, int(t.tensor_type), shape,
                                         int(t.data_offset) - int(r.data_offset), int(t.n_bytes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
