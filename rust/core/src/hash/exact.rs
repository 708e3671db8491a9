//! Exact-duplicate keys: xxh3 (64/128) and BLAKE3 of bytes, and a hash of normalised text.

/// xxh3-64 (seed 0) of `data`, the same value as `xxhash.xxh3_64_intdigest`.
pub fn xxh3_64(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

/// xxh3-128 (seed 0) of `data` as 32 hex digits, as `xxhash.xxh3_128_hexdigest`.
pub fn xxh3_128_hex(data: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(data))
}

/// BLAKE3 of `data` as 64 hex digits, as `blake3.blake3(data).hexdigest()`.
pub fn blake3_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// xxh3-128 hex of [`crate::text::normalize`]d text: equal for texts that differ only in
/// Unicode compatibility forms, case, whitespace (and punctuation with `strip_punct`).
pub fn normalized_text_hex(text: &str, strip_punct: bool) -> String {
    xxh3_128_hex(crate::text::normalize(text, strip_punct).as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn xxh3_64_known_values() {
        // xxHash specification test vector: empty input, seed 0.
        assert_eq!(super::xxh3_64(b""), 0x2D06800538D394C2);
    }

    #[test]
    fn normalized_hash_ignores_case_and_spacing() {
        assert_eq!(super::normalized_text_hex("A  cat\n", false), super::normalized_text_hex("a cat", false));
        assert_ne!(super::normalized_text_hex("a cat.", false), super::normalized_text_hex("a cat", false));
        assert_eq!(super::normalized_text_hex("a cat.", true), super::normalized_text_hex("a cat", true));
    }
}
