//! What pyarrow does not tell of a parquet file and the Python reader needs to bound memory
//! (see `interleaf/io/_pages.py`): the longest entry of a dictionary page.

/// The byte length of the longest of the first `count` values of PLAIN-encoded BYTE_ARRAY data
/// (a dictionary page's body: each value a little-endian u32 length and its bytes), or an
/// error when the data ends before them.
pub fn longest_plain_byte_array(data: &[u8], count: usize) -> Result<usize, String> {
    let mut at = 0usize;
    let mut longest = 0usize;
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
        longest = longest.max(n);
    }
    Ok(longest)
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
}
