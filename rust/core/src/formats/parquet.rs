//! What pyarrow does not tell of a parquet file and the Python reader needs to bound memory
//! (see `interleaf/io/_pages.py`): page headers (Thrift compact structs), the longest entry of
//! a dictionary page, and the bytes the indices of data pages gather from it.

/// A Thrift compact value as a page header's reader needs it: integers (i8 as its unsigned
/// byte; i16/i32/i64 zigzag-decoded, from varints of up to 10 bytes, so wider than i64),
/// booleans and structs (field id -> value, the last of a repeated id kept); doubles, binaries,
/// lists, sets and maps are skipped.
#[derive(Debug, Clone, PartialEq)]
pub enum ThriftValue {
    Int(i128),
    Bool(bool),
    Struct(Vec<(i64, ThriftValue)>),
    Skipped,
}

/// Why a Thrift struct could not be read: the data ends inside it (read more), or it is
/// malformed (the message).
#[derive(Debug, Clone, PartialEq)]
pub enum ThriftError {
    Short,
    Bad(String),
}

/// Thrift compact structs are nested at most this deep (a page header's are 3).
const MAX_THRIFT_DEPTH: u32 = 16;

struct Compact<'a> {
    data: &'a [u8],
    at: usize,
}

impl Compact<'_> {
    fn byte(&mut self) -> Result<u8, ThriftError> {
        let b = *self.data.get(self.at).ok_or(ThriftError::Short)?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u128, ThriftError> {
        let (mut out, mut shift) = (0u128, 0u32);
        loop {
            let b = self.byte()?;
            out |= u128::from(b & 0x7F) << shift;
            if b < 0x80 {
                return Ok(out);
            }
            shift += 7;
            if shift > 63 {
                return Err(ThriftError::Bad("a varint of over 10 bytes".into()));
            }
        }
    }

    fn zigzag(&mut self) -> Result<i128, ThriftError> {
        let v = self.varint()? as i128;
        Ok((v >> 1) ^ -(v & 1))
    }

    fn skip(&mut self, n: u128) -> Result<(), ThriftError> {
        if n > (self.data.len() - self.at) as u128 {
            return Err(ThriftError::Short);
        }
        self.at += n as usize;
        Ok(())
    }

    fn value(&mut self, kind: u8, depth: u32) -> Result<ThriftValue, ThriftError> {
        if depth > MAX_THRIFT_DEPTH {
            return Err(ThriftError::Bad(format!("values nested over {MAX_THRIFT_DEPTH} deep")));
        }
        Ok(match kind {
            1 | 2 => ThriftValue::Bool(kind == 1),
            3 => ThriftValue::Int(i128::from(self.byte()?)),
            4..=6 => ThriftValue::Int(self.zigzag()?),
            7 => {
                self.skip(8)?;
                ThriftValue::Skipped
            }
            8 => {
                let n = self.varint()?;
                self.skip(n)?;
                ThriftValue::Skipped
            }
            9 | 10 => {
                let head = self.byte()?;
                let (mut n, element) = (u128::from(head >> 4), head & 0x0F);
                if n == 15 {
                    n = self.varint()?;
                }
                // Every element takes a byte at least: bounded by the data.
                for _ in 0..n {
                    self.element(element, depth + 1)?;
                }
                ThriftValue::Skipped
            }
            11 => {
                let n = self.varint()?;
                if n > 0 {
                    let types = self.byte()?;
                    for _ in 0..n {
                        self.element(types >> 4, depth + 1)?;
                        self.element(types & 0x0F, depth + 1)?;
                    }
                }
                ThriftValue::Skipped
            }
            12 => self.structure(depth + 1)?,
            other => return Err(ThriftError::Bad(format!("unknown Thrift type {other}"))),
        })
    }

    fn element(&mut self, kind: u8, depth: u32) -> Result<(), ThriftError> {
        // A container's booleans are a byte each, not folded into the type.
        if kind == 1 || kind == 2 {
            self.skip(1)
        } else {
            self.value(kind, depth).map(drop)
        }
    }

    fn structure(&mut self, depth: u32) -> Result<ThriftValue, ThriftError> {
        if depth > MAX_THRIFT_DEPTH {
            return Err(ThriftError::Bad(format!("values nested over {MAX_THRIFT_DEPTH} deep")));
        }
        let mut fields: Vec<(i64, ThriftValue)> = Vec::new();
        let mut last: i128 = 0;
        loop {
            let head = self.byte()?;
            if head == 0 {
                return Ok(ThriftValue::Struct(fields));
            }
            let (kind, delta) = (head & 0x0F, head >> 4);
            last = if delta > 0 { last + i128::from(delta) } else { self.zigzag()? };
            let v = self.value(kind, depth)?;
            // Field ids past i64 cannot be a page header's: kept apart from every real one.
            let id = i64::try_from(last).unwrap_or(i64::MIN);
            match fields.iter_mut().find(|(k, _)| *k == id) {
                Some(slot) => slot.1 = v,
                None => fields.push((id, v)),
            }
        }
    }
}

/// The Thrift compact struct at the start of `data` (a parquet page header) and the bytes it
/// takes; [`ThriftError::Short`] when `data` ends inside it.
pub fn thrift_compact_struct(data: &[u8]) -> Result<(ThriftValue, usize), ThriftError> {
    let mut r = Compact { data, at: 0 };
    let v = r.structure(0)?;
    Ok((v, r.at))
}

/// What the reader needs of a parquet page header (parquet-format's `PageHeader`).
#[derive(Debug, Clone, PartialEq)]
pub struct PageHeader {
    /// `PageType`: 0 data page, 2 dictionary page, 3 data page v2.
    pub kind: i128,
    pub uncompressed: i128,
    pub compressed: i128,
    /// Values, nulls included (a dictionary page's: its entries); 0 when not given.
    pub values: i128,
    /// Its values are dictionary indices (PLAIN_DICTIONARY or RLE_DICTIONARY).
    pub dictionary_encoded: bool,
    /// The bytes of the header itself: the page's body follows.
    pub header_bytes: usize,
    /// A v2 data page's level bytes (repetition then definition, never compressed), and of those
    /// the repetition levels'.
    pub levels: i128,
    pub repetition_levels: i128,
    /// A v2 data page's values are compressed (unless its header says `is_compressed = false`).
    pub values_compressed: bool,
    /// A v1 data page's repetition and definition levels are RLE (parquet-mr names BIT_PACKED
    /// for the levels a column without them does not store).
    pub rle_repetition: bool,
    pub rle_definition: bool,
}

/// The page header at the start of `data`: [`ThriftError::Short`] when `data` ends inside it,
/// a message when it is malformed or lacks its type or sizes. Values are read as Python's
/// reader of these headers read them (a boolean where an integer goes counts as 0 or 1, a
/// skipped value as none), so a forged header means the same to both.
pub fn page_header(data: &[u8]) -> Result<PageHeader, ThriftError> {
    use ThriftValue::{Bool, Int, Skipped, Struct};
    let (h, header_bytes) = thrift_compact_struct(data)?;
    let Struct(fields) = h else { unreachable!("a struct") };
    let get = |f: &[(i64, ThriftValue)], id: i64| f.iter().find(|(k, _)| *k == id).map(|(_, v)| v.clone());
    let int = |v: &Option<ThriftValue>| match v {
        Some(Int(i)) => Some(*i),
        Some(Bool(b)) => Some(i128::from(*b)),
        _ => None,
    };
    let bad = |m: &str| ThriftError::Bad(m.to_string());
    let (kind, uncompressed, compressed) = match (int(&get(&fields, 1)), int(&get(&fields, 2)), int(&get(&fields, 3))) {
        (Some(k), Some(u), Some(c)) if u >= 0 && c >= 0 => (k, u, c),
        _ => return Err(bad("no type or sizes")),
    };
    let sub = |id: i64| match get(&fields, id) {
        Some(Struct(f)) => Some(f),
        _ => None,
    };
    let mut out = PageHeader {
        kind,
        uncompressed,
        compressed,
        values: 0,
        dictionary_encoded: false,
        header_bytes,
        levels: 0,
        repetition_levels: 0,
        values_compressed: true,
        rle_repetition: true,
        rle_definition: true,
    };
    let (mut values, mut encoding) = (None, None);
    if let (0, Some(f)) = (kind, sub(5)) {
        (values, encoding) = (get(&f, 1), get(&f, 2));
        out.rle_repetition = matches!(get(&f, 4), Some(Int(3)));
        out.rle_definition = matches!(get(&f, 3), Some(Int(3)));
    } else if let (3, Some(f)) = (kind, sub(8)) {
        // num_values, nulls included: pyarrow does not read num_nulls, so neither is it
        // trusted here (a forged count would hide the values).
        (values, encoding) = (get(&f, 1), get(&f, 4));
        let positive = |id| int(&get(&f, id)).filter(|n| *n > 0).unwrap_or(0);
        out.repetition_levels = positive(6);
        out.levels = positive(5) + out.repetition_levels;
        out.values_compressed = !matches!(get(&f, 7), Some(Bool(false)));
    } else if let (2, Some(f)) = (kind, sub(7)) {
        values = get(&f, 1);
    }
    for v in [&values, &encoding] {
        if !matches!(v, None | Some(Int(_) | Bool(_) | Skipped)) {
            return Err(bad("a value count or encoding that is not an integer"));
        }
    }
    out.values = int(&values).unwrap_or(0).max(0);
    out.dictionary_encoded = matches!(encoding, Some(Int(2 | 8)));
    Ok(out)
}

/// The byte length of the longest of the first `count` values of PLAIN-encoded BYTE_ARRAY data
/// (a dictionary page's body: each value a little-endian u32 length and its bytes), or an
/// error when the data ends before them.
pub fn longest_plain_byte_array(data: &[u8], count: usize) -> Result<usize, String> {
    Ok(plain_byte_array_lengths(data, count)?.into_iter().max().unwrap_or(0) as usize)
}

/// The byte lengths of the first `count` values of PLAIN-encoded BYTE_ARRAY data, or an error
/// when the data ends before them.
pub fn plain_byte_array_lengths(data: &[u8], count: usize) -> Result<Vec<u32>, String> {
    let mut at = 0usize;
    // Every value takes 4 bytes at least: a forged count allocates no more than the data.
    let mut out = Vec::with_capacity(count.min(data.len() / 4));
    for i in 0..count {
        let Some(head) = data.get(at..at + 4) else {
            return Err(format!("PLAIN byte arrays: value {i} of {count} starts past the end ({} bytes)", data.len()));
        };
        let n = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        at += 4;
        if n > data.len() - at {
            return Err(format!("PLAIN byte arrays: value {i} of {count} has {n} bytes, past the end ({} bytes)", data.len()));
        }
        at += n;
        out.push(n as u32);
    }
    Ok(out)
}

/// What the dictionary indices of one data page gather: `stream` is the page's values (a byte
/// of bit width, then RLE/bit-packed hybrid runs: parquet's RLE_DICTIONARY and
/// PLAIN_DICTIONARY), `lengths` the dictionary's entry lengths. Returns the bytes gathered,
/// each value counting its entry's length plus `overhead`, over at most `max_values` indices
/// (the page's non-null values: the padding of the last bit-packed group is not read past
/// them), and the indices counted. An index past the dictionary gathers nothing (the page is
/// corrupt, and its reader fails on it). Runs are summed, not expanded: a run of a billion
/// copies of one index costs one step.
pub fn dictionary_gathered_bytes(lengths: &[u32], stream: &[u8], max_values: u64, overhead: u64) -> Result<(u64, u64), String> {
    let Some((&width, rest)) = stream.split_first() else {
        return Ok((0, 0)); // a page of nulls only has no bit width
    };
    if width > 32 {
        return Err(format!("dictionary indices: a bit width of {width}"));
    }
    let mut gathered = 0u64;
    let counted = hybrid_runs(rest, width as usize, max_values, |index, n| {
        let entry = lengths.get(index as usize).map_or(0, |&len| (len as u64).saturating_add(overhead));
        gathered = gathered.saturating_add(n.saturating_mul(entry));
    })?;
    Ok((gathered, counted))
}

/// How many of the first `max_values` levels of an RLE/bit-packed hybrid level stream (no
/// length prefix) of levels up to `max_level` equal `level`, and how many levels were read
/// (fewer than `max_values` when the stream ends first).
pub fn count_level(stream: &[u8], max_level: u16, max_values: u64, level: u16) -> Result<(u64, u64), String> {
    let width = (16 - max_level.leading_zeros()) as usize;
    let mut count = 0u64;
    let read = hybrid_runs(stream, width, max_values, |value, n| {
        if value == level as u64 {
            count += n;
        }
    })?;
    Ok((count, read))
}

/// Reads parquet's RLE/bit-packed hybrid encoding of `width`-bit values (at most 32), calling
/// `run(value, copies)` for each run of equal values (a bit-packed run: each value once), up to
/// `max_values` values; returns the values read. A bit-packed run that claims more groups than
/// the data holds is read as far as it goes.
fn hybrid_runs(mut rest: &[u8], width: usize, max_values: u64, mut run: impl FnMut(u64, u64)) -> Result<u64, String> {
    let mut read = 0u64;
    while read < max_values && !rest.is_empty() {
        let (header, used) = uleb128(rest)?;
        rest = &rest[used..];
        if header & 1 == 0 {
            // An RLE run: a count, then one value in ceil(width / 8) little-endian bytes.
            let bytes = width.div_ceil(8);
            let Some(value) = rest.get(..bytes) else {
                return Err("RLE run past the end of the page".into());
            };
            rest = &rest[bytes..];
            let n = (header >> 1).min(max_values - read);
            run(value.iter().rev().fold(0u64, |v, &b| (v << 8) | b as u64), n);
            read += n;
        } else {
            // A bit-packed run: groups of 8 values, each group `width` bytes, least significant
            // bit first.
            let groups = header >> 1;
            let n = groups.saturating_mul(8).min(max_values - read);
            if width == 0 {
                run(0, n);
                read += n;
                continue;
            }
            let bytes = (groups as usize).saturating_mul(width).min(rest.len());
            let packed = &rest[..bytes];
            rest = &rest[bytes..];
            let take = n.min((bytes * 8 / width) as u64);
            let mask = (1u64 << width) - 1;
            for k in 0..take as usize {
                let bit = k * width;
                let mut word = 0u64;
                for (j, &b) in packed[bit / 8..].iter().take(5).enumerate() {
                    word |= (b as u64) << (8 * j);
                }
                run((word >> (bit % 8)) & mask, 1);
            }
            read += take;
            if take < n {
                break; // the run ends past the data
            }
        }
    }
    Ok(read)
}

/// An unsigned LEB128 varint of at most 64 bits, and the bytes it took.
fn uleb128(data: &[u8]) -> Result<(u64, usize), String> {
    let mut out = 0u64;
    for (i, &b) in data.iter().enumerate().take(10) {
        out |= ((b & 0x7f) as u64) << (7 * i);
        if b < 0x80 {
            return Ok((out, i + 1));
        }
    }
    Err("a run header that does not end".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_headers_give_what_the_reader_needs() {
        // type=0, uncompressed=4, compressed=4, data_page_header{num_values=5, encoding=8 (RLE_DICTIONARY), def=3 (RLE), rep=4 (BIT_PACKED)}.
        let v1 = [0x15, 0x00, 0x15, 0x08, 0x15, 0x08, 0x2C, 0x15, 0x0A, 0x15, 0x10, 0x15, 0x06, 0x15, 0x08, 0x00, 0x00];
        let h = page_header(&v1).unwrap();
        assert_eq!((h.kind, h.uncompressed, h.compressed, h.values, h.dictionary_encoded, h.header_bytes), (0, 4, 4, 5, true, v1.len()));
        assert_eq!((h.rle_repetition, h.rle_definition, h.levels, h.values_compressed), (false, true, 0, true));
        // v2: type=3, data_page_header_v2 (field 8){num_values=7, num_nulls=0, num_rows=7, encoding=0,
        // def bytes=6, rep bytes=2, is_compressed=false}.
        let v2 = [0x15, 0x06, 0x15, 0x08, 0x15, 0x08, 0x5C, 0x15, 0x0E, 0x15, 0x00, 0x15, 0x0E, 0x15, 0x00, 0x15, 0x0C, 0x15, 0x04, 0x12, 0x00, 0x00];
        let h = page_header(&v2).unwrap();
        assert_eq!((h.kind, h.values, h.dictionary_encoded, h.levels, h.repetition_levels, h.values_compressed), (3, 7, false, 8, 2, false));
        // A dictionary page (field 7){num_values=3, encoding=0}.
        let d = [0x15, 0x04, 0x15, 0x08, 0x15, 0x08, 0x4C, 0x15, 0x06, 0x15, 0x00, 0x00, 0x00];
        assert_eq!(page_header(&d).unwrap().values, 3);
        // Missing or negative sizes; a struct where the value count goes.
        assert_eq!(page_header(&[0x15, 0x00, 0x15, 0x08, 0x00]), Err(ThriftError::Bad("no type or sizes".into())));
        assert_eq!(page_header(&[0x15, 0x00, 0x15, 0x01, 0x15, 0x08, 0x00]), Err(ThriftError::Bad("no type or sizes".into())));
        let forged = [0x15, 0x00, 0x15, 0x08, 0x15, 0x08, 0x2C, 0x1C, 0x00, 0x00, 0x00];
        assert_eq!(page_header(&forged), Err(ThriftError::Bad("a value count or encoding that is not an integer".into())));
        assert_eq!(page_header(&v1[..9]), Err(ThriftError::Short));
    }

    #[test]
    fn thrift_compact_structs_read_as_page_headers_need_them() {
        use ThriftValue::{Bool, Int, Skipped, Struct};
        // PageHeader{type=0, uncompressed=4, compressed=4, crc: i32, data_page_header{5, 8, 3, 3},
        // statistics-like binary field, a list of 3 i32, a bool true, an i8 of 200}.
        let mut h = vec![0x15, 0x00, 0x15, 0x08, 0x15, 0x08, 0x15, 0x01, 0x1C, 0x15, 0x0A, 0x15, 0x10, 0x15, 0x06, 0x15, 0x06, 0x00];
        h.extend([0x18, 0x03, b'a', b'b', b'c', 0x19, 0x35, 0x02, 0x04, 0x06, 0x11, 0x13, 200, 0x00]);
        let (v, used) = thrift_compact_struct(&[h.clone(), vec![0xEE; 4]].concat()).unwrap();
        assert_eq!(used, h.len());
        let data_page = Struct(vec![(1, Int(5)), (2, Int(8)), (3, Int(3)), (4, Int(3))]);
        let want = vec![(1, Int(0)), (2, Int(4)), (3, Int(4)), (4, Int(-1)), (5, data_page), (6, Skipped), (7, Skipped), (8, Bool(true)), (9, Int(200))];
        assert_eq!(v, Struct(want));
        // Short anywhere inside: read more.
        for cut in 0..h.len() {
            assert_eq!(thrift_compact_struct(&h[..cut]), Err(ThriftError::Short), "{cut}");
        }
        // A repeated field id keeps the last value; a long-form field id (delta 0, zigzag id).
        assert_eq!(thrift_compact_struct(&[0x15, 0x04, 0x05, 0x02, 0x06, 0x05, 0x08, 0x04, 0x00]).unwrap().0, Struct(vec![(1, Int(3)), (4, Int(2))]));
        // A varint of 10 bytes is wider than i64, as Python's ints are; 11 bytes are refused.
        let wide = [&[0x15u8][..], &[0xFF; 9], &[0x7F], &[0x00]].concat();
        assert_eq!(thrift_compact_struct(&wide).unwrap().0, Struct(vec![(1, Int(-(1i128 << 69)))]));
        let over = [&[0x15u8][..], &[0xFF; 10], &[0x01], &[0x00]].concat();
        assert_eq!(thrift_compact_struct(&over), Err(ThriftError::Bad("a varint of over 10 bytes".into())));
        // Nesting is bounded; a list claiming a billion items stops at the bytes there are.
        assert_eq!(thrift_compact_struct(&[0x19; 5000]), Err(ThriftError::Bad("values nested over 16 deep".into())));
        let mut billion = vec![0x19, 0xF5, 0x80, 0x94, 0xEB, 0xDC, 0x03];
        billion.extend([0x02; 100]);
        assert_eq!(thrift_compact_struct(&billion), Err(ThriftError::Short));
        assert_eq!(thrift_compact_struct(&[0x1E, 0x00]), Err(ThriftError::Bad("unknown Thrift type 14".into())));
        // Booleans inside a container are a byte each; a map's key and value types share a byte.
        assert_eq!(thrift_compact_struct(&[0x19, 0x21, 0x01, 0x02, 0x1B, 0x01, 0x55, 0x02, 0x04, 0x00]).unwrap().0, Struct(vec![(1, Skipped), (2, Skipped)]));
    }

    fn plain(values: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in values {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
        out
    }

    #[test]
    fn longest_of_the_values_counted() {
        let data = plain(&[b"a", b"", b"abcdef", b"xyz"]);
        assert_eq!(longest_plain_byte_array(&data, 4), Ok(6));
        assert_eq!(longest_plain_byte_array(&data, 2), Ok(1));
        assert_eq!(longest_plain_byte_array(&data, 0), Ok(0));
        assert_eq!(longest_plain_byte_array(&[], 0), Ok(0));
    }

    #[test]
    fn truncated_data_is_an_error() {
        let data = plain(&[b"abc", b"defgh"]);
        assert!(longest_plain_byte_array(&data, 3).unwrap_err().contains("value 2 of 3 starts past the end"));
        assert!(longest_plain_byte_array(&data[..data.len() - 1], 2).unwrap_err().contains("value 1 of 2 has 5 bytes"));
        // A length near u32::MAX does not wrap.
        let huge = [0xff, 0xff, 0xff, 0xff, b'x'];
        assert!(longest_plain_byte_array(&huge, 1).is_err());
    }

    /// Bit-packs `values` at `width` bits, least significant bit first, padded to groups of 8.
    fn packed(values: &[u64], width: usize) -> Vec<u8> {
        let groups = values.len().div_ceil(8);
        let mut out = vec![0u8; groups * width];
        for (k, &v) in values.iter().enumerate() {
            for b in 0..width {
                if v >> b & 1 == 1 {
                    let bit = k * width + b;
                    out[bit / 8] |= 1 << (bit % 8);
                }
            }
        }
        let mut run = vec![(groups as u8) << 1 | 1];
        run.extend(out);
        run
    }

    #[test]
    fn gathered_bytes_of_rle_and_bit_packed_runs() {
        let lengths = [10u32, 1000, 3];
        // Bit width 2; an RLE run of 5 copies of index 1; a bit-packed run of 0, 2, 2, 1.
        let mut stream = vec![2u8, 5 << 1, 1];
        stream.extend(packed(&[0, 2, 2, 1], 2));
        assert_eq!(dictionary_gathered_bytes(&lengths, &stream, 9, 8), Ok((5 * 1008 + 18 + 11 + 11 + 1008, 9)));
        // The padding of the last group is not counted past max_values; fewer values stop early.
        assert_eq!(dictionary_gathered_bytes(&lengths, &stream, 100, 0), Ok((5 * 1000 + 10 + 3 + 3 + 1000 + 4 * 10, 13)));
        assert_eq!(dictionary_gathered_bytes(&lengths, &stream, 3, 0), Ok((3000, 3)));
        assert_eq!(dictionary_gathered_bytes(&lengths, &stream, 7, 0), Ok((5000 + 10 + 3, 7)));
        // A page of nulls only, and max_values 0.
        assert_eq!(dictionary_gathered_bytes(&lengths, &[], 10, 8), Ok((0, 0)));
        assert_eq!(dictionary_gathered_bytes(&lengths, &stream, 0, 8), Ok((0, 0)));
    }

    #[test]
    fn wide_indices_and_a_one_entry_dictionary() {
        // 20-bit indices, bit-packed across byte boundaries, and an RLE value of 3 bytes.
        let lengths: Vec<u32> = (0..600_000u32).map(|i| i % 7).collect();
        let values = [599_999u64, 1, 524_288, 7, 0, 123_456, 65_535, 300_001, 42];
        let mut stream = vec![20u8];
        stream.extend(packed(&values, 20));
        stream.extend([3 << 1, 0x40, 0x42, 0x0f]); // 3 copies of 0x0f4240 = 1,000,000: past the end
        stream.extend([2 << 1, 0x05, 0x00, 0x00]); // 2 copies of 5

        // The 9 values, the 7 padding zeros (entry 0: length 0, plus 1), the 2 copies of 5.
        let want: u64 = values.iter().map(|&v| (v % 7) + 1).sum::<u64>() + 7 + 2 * (5 + 1);
        assert_eq!(dictionary_gathered_bytes(&lengths, &stream, 9 + 7 + 3 + 2, 1), Ok((want, 21)));
        // Bit width 0: every index is 0, whatever the run; a billion-copy run is summed, not walked.
        assert_eq!(dictionary_gathered_bytes(&[10_000_000], &[0, 0x80, 0xa8, 0xd6, 0xb9, 0x07], u64::MAX, 0), Ok((10_000_000 * 1_000_000_000, 1_000_000_000)));
        assert_eq!(dictionary_gathered_bytes(&[4], &[0, 3 << 1 | 1], 100, 0), Ok((4 * 24, 24)));
    }

    #[test]
    fn damaged_index_streams() {
        assert!(dictionary_gathered_bytes(&[1], &[33, 2], 10, 0).unwrap_err().contains("bit width of 33"));
        assert!(dictionary_gathered_bytes(&[1], &[8, 4 << 1], 10, 0).unwrap_err().contains("RLE run past the end"));
        assert!(dictionary_gathered_bytes(&[1], &[8, 0x80, 0x80], 10, 0).unwrap_err().contains("does not end"));
        // A bit-packed run that claims more groups than the page holds reads what is there.
        assert_eq!(dictionary_gathered_bytes(&[5, 6], &[1, 0xff, 0x01, 0b0000_0010], 1000, 0), Ok((5 * 7 + 6, 8)));
        // Sums saturate instead of wrapping.
        assert_eq!(
            dictionary_gathered_bytes(&[u32::MAX], &[0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], u64::MAX, u64::MAX).map(|r| r.0),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn levels_counted() {
        // Definition levels of max 2 (width 2): an RLE run of 3 twos, bit-packed 0, 2, 1, 2.
        let mut stream = vec![3 << 1, 2];
        stream.extend(packed(&[0, 2, 1, 2], 2));
        assert_eq!(count_level(&stream, 2, 7, 2), Ok((5, 7)));
        assert_eq!(count_level(&stream, 2, 7, 0), Ok((1, 7)));
        // Fewer levels than asked for: the padding is read, and the count says so.
        assert_eq!(count_level(&stream, 2, 100, 0), Ok((5, 11)));
        assert_eq!(count_level(&[], 1, 10, 1), Ok((0, 0)));
        // Max level 1: width 1; 0: width 0, every level 0.
        assert_eq!(count_level(&packed(&[1, 0, 1, 1, 0, 0, 0, 1], 1), 1, 8, 1), Ok((4, 8)));
        assert_eq!(count_level(&[5 << 1], 0, 10, 0), Ok((5, 5)));
    }

    #[test]
    fn lengths_of_plain_byte_arrays() {
        let data = plain(&[b"a", b"", b"abcdef"]);
        assert_eq!(plain_byte_array_lengths(&data, 3), Ok(vec![1, 0, 6]));
        // A forged count does not allocate beyond the data.
        assert!(plain_byte_array_lengths(&data, usize::MAX).is_err());
    }
}
