//! Non-cryptographic hashes of bytes and strings.

/// xxh3-64 of `data` (seed 0), the same value as `xxhash.xxh3_64_intdigest`.
pub fn xxh3_64(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn xxh3_64_known_values() {
        // Reference values from the xxHash specification's test vectors (empty input).
        assert_eq!(super::xxh3_64(b""), 0x2D06800538D394C2);
    }
}
