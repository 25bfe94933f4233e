//! The binary packets of `specs/packet-and-mathsvc.md` (Task 1) for `packet:` steps, built
//! and taken apart by `reference_impl::packet::codec`.
//!
//! ```text
//! field     wire                     in a scenario
//! flag      u16                      decimal
//! checksum  u16                      decimal; computed unless given
//! keyword   4 bytes                  text (exactly 4 bytes)
//! sid       i32                      decimal
//! length    i32 = 16 + data length   decimal; computed unless given
//! data      the rest                 bytes (templates: unhex(...), xor(...))
//! ```
//!
//! The variable `checksum_pairing` picks the byte pairing of the checksum: `big` (RFC 1071,
//! the default) or `little`; for received packets also `either`.

use reference_impl::packet::codec::{self, ChecksumMode, HEADER_LEN, Header, MAX_PACKET, Pairing};

use super::{DecodedPacket, PacketFormat};

const FIELDS: &[&str] = &["flag", "checksum", "keyword", "sid", "length", "data"];

/// The packet protocol's packets.
#[derive(Debug)]
pub struct Packets;

fn number<T: std::str::FromStr>(field: &str, value: &[u8]) -> Result<T, String> {
    let text = String::from_utf8_lossy(value);
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16)
            .ok()
            .and_then(|n| n.to_string().parse().ok()),
        None => text.parse().ok(),
    };
    parsed.ok_or_else(|| format!("`{field}: {text}` is not a number that fits the field"))
}

fn pairing(var: &dyn Fn(&str) -> Option<Vec<u8>>) -> Result<Pairing, String> {
    match var("checksum_pairing").as_deref() {
        None | Some(b"big") => Ok(Pairing::BigEndian),
        Some(b"little") => Ok(Pairing::LittleEndian),
        Some(other) => Err(format!(
            "checksum_pairing is `{}`: write big or little",
            String::from_utf8_lossy(other)
        )),
    }
}

fn mode(var: &dyn Fn(&str) -> Option<Vec<u8>>) -> Result<ChecksumMode, String> {
    match var("checksum_pairing").as_deref() {
        None | Some(b"big") => Ok(ChecksumMode::Big),
        Some(b"little") => Ok(ChecksumMode::Little),
        Some(b"either") => Ok(ChecksumMode::Either),
        Some(other) => Err(format!(
            "checksum_pairing is `{}`: write big, little or either",
            String::from_utf8_lossy(other)
        )),
    }
}

impl PacketFormat for Packets {
    fn fields(&self) -> &'static [&'static str] {
        FIELDS
    }

    fn encode(
        &self,
        fields: &[(String, Vec<u8>)],
        var: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<Vec<u8>, String> {
        let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let flag: u16 = get("flag").map_or(Ok(0), |v| number("flag", v))?;
        let sid: i32 = get("sid").map_or(Ok(0), |v| number("sid", v))?;
        let keyword: [u8; 4] = match get("keyword") {
            None => *b"\0\0\0\0",
            Some(k) => k.as_slice().try_into().map_err(|_| {
                format!(
                    "`keyword` must be exactly 4 bytes, found {} ({})",
                    k.len(),
                    String::from_utf8_lossy(k)
                )
            })?,
        };
        let data = get("data").cloned().unwrap_or_default();
        let real_length = i32::try_from(HEADER_LEN + data.len()).unwrap_or(i32::MAX);
        let length: i32 = get("length").map_or(Ok(real_length), |v| number("length", v))?;
        let checksum: u16 = match get("checksum") {
            Some(v) => number("checksum", v)?,
            None => {
                // Over the header as sent (the given length, if any) and the data.
                let header = Header {
                    flag,
                    checksum: 0,
                    keyword,
                    sid,
                    length,
                };
                let mut bytes = header.to_bytes().to_vec();
                bytes.extend_from_slice(&data);
                codec::checksum(&bytes, pairing(var)?)
            }
        };
        let header = Header {
            flag,
            checksum,
            keyword,
            sid,
            length,
        };
        let mut out = header.to_bytes().to_vec();
        out.extend_from_slice(&data);
        Ok(out)
    }

    fn decode(
        &self,
        bytes: &[u8],
        var: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<DecodedPacket, String> {
        let Some(header) = Header::parse(bytes) else {
            return Err(format!(
                "{} bytes: too short for a packet header ({HEADER_LEN} bytes)",
                bytes.len()
            ));
        };
        let data = &bytes[HEADER_LEN..];
        let fields = vec![
            ("flag".to_owned(), header.flag.to_string().into_bytes()),
            (
                "checksum".to_owned(),
                header.checksum.to_string().into_bytes(),
            ),
            ("keyword".to_owned(), header.keyword.to_vec()),
            ("sid".to_owned(), header.sid.to_string().into_bytes()),
            ("length".to_owned(), header.length.to_string().into_bytes()),
            ("data".to_owned(), data.to_vec()),
        ];
        let mut problems = Vec::new();
        if usize::try_from(header.length).is_ok_and(|n| n > MAX_PACKET) {
            problems.push(format!(
                "the length field says {}: over the {MAX_PACKET}-byte limit of a packet (what \
                 arrived is shown as it came, {} bytes)",
                header.length,
                bytes.len()
            ));
        } else if usize::try_from(header.length).ok() != Some(bytes.len()) {
            problems.push(format!(
                "the length field says {}, the packet has {} bytes",
                header.length,
                bytes.len()
            ));
        }
        let mut zeroed = Header {
            checksum: 0,
            ..header
        }
        .to_bytes()
        .to_vec();
        zeroed.extend_from_slice(data);
        let big = codec::checksum(&zeroed, Pairing::BigEndian);
        let little = codec::checksum(&zeroed, Pairing::LittleEndian);
        let ok = match mode(var)? {
            ChecksumMode::Big => header.checksum == big,
            ChecksumMode::Little => header.checksum == little,
            ChecksumMode::Either => header.checksum == big || header.checksum == little,
        };
        if !ok {
            problems.push(format!(
                "bad checksum {:#06x}: big-endian pairing gives {big:#06x}, little-endian {little:#06x}",
                header.checksum
            ));
        }
        Ok(DecodedPacket {
            fields,
            checksum_problem: (!problems.is_empty()).then(|| problems.join("; ")),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use reference_impl::packet::codec::Packet;

    fn no_vars(_: &str) -> Option<Vec<u8>> {
        None
    }

    #[test]
    fn encodes_as_the_codec_does_and_decodes_back() {
        let fields = vec![
            ("flag".to_owned(), b"1".to_vec()),
            ("keyword".to_owned(), b"sbmt".to_vec()),
            ("sid".to_owned(), b"12345678".to_vec()),
            ("data".to_owned(), b"hello".to_vec()),
        ];
        let bytes = Packets.encode(&fields, &no_vars).unwrap();
        let reference =
            Packet::new(1, *b"sbmt", 12_345_678, b"hello".to_vec()).to_bytes(Pairing::BigEndian);
        assert_eq!(bytes, reference);
        let decoded = Packets.decode(&bytes, &no_vars).unwrap();
        assert_eq!(decoded.checksum_problem, None);
        assert_eq!(decoded.fields[4], ("length".to_owned(), b"21".to_vec()));
    }

    #[test]
    fn given_fields_are_sent_as_they_are_and_flagged_on_receipt() {
        let fields = vec![
            ("keyword".to_owned(), b"sbmt".to_vec()),
            ("checksum".to_owned(), b"0x1234".to_vec()),
            ("length".to_owned(), b"99".to_vec()),
        ];
        let bytes = Packets.encode(&fields, &no_vars).unwrap();
        assert_eq!(&bytes[2..4], &[0x12, 0x34]);
        let problem = Packets
            .decode(&bytes, &no_vars)
            .unwrap()
            .checksum_problem
            .unwrap();
        assert!(problem.contains("the length field says 99"), "{problem}");
        assert!(problem.contains("bad checksum 0x1234"), "{problem}");
        assert!(Packets.decode(&bytes[..10], &no_vars).is_err());
        let err = Packets
            .encode(&[("keyword".to_owned(), b"abc".to_vec())], &no_vars)
            .unwrap_err();
        assert!(err.contains("exactly 4 bytes"), "{err}");
    }
}
