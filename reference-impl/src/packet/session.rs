//! What the server sends one client: a key, a text, and the text cut into encrypted packets.
//! Pure, and deterministic for a given seed.
//!
//! - The key is 4 different random lowercase letters (different, so that a key that starts
//!   again in the wrong place always garbles the text: with `abab`, a shift of two would not).
//! - The text is random lowercase words of 1 to 10 letters, one space between them.
//! - Packets carry up to `max_data` bytes each. Every packet but the last carries a number of
//!   bytes that is not a multiple of the key's length (between half of `max_data` and
//!   `max_data`), so that a client that starts the key afresh in each packet decrypts wrong
//!   as soon as there are two packets.

use super::codec::{FLAG_LAST, FLAG_MORE, Packet, Xor};

/// A small pseudo-random generator (SplitMix64): the same seed gives the same session on
/// every platform and version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator started from the operating system's randomness (or the clock, if that
    /// fails).
    pub fn from_entropy() -> Self {
        let seed = getrandom::u64().unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x5eed, |d| d.as_nanos() as u64)
        });
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..=high` (`low` if `high < low`).
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        if high <= low {
            return low;
        }
        let span = (high - low) as u64 + 1;
        low + (self.next_u64() % span) as usize
    }

    fn letter(&mut self) -> u8 {
        b'a' + (self.next_u64() % 26) as u8
    }
}

/// 4 different random lowercase letters.
pub fn random_key(rng: &mut Rng) -> [u8; 4] {
    let mut key = [0u8; 4];
    let mut i = 0;
    while i < key.len() {
        let letter = rng.letter();
        if !key[..i].contains(&letter) {
            key[i] = letter;
            i += 1;
        }
    }
    key
}

/// `len` bytes of random lowercase words separated by single spaces.
pub fn random_text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(len + 11);
    while text.len() < len {
        if !text.is_empty() {
            text.push(b' ');
        }
        for _ in 0..rng.between(1, 10) {
            text.push(rng.letter());
        }
    }
    text.truncate(len);
    text
}

/// The data sizes of the packets carrying `total` bytes: see the module documentation. An
/// empty text still makes one (empty) packet. `first` forces the first packet's size (a
/// fault sends one over the limit), as far as the text reaches.
pub fn packet_sizes(
    rng: &mut Rng,
    total: usize,
    max_data: usize,
    key_len: usize,
    first: Option<usize>,
) -> Vec<usize> {
    let max_data = max_data.max(1);
    let mut sizes = Vec::new();
    let mut left = total;
    if let Some(first) = first
        && left > first
    {
        sizes.push(first);
        left -= first;
    }
    while left > max_data {
        let mut n = rng.between(max_data.div_ceil(2), max_data);
        if key_len > 1 && n.is_multiple_of(key_len) {
            // n >= key_len >= 2 here, so n - 1 >= 1, and n - 1 is no multiple.
            n -= 1;
        }
        sizes.push(n);
        left -= n;
    }
    sizes.push(left);
    sizes
}

/// The stream of packets: `text` XORed with `key` over the concatenated data (or afresh in
/// every packet, `reset_per_packet`), cut into `sizes`, every packet flag 0 but the last
/// (flag 1 unless `last_flag_missing`), keyword = key, sid = `sid`. Checksums are computed
/// when the packets are encoded.
pub fn encrypt(
    key: [u8; 4],
    text: &[u8],
    sizes: &[usize],
    sid: i32,
    reset_per_packet: bool,
    last_flag_missing: bool,
) -> Vec<Packet> {
    let mut cipher = Xor::new(&key);
    let mut packets = Vec::with_capacity(sizes.len());
    let mut rest = text;
    for (i, &size) in sizes.iter().enumerate() {
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        let mut data = chunk.to_vec();
        if reset_per_packet {
            cipher.reset();
        }
        cipher.apply(&mut data);
        let last = i + 1 == sizes.len();
        let flag = if last && !last_flag_missing {
            FLAG_LAST
        } else {
            FLAG_MORE
        };
        packets.push(Packet::new(flag, key, sid, data));
    }
    packets
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::packet::codec::{MAX_DATA, xor};
    use proptest::prelude::*;
    // proptest's prelude has an `Rng` too.
    use super::Rng;

    #[test]
    fn same_seed_same_session() {
        let mut a = Rng::seeded(7);
        let mut b = Rng::seeded(7);
        assert_eq!(random_key(&mut a), random_key(&mut b));
        assert_eq!(random_text(&mut a, 100), random_text(&mut b, 100));
        for seed in 0..100 {
            let key = random_key(&mut Rng::seeded(seed));
            assert!(key.iter().all(u8::is_ascii_lowercase));
            assert!((1..4).all(|i| !key[..i].contains(&key[i])), "{key:?}");
        }
        let text = random_text(&mut Rng::seeded(1), 500);
        assert_eq!(text.len(), 500);
        assert!(text.iter().all(|b| b.is_ascii_lowercase() || *b == b' '));
        assert!(!text.windows(2).any(|w| w == b"  "));
    }

    #[test]
    fn sizes_of_a_short_text_and_of_the_over_limit_fault() {
        let mut rng = Rng::seeded(3);
        assert_eq!(packet_sizes(&mut rng, 0, MAX_DATA, 4, None), vec![0]);
        assert_eq!(packet_sizes(&mut rng, 5, MAX_DATA, 4, None), vec![5]);
        let sizes = packet_sizes(&mut rng, 30_000, MAX_DATA, 4, Some(MAX_DATA + 1));
        assert_eq!(sizes[0], MAX_DATA + 1);
        assert_eq!(sizes.iter().sum::<usize>(), 30_000);
        // A text too short for the fault: one packet within the limit.
        assert_eq!(
            packet_sizes(&mut rng, 100, MAX_DATA, 4, Some(MAX_DATA + 1)),
            vec![100]
        );
    }

    proptest! {
        #[test]
        fn sizes_cover_the_text_and_never_end_on_a_key_boundary(
            seed in any::<u64>(),
            total in 0usize..50_000,
            max_data in 1usize..=MAX_DATA,
        ) {
            let sizes = packet_sizes(&mut Rng::seeded(seed), total, max_data, 4, None);
            prop_assert_eq!(sizes.iter().sum::<usize>(), total);
            prop_assert!(sizes.iter().all(|&n| n <= max_data));
            let (last, rest) = sizes.split_last().unwrap();
            prop_assert!(rest.iter().all(|&n| n > 0 && n % 4 != 0));
            prop_assert!(*last > 0 || total == 0);
        }

        #[test]
        fn the_stream_decrypts_with_a_carried_key(
            seed in any::<u64>(),
            len in 0usize..3000,
            max_data in 1usize..200,
        ) {
            let mut rng = Rng::seeded(seed);
            let key = random_key(&mut rng);
            let text = random_text(&mut rng, len);
            let sizes = packet_sizes(&mut rng, len, max_data, 4, None);
            let packets = encrypt(key, &text, &sizes, 20200000, false, false);
            prop_assert_eq!(packets.len(), sizes.len());
            prop_assert!(packets.iter().rev().skip(1).all(|p| p.flag == 0));
            prop_assert!(packets.last().is_some_and(Packet::is_last));
            let joined: Vec<u8> = packets.iter().flat_map(|p| p.data.clone()).collect();
            prop_assert_eq!(xor(&joined, &key), text.clone());
            // Starting the key afresh in each packet gets it wrong once there are two.
            let reset = encrypt(key, &text, &sizes, 20200000, true, false);
            let joined: Vec<u8> = reset.iter().flat_map(|p| p.data.clone()).collect();
            if sizes.len() > 1 {
                prop_assert_ne!(xor(&joined, &key), text);
            }
        }
    }
}
