"""Perceptual hashes against imagehash 4.3 on real photographs and near-duplicates made from
them; Hamming-radius search against brute force; bad images."""

from __future__ import annotations

import io
import struct
import zlib

import imagehash
import numpy as np
import polars as pl
import pytest
from conftest import SKIMAGE_DATA, SKIMAGE_PHOTOS, encode
from PIL import Image, ImageDraw, ImageEnhance

from interleaf.dedup import ahash, dhash, hash_clusters, near_duplicates, phash


def hexes(table) -> list[str | None]:
    """The imagehash strings of a hash table (``str(imagehash.phash(...))`` per image)."""
    return table.get_column("hex").to_list()


@pytest.fixture(scope="module")
def corpus(sample_dir) -> list[tuple[str, bytes]]:
    """Real photographs as shipped, plus near-duplicates: recompressed, resized, cropped,
    brightened, grayscale, RGBA and palette versions."""
    files = sorted((sample_dir / "images").iterdir()) + [SKIMAGE_DATA / n for n in SKIMAGE_PHOTOS if (SKIMAGE_DATA / n).exists()]
    out = []
    for f in files:
        raw = f.read_bytes()
        rgb = Image.open(io.BytesIO(raw)).convert("RGB")
        w, h = rgb.size
        out += [
            (f.name, raw),
            (f.name + ":q60", encode(rgb, "JPEG", quality=60)),
            (f.name + ":q95", encode(rgb, "JPEG", quality=95)),
            (f.name + ":half", encode(rgb.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BICUBIC), "JPEG", quality=90)),
            (f.name + ":crop", encode(rgb.crop((w // 20, h // 20, w - w // 20, h - h // 20)), "PNG")),
            (f.name + ":bright", encode(ImageEnhance.Brightness(rgb).enhance(1.2), "JPEG", quality=90)),
            (f.name + ":gray", encode(rgb.convert("L"), "PNG")),
            (f.name + ":rgba", encode(rgb.convert("RGBA"), "PNG")),
            (f.name + ":palette", encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG")),
            (f.name + ":webp", encode(rgb, "WEBP", quality=80)),
        ]
    return out


@pytest.mark.parametrize("ours,ref", [(phash, imagehash.phash), (dhash, imagehash.dhash), (ahash, imagehash.average_hash)], ids=["phash", "dhash", "ahash"])
def test_hashes_equal_imagehash_on_real_photos(corpus, ours, ref):
    table = ours([b for _, b in corpus])
    got = hexes(table)
    assert table.get_column("hash").to_list() == [int(h, 16) for h in got]
    assert table.get_column("error").null_count() == table.height
    want = [str(ref(Image.open(io.BytesIO(b)))) for _, b in corpus]
    differ = [(n, g, w) for (n, _), g, w in zip(corpus, got, want) if g != w]
    rate = 1 - len(differ) / len(corpus)
    assert len(corpus) >= 250
    # Goal from the issue: >= 99% identical; with Pillow 13's pass order reproduced
    # (interleaf_core::image::resample::vertical_first) every hash is identical.
    assert rate == 1.0, differ


def _flag(size, box, fill) -> bytes:
    im = Image.new("RGB", size, "white")
    ImageDraw.Draw(im).rectangle(box, fill=fill)
    return encode(im, "PNG")


def _mirrored(seed: int) -> bytes:
    """Random blocks mirrored left-right and top-bottom, as logos and placeholders are."""
    a = np.kron(np.random.default_rng(seed).integers(0, 256, (5, 7), dtype=np.uint8), np.ones((8, 8), np.uint8))
    a = np.concatenate([a, a[::-1]], 0)
    return encode(Image.fromarray(np.concatenate([a, a[:, ::-1]], 1)), "PNG")


def _circle() -> bytes:
    im = Image.new("RGB", (200, 200), "white")
    ImageDraw.Draw(im).ellipse((50, 50, 150, 150), fill="red")
    return encode(im, "PNG")


EDGE_IMAGES = {
    "blank-white.png": lambda: encode(Image.new("RGB", (300, 200), "white"), "PNG"),
    "blank-black.jpg": lambda: encode(Image.new("RGB", (64, 64)), "JPEG", quality=90),
    "blank-gray-L.png": lambda: encode(Image.new("L", (33, 17), 128), "PNG"),
    "one-pixel-L.png": lambda: encode(Image.new("L", (1, 1), 200), "PNG"),
    "one-pixel-rgb.jpg": lambda: encode(Image.new("RGB", (1, 1), (200, 10, 10)), "JPEG", quality=90),
    "two-by-one.png": lambda: encode(Image.fromarray(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)), "PNG"),
    "one-by-three.png": lambda: encode(Image.fromarray(np.array([[[9, 9, 9]], [[120, 60, 30]], [[250, 250, 250]]], np.uint8)), "PNG"),
    "two-by-two.png": lambda: encode(Image.fromarray(np.array([[[188, 10, 3], [180, 40, 90]], [[87, 200, 1], [93, 0, 255]]], np.uint8)), "PNG"),
    # Mirror-symmetric content: the DCT terms the symmetry cancels are exactly 0 in scipy's
    # FFT, and the median is then often that 0.
    "flag-thirds.png": lambda: _flag((300, 200), (100, 0, 199, 199), "red"),
    "flag-halves.png": lambda: _flag((300, 200), (0, 0, 149, 199), "blue"),
    "circle.png": _circle,
    "checker.png": lambda: encode(Image.fromarray(((np.indices((64, 64)).sum(0) // 8) % 2 * 255).astype(np.uint8)), "PNG"),
    "mirrored-blocks-1.png": lambda: _mirrored(1),
    "mirrored-blocks-2.png": lambda: _mirrored(2),
}


@pytest.mark.parametrize("hash_size", [8, 16])
@pytest.mark.parametrize("ours,ref", [(phash, imagehash.phash), (dhash, imagehash.dhash), (ahash, imagehash.average_hash)], ids=["phash", "dhash", "ahash"])
def test_hashes_equal_imagehash_on_blank_tiny_and_symmetric_images(ours, ref, hash_size):
    """Blank images (every term equal: the median rule decides), one- to four-pixel images
    (upsampled to the hash grid) and mirror-symmetric ones (flags, a circle, a checkerboard)."""
    data = {n: make() for n, make in EDGE_IMAGES.items()}
    table = ours(list(data.values()), hash_size=hash_size)
    assert table.get_column("error").null_count() == table.height
    for (name, b), got in zip(data.items(), hexes(table), strict=True):
        want = str(ref(Image.open(io.BytesIO(b)), hash_size=hash_size))
        assert got == want or (ref is imagehash.phash and only_noise_bits(b, got, want, hash_size)), (name, got, want)


def only_noise_bits(data: bytes, got: str, want: str, hash_size: int = 8) -> bool:
    """Whether two pHashes differ only in bits whose DCT coefficient is zero in exact
    arithmetic but comes out of scipy's FFT as rounding noise (1e-13 where the symmetry cancels
    it) next to a median of exactly 0: which side of 0 that noise falls on is decided by the
    FFT's operation order, which no port can match. Coefficients scipy gives as exactly 0 are
    not excused: interleaf gives 0 there too."""
    import scipy.fftpack

    n = hash_size * 4
    px = np.asarray(Image.open(io.BytesIO(data)).convert("L").resize((n, n), Image.Resampling.LANCZOS), dtype=float)
    low = scipy.fftpack.dct(scipy.fftpack.dct(px, axis=0), axis=1)[:hash_size, :hash_size].ravel()
    med = np.median(low)
    noise = (low != med) & (np.abs(low - med) <= 1e-9 * np.abs(low).max())
    bits = hash_size * hash_size
    flipped = [i for i in range(bits) if (int(got, 16) >> (bits - 1 - i)) & 1 != (int(want, 16) >> (bits - 1 - i)) & 1]
    return all(noise[i] for i in flipped)


def test_jpeg_decoding_is_bit_identical_to_pillow(sample_dir):
    from interleaf import _native

    for f in sorted((sample_dir / "images").glob("*.jpg")) + [SKIMAGE_DATA / "rocket.jpg", SKIMAGE_DATA / "retina.jpg"]:
        w, h, px = _native._decode_luma(f.read_bytes())
        ref = np.asarray(Image.open(f).convert("L"))
        assert np.array_equal(np.frombuffer(bytes(px), np.uint8).reshape(h, w), ref), f.name


def test_full_decode_luma_pixels_equal_pillows(jpeg_layouts):
    from interleaf import _native

    for name, b in jpeg_layouts:
        w, h, px = _native._decode_luma(b)
        ref = np.asarray(Image.open(io.BytesIO(b)).convert("L"))
        assert np.array_equal(np.frombuffer(bytes(px), np.uint8).reshape(h, w), ref), name


def test_single_axis_resizes_are_bit_identical_to_pillow(sample_dir):
    from interleaf import _native

    im = Image.open(sample_dir / "images" / "coffee.jpg").convert("L")
    a = np.asarray(im)
    h, w = a.shape
    for size in [(w, 8), (9, h), (w, 300), (50, h)]:
        for name, f in (("lanczos", Image.Resampling.LANCZOS), ("bicubic", Image.Resampling.BICUBIC), ("bilinear", Image.Resampling.BILINEAR)):
            ours = np.frombuffer(bytes(_native._resize_luma(a.tobytes(), w, h, size[0], size[1], name)), np.uint8)
            assert np.array_equal(ours.reshape(size[1], size[0]), np.asarray(im.resize(size, f))), (size, name)


def test_sixteen_bit_and_hash_sizes(sample_dir):
    gray = np.asarray(Image.open(sample_dir / "images" / "camera.jpg").convert("L")).astype(np.uint16)
    im16 = Image.fromarray(gray * 3)  # uint16 -> mode "I;16"; values up to 765: Pillow clips to 255 in "L"
    assert im16.mode == "I;16"
    data = encode(im16, "PNG")
    assert hexes(phash([data])) == [str(imagehash.phash(Image.open(io.BytesIO(data))))]
    # The same with a tRNS colour key: still I;16 in Pillow, still clipped at 255 (the decoder
    # here sees gray + alpha; its high byte is not what Pillow reads).
    buf = io.BytesIO()
    im16.save(buf, "PNG", transparency=7)
    keyed = buf.getvalue()
    assert b"tRNS" in keyed and Image.open(io.BytesIO(keyed)).mode == "I;16"
    for f, ref in ((phash, imagehash.phash), (ahash, imagehash.average_hash), (dhash, imagehash.dhash)):
        assert hexes(f([keyed])) == [str(ref(Image.open(io.BytesIO(keyed))))], f.__name__
    from interleaf import image

    assert np.array_equal(image.decode(keyed), np.asarray(Image.open(io.BytesIO(keyed)).convert("RGB")))
    photo = (sample_dir / "images" / "chelsea.jpg").read_bytes()
    for size in (4, 16):
        assert hexes(phash([photo], hash_size=size)) == [str(imagehash.phash(Image.open(io.BytesIO(photo)), hash_size=size))]
        assert hexes(dhash([photo], hash_size=size)) == [str(imagehash.dhash(Image.open(io.BytesIO(photo)), hash_size=size))]
    for bad in (1, 0, -1, 257, 2**31, True, 8.0):
        with pytest.raises(ValueError, match="hash_size"):
            phash([photo], hash_size=bad)


def png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")


def test_bad_images_give_none_and_an_error(sample_dir):
    good = (sample_dir / "images" / "coffee.jpg").read_bytes()
    items = [good, b"", b"definitely not an image", good[: len(good) // 2], png_header_only(100_000, 100_000), None]
    table = phash(items)
    hashes, errors = hexes(table), table.get_column("error").to_list()
    assert hashes[0] is not None and errors[0] is None
    assert hashes[1:] == [None] * 5 and table.get_column("hash").to_list()[1:] == [None] * 5
    assert [e["kind"] for e in errors[1:]] == ["empty_image", "unknown_image_format", "truncated_image", "image_too_large", "missing_image"]
    assert "100000x100000" in errors[4]["message"]


def test_near_duplicates_match_brute_force_and_group_variants(corpus):
    hashes = phash([b for _, b in corpus]).get_column("hash")
    found = near_duplicates(hashes, radius=6)
    ints = hashes.to_list()
    brute = {(i, j) for i in range(len(ints)) for j in range(i + 1, len(ints)) if bin(ints[i] ^ ints[j]).count("1") <= 6}
    assert set(zip(found["i"].tolist(), found["j"].tolist())) == brute
    assert all(bin(ints[i] ^ ints[j]).count("1") == d for i, j, d in zip(found["i"], found["j"], found["distance"]))
    # High-quality recompressions and grayscale copies land in their original's cluster.
    names = [n for n, _ in corpus]
    reps = found["representative"]
    for k, n in enumerate(names):
        if n.endswith((":q95", ":gray")):
            assert reps[k] == reps[names.index(n.split(":")[0])], n
    with pytest.raises(TypeError, match="UInt64"):
        near_duplicates(pl.Series(["f" * 32]))
    # The {hash, error} struct of the polars phash expression is taken, as hamming takes it.
    import interleaf.polars as ilp

    struct = pl.DataFrame({"b": [b for _, b in corpus]}, schema={"b": pl.Binary}).select(ilp.phash("b")).to_series()
    assert near_duplicates(struct, radius=6)["representative"].tolist() == reps.tolist()
    for bad in (-1, 64, True):
        with pytest.raises(ValueError, match="radius"):
            near_duplicates(hashes, radius=bad)
    # One thread gives the same pairs and clusters; a bad thread count is refused.
    one = near_duplicates(hashes, radius=6, threads=1)
    assert all(np.array_equal(one[k], found[k]) for k in found)
    assert hash_clusters(hashes, 6, threads=1)[0].tolist() == hash_clusters(hashes, 6)[0].tolist() == reps.tolist()
    for bad in (0, -2, 1.5):
        with pytest.raises((ValueError, TypeError), match="threads"):
            near_duplicates(hashes, threads=bad)
        with pytest.raises((ValueError, TypeError), match="threads"):
            hash_clusters(hashes, threads=bad)


def test_polars_perceptual_hashes_equal_the_batch_api(corpus):
    import polars as pl

    import interleaf.polars as ilp

    blobs = [b for _, b in corpus[:40]] + [b"junk", None]
    df = pl.DataFrame({"img": blobs}, schema={"img": pl.Binary})
    out = df.lazy().select(ilp.phash("img").alias("p"), ilp.dhash("img").alias("d"), ilp.ahash("img").alias("a")).collect(engine="streaming")
    for col, fn in (("p", phash), ("d", dhash), ("a", ahash)):
        assert out.get_column(col).to_frame().unnest(col).equals(fn(blobs).select("hash", "error"))
    assert out.get_column("p")[-2] == {"hash": None, "error": {"kind": "unknown_image_format", "message": "bytes are not JPEG, PNG, WebP, GIF or BMP"}}
    assert out.get_column("p")[-1]["error"]["kind"] == "missing_image"
    # hamming takes the structs as they come.
    dist = out.select(ilp.hamming("p", "d")).to_series().to_list()
    assert dist[0] == bin(out["p"][0]["hash"] ^ out["d"][0]["hash"]).count("1") and dist[-1] is None


def test_dedup_command_with_phash_finds_the_sample_duplicates(sample_dir, tmp_path):
    import json

    import polars as pl

    from interleaf.cli import main

    assert main(["dedup", str(sample_dir / "pairs.jsonl"), "--method", "phash", "--out", str(tmp_path), "--quiet"]) == 0
    dup = pl.read_parquet(tmp_path / "duplicates.parquet")
    joined = dup.filter(pl.col("doc_id") != pl.col("representative"))
    assert set(joined.get_column("doc_id")) >= {"pair-dup-1", "pair-dup-2"}
    assert (joined.get_column("score") <= 5).all()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["phash"]["unhashed"] == 0


def _pillow_drafted(b: bytes, req: int) -> Image.Image:
    im = Image.open(io.BytesIO(b))
    im.draft("L", (req, req))
    return im


@pytest.fixture(scope="module")
def jpeg_variants(corpus) -> list[tuple[str, bytes]]:
    """The corpus plus JPEG kinds the draft path treats differently: grayscale, progressive,
    4:4:4 and CMYK (Adobe) files."""
    out = list(corpus)
    for name, raw in corpus[:: len(corpus) // 6]:
        rgb = Image.open(io.BytesIO(raw)).convert("RGB")
        out += [
            (name + ":gray.jpg", encode(rgb.convert("L"), "JPEG", quality=90)),
            (name + ":progressive.jpg", encode(rgb, "JPEG", quality=85, progressive=True)),
            (name + ":444.jpg", encode(rgb, "JPEG", quality=90, subsampling=0)),
            (name + ":cmyk.jpg", encode(rgb.convert("CMYK"), "JPEG", quality=90)),
        ]
    return out


@pytest.fixture(scope="module")
def jpeg_layouts(corpus) -> list[tuple[str, bytes]]:
    """JPEG layouts a decoder can get wrong: restart intervals, optimised Huffman tables,
    4:2:2, odd and tiny sizes, low and maximum quality."""
    out = []
    for name, raw in corpus[:: len(corpus) // 4]:
        rgb = Image.open(io.BytesIO(raw)).convert("RGB")
        odd = rgb.crop((3, 5, min(rgb.width, 523), min(rgb.height, 389)))
        out += [
            (name + ":rst-blocks.jpg", encode(rgb, "JPEG", quality=90, restart_marker_blocks=7)),
            (name + ":rst-rows.jpg", encode(odd, "JPEG", quality=75, restart_marker_rows=1)),
            (name + ":optimized.jpg", encode(rgb, "JPEG", quality=90, optimize=True)),
            (name + ":422.jpg", encode(odd, "JPEG", quality=90, subsampling=1)),
            (name + ":q100.jpg", encode(odd, "JPEG", quality=100, subsampling=0)),
            (name + ":q5.jpg", encode(odd, "JPEG", quality=5)),
            (name + ":gray-odd.jpg", encode(odd.convert("L"), "JPEG", quality=80, optimize=True)),
            (name + ":tiny.jpg", encode(odd.resize((37, 21)), "JPEG", quality=90)),
        ]
    return out


@pytest.mark.parametrize("req", [16, 64, 128, 256])
def test_drafted_luma_pixels_equal_pillows(jpeg_variants, jpeg_layouts, req):
    """Pixel for pixel against Pillow's libjpeg-turbo after `draft("L", (req, req))`: DCT scales
    1/2, 1/4 and 1/8 over the corpus and the layouts above."""
    from interleaf import _native

    for name, b in jpeg_variants + jpeg_layouts:
        w, h, px = _native._decode_luma(b, draft=req)
        ref = np.asarray(_pillow_drafted(b, req).convert("L"))
        assert np.array_equal(np.frombuffer(bytes(px), np.uint8).reshape(h, w), ref), (name, req)


@pytest.mark.parametrize("req", [64, 128, 256])
def test_draft_hashes_equal_imagehash_on_pillow_drafted_images(jpeg_variants, req):
    blobs = [b for _, b in jpeg_variants]
    for ours, ref in ((phash, imagehash.phash), (dhash, imagehash.dhash), (ahash, imagehash.average_hash)):
        got = hexes(ours(blobs, draft=req))
        want = [str(ref(_pillow_drafted(b, req))) for b in blobs]
        differ = [n for (n, _), g, w in zip(jpeg_variants, got, want) if g != w]
        assert not differ, (ours.__name__, differ)
    # The draft really reduces: some JPEG hashes differ from the full-decode ones, by a few bits.
    full = hexes(phash(blobs))
    drafted = hexes(phash(blobs, draft=req))
    dist = [bin(int(a, 16) ^ int(b, 16)).count("1") for a, b in zip(full, drafted)]
    assert any(dist) and max(dist) <= 16


def test_draft_argument_and_bad_images(sample_dir):
    good = (sample_dir / "images" / "coffee.jpg").read_bytes()
    items = [good, b"", b"definitely not an image", good[: len(good) // 2], png_header_only(100_000, 100_000), None]
    table = phash(items, draft=128)
    hashes, errors = hexes(table), table.get_column("error").to_list()
    assert hashes[0] is not None and hashes[1:] == [None] * 5
    assert [e["kind"] for e in errors[1:]] == ["empty_image", "unknown_image_format", "truncated_image", "image_too_large", "missing_image"]
    for bad in (0, -3, True, 1.5):
        with pytest.raises(ValueError, match="draft"):
            phash([good], draft=bad)
    import interleaf.polars as ilp

    with pytest.raises(ValueError, match="draft"):
        ilp.phash("img", draft=0)


def test_draft_through_polars_and_the_dedup_command(corpus, sample_dir, tmp_path):
    import json

    import polars as pl

    import interleaf.polars as ilp
    from interleaf.cli import main

    blobs = [b for _, b in corpus[:30]] + [None]
    df = pl.DataFrame({"img": blobs}, schema={"img": pl.Binary})
    out = df.lazy().select(ilp.phash("img", draft=128).alias("p")).collect(engine="streaming")
    assert out.unnest("p").equals(phash(blobs, draft=128).select("hash", "error"))
    assert main(["dedup", str(sample_dir / "pairs.jsonl"), "--method", "phash", "--draft", "128", "--out", str(tmp_path), "--quiet"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["phash"]["draft"] == 128 and summary["phash"]["unhashed"] == 0
    joined = pl.read_parquet(tmp_path / "duplicates.parquet").filter(pl.col("doc_id") != pl.col("representative"))
    assert set(joined.get_column("doc_id")) >= {"pair-dup-1", "pair-dup-2"}


def test_faiss_binary_backend_gives_the_pairs_of_brute_force_on_100k_hashes():
    rng = np.random.default_rng(11)
    base = rng.integers(0, 2**63, 100_000, dtype=np.uint64) | (rng.integers(0, 2, 100_000, dtype=np.uint64) << np.uint64(63))
    # Planted pairs at every distance 0-8: flip that many distinct bits of a base hash.
    planted = []
    for d in range(9):
        for src in rng.choice(100_000, 40, replace=False):
            bits = rng.choice(64, d, replace=False)
            v = int(base[src])
            for b in bits:
                v ^= 1 << int(b)
            planted.append(v)
    hashes = pl.Series("hash", [int(h) for h in base] + planted + [None], dtype=pl.UInt64)
    for radius in (0, 2, 5):  # FAISS's multi-hash search takes ~80 s at radius 8 on 100k (MIH: 7 s)
        mih, fa = near_duplicates(hashes, radius), near_duplicates(hashes, radius, backend="faiss")
        for key in ("i", "j", "distance", "representative"):
            assert np.array_equal(mih[key], fa[key]), (radius, key)
        # Every planted copy within the radius is found with its source, none beyond it (random
        # pairs of 64-bit hashes within 5 bits are vanishingly rare, but counted alike).
        assert len(fa["i"]) >= 40 * (radius + 1) and not any(j >= 100_000 + 40 * (radius + 1) for j in fa["j"].tolist() if j < 100_360)
    with pytest.raises(ValueError, match="backend"):
        near_duplicates(hashes, 5, backend="lsh")


def test_a_set_large_enough_for_wider_ranges_finds_what_faiss_finds():
    """From 262,144 hashes the index cuts them into fewer, wider ranges searched within a bit
    or more (3 ranges of 21-22 bits at radius 5; radius + 1 exact-match ranges took quadratic
    time at this size and beyond): the same matches as FAISS's multi-hash search (in the layout
    :func:`faiss_layout` picks here, 3 tables of 21 bits probed within a flip at radius 5), at
    every distance up to the radius."""
    from interleaf.dedup import HashIndex

    rng = np.random.default_rng(5)
    n = 700_000
    base = rng.integers(0, 2**63, n, dtype=np.uint64) | (rng.integers(0, 2, n, dtype=np.uint64) << np.uint64(63))
    queries = []
    for d in range(9):  # 0-8 bits from an indexed hash, the flips anywhere in the 64 bits
        for src in rng.choice(n, 60, replace=False):
            v = int(base[src])
            for b in rng.choice(64, d, replace=False):
                v ^= 1 << int(b)
            queries.append(v)
    queries += [int(x) for x in rng.integers(0, 2**63, 200, dtype=np.uint64)]
    for radius in (2, 5):
        mih = HashIndex(base, radius).search(queries)
        fa = HashIndex(base, radius, backend="faiss").search(queries)
        for key in ("query", "index", "distance"):
            assert np.array_equal(mih[key], fa[key]), (radius, key)
        assert int((mih["distance"] <= radius).sum()) >= 60 * (radius + 1)


def test_faiss_layout_finds_every_neighbour_and_widens_with_the_set():
    """Every layout keeps the pigeonhole bound (nhash * (nflip + 1) > radius, nhash * bits <=
    64); small sets get radius + 1 exact-match tables, large ones fewer, wider tables probed
    with flips (the layout FAISS was benchmarked with: 6 x 10 bits at 10 million hashes left
    about 10,000 hashes per bucket)."""
    from interleaf.dedup.perceptual import faiss_layout

    for n in (0, 1, 1000, 20_000, 10**6, 10**7, 10**9):
        for radius in range(0, 21):
            nhash, bits, nflip = faiss_layout(n, radius)
            assert nhash * (nflip + 1) > radius and nhash * bits <= 64, (n, radius)
    assert faiss_layout(1000, 5) == (6, 10, 0)
    assert faiss_layout(10**7, 5) == (3, 21, 1)


def test_hash_index_search_equals_brute_force_for_both_backends():
    from interleaf.dedup import HashIndex

    rng = np.random.default_rng(12)
    base = rng.integers(0, 2**63, 20_000, dtype=np.uint64) << np.uint64(1) | rng.integers(0, 2, 20_000, dtype=np.uint64)
    indexed = [int(h) for h in base] + [None, int(base[7])]  # a null and an equal copy
    # Queries 0-8 bits from an indexed hash, random ones, a null.
    queries = []
    for d in range(9):
        for src in rng.choice(20_000, 30, replace=False):
            v = int(base[src])
            for b in rng.choice(64, d, replace=False):
                v ^= 1 << int(b)
            queries.append(v)
    queries += [int(h) for h in rng.integers(0, 2**63, 100, dtype=np.uint64)] + [None]
    iv = np.array([h if h is not None else 0 for h in indexed], dtype=np.uint64)
    qv = np.array([h if h is not None else 0 for h in queries], dtype=np.uint64)
    inull = np.array([h is None for h in indexed])
    # Brute force: popcount of every XOR.
    x = qv[:, None] ^ iv[None, :]
    for built, radius in ((5, 5), (5, 2), (8, 8), (0, 0), (1, 1)):
        dist = np.bitwise_count(x).astype(np.int64)
        ok = (dist <= radius) & ~inull[None, :]
        ok[-1, :] = False  # the null query
        q, i = np.nonzero(ok)
        for backend in ("mih", "faiss"):
            index = HashIndex(indexed, built, backend=backend)
            got = index.search(pl.Series(queries, dtype=pl.UInt64), radius)
            assert np.array_equal(got["query"], q) and np.array_equal(got["index"], i), (backend, built, radius)
            assert np.array_equal(got["distance"], dist[q, i]), (backend, built, radius)
            assert len(index) == len(indexed)
        # Every planted query within the radius finds its source.
        assert len(q) >= 30 * (radius + 1)
    index = HashIndex(indexed, 3)
    with pytest.raises(ValueError, match="above the index's radius 3"):
        index.search(queries, 4)
    with pytest.raises(ValueError, match="backend"):
        HashIndex(indexed, 3, backend="lsh")
    with pytest.raises(TypeError, match="UInt64"):
        index.search(pl.Series([1.5]))
    assert HashIndex([], 5).search([1, None])["query"].tolist() == []
    assert HashIndex([None], 5, backend="faiss").search([1])["index"].tolist() == []
