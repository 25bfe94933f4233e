//! The transport of the key-value protocol's RSA variant (`specs/kv-rsa.md`), as real
//! implementations speak it: each side sends its public key as a PKCS#1 PEM block (client
//! first), then every message is one raw 64-byte RSA PKCS#1 v1.5 ciphertext made with the
//! *peer's* public key (the spec's "private key" wording is wrong), one write each, no line
//! end. Fresh 512-bit keys per connection. Pure: no I/O.
//!
//! **Insecure by design.** 512-bit RSA can be factored in hours on rented machines, and
//! PKCS#1 v1.5 encryption is open to padding-oracle attacks. They exist here only because
//! the protocol demands them; nothing else in this project relies on them.
//!
//! ```text
//! C -> S  -----BEGIN RSA PUBLIC KEY----- ... -----END RSA PUBLIC KEY-----\n
//! S -> C  -----BEGIN RSA PUBLIC KEY----- ... -----END RSA PUBLIC KEY-----\n
//! C -> S  64 bytes: RSA(server key, "CONNECT alice")      at most 53 bytes of plaintext
//! C -> S  32 bytes: the password hash, in the clear
//! S -> C  64 bytes: RSA(client key, "CONNECT: OK")
//! ```

pub use rsa::PublicKey;
use rsa::pkcs1::der::Decode;
use rsa::pkcs1::{EncodeRsaPublicKey, LineEnding, RsaPublicKeyRef};
use rsa::{BoxedUint, Pkcs1v15Encrypt, PrivateKey};

/// Modulus size of every key of the protocol.
pub const KEY_BITS: usize = 512;
/// Length of one ciphertext: the modulus size in bytes.
pub const BLOCK_LEN: usize = KEY_BITS / 8;
/// Most plaintext one block holds (PKCS#1 v1.5 padding takes 11 bytes).
pub const MAX_PLAINTEXT: usize = BLOCK_LEN - 11;
/// Largest PEM block accepted from a peer before its END line (a 512-bit key is ~180 bytes).
pub const MAX_PEM: usize = 2048;

const PEM_BEGIN: &[u8] = b"-----BEGIN RSA PUBLIC KEY-----";
const PEM_END: &[u8] = b"-----END RSA PUBLIC KEY-----";
/// The X.509 (SubjectPublicKeyInfo) header some libraries write by default.
const SPKI_BEGIN: &[u8] = b"-----BEGIN PUBLIC KEY-----";

/// What can go wrong in the RSA layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RsaError {
    #[error("the public key is not a PKCS#1 PEM block (-----BEGIN RSA PUBLIC KEY-----): {0}")]
    BadPem(String),
    #[error("the public key has {bits} bits; the protocol uses {KEY_BITS}-bit keys")]
    KeySize { bits: usize },
    #[error("the public key grew past {MAX_PEM} bytes without its END line")]
    PemTooLong,
    #[error("the message is {len} bytes; a {KEY_BITS}-bit RSA block holds at most {MAX_PLAINTEXT}")]
    PlaintextTooLong { len: usize },
    #[error("the block is {len} bytes; ciphertexts are {BLOCK_LEN}")]
    BlockLength { len: usize },
    #[error("the block does not decrypt with this connection's key")]
    Undecryptable,
    /// A block is one message: ASCII text, in the spec dialect ending with its line feed.
    /// A block made for another key decrypts to junk (the crate's implicit rejection) and
    /// fails this at once, rather than being waited on for a line feed that never comes.
    #[error(
        "the block does not hold one message of ASCII text{}",
        if *line_end { " ending with a line feed" } else { "" }
    )]
    NotAMessage { line_end: bool },
    #[error("cannot make an RSA key pair: {0}")]
    KeyGeneration(String),
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
}

/// A connection's own key pair, its public key ready to send.
#[derive(Clone)]
pub struct KeyPair {
    private: PrivateKey,
    public_pem: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("KeyPair")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh 512-bit key pair (the crate refuses keys this small unless asked).
    pub fn generate() -> Result<Self, RsaError> {
        let private = PrivateKey::new_unchecked(&mut getrandom::SysRng, KEY_BITS)
            .map_err(|e| RsaError::KeyGeneration(e.to_string()))?;
        let public_pem = public_pem(&private.to_public_key())?;
        Ok(Self {
            private,
            public_pem,
        })
    }

    /// The public key as the PEM block sent to the peer (ends with a line feed).
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.private.to_public_key()
    }

    /// The plaintext of a block the peer encrypted with this pair's public key. A whole
    /// block made for another key gives junk, not an error: the crate rejects bad padding
    /// implicitly (an error would be a padding oracle), and the command layer drops the
    /// connection for the junk, as for any unknown message.
    pub fn decrypt(&self, block: &[u8]) -> Result<Vec<u8>, RsaError> {
        if block.len() != BLOCK_LEN {
            return Err(RsaError::BlockLength { len: block.len() });
        }
        self.private
            .decrypt(Pkcs1v15Encrypt, block)
            .map_err(|_| RsaError::Undecryptable)
    }
}

/// Whether a block's plaintext can be one message: non-empty ASCII, and with `line_end`
/// (the spec dialect) ending with `\n`. The password hash is binary and exempt.
pub fn is_message(plaintext: &[u8], line_end: bool) -> bool {
    !plaintext.is_empty() && plaintext.is_ascii() && (!line_end || plaintext.ends_with(b"\n"))
}

/// `key` as a PKCS#1 PEM block ending with a line feed.
pub fn public_pem(key: &PublicKey) -> Result<String, RsaError> {
    key.to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| RsaError::BadPem(e.to_string()))
}

/// One block: `plaintext` encrypted with the peer's `key`.
pub fn encrypt(key: &PublicKey, plaintext: &[u8]) -> Result<Vec<u8>, RsaError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(RsaError::PlaintextTooLong {
            len: plaintext.len(),
        });
    }
    key.encrypt(&mut getrandom::SysRng, Pkcs1v15Encrypt, plaintext)
        .map_err(|e| RsaError::Encrypt(e.to_string()))
}

/// A peer's public key from its PEM block; only 512-bit keys are accepted.
pub fn parse_public_key(pem: &[u8]) -> Result<PublicKey, RsaError> {
    parse_key(pem, false)
}

/// Largest key a lenient reader ([`PemReader::any_size`]) takes.
const MAX_ANY_BITS: usize = 4096;

fn parse_key(pem: &[u8], any_size: bool) -> Result<PublicKey, RsaError> {
    let bad = |e: &dyn std::fmt::Display| RsaError::BadPem(e.to_string());
    let (label, der) = rsa::pkcs1::der::pem::decode_vec(pem).map_err(|e| bad(&e))?;
    if label != "RSA PUBLIC KEY" {
        return Err(RsaError::BadPem(format!(
            "the block is a `{label}`, not an `RSA PUBLIC KEY`"
        )));
    }
    let key = RsaPublicKeyRef::from_der(&der).map_err(|e| bad(&e))?;
    let modulus = key.modulus.as_bytes();
    let exponent = key.public_exponent.as_bytes();
    let bits = significant_bits(modulus);
    let sizes = if any_size {
        1..=MAX_ANY_BITS
    } else {
        KEY_BITS..=KEY_BITS
    };
    if !sizes.contains(&bits) {
        return Err(RsaError::KeySize { bits });
    }
    let uint = |bytes: &[u8]| {
        let precision = u32::try_from(bytes.len() * 8).unwrap_or(u32::MAX);
        BoxedUint::from_be_slice(bytes, precision).map_err(|e| bad(&format!("{e:?}")))
    };
    PublicKey::new_with_size_limits(uint(modulus)?, uint(exponent)?, sizes).map_err(|e| bad(&e))
}

/// Bits of a big-endian number, leading zeros left out.
fn significant_bits(bytes: &[u8]) -> usize {
    let Some(first) = bytes.iter().position(|&b| b != 0) else {
        return 0;
    };
    (bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize
}

/// Reads the peer's PEM public key from the start of its stream, whatever the reads.
///
/// The key is complete with its END line and the line end after it. When a read stops right
/// after the END line, the reader waits for the next byte to know whether it is that line
/// end; a peer that sends no line end and waits is served by [`PemReader::finish`], which
/// the caller calls once the peer has gone quiet.
#[derive(Debug, Default)]
pub struct PemReader {
    buf: Vec<u8>,
    /// Takes keys of any size (a deliberately wrong server, `Fault::RsaAnyKeySize`).
    any_size: bool,
}

impl PemReader {
    /// A reader that takes keys of any size up to 4096 bits, not only 512-bit ones: wrong
    /// on purpose, for a server that must fail the key-size scenarios.
    #[doc(hidden)]
    pub fn any_size() -> Self {
        Self {
            buf: Vec::new(),
            any_size: true,
        }
    }

    /// Takes the next bytes; once the key is complete, the key and the bytes after it.
    ///
    /// A stream that does not start (after blank space) with the PKCS#1 BEGIN line is
    /// refused as soon as its first bytes show it, so a peer that sends a message before its
    /// key is told at once rather than after a timeout.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<(PublicKey, Vec<u8>)>, RsaError> {
        self.buf.extend_from_slice(bytes);
        check_start(&self.buf)?;
        let Some(at) = find(&self.buf, PEM_END) else {
            if self.buf.len() > MAX_PEM {
                return Err(RsaError::PemTooLong);
            }
            return Ok(None);
        };
        let end = at + PEM_END.len();
        if end > MAX_PEM {
            return Err(RsaError::PemTooLong);
        }
        let end = match &self.buf[end..] {
            // Whether a line end follows is not known yet.
            [] | [b'\r'] => return Ok(None),
            [b'\r', b'\n', ..] => end + 2,
            [b'\n', ..] => end + 1,
            _ => end,
        };
        self.take(end).map(Some)
    }

    /// Whether the END line has arrived (the key may still wait for its line end).
    pub fn ended(&self) -> bool {
        find(&self.buf, PEM_END).is_some()
    }

    /// The peer went quiet: a key whose END line has arrived is complete as it is.
    pub fn finish(&mut self) -> Result<Option<(PublicKey, Vec<u8>)>, RsaError> {
        match find(&self.buf, PEM_END) {
            Some(at) => {
                // A lone `\r` that arrived after the END line is part of the key's line end.
                let mut end = at + PEM_END.len();
                if self.buf.get(end) == Some(&b'\r') {
                    end += 1;
                }
                self.take(end).map(Some)
            }
            None => Ok(None),
        }
    }

    fn take(&mut self, end: usize) -> Result<(PublicKey, Vec<u8>), RsaError> {
        let key = parse_key(&self.buf[..end], self.any_size)?;
        let rest = self.buf.split_off(end);
        self.buf.clear();
        Ok((key, rest))
    }
}

/// Refuses a stream whose first bytes cannot start a PKCS#1 public key. The error names
/// the first byte that cannot belong to the BEGIN line, so it is the same however the
/// stream was split into reads.
fn check_start(buf: &[u8]) -> Result<(), RsaError> {
    let start = buf
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(buf.len());
    let head = &buf[start..];
    let Some(at) = head
        .iter()
        .zip(PEM_BEGIN)
        .position(|(got, want)| got != want)
    else {
        return Ok(());
    };
    if SPKI_BEGIN.get(..=at) == Some(&head[..=at]) {
        return Err(RsaError::BadPem(
            "it is an X.509 key (BEGIN PUBLIC KEY); the protocol sends PKCS#1 keys (BEGIN RSA \
             PUBLIC KEY)"
                .into(),
        ));
    }
    let byte: String = std::ascii::escape_default(head[at])
        .map(char::from)
        .collect();
    Err(RsaError::BadPem(format!(
        "the stream does not start with the key's BEGIN line: byte {} is '{byte}'",
        start + at
    )))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> KeyPair {
        KeyPair::generate().expect("a key pair")
    }

    #[test]
    fn blocks_round_trip_up_to_the_cap() {
        let server = pair();
        for len in [0, 1, 13, MAX_PLAINTEXT] {
            let text = vec![b'x'; len];
            let block = encrypt(&server.public_key(), &text).expect("encrypts");
            assert_eq!(block.len(), BLOCK_LEN);
            assert_eq!(server.decrypt(&block).expect("decrypts"), text);
        }
        assert_eq!(
            encrypt(&server.public_key(), &[b'x'; MAX_PLAINTEXT + 1]),
            Err(RsaError::PlaintextTooLong { len: 54 })
        );
    }

    #[test]
    fn a_block_for_another_key_gives_junk_and_a_short_one_an_error() {
        let (a, b) = (pair(), pair());
        let block = encrypt(&a.public_key(), b"GET colour").expect("encrypts");
        // Implicit rejection: no error that could serve as a padding oracle, only junk.
        assert_ne!(b.decrypt(&block).as_deref(), Ok(&b"GET colour"[..]));
        assert_eq!(
            a.decrypt(&block[..63]),
            Err(RsaError::BlockLength { len: 63 })
        );
    }

    #[test]
    fn keys_travel_as_pkcs1_pem_in_any_reads() {
        let client = pair();
        let pem = client.public_pem().as_bytes();
        assert!(
            pem.starts_with(b"-----BEGIN RSA PUBLIC KEY-----\n"),
            "{}",
            client.public_pem()
        );
        let mut stream = pem.to_vec();
        stream.extend_from_slice(b"after");
        for cut in [1, 7, pem.len() - 1, pem.len(), stream.len()] {
            let mut reader = PemReader::default();
            let first = reader.push(&stream[..cut]).expect("no error");
            // What follows the key in the same read comes back; later reads are the
            // caller's.
            let (key, rest) = match first {
                Some((key, mut rest)) => {
                    rest.extend_from_slice(&stream[cut..]);
                    (key, rest)
                }
                None => reader
                    .push(&stream[cut..])
                    .expect("no error")
                    .expect("the key"),
            };
            assert_eq!(key, client.public_key());
            assert_eq!(rest, b"after", "cut at {cut}");
        }
    }

    #[test]
    fn a_key_without_its_line_end_is_complete_once_the_peer_is_quiet() {
        let client = pair();
        let pem = client.public_pem().trim_end().as_bytes();
        let mut reader = PemReader::default();
        assert_eq!(reader.push(pem).expect("no error"), None);
        let (key, rest) = reader.finish().expect("no error").expect("the key");
        assert_eq!(key, client.public_key());
        assert!(rest.is_empty());
        assert_eq!(PemReader::default().finish(), Ok(None));
    }

    /// A key as `openssl rsa -RSAPublicKey_out` writes it (other implementations' PEM).
    const OPENSSL_KEY: &str = "\
-----BEGIN RSA PUBLIC KEY-----\n\
MEgCQQC56ODMygy3gmRFHHxtq6ED8/+nuY77kY3i6jjQz+zOEaxesqz3csnBWR13\n\
psNZt6dnHmy9tB+JXmHWYTM61muLAgMBAAE=\n\
-----END RSA PUBLIC KEY-----\n";

    #[test]
    fn keys_made_elsewhere_are_read() {
        let key = parse_public_key(OPENSSL_KEY.as_bytes()).expect("the key");
        let block = encrypt(&key, b"CONNECT alice").expect("encrypts");
        assert_eq!(block.len(), BLOCK_LEN);
    }

    #[test]
    fn bad_keys_are_named() {
        let err = PemReader::default()
            .push(b"-----BEGIN RSA PUBLIC KEY-----\nnot base64!\n-----END RSA PUBLIC KEY-----\n")
            .expect_err("bad PEM");
        assert!(matches!(err, RsaError::BadPem(_)), "{err}");
        let big = PrivateKey::new_unchecked(&mut getrandom::SysRng, 1024).expect("a 1024-bit key");
        let pem = public_pem(&big.to_public_key()).expect("PEM");
        assert_eq!(
            parse_public_key(pem.as_bytes()),
            Err(RsaError::KeySize { bits: 1024 })
        );
        let mut reader = PemReader::default();
        let mut long = PEM_BEGIN.to_vec();
        long.resize(MAX_PEM + 1, b'A');
        assert_eq!(reader.push(&long), Err(RsaError::PemTooLong));
    }

    #[test]
    fn a_message_before_the_key_is_refused_at_once() {
        let mut reader = PemReader::default();
        assert_eq!(reader.push(b"\n-----BEGIN RSA"), Ok(None));
        assert_eq!(
            PemReader::default()
                .push(b"CONNECT alice")
                .map_err(|e| e.to_string()),
            Err(
                "the public key is not a PKCS#1 PEM block (-----BEGIN RSA PUBLIC KEY-----): \
                 the stream does not start with the key's BEGIN line: byte 0 is 'C'"
                    .to_owned()
            )
        );
        assert!(matches!(
            PemReader::default().push(b"-----BEGIN PUBLIC KEY-----\nMFww"),
            Err(RsaError::BadPem(e)) if e.contains("X.509")
        ));
        // A BEGIN line that goes wrong past the length of the X.509 one.
        assert!(matches!(
            PemReader::default().push(b"-----BEGIN RSA PUBLIC KEY--\xfe"),
            Err(RsaError::BadPem(e)) if e.contains("byte 27")
        ));
    }
}
