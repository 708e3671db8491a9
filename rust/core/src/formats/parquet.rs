//! What pyarrow does not tell of a parquet file and the Python reader needs to bound memory
//! (see `interleaf/io/_pages.py`): the longest entry of a dictionary page, and the bytes the
//! indices of data pages gather from it.

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
