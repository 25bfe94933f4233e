//! Cutting a received byte stream into messages.
//!
//! Line protocols end every message with `\n`, but real implementations also send a last
//! message with no line end and then wait. The framer yields complete lines at once and hands
//! back a trailing partial line when the reader decides the peer has gone quiet, so the
//! transcript can say the message was unterminated.
//!
//! ```text
//! "PUT: OK\nGET blue\n2930" -> "PUT: OK", "GET blue" (terminated), then after a quiet
//!                               period: "2930" (unterminated)
//! ```

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message without its line end.
    pub data: Vec<u8>,
    /// Whether it ended with `\n` (false when cut by a quiet period or the end of the stream).
    pub terminated: bool,
}

/// A message grew past the limit without a line end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong {
    pub limit: usize,
    /// The first bytes of the message, for the report.
    pub head: Vec<u8>,
}

/// How a protocol's messages are delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// Every message ends with `\n`.
    #[default]
    Lines,
    /// No delimiters: a message is what arrives before the peer goes quiet.
    Chunks,
    /// Binary packets whose header holds their total length: `width` bytes, big-endian, at
    /// `offset`. A length outside `min..=max` cannot be trusted: what has arrived is handed
    /// over as it is and the rest of the stream is read as chunks.
    LengthPrefixed {
        offset: usize,
        width: usize,
        min: usize,
        max: usize,
    },
}

/// Cuts a stream into messages as its [`Framing`] says, holding at most `max` bytes of an
/// unfinished message.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    max: usize,
    framing: Framing,
}

/// How many bytes of an over-long message a report shows.
const HEAD_LEN: usize = 64;

impl LineFramer {
    pub fn new(max: usize) -> Self {
        Self::with_framing(max, Framing::Lines)
    }

    pub fn with_framing(max: usize, framing: Framing) -> Self {
        Self {
            buf: Vec::new(),
            max,
            framing,
        }
    }

    /// Adds received bytes; returns the messages they completed, in order.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), TooLong> {
        match self.framing {
            Framing::Lines => self.push_lines(bytes, out),
            Framing::Chunks => {
                if self.buf.len() + bytes.len() > self.max {
                    return Err(self.too_long(bytes));
                }
                self.buf.extend_from_slice(bytes);
                Ok(())
            }
            Framing::LengthPrefixed {
                offset,
                width,
                min,
                max,
            } => {
                if self.buf.len() + bytes.len() > self.max.max(max) {
                    return Err(self.too_long(bytes));
                }
                self.buf.extend_from_slice(bytes);
                while self.buf.len() >= offset + width {
                    let len = self.buf[offset..offset + width]
                        .iter()
                        .fold(0u64, |n, &b| (n << 8) | u64::from(b));
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    if !(min..=max).contains(&len) {
                        // Out of step with the stream: hand over what is here, then chunks.
                        out.push(Frame {
                            data: std::mem::take(&mut self.buf),
                            terminated: false,
                        });
                        self.framing = Framing::Chunks;
                        break;
                    }
                    if self.buf.len() < len {
                        break;
                    }
                    let rest = self.buf.split_off(len);
                    out.push(Frame {
                        data: std::mem::replace(&mut self.buf, rest),
                        terminated: false,
                    });
                }
                Ok(())
            }
        }
    }

    fn push_lines(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), TooLong> {
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if self.buf.len() + pos > self.max {
                return Err(self.too_long(&rest[..pos]));
            }
            let mut data = std::mem::take(&mut self.buf);
            data.extend_from_slice(&rest[..pos]);
            out.push(Frame {
                data,
                terminated: true,
            });
            rest = &rest[pos + 1..];
        }
        if self.buf.len() + rest.len() > self.max {
            return Err(self.too_long(rest));
        }
        self.buf.extend_from_slice(rest);
        Ok(())
    }

    /// Whether bytes of an unfinished line are waiting.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The bytes of the unfinished line received so far.
    pub fn partial(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the unfinished line as an unterminated message.
    pub fn take_partial(&mut self) -> Option<Frame> {
        if self.buf.is_empty() {
            return None;
        }
        Some(Frame {
            data: std::mem::take(&mut self.buf),
            terminated: false,
        })
    }

    fn too_long(&mut self, more: &[u8]) -> TooLong {
        let mut head = std::mem::take(&mut self.buf);
        head.extend_from_slice(&more[..more.len().min(HEAD_LEN)]);
        head.truncate(HEAD_LEN);
        TooLong {
            limit: self.max,
            head,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn frames(framer: &mut LineFramer, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut out = Vec::new();
        for chunk in chunks {
            framer.push(chunk, &mut out).expect("within limit");
        }
        out
    }

    fn line(s: &str) -> Frame {
        Frame {
            data: s.as_bytes().to_vec(),
            terminated: true,
        }
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let mut f = LineFramer::new(100);
        let out = frames(&mut f, &[b"PUT: ", b"OK\nGET bl", b"ue\n2930"]);
        assert_eq!(out, vec![line("PUT: OK"), line("GET blue")]);
        assert!(f.has_partial());
        assert_eq!(
            f.take_partial(),
            Some(Frame {
                data: b"2930".to_vec(),
                terminated: false
            })
        );
        assert_eq!(f.take_partial(), None);
    }

    #[test]
    fn empty_lines_are_messages() {
        let mut f = LineFramer::new(100);
        assert_eq!(frames(&mut f, &[b"\n\n"]), vec![line(""), line("")]);
    }

    #[test]
    fn a_line_longer_than_the_limit_is_refused_before_it_is_buffered() {
        let mut f = LineFramer::new(8);
        let mut out = Vec::new();
        assert!(f.push(b"12345678", &mut out).is_ok());
        let err = f.push(b"9", &mut out).expect_err("over the limit");
        assert_eq!(err.limit, 8);
        assert_eq!(err.head, b"123456789");
        let mut f = LineFramer::new(8);
        let err = f
            .push(&[b'x'; 10_000], &mut out)
            .expect_err("over the limit");
        assert_eq!(err.head.len(), HEAD_LEN);
    }

    #[test]
    fn a_line_exactly_at_the_limit_passes() {
        let mut f = LineFramer::new(4);
        assert_eq!(frames(&mut f, &[b"abcd\n"]), vec![line("abcd")]);
    }

    #[test]
    fn chunks_wait_for_quiet() {
        let mut f = LineFramer::with_framing(100, Framing::Chunks);
        let mut out = Vec::new();
        f.push(b"FIB\nONACCI", &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(
            f.take_partial(),
            Some(Frame {
                data: b"FIB\nONACCI".to_vec(),
                terminated: false
            })
        );
    }

    const PACKETS: Framing = Framing::LengthPrefixed {
        offset: 12,
        width: 4,
        min: 16,
        max: 100,
    };

    fn packet(len: u32, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; 12];
        p.extend_from_slice(&len.to_be_bytes());
        p.resize(len as usize, fill);
        p
    }

    #[test]
    fn packets_are_cut_by_their_length_field() {
        let mut f = LineFramer::with_framing(1000, PACKETS);
        let wire = [packet(16, 1), packet(20, 2), packet(30, 3)].concat();
        let mut out = Vec::new();
        for chunk in wire.chunks(7) {
            f.push(chunk, &mut out).unwrap();
        }
        let lens: Vec<usize> = out.iter().map(|fr| fr.data.len()).collect();
        assert_eq!(lens, [16, 20, 30]);
        assert!(!f.has_partial());
        // A truncated packet is handed back when the peer goes quiet.
        f.push(&packet(40, 4)[..25], &mut out).unwrap();
        assert_eq!(f.take_partial().map(|fr| fr.data.len()), Some(25));
    }

    #[test]
    fn a_length_out_of_bounds_hands_over_what_arrived() {
        let mut f = LineFramer::with_framing(1000, PACKETS);
        let mut out = Vec::new();
        let mut bad = packet(16, 5);
        bad[12..16].copy_from_slice(&5000u32.to_be_bytes());
        f.push(&bad, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, bad);
        // The rest of the stream is chunks.
        f.push(b"more", &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(f.take_partial().map(|fr| fr.data), Some(b"more".to_vec()));
    }

    proptest::proptest! {
        #[test]
        fn read_boundaries_do_not_change_the_messages(
            lines in proptest::collection::vec("[a-z ]{0,12}", 0..8),
            cuts in proptest::collection::vec(0usize..200, 0..6),
        ) {
            let wire: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= wire.len()).collect();
            cuts.sort_unstable();
            let mut f = LineFramer::new(64);
            let mut out = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([wire.len()]) {
                f.push(&wire[start..cut], &mut out).expect("within limit");
                start = cut;
            }
            let got: Vec<String> = out.into_iter().map(|fr| String::from_utf8(fr.data).expect("ascii")).collect();
            proptest::prop_assert_eq!(got, lines);
        }
    }
}
