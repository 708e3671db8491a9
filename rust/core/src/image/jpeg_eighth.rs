//! Luma of a baseline JPEG at 1/8 scale, byte for byte what libjpeg(-turbo) gives with
//! `out_color_space = JCS_GRAYSCALE` and `scale_num = 1` (Pillow's `Image.draft("L", ...)` on a
//! JPEG at least 8 times the requested size; see [`super::decode_luma_draft`]).
//!
//! At that scale a pixel is its block's DC coefficient (`jpeg_idct_1x1`), so the job is
//! entropy decoding, and every AC coefficient is only skipped. libjpeg decodes them one symbol
//! at a time; here one lookup on the next 12 bits skips every complete (code, value bits) pair
//! that fits in them, end of block included, about two symbols per lookup on photographs.
//!
//! It takes only the common case: one sequential Huffman scan of 8-bit data holding every
//! component, gray or YCbCr, and a stream without any defect. Everything else (progressive,
//! arithmetic, 12-bit or multi-scan files, RGB/CMYK colour, a bad table, a bad code, data that
//! ends early, a misplaced restart marker, extraneous bytes) gives `None`, and the caller
//! decodes with libjpeg, which then reports or repairs it exactly as Pillow sees it.

/// Bits one lookup sees.
const LOOK: u32 = 12;

// A lookup entry: bits 0-4 the bits to skip, 5-11 how far the coefficient index moves, bit 12
// (EOB) the block ends there, bit 13 (FIRST_ONLY) not even the first (code, value bits) pair
// fits, bits 16-23 the first symbol and 24-28 its code length (0: a code longer than LOOK
// bits). DC lookups hold only the first symbol.
const EOB: u32 = 1 << 12;
const FIRST_ONLY: u32 = 1 << 13;

/// A Huffman table: per code length the largest code and the offset of its symbols (the JPEG
/// spec's decoding procedure), and the lookup on the next LOOK bits.
struct Huffman {
    look: Box<[u32; 1 << LOOK]>,
    maxcode: [i32; 17],
    valoff: [i32; 17],
    vals: Vec<u8>,
}

impl Huffman {
    /// libjpeg's `jpeg_make_d_derived_tbl` checks: at most 256 symbols, codes that fit their
    /// lengths, no all-ones code, DC symbols <= 15. `pairs`: fill the lookup with AC pair runs
    /// (an AC table), else with the first code only (a DC table).
    fn new(counts: &[u8; 16], vals: &[u8], pairs: bool) -> Option<Huffman> {
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        if total > 256 || vals.len() != total || (!pairs && vals.iter().any(|&v| v > 15)) {
            return None;
        }
        let mut maxcode = [-1i32; 17];
        let mut valoff = [0i32; 17];
        // (len << 8 | symbol) of the code at the top of each LOOK-bit index, 0 if longer.
        let mut first = vec![0u32; 1 << LOOK];
        let (mut code, mut k) = (0i32, 0usize);
        for len in 1..=16u32 {
            let n = counts[len as usize - 1] as usize;
            valoff[len as usize] = k as i32 - code;
            for _ in 0..n {
                if code >= 1 << len {
                    return None;
                }
                if len <= LOOK {
                    let lo = (code as usize) << (LOOK - len);
                    first[lo..lo + (1 << (LOOK - len))].fill(len << 8 | vals[k] as u32);
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                maxcode[len as usize] = code - 1;
            }
            if code >= 1 << len {
                return None;
            }
            code <<= 1;
        }
        let mut look = Box::new([0u32; 1 << LOOK]);
        for (i, e) in look.iter_mut().enumerate() {
            *e = if pairs { pair_entry(&first, i as u32) } else { first[i] << 16 };
        }
        Some(Huffman { look, maxcode, valoff, vals: vals.to_vec() })
    }

    /// (code length, symbol) of the code at the top of the 16 bits `bits`, for codes longer
    /// than LOOK bits.
    #[cold]
    fn code_slow(&self, bits: u32) -> Option<(u32, u32)> {
        for len in LOOK + 1..=16 {
            let code = (bits >> (16 - len)) as i32;
            if code <= self.maxcode[len as usize] {
                return Some((len, *self.vals.get((self.valoff[len as usize] + code) as usize)? as u32));
            }
        }
        None
    }

    /// The symbol at the top of `bits` (the next 16 bits) and its code length.
    #[inline(always)]
    fn symbol(&self, bits: u32) -> Option<(u32, u32)> {
        let e = self.look[(bits >> (16 - LOOK)) as usize];
        if e >> 24 != 0 {
            return Some((e >> 24, (e >> 16) & 0xFF));
        }
        self.code_slow(bits)
    }
}

/// The lookup entry of AC pairs for the LOOK bits `i`, from `first` (see [`Huffman::new`]).
fn pair_entry(first: &[u32], i: u32) -> u32 {
    let head = first[i as usize];
    if head == 0 {
        return 0;
    }
    let (mut used, mut adv) = (0u32, 0u32);
    while used < LOOK {
        // The code at bit `used`, zero-padded below: real only if it fits in what is left.
        let e = first[((i << used) & ((1 << LOOK) - 1)) as usize];
        let len = e >> 8;
        if len == 0 || used + len > LOOK {
            break;
        }
        let (r, s) = ((e >> 4) & 15, e & 15);
        if s == 0 && r != 15 {
            return head << 16 | (used + len) | adv << 5 | EOB;
        }
        let step = if s == 0 { 16 } else { r + 1 };
        // An advance past 63 is never usable (see `skip_ac`) and must not outgrow its 7 bits.
        if used + len + s > LOOK || adv + step > 63 {
            break;
        }
        used += len + s;
        adv += step;
    }
    if used == 0 {
        head << 16 | FIRST_ONLY
    } else {
        head << 16 | used | adv << 5
    }
}

/// The entropy-coded data of a scan, MSB first, with byte stuffing undone. Past a marker it
/// reads zeros, as libjpeg does, but counts them (`virt`) so that a scan that needed them is
/// rejected rather than repaired. `Copy` so that the cold refill works on a copy and the hot
/// loop keeps the fields in registers.
#[derive(Clone, Copy)]
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    n: u32,
    virt: u32,
    at_marker: bool,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Bits { data, pos, buf: 0, n: 0, virt: 0, at_marker: false }
    }

    /// At least 32 bits in `buf` (counting zeros past a marker).
    #[inline(always)]
    fn fill(&mut self) {
        if self.n >= 32 {
            return;
        }
        if let Some(b) = self.data.get(self.pos..self.pos + 8) {
            let x = u64::from_be_bytes(b.try_into().unwrap());
            // No 0xFF byte among the eight: take whole bytes, up to 63 bits in all.
            if (!x).wrapping_sub(0x0101_0101_0101_0101) & x & 0x8080_8080_8080_8080 == 0 {
                let take = (63 - self.n) >> 3;
                self.buf |= (x >> (64 - 8 * take)) << (64 - self.n - 8 * take);
                self.pos += take as usize;
                self.n += 8 * take;
                return;
            }
        }
        let mut copy = *self;
        copy.fill_slow();
        *self = copy;
    }

    #[cold]
    #[inline(never)]
    fn fill_slow(&mut self) {
        while self.n <= 56 {
            let byte = if self.at_marker { None } else { self.data.get(self.pos).copied() };
            match byte {
                Some(0xFF) if self.data.get(self.pos + 1) == Some(&0) => {
                    self.pos += 2;
                    self.push(0xFF);
                }
                Some(b) if b != 0xFF => {
                    self.pos += 1;
                    self.push(b);
                }
                _ => {
                    // A marker (or the end of the data): zeros from here on.
                    self.at_marker = true;
                    self.n += 8;
                    self.virt += 8;
                }
            }
        }
    }

    #[inline(always)]
    fn push(&mut self, b: u8) {
        self.buf |= (b as u64) << (56 - self.n);
        self.n += 8;
    }

    #[inline(always)]
    fn peek(&self, k: u32) -> u32 {
        (self.buf >> (64 - k)) as u32
    }

    #[inline(always)]
    fn skip(&mut self, k: u32) {
        self.buf <<= k;
        self.n -= k;
    }

    /// `s` bits (s <= 16 after a fill) as a signed value (the JPEG spec's EXTEND).
    #[inline(always)]
    fn receive_extend(&mut self, s: u32) -> i32 {
        if s == 0 {
            return 0;
        }
        let v = self.peek(s);
        self.skip(s);
        if v < 1 << (s - 1) {
            v as i32 - (1 << s) + 1
        } else {
            v as i32
        }
    }

    /// The position of the marker that ends the entropy-coded segment, if only the padding
    /// bits of the last byte are left unread (libjpeg would otherwise warn of extraneous data
    /// or of a premature end, and we leave such files to it).
    fn finish(&self) -> Option<usize> {
        if self.n < self.virt || self.n - self.virt >= 8 {
            return None;
        }
        (self.data.get(self.pos) == Some(&0xFF)).then_some(self.pos)
    }
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
}

/// The 1/8-scale luma as (width, height, pixels), or None to hand the file to libjpeg.
pub fn luma_eighth(data: &[u8]) -> Option<(u32, u32, Vec<u8>)> {
    if data.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    // Each quantisation table's DC entry (the first in zigzag order): all a 1/8 scale uses.
    let mut qt: [Option<u16>; 4] = [None; 4];
    let mut dc_tables: [Option<Huffman>; 4] = [None, None, None, None];
    let mut ac_tables: [Option<Huffman>; 4] = [None, None, None, None];
    let mut frame: Option<(usize, usize, Vec<Component>)> = None;
    let mut restart = 0usize;
    let (mut jfif, mut adobe) = (false, None::<u8>);
    let mut pos = 2;
    loop {
        if *data.get(pos)? != 0xFF {
            return None;
        }
        while *data.get(pos)? == 0xFF {
            pos += 1;
        }
        let marker = data[pos];
        pos += 1;
        let len = u16::from_be_bytes(data.get(pos..pos + 2)?.try_into().ok()?) as usize;
        let seg = data.get(pos + 2..pos + len.max(2))?;
        if len < 2 {
            return None;
        }
        match marker {
            0xC0 | 0xC1 => {
                if frame.is_some() || seg.len() < 6 || seg[0] != 8 {
                    return None;
                }
                let (h, w, nf) = (u16::from_be_bytes([seg[1], seg[2]]) as usize, u16::from_be_bytes([seg[3], seg[4]]) as usize, seg[5] as usize);
                // libjpeg refuses sides above JPEG_MAX_DIMENSION (65500).
                if h == 0 || w == 0 || h > 65500 || w > 65500 || !(nf == 1 || nf == 3) || seg.len() != 6 + 3 * nf {
                    return None;
                }
                let comps: Vec<Component> =
                    seg[6..].chunks_exact(3).map(|c| Component { id: c[0], h: (c[1] >> 4) as usize, v: (c[1] & 15) as usize, tq: c[2] as usize }).collect();
                if comps.iter().any(|c| !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v) || c.tq > 3) {
                    return None;
                }
                frame = Some((w, h, comps));
            }
            0xC4 => {
                let mut s = seg;
                while !s.is_empty() {
                    let (class, id) = (s[0] >> 4, (s[0] & 15) as usize);
                    let counts: [u8; 16] = s.get(1..17)?.try_into().ok()?;
                    let total: usize = counts.iter().map(|&c| c as usize).sum();
                    let vals = s.get(17..17 + total)?;
                    if id > 3 || class > 1 {
                        return None;
                    }
                    let table = Some(Huffman::new(&counts, vals, class == 1)?);
                    if class == 0 {
                        dc_tables[id] = table;
                    } else {
                        ac_tables[id] = table;
                    }
                    s = &s[17 + total..];
                }
            }
            0xDB => {
                let mut s = seg;
                while !s.is_empty() {
                    let (precision, id) = (s[0] >> 4, (s[0] & 15) as usize);
                    let size = if precision == 0 { 64 } else { 128 };
                    let body = s.get(1..1 + size)?;
                    if id > 3 || precision > 1 {
                        return None;
                    }
                    qt[id] = Some(if precision == 0 { body[0] as u16 } else { u16::from_be_bytes([body[0], body[1]]) });
                    s = &s[1 + size..];
                }
            }
            0xDD => {
                restart = u16::from_be_bytes(seg.try_into().ok()?) as usize;
            }
            0xE0 => jfif |= seg.len() >= 14 && seg.starts_with(b"JFIF\0"),
            0xEE if seg.len() >= 12 && seg.starts_with(b"Adobe") => adobe = Some(seg[11]),
            0xE1..=0xEF | 0xFE => {}
            0xDA => {
                let (w, h, comps) = frame.as_ref()?;
                if comps.len() == 3 {
                    // libjpeg's colour-space guess (jdapimin.c); only YCbCr has its luma in
                    // component 0.
                    let rgb_ids = [comps[0].id, comps[1].id, comps[2].id] == [82, 71, 66];
                    let ycc = jfif || adobe.map_or(!rgb_ids, |t| t != 0);
                    if !ycc {
                        return None;
                    }
                }
                let ns = *seg.first()? as usize;
                if ns != comps.len() || seg.len() != 4 + 2 * ns || seg[1 + 2 * ns..] != [0, 63, 0] {
                    return None;
                }
                let mut order = Vec::with_capacity(ns);
                for sel in seg[1..1 + 2 * ns].chunks_exact(2) {
                    let ci = comps.iter().position(|c| c.id == sel[0])?;
                    if order.iter().any(|&(c, _, _)| c == ci) {
                        return None;
                    }
                    let (td, ta) = ((sel[1] >> 4) as usize, (sel[1] & 15) as usize);
                    if td > 3 || ta > 3 {
                        return None;
                    }
                    order.push((ci, td, ta));
                }
                let scan = Scan { comps, order, qt: &qt, dc: &dc_tables, ac: &ac_tables, restart, w: *w, h: *h };
                let (px, end) = scan.decode(data, pos + len)?;
                // Only the end of the image may follow this (single) scan.
                return (data.get(end..end + 2)? == [0xFF, 0xD9]).then_some((w.div_ceil(8) as u32, h.div_ceil(8) as u32, px));
            }
            _ => return None,
        }
        pos += len;
    }
}

struct Scan<'a> {
    comps: &'a [Component],
    /// (component index, DC table, AC table) in scan order.
    order: Vec<(usize, usize, usize)>,
    qt: &'a [Option<u16>; 4],
    dc: &'a [Option<Huffman>; 4],
    ac: &'a [Option<Huffman>; 4],
    restart: usize,
    w: usize,
    h: usize,
}

impl Scan<'_> {
    /// The output pixels, and the position of the marker after the scan.
    fn decode(&self, data: &[u8], start: usize) -> Option<(Vec<u8>, usize)> {
        let y = &self.comps[0];
        let (hmax, vmax) = (self.comps.iter().map(|c| c.h).max()?, self.comps.iter().map(|c| c.v).max()?);
        let single = self.comps.len() == 1;
        // One component: each block is an MCU, whatever its sampling factors.
        let (yh, yv) = if single { (1, 1) } else { (y.h, y.v) };
        if !single && (y.h != hmax || y.v != vmax || self.comps.iter().map(|c| c.h * c.v).sum::<usize>() > 10) {
            return None;
        }
        let (mcu_w, mcu_h) = if single { (8, 8) } else { (8 * hmax, 8 * vmax) };
        let (mcus_x, mcus_y) = (self.w.div_ceil(mcu_w), self.h.div_ceil(mcu_h));
        // libjpeg keeps quantisers as 16-bit `short` multipliers.
        let q0 = self.qt[y.tq]?;
        if q0 > 32767 {
            return None;
        }
        let mut blocks = Vec::with_capacity(self.order.len());
        for &(ci, td, ta) in &self.order {
            let c = &self.comps[ci];
            self.qt[c.tq]?;
            let n = if single { 1 } else { c.h * c.v };
            blocks.push((self.dc[td].as_ref()?, self.ac[ta].as_ref()?, ci == 0, n));
        }
        // The luma plane over whole MCUs (a pixel per block), cropped at the end.
        let (pw, ph) = (mcus_x * yh, mcus_y * yv);
        let mut plane = vec![0u8; pw * ph];
        let mut pred = 0i32;
        let mut bits = Bits::new(data, start);
        let mut rst = 0u8;
        for m in 0..mcus_x * mcus_y {
            if self.restart > 0 && m > 0 && m % self.restart == 0 {
                let at = bits.finish()?;
                if data.get(at + 1) != Some(&(0xD0 + rst)) {
                    return None;
                }
                rst = (rst + 1) & 7;
                bits = Bits::new(data, at + 2);
                pred = 0;
            }
            let (mx, my) = (m % mcus_x, m / mcus_x);
            for &(dc, ac, luma, n) in &blocks {
                for b in 0..n {
                    bits.fill();
                    // DC symbols are <= 15 (checked when the table was built).
                    let (len, s) = dc.symbol(bits.peek(16))?;
                    bits.skip(len);
                    // After a fill and a code of at most 16 bits, 16 bits remain: enough.
                    let diff = bits.receive_extend(s);
                    if luma {
                        pred = pred.checked_add(diff)?;
                        // jpeg_idct_1x1 on the 16-bit JCOEF libjpeg stores.
                        let v = (pred as i16 as i32 * q0 as i32 + 4) >> 3;
                        let (bx, by) = (mx * yh + b % yh, my * yv + b / yh);
                        plane[by * pw + bx] = range_limit(v);
                    }
                    skip_ac(&mut bits, ac)?;
                }
            }
        }
        let end = bits.finish()?;
        let (ow, oh) = (self.w.div_ceil(8), self.h.div_ceil(8));
        let mut out = Vec::with_capacity(ow * oh);
        for row in plane.chunks_exact(pw).take(oh) {
            out.extend_from_slice(&row[..ow]);
        }
        Some((out, end))
    }
}

/// Skips the AC coefficients of one block, as libjpeg reads them: a run past the last index
/// ends the block after a ZRL, and is corrupt (None) after a coefficient.
#[inline(always)]
fn skip_ac(bits: &mut Bits, h: &Huffman) -> Option<()> {
    let mut k = 1u32;
    loop {
        bits.fill();
        let e = h.look[bits.peek(LOOK) as usize];
        let adv = (e >> 5) & 127;
        if e & FIRST_ONLY == 0 && e & 31 != 0 && k + adv <= 63 {
            bits.skip(e & 31);
            k += adv;
            if e & EOB != 0 {
                return Some(());
            }
            continue;
        }
        // One symbol: near the block's end, or a pair longer than LOOK bits.
        let (len, sym) = h.symbol(bits.peek(16))?;
        bits.skip(len);
        let (r, s) = (sym >> 4, sym & 15);
        if s == 0 {
            if r != 15 {
                return Some(());
            }
            k += 16;
        } else {
            if k + r > 63 {
                return None;
            }
            bits.skip(s);
            k += r + 1;
        }
        if k > 63 {
            return Some(());
        }
    }
}

/// libjpeg's post-IDCT range limit: `x & 1023` read as a 10-bit signed value, plus 128,
/// clamped to 0..=255 (its `range_limit` table).
#[inline(always)]
fn range_limit(x: i32) -> u8 {
    let i = x & 1023;
    let v = if i < 512 { i + 128 } else { i - 1024 + 128 };
    v.clamp(0, 255) as u8
}
