"""Keeps one GPU architecture's code in a CUDA fat binary: every other fatbin entry's payload
(SASS of other architectures, PTX) is zeroed in place, offsets unchanged, so the library still
loads and the zeros compress away. The driver picks the kept SASS on that architecture.

    python strip_fatbin.py LIBRARY.so 90      # keep sm_90 SASS (H100 / H200)
"""

import struct
import sys

MAGIC = struct.pack("<I", 0xBA55ED50)  # fatbin container header


def main() -> None:
    path, arch = sys.argv[1], int(sys.argv[2])
    data = bytearray(open(path, "rb").read())
    i = kept = zeroed = 0
    while (i := data.find(MAGIC, i)) >= 0:
        header, size = struct.unpack_from("<H", data, i + 6)[0], struct.unpack_from("<Q", data, i + 8)[0]
        j, end = i + header, i + header + size
        while j < end:
            kind, _, hs, ps = struct.unpack_from("<HHIQ", data, j)
            if kind == 2 and struct.unpack_from("<I", data, j + 28)[0] == arch:  # 2 = SASS
                kept += ps
            else:
                data[j + hs : j + hs + ps] = bytes(ps)
                zeroed += ps
            j += hs + ps
        i = end
    if not kept:
        sys.exit(f"{path}: no sm_{arch} code in it")
    open(path, "wb").write(data)
    print(f"{path}: kept {kept / 1e6:.1f} MB of sm_{arch} SASS, zeroed {zeroed / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
