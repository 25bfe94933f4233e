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

/// Splits bytes at `\n`, holding at most `max` bytes of an unfinished line.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    max: usize,
}

/// How many bytes of an over-long message a report shows.
const HEAD_LEN: usize = 64;

impl LineFramer {
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
        }
    }

    /// Adds received bytes; returns the lines they completed, in order.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), TooLong> {
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
