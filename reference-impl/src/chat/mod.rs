//! The chat protocol (`specs/chat.md`), levels 1 to 4.
//!
//! - [`codec`]: bytes <-> messages (pure), the header names and check order of a dialect;
//! - [`server`]: the tokio server, its configuration and [`server::spawn`] for tests;
//! - [`game`]: the guessing game's rules; [`transfer`]: file transfers and their data channel;
//! - [`server_cli`]: the `reference chat-server` command;
//! - [`client`], [`e2e`]: the client library and its end-to-end encryption.
//!
//! # Wire format
//!
//! ```text
//! line      HEADER | HEADER " " BODY, ended by "\n", "\r\n" or a lone "\r"
//!           (a "\r" ending one read and a "\n" starting the next are one line end)
//! HEADER    split at the first space (a renamed header may contain spaces: the longest
//!           known name wins); case-sensitive
//! BODY      a JSON object; missing, empty or blank counts as {}
//! limit     1024 bytes before the line end (configurable, never below 1024); a longer
//!           line, terminated or not, gets DSCN {"reason":7001} and the connection closes
//!           as soon as 1025 bytes without a line end have arrived
//! output    HEADER "\n" or HEADER " " COMPACT_JSON "\n": no spaces, keys in this order:
//! ```
//!
//! Every server message, exactly as sent (`<s>` a JSON string, `<n>` a number):
//!
//! ```text
//! WELCOME {"msg":"Welcome to the server 1.5"}
//! LOGIN_RESP {"status":"OK"}                 LOGIN_RESP {"status":"ERROR","code":<n>}
//! BROADCAST_RESP {"status":"OK"}             BROADCAST_RESP {"status":"ERROR","code":6000}
//! BROADCAST {"username":<s>,"message":<s>}
//! JOINED {"username":<s>}                    LEFT {"username":<s>}
//! PING                                       PONG_ERROR {"code":8000}
//! DSCN {"reason":7000}                       DSCN {"reason":7001}
//! BYE_RESP {"status":"OK"}
//! UNKNOWN_COMMAND                            PARSE_ERROR
//! LIST_USERS_RESP {"status":"OK","users":[<s>,...]}
//! LIST_USERS_RESP {"status":"ERROR","code":6000}
//! PRIVATE_MESSAGE_RESP {"status":"OK"}       PRIVATE_MESSAGE_RESP {"status":"ERROR","code":<n>}
//! PRIVATE_MESSAGE {"sender":<s>,"message":<s>}
//! START_GAME_RESP {"status":"OK"}            START_GAME_RESP {"status":"ERROR","code":<n>}
//! GAME_NOTIFICATION {"status":"OK"}
//! JOIN_GAME_RESP {"status":"OK"}             JOIN_GAME_RESP {"status":"ERROR","code":<n>}
//! GUESS_NUMBER_RESP {"status":"OK","result":"Correct"}
//! GUESS_NUMBER_RESP {"status":"ERROR","code":<n>}
//! GAME_RESULTS {"status":"OK","results":[{"username":<s>,"time_ms":<n>},...]}
//! GAME_RESULTS {"status":"ERROR","code":9002}
//! FILE_TRANSFER_REQUEST {"sender":<s>,"filename":<s>[,"size":<n>][,"checksum":<s>]}
//! FILE_TRANSFER_RESPONSE {"receiver":<s>,"status":"OK","transferId":<s>}
//! FILE_TRANSFER_RESPONSE {"status":"ERROR","code":<n>}
//! FILE_TRANSFER_COMPLETE {"transferId":<s>,"status":"OK","size":<n>,"checksum":<s>}
//! FILE_TRANSFER_COMPLETE {"transferId":<s>,"status":"ERROR","code":<n>,"size":<n>,"checksum":<s>}
//! SECURE_MESSAGE_REQ {"sender":<s>}          SECURE_MESSAGE_REQ {"status":"ERROR","code":<n>}
//! SECURE_MESSAGE_RES {"receiver":<s>,"publicKey":<s>}
//! SECURE_MESSAGE_RES {"status":"ERROR","code":<n>}
//! SECURE_MESSAGE {"sender":<s>,"sessionKey":<s>,"message":<s>}
//! SECURE_MESSAGE {"status":"ERROR","code":<n>}
//! ```
//!
//! Client messages (the server reads any key order and spacing, and ignores unknown keys):
//!
//! ```text
//! LOGIN {"username":<s>}                     BROADCAST_REQ {"message":<s>}
//! PONG   BYE   LIST_USERS_REQ   START_GAME_REQ   JOIN_GAME_REQ     (any {} body allowed)
//! PRIVATE_MESSAGE_REQ {"receiver":<s>,"message":<s>}
//! GUESS_NUMBER_REQ {"number":<n>|"<digits>"}
//! FILE_TRANSFER_REQUEST {"receiver":<s>,"filename":<s>[,"size":<n>][,"checksum":<64 hex>]}
//! FILE_TRANSFER_RESPONSE {"sender":<s>,"status":"OK"|"REJECTED","transferId":<uuid>}
//! SECURE_MESSAGE_REQ {"receiver":<s>}
//! SECURE_MESSAGE_RES {"sender":<s>,"publicKey":<s>}
//! SECURE_MESSAGE {"receiver":<s>,"sessionKey":<s>,"message":<s>}   ("sender" accepted too)
//! ```
//!
//! The data channel of file transfers (its own port, default the control port + 1):
//!
//! ```text
//! client -> server   UPLOAD <transferId>\n | DOWNLOAD <transferId>\n
//! server -> client   READY\n once both sides are attached | ERROR <reason>\n and close
//! uploader           the file's bytes, then EOF; the downloader gets them, then EOF
//! ```
//!
//! # Decisions where the spec is silent or ambiguous
//!
//! Framing and parsing
//! - The login header is `LOGIN`; the spec's `LOGIN REQ` only through a rename
//!   (`--rename 'LOGIN=LOGIN REQ'`).
//! - A body that is missing, empty (`LOGIN `) or only whitespace counts as `{}`.
//! - An empty line is a line with the unknown header `""`: `UNKNOWN_COMMAND`.
//! - The limit counts the bytes before the line end. A line over it gets `DSCN 7001` and the
//!   connection closes, whether its line end has arrived or not.
//! - Check order: by default the header is looked up first (the spec's example
//!   `MSG This is an invalid message` answers `UNKNOWN_COMMAND`); `json-first` parses the body
//!   first, as the teachers' server (`PARSE_ERROR` for that line, `UNKNOWN_COMMAND` for `FOO`
//!   and `FOO {}`). Either way, a known header with a body that is not an object, or a field
//!   of the wrong type (`{"username":5}`, `{"size":-1}`), answers `PARSE_ERROR`.
//! - A header that exists only in the other direction (`PING`, `WELCOME` from a client) is
//!   unknown. Headers are case-sensitive.
//! - Missing or `null` string fields read as `""` (so `BROADCAST_REQ` alone broadcasts an
//!   empty message, `LOGIN {}` is 5001, a private message without `message` is 6008).
//!   Unknown fields are ignored.
//! - Non-UTF-8 bytes: in a header, an unknown header; in a body, not JSON.
//! - Renames (`HEADER=NEW_NAME`) change a header in both directions and retire its old name.
//!
//! Level 1
//! - `WELCOME` is `Welcome to the server <version>` (version `1.5` by default).
//! - Login checks in the order 5002, 5001, 5000. Names are case-sensitive (`Alice` and
//!   `alice` are two users); a name is free again as soon as its user has gone.
//! - `JOINED` goes to every other logged-in user (not to connections that have not logged
//!   in), unless switched off (`--no-joined`, as the teachers' server).
//! - Every message that needs a login answers 6000 before it, under its own response header;
//!   `BYE` and `PONG` need none (`BYE` before a login is answered and closes without `LEFT`;
//!   `PONG` then gets `PONG_ERROR 8000`, as no `PING` is sent before a login).
//! - `PING`s come at a fixed rate from the login (`ping_interval` after `LOGIN_RESP`, then
//!   every `ping_interval`), not counted from the last `PONG`. One `PONG` answers one `PING`;
//!   a second one gets 8000. While a `PING` is unanswered no second one is sent.
//! - `LEFT` goes to every other logged-in user whenever a logged-in user goes: `BYE`, EOF,
//!   reset, `DSCN`, or being dropped as a slow reader.
//! - A client whose outgoing queue fills (`max_queue` lines, default 256) or whose writes
//!   stall for `write_timeout` is disconnected without a message. A client that sends without
//!   reading is slowed down first: its next line is served only when its queue has room.
//! - Connections over `max_connections` are closed at once, without `WELCOME`.
//! - On shutdown every connection gets what was queued for it, then EOF; nobody gets `DSCN`.
//!
//! Level 2
//! - `LIST_USERS_RESP` lists every logged-in user, the requester included, in login order.
//! - Private message errors in the order 6000, 6007 (to yourself), 6001 (no such user, or
//!   no receiver), 6008 (empty or missing message; only `""` is empty, spaces are not).
//! - One game at a time. `START_GAME_REQ` while a game is joining or running answers
//!   `START_GAME_RESP` 6003. `GAME_NOTIFICATION` goes to every other logged-in user.
//! - `JOIN_GAME_REQ`: 6005 no game, 6004 already a participant (the initiator included),
//!   6003 after the join window.
//! - When the window ends with at least two participants, each gets `START_GAME_RESP OK` and
//!   the game runs; with fewer, the one remaining participant (usually the initiator) gets
//!   `START_GAME_RESP` 6002 and there is no game.
//! - Guesses: a JSON integer or a string of ASCII digits (`"42"`); anything else (`"4a"`,
//!   `4.5`, `-`, `null`, no field) is 7004; out of 1..=50 (negative numbers too) 7007; then
//!   7005 too low, 7006 too high, `{"status":"OK","result":"Correct"}`. The checks run: 6000,
//!   7002 no game at all, 7003 during the join window (for everyone), 8001 not a
//!   participant, 7003 already guessed right, then the number.
//! - `time_ms` runs from the end of the join window to the correct guess. The game ends when
//!   every remaining participant has guessed right, or after `game_time_limit` (120 s);
//!   `GAME_RESULTS` goes to every remaining participant, fastest first (ties in the order of
//!   guessing), leaving out those who never guessed right; 9002 if nobody did.
//! - A participant who goes is removed, time and all. A game left without participants ends
//!   without messages.
//!
//! Level 3
//! - `FILE_TRANSFER_REQUEST` errors, to the uploader as `FILE_TRANSFER_RESPONSE`, in the
//!   order 6000, 6001 (no such receiver, or yourself), 10000 (`size` over `max_file_size`,
//!   64 MiB), 10001 (`checksum` not 64 hex digits; either case). The request is passed on
//!   with `size` and `checksum` only if the uploader gave them; the uploader gets no
//!   acknowledgement until the receiver answers.
//! - The downloader makes the `transferId` (a UUID, 36-character hyphenated form, any
//!   version). Its `FILE_TRANSFER_RESPONSE` is checked: 6000, 6001 (the sender is not logged
//!   in), 10006 (ours: no request from that sender is waiting), for `OK` 10005 (ours: not a
//!   UUID, or in use) and 10004 (too many transfers); errors go to the downloader. A status
//!   other than `OK`/`REJECTED` is `PARSE_ERROR`. `REJECTED` gives the uploader
//!   `FILE_TRANSFER_RESPONSE` 10002; `OK` gives it
//!   `{"receiver":<downloader>,"status":"OK","transferId":<id>}`. The downloader gets nothing
//!   on success.
//! - Requests wait per (uploader, receiver) pair, first in first out, at most 8 (an older one
//!   is dropped); an answer takes the oldest. Requests to or from a user who goes are dropped;
//!   accepted transfers go on (the id is the capability).
//! - The data channel, and `FILE_TRANSFER_COMPLETE` to both parties after the relay, are
//!   ours: see [`transfer`]. The server reports the size and SHA-256 of what it received;
//!   10003 if they differ from what the uploader declared, 10004 if the transfer did not
//!   complete.
//!
//! Level 4
//! - The relays carry the values untouched. `SECURE_MESSAGE` names its receiver in
//!   `receiver`; without one, the spec's `sender` field is taken as the receiver if it names
//!   someone else, else the message goes to whoever answered the sender's last
//!   `SECURE_MESSAGE_REQ`.
//! - Errors (6000 not logged in, 6007 to yourself, 6001 no such user) come back under the
//!   header of the failed message: `SECURE_MESSAGE_REQ`, `SECURE_MESSAGE_RES` or
//!   `SECURE_MESSAGE` with `{"status":"ERROR","code":<n>}`. The server does not check that a
//!   `SECURE_MESSAGE_RES` answers a request.

pub mod client;
pub mod codec;
pub mod e2e;
#[doc(hidden)]
pub mod fault;
pub mod game;
mod hub;
#[doc(hidden)]
pub mod sabotage;
pub mod server;
pub mod server_cli;
pub mod transfer;
