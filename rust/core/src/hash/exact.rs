//! Exact-duplicate keys: xxh3 (64/128) and BLAKE3 of bytes, and a hash of normalised text.

/// xxh3-64 (seed 0) of `data`, the same value as `xxhash.xxh3_64_intdigest`.
pub fn xxh3_64(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

/// xxh3-128 (seed 0) of `data`, big-endian: its hex is `xxhash.xxh3_128_hexdigest`.
pub fn xxh3_128(data: &[u8]) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(data).to_be_bytes()
}

/// BLAKE3 of `data`: its hex is `blake3.blake3(data).hexdigest()`.
pub fn blake3(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}

/// xxh3-128 of [`crate::text::normalize`]d text: equal for texts that differ only in Unicode
/// compatibility forms, case, whitespace (and punctuation with `strip_punct`).
pub fn normalized_text_xxh3(text: &str, strip_punct: bool) -> [u8; 16] {
    xxh3_128(crate::text::normalize(text, strip_punct).as_bytes())
}

/// `digest` as lower-case hex digits written into `out` (twice its length).
pub fn hex_into<'a>(digest: &[u8], out: &'a mut [u8]) -> &'a str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let out = &mut out[..2 * digest.len()];
    for (pair, b) in out.chunks_exact_mut(2).zip(digest) {
        pair[0] = HEX[(b >> 4) as usize];
        pair[1] = HEX[(b & 15) as usize];
    }
    std::str::from_utf8(out).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_matches_format() {
        for data in [&b""[..], b"a", b"The quick brown fox"] {
            assert_eq!(super::hex_into(&super::xxh3_128(data), &mut [0; 32]), format!("{:032x}", xxhash_rust::xxh3::xxh3_128(data)));
            assert_eq!(super::hex_into(&super::blake3(data), &mut [0; 64]), blake3::hash(data).to_hex().to_string());
        }
    }

    #[test]
    fn xxh3_64_known_values() {
        // xxHash specification test vector: empty input, seed 0.
        assert_eq!(super::xxh3_64(b""), 0x2D06800538D394C2);
    }

    #[test]
    fn normalized_hash_ignores_case_and_spacing() {
        assert_eq!(super::normalized_text_xxh3("A  cat\n", false), super::normalized_text_xxh3("a cat", false));
        assert_ne!(super::normalized_text_xxh3("a cat.", false), super::normalized_text_xxh3("a cat", false));
        assert_eq!(super::normalized_text_xxh3("a cat.", true), super::normalized_text_xxh3("a cat", true));
    }
}
