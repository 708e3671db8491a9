#!/usr/bin/env python3
"""Build the small bundled sample under ``python/interleaf/data/sample/``.

The sample is made only from photographs that ship *inside* the installed
scikit-image wheel (``skimage/data/*``) and whose licence scikit-image states
(public domain or CC0).  Nothing is downloaded: the files are read straight
from the package directory and checked against scikit-image's own SHA-256
registry, so the output is byte-for-byte reproducible for a given
scikit-image / Pillow / zlib / libjpeg build.  ``skimage.data`` loader
functions are never called, because for files missing from the wheel they
fall back to a pooch download.

Output (all paths relative to the output folder)::

    images/*.jpg, images/*.png   downscaled photos and crops of them
    pairs.jsonl                  image-caption pairs (with two duplicates)
    comm.jsonl                   CoMM-style step-by-step interleaved documents
    pairs-000000.tar             WebDataset shard of pairs.jsonl
    LICENSES.md                  provenance and licence of every file

Usage::

    python scripts/make_sample_data.py [--out DIR]

Images considered and left out (see LICENSES.md):
  * eagle, and the other pooch-only datasets: not in the wheel (download).
  * stereo_motorcycle: Middlebury 2014 images, scikit-image states no licence.
  * coins, immunohistochemistry: only "no known copyright restrictions".
  * clock: public domain, but deliberately motion-blurred.
  * moon, page, text, cell, brick, grass, gravel, colorwheel, logo, horse, ...:
    no stated licence, not photographs, or not useful here.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "python" / "interleaf" / "data" / "sample"
MAX_SIDE = 400
JPEG_QUALITY = 85

PD = "Public domain"
CC0 = "CC0-1.0"
TEXT_LICENSE = CC0


# --------------------------------------------------------------------------
# Sources: files shipped in the scikit-image wheel, with the licence and
# origin exactly as the skimage.data docstrings state them.
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    func: str  # skimage.data function name
    file: str  # file name inside skimage/data/
    license: str
    origin: str


SOURCES = {
    "astronaut": Source(
        "astronaut", "astronaut.png", PD,
        "Eileen Collins, NASA Great Images database (https://flic.kr/p/r9qvLn); "
        "\"No known copyright restrictions, released into the public domain.\"",
    ),
    "coffee": Source(
        "coffee", "coffee.png", CC0,
        "Rachel Michetti, courtesy of Pikolo Espresso Bar; "
        "\"No copyright restrictions. CC0 by the photographer.\"",
    ),
    "chelsea": Source(
        "chelsea", "chelsea.png", CC0,
        "Stefan van der Walt (Chelsea the cat); "
        "\"No copyright restrictions. CC0 by the photographer.\"",
    ),
    "rocket": Source(
        "rocket", "rocket.jpg", PD,
        "SpaceX, launch of Falcon 9 carrying DSCOVR, Cape Canaveral LC-40 "
        "(https://www.flickr.com/photos/spacexphotos/16511594820/); released "
        "into the public domain by SpaceX",
    ),
    "hubble_deep_field": Source(
        "hubble_deep_field", "hubble_deep_field.jpg", PD,
        "NASA, Hubble eXtreme Deep Field (HubbleSite release 2012-37); "
        "\"may be freely used in the public domain\"",
    ),
    "camera": Source(
        "camera", "camera.png", CC0,
        "Lav Varshney; \"No copyright restrictions. CC0 by the photographer.\"",
    ),
    "retina": Source(
        "retina", "retina.jpg", CC0,
        "Mikael Häggström, Wikimedia Commons "
        "(File:Fundus_photograph_of_normal_left_eye.jpg); "
        "\"Creative Commons CC0 1.0 Universal Public Domain Dedication\"",
    ),
}


def skimage_data_dir() -> Path:
    """Directory of the data files shipped inside the scikit-image wheel."""
    import skimage  # imported lazily; only its location is needed

    return Path(skimage.__file__).resolve().parent / "data"


def skimage_registry() -> dict[str, str]:
    try:
        from skimage.data._registry import registry  # type: ignore
    except Exception:  # pragma: no cover - private module moved
        return {}
    return dict(registry)


def load_source(src: Source, data_dir: Path, registry: dict[str, str]) -> Image.Image:
    path = data_dir / src.file
    if not path.is_file():
        raise SystemExit(
            f"error: {path} is not in the installed scikit-image wheel; this "
            "script never downloads data (skimage.data.{src.func} would need pooch)"
        )
    raw = path.read_bytes()
    expected = registry.get(f"data/{src.file}")
    if expected is not None and hashlib.sha256(raw).hexdigest() != expected:
        raise SystemExit(f"error: {path} does not match scikit-image's registry hash")
    im = Image.open(io.BytesIO(raw))
    im.load()
    return im


# --------------------------------------------------------------------------
# Images to write: (output name, source key, crop box in source pixels or
# None, output format, colour mode, note for LICENSES.md)
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Out:
    name: str
    src: str
    box: tuple[int, int, int, int] | None
    mode: str  # "RGB", "L" or "RGBA"

    @property
    def ext(self) -> str:
        return Path(self.name).suffix.lstrip(".")


IMAGES = [
    # full photographs, downscaled
    Out("astronaut.jpg", "astronaut", None, "RGB"),
    Out("coffee.jpg", "coffee", None, "RGB"),
    Out("chelsea.jpg", "chelsea", None, "RGB"),
    Out("rocket.jpg", "rocket", None, "RGB"),
    Out("hubble_deep_field.jpg", "hubble_deep_field", None, "RGB"),
    Out("camera.jpg", "camera", None, "L"),  # grayscale JPEG
    Out("retina.jpg", "retina", None, "RGB"),
    # crops used by the step-by-step documents
    Out("astronaut_face.jpg", "astronaut", (150, 10, 310, 180), "RGB"),
    Out("astronaut_flag.jpg", "astronaut", (0, 0, 90, 210), "RGB"),
    Out("astronaut_shuttle.png", "astronaut", (345, 0, 475, 285), "RGB"),
    Out("astronaut_helmet.jpg", "astronaut", (270, 335, 512, 512), "RGB"),
    Out("coffee_cup.jpg", "coffee", (165, 10, 430, 215), "RGB"),
    Out("coffee_spoon.jpg", "coffee", (300, 190, 430, 335), "RGB"),
    Out("chelsea_eyes.jpg", "chelsea", (110, 60, 370, 180), "RGB"),
    Out("chelsea_nose.jpg", "chelsea", (190, 170, 330, 280), "RGB"),
    Out("rocket_vehicle.jpg", "rocket", (255, 110, 395, 427), "RGB"),
    Out("rocket_pad_lights.jpg", "rocket", (60, 320, 480, 427), "RGB"),
    # fundus disc with the black surround made transparent
    Out("retina_disc.png", "retina", (10, 8, 1398, 1396), "RGBA"),
]

RGBA_MAX_SIDE = 256  # keep the lossless RGBA PNG small


def fit(im: Image.Image, max_side: int) -> Image.Image:
    w, h = im.size
    scale = max_side / max(w, h)
    if scale >= 1:
        return im
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return im.resize(size, Image.Resampling.LANCZOS)


def render(out: Out, src_im: Image.Image) -> tuple[bytes, tuple[int, int], str]:
    im = src_im
    if out.box is not None:
        im = im.crop(out.box)
    if out.mode == "RGBA":
        im = fit(im.convert("RGB"), RGBA_MAX_SIDE)
        # circular alpha mask: the fundus photo is a disc on black
        # (the crop box is the disc's bounding box; inset 1.5% to drop the dark rim)
        w, h = im.size
        scale = 4  # supersample the mask for a soft, antialiased edge
        iw, ih = round(w * scale * 0.015), round(h * scale * 0.015)
        mask = Image.new("L", (w * scale, h * scale), 0)
        ImageDraw.Draw(mask).ellipse((iw, ih, w * scale - 1 - iw, h * scale - 1 - ih), fill=255)
        mask = mask.resize((w, h), Image.Resampling.LANCZOS)
        im = im.convert("RGBA")
        im.putalpha(mask)
    else:
        im = fit(im.convert(out.mode), MAX_SIDE)
    buf = io.BytesIO()
    if out.ext == "jpg":
        im.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        im.save(buf, format="PNG", optimize=True)
    note = "downscaled" if out.box is None else f"cropped (box {out.box} in source px)"
    if out.box is not None and max(out.box[2] - out.box[0], out.box[3] - out.box[1]) > MAX_SIDE:
        note += ", downscaled"
    if out.box is None and max(src_im.size) <= MAX_SIDE and out.mode != "RGBA":
        note = "re-encoded"
    if out.mode == "L":
        note += ", grayscale JPEG"
    elif out.mode == "RGBA":
        note += f" to {RGBA_MAX_SIDE} px, black surround made transparent (RGBA PNG)"
    elif out.ext == "png":
        note += ", saved as PNG"
    if out.ext == "jpg":
        note += f", JPEG q{JPEG_QUALITY}"
    return buf.getvalue(), im.size, note


# --------------------------------------------------------------------------
# Captions and documents (hand-written for this project, CC0-1.0)
# --------------------------------------------------------------------------
PAIRS = [
    ("pair-0001", "astronaut.jpg",
     "Smiling astronaut Eileen Collins in an orange flight suit, posing beside an "
     "American flag and a space shuttle model."),
    ("pair-0002", "coffee.jpg",
     "An espresso in a white-lined, red-brown cup on a matching saucer with a "
     "silver teaspoon, on a wooden table."),
    ("pair-0003", "chelsea.jpg",
     "Close-up of a tabby cat's face with green eyes, striped brown fur and long "
     "white whiskers."),
    ("pair-0004", "rocket.jpg",
     "A Falcon 9 rocket standing on its launch pad at dusk, flanked by tall "
     "lattice towers and bright pad lights."),
    ("pair-0005", "hubble_deep_field.jpg",
     "Hubble deep field view packed with small, distant galaxies of many colours "
     "scattered across a black sky."),
    ("pair-0006", "camera.jpg",
     "Black and white photo of a man in a dark coat looking through a camera "
     "mounted on a tripod in a field."),
    ("pair-0007", "retina.jpg",
     "Fundus photograph of a healthy human retina, showing the bright optic disc "
     "on the left and branching red blood vessels."),
    ("pair-0008", "astronaut_face.jpg",
     "Portrait crop of a smiling woman with short light brown hair against a pale "
     "grey background."),
    ("pair-0009", "coffee_cup.jpg",
     "Looking down into a white espresso cup holding a shallow layer of golden "
     "brown crema."),
    ("pair-0010", "rocket_vehicle.jpg",
     "A tall white Falcon 9 rocket on the launch pad against a deep blue evening "
     "sky, with a pad light flaring at its base."),
    ("pair-0011", "astronaut_shuttle.png",
     "A blurry model of the space shuttle mounted on its brown external tank "
     "and two white solid rocket boosters."),
    ("pair-0012", "retina_disc.png",
     "A small round image of a human retina, orange-red with dark branching "
     "vessels, on a transparent background."),
    # deliberate duplicates for de-duplication demos
    ("pair-dup-1", "chelsea.jpg", None),  # same image and caption as pair-0003
    ("pair-dup-2", "coffee.jpg",
     "Seen from above at an angle, a small coffee cup and a teaspoon rest on a "
     "red saucer on a worn wooden tabletop."),
]

DOCS = [
    {
        "id": "comm-0001",
        "title": "Inspecting an astronaut portrait",
        "summary": "A walk through the details of a NASA portrait of "
                   "astronaut Eileen Collins, from her face to the props around her.",
        "steps": [
            ("Start with the whole portrait: Eileen Collins stands in an orange "
             "launch and entry suit with the neck ring open, in front of a mottled "
             "grey studio backdrop.", "astronaut.jpg"),
            ("Look at her face first. She smiles straight at the camera, and her "
             "short light brown hair is neatly styled.", "astronaut_face.jpg"),
            ("On the left edge, an American flag hangs behind her, with white stars "
             "on blue and red and white stripes.", "astronaut_flag.jpg"),
            ("On the right, a model of the space shuttle stack stands on a pedestal: "
             "the white orbiter, the brown external tank and two boosters.",
             "astronaut_shuttle.png"),
            ("Finally, her helmet sits in the bottom right foreground; its dark, "
             "glossy visor reflects the studio lights.", "astronaut_helmet.jpg"),
        ],
    },
    {
        "id": "comm-0002",
        "title": "Serving an espresso",
        "summary": "Three steps for presenting a single espresso on a saucer, "
                   "illustrated with one photograph and two close-ups.",
        "steps": [
            ("Set a warm cup on its saucer on the table, handle towards the guest, "
             "so the whole setting is ready before the coffee goes in.", "coffee.jpg"),
            ("Pull the shot straight into the cup. A good espresso is topped by an "
             "even, golden brown layer of crema.", "coffee_cup.jpg"),
            ("Lay a clean silver teaspoon on the saucer next to the cup, just below "
             "the rim, and serve at once.", "coffee_spoon.jpg"),
        ],
    },
    {
        "id": "comm-0003",
        "title": "How to look at a photograph of a Falcon 9 launch pad",
        "summary": "Reading a SpaceX photograph of a Falcon 9 rocket waiting on "
                   "the pad at dusk before the DSCOVR launch.",
        "steps": [
            ("Take in the whole scene: the rocket stands in the middle, framed by "
             "tall lattice towers and lightning masts under a darkening blue sky.",
             "rocket.jpg"),
            ("Zoom in on the vehicle itself. The white first and second stages rise "
             "to a rounded payload fairing at the top.", "rocket_vehicle.jpg"),
            ("Now look along the bottom edge, where the floodlights around the pad "
             "shine as bright star-shaped flares against the low clouds.",
             "rocket_pad_lights.jpg"),
        ],
    },
    {
        "id": "comm-0004",
        "title": "Examining a cat's face",
        "summary": "A close look at Chelsea the tabby cat, moving from the whole "
                   "face to the eyes and the nose.",
        "steps": [
            ("Begin with the full face: a tabby cat looks towards the camera, with "
             "striped brown and cream fur and long white whiskers.", "chelsea.jpg"),
            ("Look at the eyes. They are yellow-green with large dark pupils, set "
             "in fur with dark stripes running up the forehead.", "chelsea_eyes.jpg"),
            ("Then move down to the nose: a small pink-orange nose surrounded by "
             "soft, short, striped fur.", "chelsea_nose.jpg"),
        ],
    },
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = ap.parse_args()
    out_dir: Path = args.out
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)

    data_dir = skimage_data_dir()
    registry = skimage_registry()
    sources = {k: load_source(s, data_dir, registry) for k, s in SOURCES.items()}

    # ---- images -----------------------------------------------------------
    by_name: dict[str, Out] = {}
    img_bytes: dict[str, bytes] = {}
    notes: dict[str, str] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for o in IMAGES:
        data, size, note = render(o, sources[o.src])
        by_name[o.name] = o
        img_bytes[o.name] = data
        notes[o.name] = note
        sizes[o.name] = size
    # drop stale images from earlier runs so the folder matches this script
    for p in sorted(img_dir.iterdir()):
        if p.is_file() and p.name not in by_name:
            p.unlink()
    for name, data in img_bytes.items():
        (img_dir / name).write_bytes(data)

    # ---- pairs.jsonl ------------------------------------------------------
    pairs = []
    for pid, img, cap in PAIRS:
        if cap is None:  # exact duplicate of the first pair using the same image
            cap = next(c for p, i, c in PAIRS if i == img and c is not None)
        words = len(cap.split())
        assert 8 <= words <= 25, (pid, words)
        src = SOURCES[by_name[img].src]
        pairs.append({
            "id": pid,
            "image": f"images/{img}",
            "caption": cap,
            "license": src.license,
            "source": f"skimage.data.{src.func}",
        })
    write_jsonl(out_dir / "pairs.jsonl", pairs)

    # ---- comm.jsonl -------------------------------------------------------
    docs = []
    for d in DOCS:
        lics = sorted({SOURCES[by_name[img].src].license for _, img in d["steps"]})
        docs.append({
            "id": d["id"],
            "title": d["title"],
            "summary": d["summary"],
            "step_info": [
                [{"type": "text", "content": text},
                 {"type": "image", "image_path": f"images/{img}"}]
                for text, img in d["steps"]
            ],
            "license": f"images: {', '.join(lics)}; text: {TEXT_LICENSE}",
        })
    write_jsonl(out_dir / "comm.jsonl", docs)

    # ---- pairs-000000.tar (WebDataset shard) -------------------------------
    members: list[tuple[str, bytes]] = []
    for p in pairs:
        key = p["id"]
        img = p["image"].split("/", 1)[1]
        meta = {"id": p["id"], "license": p["license"], "source": p["source"]}
        members.append((f"{key}.{by_name[img].ext}", img_bytes[img]))
        members.append((f"{key}.txt", p["caption"].encode("utf-8")))
        members.append((f"{key}.json", json_bytes(meta)))
    members.sort(key=lambda m: (m[0].split(".", 1)[0], m[0]))
    write_tar(out_dir / "pairs-000000.tar", members)

    # ---- LICENSES.md -------------------------------------------------------
    write_licenses(out_dir / "LICENSES.md", notes, sizes)

    # ---- summary ------------------------------------------------------------
    total = 0
    print(f"sample written to {out_dir}")
    for p in sorted(out_dir.rglob("*")):
        if p.is_file():
            n = p.stat().st_size
            total += n
            print(f"  {p.relative_to(out_dir).as_posix():34s} {n:>9,d} B")
    print(f"  {'total':34s} {total:>9,d} B ({total / 1024 / 1024:.2f} MiB)")


def json_bytes(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": ")).encode("utf-8")


def write_jsonl(path: Path, rows) -> None:
    path.write_bytes(b"".join(json_bytes(r) + b"\n" for r in rows))


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 0
            ti.mode = 0o644
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            ti.type = tarfile.REGTYPE
            tf.addfile(ti, io.BytesIO(data))
    path.write_bytes(buf.getvalue())


def write_licenses(path: Path, notes: dict[str, str], sizes: dict[str, tuple[int, int]]) -> None:
    lines = [
        "# Sample data: provenance and licences",
        "",
        "Generated by `scripts/make_sample_data.py` from photographs shipped inside the",
        "scikit-image wheel (`skimage/data/`). Origins and licences are as stated in the",
        "docstrings of the `skimage.data` functions. No file was downloaded.",
        "",
        "| file | origin | licence | what was done |",
        "|---|---|---|---|",
    ]
    for o in IMAGES:
        src = SOURCES[o.src]
        w, h = sizes[o.name]
        lines.append(
            f"| `images/{o.name}` | `skimage.data.{src.func}` (`{src.file}`): {src.origin} "
            f"| {src.license} | {notes[o.name]}; {w}x{h} px |"
        )
    lines += [
        "| `pairs.jsonl` | this project | " + TEXT_LICENSE + " (text); images as above "
        "| image-caption pairs; `pair-dup-1` repeats `pair-0003` exactly, `pair-dup-2` "
        "repeats the image of `pair-0002` with another caption |",
        "| `comm.jsonl` | this project | " + TEXT_LICENSE + " (text); images as above "
        "| CoMM-layout step-by-step documents |",
        "| `pairs-000000.tar` | this project | as `pairs.jsonl` "
        "| WebDataset shard of `pairs.jsonl` (`<key>.jpg/.png`, `.txt`, `.json`) |",
        "",
        "All captions, titles, summaries and step texts were written by hand for this",
        "project and are dedicated to the public domain under CC0-1.0.",
        "",
        "Images from `skimage.data` that were not used: `eagle` and the other datasets",
        "that scikit-image fetches with pooch (not in the wheel; this script never",
        "downloads); `stereo_motorcycle` (Middlebury 2014, no licence stated by",
        "scikit-image); `coins` and `immunohistochemistry` (only \"no known copyright",
        "restrictions\"); `clock` (public domain, but deliberately motion-blurred);",
        "`moon`, `page`, `text` and the textures/synthetic images (no licence stated,",
        "not photographs, or not useful here).",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
