//! The binary packet protocol (`specs/packet-and-mathsvc.md`, Task 1): the course's grading
//! server and its client.
//!
//! - [`codec`]: bytes <-> packets (pure): the `!HH4sll` header, the checksum in both byte
//!   pairings, the XOR cipher, the stream decoder;
//! - [`score`]: how a session is scored, every status word and message (pure);
//! - [`session`]: the key, the text and the packets the server sends (pure, seedable);
//! - [`store`]: the best score of each student, in a file that survives a restart;
//! - [`server`]: the tokio server and [`server::spawn`] for tests and the harness;
//! - [`client`]: one session as the course's client runs it;
//! - [`cli`]: the `reference packet-server` and `reference packet-client` commands.
//!
//! # Wire format
//!
//! ```text
//! header   flag u16 | checksum u16 | keyword 4 bytes | sid i32 | length i32   (16 bytes,
//!          network byte order, "!HH4sll"), then length - 16 bytes of data;
//!          length is at most 10,000, so data at most 9,984
//! checksum ones'-complement sum over the packet with the checksum field zeroed, carries
//!          folded, inverted; bytes paired big-endian (RFC 1071) or little-endian
//!          (see `codec`)
//! ```
//!
//! # A session
//!
//! ```text
//! C -> S  flag 1, keyword "sbmt" (a submission) or any 4 lowercase letters (a test run),
//!         sid = 8-digit student id, length 16, no data
//! S -> C  on a bad first packet: the error packet (below), then close
//! S -> C  the text, XOR-encrypted with a 4-letter key over the concatenated data, in
//!         packets of at most 9,984 data bytes: flag 0, ..., the last flag 1; keyword = the
//!         key; sid = the student id
//! C -> S  the decrypted text in packets of at most 9,984 data bytes: keyword = the key,
//!         sid = the student id, flag 0, ..., the last flag 1
//! S -> C  the result: flag 1, keyword = status word, sid = score (0 to 50), data = message
//!         GOOD 50 "DECRYPTED DATA MATCH & YOUR POINTS ARE REGISTERED ON DATABASE"
//! S       FIN; what the client still sends is read and dropped for up to 2 s, then close
//! ```
//!
//! The server reads the reply while it sends the stream, and grades each reply packet as it
//! comes: the first bad one ends the session with an error packet (the points so far). Every
//! status word and message is listed in [`score`]:
//!
//! ```text
//! GOOD 50   DIFF 35   SIZE 20                         a complete reply
//! CKSM LENG FLAG KEYW SIDN                            a bad packet: 0 (first packet) or 20
//! TIME CLSD                                           silence, early close: 0, 10 or 20
//! ```
//!
//! # Decisions where the spec is silent
//!
//! - Checksums: the server accepts `big` (RFC 1071, the letter of "calculated in the same way
//!   as TCP checksum") by default, or `little`, or `either`; it sends in the pairing it
//!   accepts (`either` sends big-endian) unless told otherwise. An odd-length packet's last
//!   byte is paired with a zero after it (see [`codec`]).
//! - The first packet must be exactly a header: length 16, flag 1, a keyword of 4 lowercase
//!   ASCII letters, a student id of 8 digits as a number (10,000,000 to 99,999,999). The checks
//!   run in that order after the decoder's length range and checksum.
//! - Points: header 10 when the first packet passes; receive 10 once at least 16 bytes of
//!   reply arrive (the client answered the stream); length 15 when every reply packet is
//!   valid (checksum, length, flag 0 or 1, keyword = key, sid = the first packet's sid), the
//!   last one has flag 1 and the data add up to the text's length; content 15 when the data
//!   are the text. A reply that is not as long as the text gets no content points either.
//! - Status words are 4 upper-case letters, so that a client can tell a result from a key.
//!   Error messages say which packet failed (`HEADER`, `REPLY PACKET <i>`, `REPLY`) and why.
//! - A submission whose first packet passed has its score recorded, whatever the outcome
//!   (errors, timeouts and early closes included): the course records partial scores; only
//!   the best score per student id is kept. A first packet that fails records nothing ("if
//!   you use your student id properly, otherwise registration fail"). The suffix
//!   `& YOUR POINTS ARE REGISTERED ON DATABASE` follows the message of every recorded
//!   session (also when an older score is better), `& REGISTRATION FAILED` if the scores
//!   file cannot be written; test runs get no suffix.
//! - The key is 4 different random lowercase letters; the text is random lowercase words
//!   separated by single spaces, 10,000 to 30,000 bytes, so there are always several
//!   packets; every packet of the stream but the last carries a number of bytes that is not
//!   a multiple of 4, so a client that restarts the key in every packet always fails.
//! - Timers: 10 s of silence (before the first packet, or in the reply; the server's own
//!   sending counts as activity) gives `TIME`; a session lasts at most 60 s. A client that
//!   closes before its last reply packet gets `CLSD` (if it can still read).
//! - Connections beyond `max_connections` (1024) are closed at once. A client that sends
//!   nothing and closes gets nothing. Shutting the server down ends sessions without a
//!   result and records nothing for them.
//! - The client: exit 0 on a score of 50; 1 on a lower score, an error packet, or a server
//!   that breaks the protocol (bad checksum, packet over 10,000 bytes, flag other than 0/1,
//!   no last packet or no result within the timeout, a close); 2 on a usage error or when it
//!   cannot connect. It takes a packet whose keyword is not the key, where the stream should
//!   go on, as the server's result.

pub mod cli;
pub mod client;
pub mod codec;
#[doc(hidden)]
pub mod fault;
pub mod score;
pub mod server;
pub mod session;
pub mod store;
