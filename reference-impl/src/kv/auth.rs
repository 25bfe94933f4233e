//! Password hashing and value checksums of the key-value protocol.
//!
//! ```text
//! hash  = PBKDF2-HMAC-SHA256(password, salt, 100_000 iterations) -> 32 raw bytes
//! check = CRC-32 (IEEE / zlib polynomial) of the value, printed as unsigned decimal
//! ```

use pbkdf2::pbkdf2_hmac;
use sha2::Sha256;

/// The salt the spec gives for testing: `b'\xed\x12\x92\xc6\x86\xb4\x8a\xbf\x10\xb3bd\x1c/m\xca'`.
pub const TEST_SALT: [u8; 16] = [
    0xed, 0x12, 0x92, 0xc6, 0x86, 0xb4, 0x8a, 0xbf, 0x10, 0xb3, 0x62, 0x64, 0x1c, 0x2f, 0x6d, 0xca,
];

/// PBKDF2 iterations the spec requires.
pub const PBKDF2_ITERATIONS: u32 = 100_000;

/// Length of the password hash that follows `CONNECT <id>`.
pub const HASH_LEN: usize = 32;

/// The 32-byte PBKDF2-HMAC-SHA256 hash of `password` with `salt`.
pub fn hash_password(password: &[u8], salt: &[u8]) -> [u8; HASH_LEN] {
    let mut out = [0u8; HASH_LEN];
    pbkdf2_hmac::<Sha256>(password, salt, PBKDF2_ITERATIONS, &mut out);
    out
}

/// CRC-32 of a value, as the `GET` reply's second line carries it.
pub fn crc32(value: &[u8]) -> u32 {
    crc32fast::hash(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_hello_world_matches_zlib() {
        assert_eq!(crc32(b"hello world"), 222_957_957);
    }

    #[test]
    fn hash_matches_python_hashlib() {
        // hashlib.pbkdf2_hmac('sha256', b'secret', TEST_SALT, 100000).hex()
        assert_eq!(
            hex::encode(hash_password(b"secret", &TEST_SALT)),
            "0834af328d106defd94b3074232208e29e7fef1a371c9b0ebbf23902105dd763"
        );
    }

    #[test]
    fn hash_is_deterministic_and_salted() {
        let a = hash_password(b"secret", &TEST_SALT);
        assert_eq!(a, hash_password(b"secret", &TEST_SALT));
        assert_ne!(a, hash_password(b"secret", b"another salt"));
        assert_ne!(a, hash_password(b"Secret", &TEST_SALT));
    }
}
