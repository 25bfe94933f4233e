//! End-to-end encryption of secure messages (level 4 of the chat protocol).
//!
//! The server relays secure messages but can never read them: it only ever sees a public
//! key, a wrapped session key and a ciphertext.
//!
//! ```text
//! C1 -> S:  SECURE_MESSAGE_REQ {"receiver":"bob"}
//! S  -> C2: SECURE_MESSAGE_REQ {"sender":"alice"}
//! C2 -> S:  SECURE_MESSAGE_RES {"sender":"alice","publicKey":"-----BEGIN PUBLIC KEY-----\n..."}
//! S  -> C1: SECURE_MESSAGE_RES {"receiver":"bob","publicKey":"-----BEGIN PUBLIC KEY-----\n..."}
//! C1 -> S:  SECURE_MESSAGE {"receiver":"bob","sender":"alice","sessionKey":"<b64>","message":"<b64>"}
//! S  -> C2: SECURE_MESSAGE {"sender":"alice","sessionKey":"<b64>","message":"<b64>"}
//! ```
//!
//! Algorithms:
//!
//! - Every client holds an **RSA-2048** key pair (public exponent 65537), made at start. Its
//!   public key travels as a PEM `-----BEGIN PUBLIC KEY-----` block (X.509
//!   SubjectPublicKeyInfo, the format of `openssl rsa -pubout`).
//! - For every message the sender makes a fresh random 256-bit **AES-256-GCM** session key
//!   and a random 96-bit nonce, and encrypts the UTF-8 text with no associated data.
//!   `message` is base64 of `nonce (12 bytes) || ciphertext || tag (16 bytes)`.
//! - The session key is wrapped with **RSA-OAEP**, SHA-256 as both the OAEP hash and the
//!   MGF1 hash, empty label, under the receiver's public key. `sessionKey` is base64 of the
//!   RSA ciphertext (256 bytes for a 2048-bit key).
//! - base64 is the standard alphabet with padding (RFC 4648 §4).
//!
//! The receiver unwraps the session key with its private key and decrypts; a wrong key, a
//! changed byte anywhere or malformed base64 is an [`E2eError`], never a garbled text.
//! There is no authentication of the public key itself: the server could substitute its own
//! key (a man in the middle). Verifying key fingerprints out of band is left to the users.

use aes_gcm::aead::{Aead, Generate, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::sha2::Sha256;
use rsa::{PrivateKey, PublicKey};

/// Modulus size of the key pairs clients make.
pub const RSA_BITS: usize = 2048;
/// Length of an AES-256 session key in bytes.
pub const SESSION_KEY_LEN: usize = 32;
/// Length of an AES-GCM nonce in bytes.
pub const NONCE_LEN: usize = 12;
/// Length of an AES-GCM tag in bytes.
pub const TAG_LEN: usize = 16;
/// Largest PEM public key accepted from a peer, in bytes (an 8192-bit key is ~1.4 KB).
pub const MAX_PUBLIC_KEY_PEM: usize = 4096;

/// Errors of sealing and opening secure messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum E2eError {
    #[error("cannot make an RSA key pair")]
    KeyGeneration(#[source] rsa::Error),
    #[error("the public key is not a PEM RSA public key (-----BEGIN PUBLIC KEY-----)")]
    PublicKey(#[source] rsa::pkcs8::spki::Error),
    #[error("the public key is {len} bytes, more than the {MAX_PUBLIC_KEY_PEM} accepted")]
    PublicKeyTooLong { len: usize },
    #[error("the private key is not a PEM PKCS#8 RSA private key (-----BEGIN PRIVATE KEY-----)")]
    PrivateKey(#[source] rsa::pkcs8::Error),
    #[error("cannot encode the key as PEM")]
    Encode,
    #[error("cannot wrap the session key with the receiver's public key")]
    Wrap(#[source] rsa::Error),
    #[error("the {field} is not valid base64")]
    Base64 {
        field: &'static str,
        #[source]
        source: base64::DecodeError,
    },
    #[error(
        "cannot unwrap the session key: it was not made for this client's key pair, or it was \
         changed on the way"
    )]
    Unwrap,
    #[error("the session key is {len} bytes; AES-256 needs {SESSION_KEY_LEN}")]
    SessionKeyLength { len: usize },
    #[error(
        "the message is {len} bytes, shorter than a nonce and a tag ({} bytes)",
        NONCE_LEN + TAG_LEN
    )]
    MessageTooShort { len: usize },
    #[error(
        "the message does not authenticate: it was changed on the way or sealed with another key"
    )]
    Authentication,
    #[error("the decrypted message is not UTF-8 text")]
    NotText,
    #[error("the random number generator failed")]
    Rng,
}

/// The two base64 fields of a `SECURE_MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// `sessionKey`: the AES key wrapped with RSA-OAEP-SHA-256.
    pub session_key: String,
    /// `message`: nonce, ciphertext and tag.
    pub message: String,
}

/// A client's RSA key pair, with its public key as PEM ready to send.
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
    /// Makes a fresh [`RSA_BITS`]-bit key pair from the operating system's random source.
    /// Takes tens to hundreds of milliseconds: call it off the async threads.
    pub fn generate() -> Result<Self, E2eError> {
        let private =
            PrivateKey::new(&mut getrandom::SysRng, RSA_BITS).map_err(E2eError::KeyGeneration)?;
        Self::from_private_key(private)
    }

    /// Wraps an existing private key (tests inject one to skip key generation).
    pub fn from_private_key(private: PrivateKey) -> Result<Self, E2eError> {
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| E2eError::Encode)?;
        Ok(Self {
            private,
            public_pem,
        })
    }

    /// Reads a PEM PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, E2eError> {
        let private = PrivateKey::from_pkcs8_pem(pem).map_err(E2eError::PrivateKey)?;
        Self::from_private_key(private)
    }

    /// The private key as PEM PKCS#8, to save it.
    pub fn to_pkcs8_pem(&self) -> Result<String, E2eError> {
        self.private
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|_| E2eError::Encode)
    }

    /// The public key as PEM SubjectPublicKeyInfo, the `publicKey` field.
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// The private key, for [`open`].
    pub fn private_key(&self) -> &PrivateKey {
        &self.private
    }

    /// [`open`] with this key pair.
    pub fn open(&self, session_key_b64: &str, message_b64: &str) -> Result<String, E2eError> {
        open(&self.private, session_key_b64, message_b64)
    }
}

/// Encrypts `plaintext` for the holder of `public_key_pem`: a fresh AES-256-GCM key and
/// nonce, the key wrapped with RSA-OAEP-SHA-256.
pub fn seal(public_key_pem: &str, plaintext: &str) -> Result<Sealed, E2eError> {
    let public = parse_public_key(public_key_pem)?;
    let key = Key::<Aes256Gcm>::try_generate().map_err(|_| E2eError::Rng)?;
    let nonce = Nonce::try_generate().map_err(|_| E2eError::Rng)?;
    let ciphertext = Aes256Gcm::new(&key)
        .encrypt(&nonce, plaintext.as_bytes())
        // Only fails for plaintexts of more than 64 GiB.
        .map_err(|_| E2eError::Authentication)?;
    let wrapped = public
        .oaep_encrypt::<Sha256>(key.as_slice())
        .map_err(E2eError::Wrap)?;
    let mut message = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    message.extend_from_slice(nonce.as_slice());
    message.extend_from_slice(&ciphertext);
    Ok(Sealed {
        session_key: BASE64.encode(wrapped),
        message: BASE64.encode(message),
    })
}

/// Decrypts a secure message sealed with [`seal`] for the public half of `private_key`.
pub fn open(
    private_key: &PrivateKey,
    session_key_b64: &str,
    message_b64: &str,
) -> Result<String, E2eError> {
    let wrapped = BASE64
        .decode(session_key_b64.trim())
        .map_err(|source| E2eError::Base64 {
            field: "session key",
            source,
        })?;
    let message = BASE64
        .decode(message_b64.trim())
        .map_err(|source| E2eError::Base64 {
            field: "message",
            source,
        })?;
    if message.len() < NONCE_LEN + TAG_LEN {
        return Err(E2eError::MessageTooShort { len: message.len() });
    }
    let key = private_key
        .oaep_decrypt::<Sha256>(&wrapped)
        .map_err(|_| E2eError::Unwrap)?;
    if key.len() != SESSION_KEY_LEN {
        return Err(E2eError::SessionKeyLength { len: key.len() });
    }
    let cipher = Aes256Gcm::new_from_slice(&key)
        .map_err(|_| E2eError::SessionKeyLength { len: key.len() })?;
    let (nonce, ciphertext) = message.split_at(NONCE_LEN);
    let nonce =
        Nonce::try_from(nonce).map_err(|_| E2eError::MessageTooShort { len: message.len() })?;
    let plaintext = cipher
        .decrypt(&nonce, ciphertext)
        .map_err(|_| E2eError::Authentication)?;
    String::from_utf8(plaintext).map_err(|_| E2eError::NotText)
}

/// Parses a peer's PEM public key, checking its length first.
pub fn parse_public_key(pem: &str) -> Result<PublicKey, E2eError> {
    if pem.len() > MAX_PUBLIC_KEY_PEM {
        return Err(E2eError::PublicKeyTooLong { len: pem.len() });
    }
    PublicKey::from_public_key_pem(pem.trim()).map_err(E2eError::PublicKey)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::OnceLock;

    use super::*;

    /// Two key pairs, made once for all tests of this module.
    fn keys() -> &'static (KeyPair, KeyPair) {
        static KEYS: OnceLock<(KeyPair, KeyPair)> = OnceLock::new();
        KEYS.get_or_init(|| (KeyPair::generate().unwrap(), KeyPair::generate().unwrap()))
    }

    #[test]
    fn round_trip() {
        let (bob, _) = keys();
        for text in ["", "hello", "héllo wörld ✓", &"x".repeat(2000)] {
            let sealed = seal(bob.public_key_pem(), text).unwrap();
            assert_eq!(
                open(bob.private_key(), &sealed.session_key, &sealed.message).unwrap(),
                text
            );
            assert!(!sealed.message.contains(text) || text.is_empty());
        }
    }

    #[test]
    fn fresh_key_and_nonce_every_time() {
        let (bob, _) = keys();
        let a = seal(bob.public_key_pem(), "same").unwrap();
        let b = seal(bob.public_key_pem(), "same").unwrap();
        assert_ne!(a.session_key, b.session_key);
        assert_ne!(a.message, b.message);
    }

    #[test]
    fn layout_of_the_fields() {
        let (bob, _) = keys();
        let sealed = seal(bob.public_key_pem(), "abc").unwrap();
        assert_eq!(
            BASE64.decode(&sealed.session_key).unwrap().len(),
            RSA_BITS / 8
        );
        assert_eq!(
            BASE64.decode(&sealed.message).unwrap().len(),
            NONCE_LEN + 3 + TAG_LEN
        );
        assert!(
            bob.public_key_pem()
                .starts_with("-----BEGIN PUBLIC KEY-----\n")
        );
    }

    #[test]
    fn tampered_message_fails() {
        let (bob, _) = keys();
        let sealed = seal(bob.public_key_pem(), "attack at dawn").unwrap();
        let mut bytes = BASE64.decode(&sealed.message).unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[i] ^= 1;
            let err = open(
                bob.private_key(),
                &sealed.session_key,
                &BASE64.encode(&bytes),
            );
            assert!(
                matches!(err, Err(E2eError::Authentication)),
                "byte {i}: {err:?}"
            );
            bytes[i] ^= 1;
        }
        let mut wrapped = BASE64.decode(&sealed.session_key).unwrap();
        wrapped[10] ^= 1;
        let err = open(bob.private_key(), &BASE64.encode(&wrapped), &sealed.message);
        assert!(matches!(err, Err(E2eError::Unwrap)), "{err:?}");
    }

    #[test]
    fn wrong_key_fails() {
        let (bob, eve) = keys();
        let sealed = seal(bob.public_key_pem(), "for bob only").unwrap();
        let err = eve.open(&sealed.session_key, &sealed.message).unwrap_err();
        assert!(matches!(err, E2eError::Unwrap), "{err:?}");
        // A session key from one message does not open another.
        let other = seal(bob.public_key_pem(), "another").unwrap();
        let err = bob.open(&other.session_key, &sealed.message).unwrap_err();
        assert!(matches!(err, E2eError::Authentication), "{err:?}");
    }

    #[test]
    fn bad_base64_fails_cleanly() {
        let (bob, _) = keys();
        let sealed = seal(bob.public_key_pem(), "hi").unwrap();
        let err = bob.open("not base64!", &sealed.message).unwrap_err();
        assert!(
            matches!(
                err,
                E2eError::Base64 {
                    field: "session key",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = bob.open(&sealed.session_key, "%%%").unwrap_err();
        assert!(
            matches!(
                err,
                E2eError::Base64 {
                    field: "message",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = bob.open(&sealed.session_key, "AAAA").unwrap_err();
        assert!(
            matches!(err, E2eError::MessageTooShort { len: 3 }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the message is 3 bytes, shorter than a nonce and a tag (28 bytes)"
        );
        let err = bob.open("", &sealed.message).unwrap_err();
        assert!(matches!(err, E2eError::Unwrap), "{err:?}");
    }

    #[test]
    fn bad_public_key_fails_cleanly() {
        assert!(matches!(seal("hello", "x"), Err(E2eError::PublicKey(_))));
        let long = "A".repeat(MAX_PUBLIC_KEY_PEM + 1);
        assert!(matches!(
            seal(&long, "x"),
            Err(E2eError::PublicKeyTooLong { .. })
        ));
    }

    #[test]
    fn private_key_pem_round_trip() {
        let (bob, _) = keys();
        let pem = bob.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = KeyPair::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(again.public_key_pem(), bob.public_key_pem());
        assert!(!format!("{bob:?}").contains("PRIVATE"));
        assert!(matches!(
            KeyPair::from_pkcs8_pem("nope"),
            Err(E2eError::PrivateKey(_))
        ));
    }
}
