//! The state every connection shares: who is connected and logged in, the game, the file
//! transfers. The hub runs under one lock and never waits: it answers a message by queueing
//! lines for the clients concerned (a full queue marks its client for disconnection). The
//! queues it made non-empty are written out once the lock is released ([`HubGuard`]).
//!
//! [`HubGuard`]: super::server::HubGuard

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::codec::{
    ClientMessage, Code, Guess, PublicKey, SecureEnvelope, ServerMessage, TransferAccepted,
    TransferDecision, code, is_valid_checksum, is_valid_username,
};
use super::fault::Fault;
use super::game::{GameId, Games, MAX_SECRET, MIN_SECRET, WindowEnd};
use super::server::{Line, Outbox, Pushed, Settings, Shared};
use super::transfer::{self, NewTransfer, Transfers};

/// Identifies a connection for the life of the server.
pub(crate) type ConnId = u64;

/// What the connection has to do after the hub served a message.
#[derive(Debug)]
pub(crate) enum Effect {
    None,
    /// The client logged in: start the ping timer.
    LoggedIn,
    /// `BYE` was answered: close.
    Bye,
    /// A game's join window opened: start its timers.
    GameStarted(GameId),
    /// A file transfer was accepted: start its data-channel task.
    TransferAccepted(NewTransfer),
}

#[derive(Debug)]
struct Peer {
    outbox: Arc<Outbox>,
    username: Option<String>,
    /// Who answered this user's last secure-message request: where a `SECURE_MESSAGE` that
    /// names no receiver goes.
    secure_peer: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Hub {
    settings: Arc<Settings>,
    conns: HashMap<ConnId, Peer>,
    /// Logged-in connections, in login order.
    order: Vec<ConnId>,
    /// Logged-in users by name.
    by_name: HashMap<String, ConnId>,
    next_id: ConnId,
    games: Games,
    pub(crate) transfers: Transfers,
    /// Outboxes this hub's user made non-empty, to be written out once the lock is released.
    flush: RefCell<Vec<Arc<Outbox>>>,
}

impl Hub {
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
        Self {
            games: Games::new(settings.faults),
            transfers: Transfers::default(),
            settings,
            conns: HashMap::new(),
            order: Vec::new(),
            by_name: HashMap::new(),
            next_id: 1,
            flush: RefCell::new(Vec::new()),
        }
    }

    /// Registers a new connection.
    pub(crate) fn connect(&mut self, outbox: Arc<Outbox>) -> ConnId {
        let id = self.next_id;
        self.next_id += 1;
        self.conns.insert(
            id,
            Peer {
                outbox,
                username: None,
                secure_peer: None,
            },
        );
        id
    }

    /// Forgets a connection: the others learn that its user left, the game and pending
    /// transfers lose them.
    pub(crate) fn disconnect(&mut self, id: ConnId) {
        let Some(peer) = self.conns.remove(&id) else {
            return;
        };
        if let Some(name) = peer.username {
            self.log_out(id, &name);
        }
    }

    fn log_out(&mut self, id: ConnId, name: &str) {
        self.order.retain(|c| *c != id);
        if self.by_name.get(name) == Some(&id) {
            self.by_name.remove(name);
        }
        if !self.settings.faults.has(Fault::NoLeft) {
            self.to_others(
                id,
                &ServerMessage::Left {
                    username: name.to_owned(),
                },
            );
        }
        if let Some(finished) = self.games.leave(name) {
            self.game_over(finished.recipients, finished.results);
        }
        self.transfers.forget_user(name);
    }

    fn username(&self, id: ConnId) -> Option<&str> {
        self.conns.get(&id).and_then(|p| p.username.as_deref())
    }

    fn line(&self, message: &ServerMessage) -> Line {
        self.settings.encode(message)
    }

    /// The outboxes made non-empty since the last call: the caller writes them out once it
    /// has released the lock.
    pub(crate) fn take_flush(&mut self) -> Vec<Arc<Outbox>> {
        std::mem::take(self.flush.get_mut())
    }

    /// Queues a line for a connection (one line, shared by every queue it goes to).
    fn send(&self, peer: &Peer, line: &Line) {
        if peer.outbox.push(line.clone()) == Pushed::First {
            self.flush.borrow_mut().push(peer.outbox.clone());
        }
    }

    fn to_conn(&self, id: ConnId, message: &ServerMessage) {
        if let Some(peer) = self.conns.get(&id) {
            self.send(peer, &self.line(message));
        }
    }

    /// Sends to a logged-in user by name; `false` if there is none.
    fn to_user(&self, name: &str, message: &ServerMessage) -> bool {
        match self.by_name.get(name).and_then(|id| self.conns.get(id)) {
            Some(peer) => {
                self.send(peer, &self.line(message));
                true
            }
            None => false,
        }
    }

    /// Sends to every logged-in user but `except`.
    fn to_others(&self, except: ConnId, message: &ServerMessage) {
        let line = self.line(message);
        for id in &self.order {
            if *id != except
                && let Some(peer) = self.conns.get(id)
            {
                self.send(peer, &line);
            }
        }
    }

    /// Serves one message of connection `id` (`PONG` is the connection's own business).
    pub(crate) fn handle(&mut self, id: ConnId, message: ClientMessage, now: Instant) -> Effect {
        let me = self.username(id).map(str::to_owned);
        match message {
            ClientMessage::Login { username } => return self.login(id, me, username),
            ClientMessage::Bye => {
                self.to_conn(id, &ServerMessage::ByeResp(Ok(())));
                return Effect::Bye;
            }
            // Served by the connection; here only for completeness.
            ClientMessage::Pong => {}
            ClientMessage::BroadcastReq { message } => self.broadcast(id, me, message),
            ClientMessage::ListUsersReq => self.list_users(id, me),
            ClientMessage::PrivateMessageReq { receiver, message } => {
                self.private_message(id, me, receiver, message);
            }
            ClientMessage::StartGameReq => return self.start_game(id, me),
            ClientMessage::JoinGameReq => {
                let answer = match &me {
                    None => Err(code::NOT_LOGGED_IN),
                    Some(me) => self.games.join(me),
                };
                self.to_conn(id, &ServerMessage::JoinGameResp(answer));
            }
            ClientMessage::GuessNumberReq { number } => self.guess(id, me, &number, now),
            ClientMessage::FileTransferRequest {
                receiver,
                filename,
                size,
                checksum,
            } => self.file_request(id, me, receiver, filename, size, checksum),
            ClientMessage::FileTransferResponse {
                sender,
                decision,
                transfer_id,
            } => return self.file_response(id, me, sender, decision, transfer_id),
            ClientMessage::SecureMessageReq { receiver } => {
                self.secure_request(id, me, receiver);
            }
            ClientMessage::SecureMessageRes { sender, public_key } => {
                self.secure_response(id, me, sender, public_key);
            }
            ClientMessage::SecureMessage {
                receiver,
                sender,
                session_key,
                message,
            } => self.secure_message(id, me, receiver, sender, session_key, message),
        }
        Effect::None
    }

    fn login(&mut self, id: ConnId, me: Option<String>, username: String) -> Effect {
        let faults = self.settings.faults;
        let twice = me.is_some() && !faults.has(Fault::AllowLoginTwice);
        let valid = is_valid_username(&username)
            || (faults.has(Fault::AcceptBadUsername) && !username.is_empty());
        let in_use = self.by_name.get(&username).is_some_and(|c| *c != id)
            && !faults.has(Fault::AllowDuplicateName);
        let checks = [
            (twice, code::ALREADY_LOGGED_IN),
            (!valid, code::INVALID_USERNAME),
            (in_use, code::NAME_IN_USE),
        ];
        let answer = if faults.has(Fault::LoginOrderWrong) {
            checks.iter().rev().find(|(failed, _)| *failed)
        } else {
            checks.iter().find(|(failed, _)| *failed)
        }
        .map_or(Ok(()), |(_, code)| Err(*code));
        if let Err(code) = answer {
            self.to_conn(id, &ServerMessage::LoginResp(Err(code)));
            return Effect::None;
        }
        if let Some(old) = &me {
            // Only under Fault::AllowLoginTwice: the connection takes the new name.
            if *old == username {
                self.to_conn(id, &ServerMessage::LoginResp(Ok(())));
                return Effect::None;
            }
            self.order.retain(|c| *c != id);
            if self.by_name.get(old) == Some(&id) {
                self.by_name.remove(old);
            }
        }
        self.to_conn(id, &ServerMessage::LoginResp(Ok(())));
        self.by_name.entry(username.clone()).or_insert(id);
        self.order.push(id);
        if let Some(peer) = self.conns.get_mut(&id) {
            peer.username = Some(username.clone());
        }
        if self.settings.joined {
            self.to_others(id, &ServerMessage::Joined { username });
        }
        if me.is_some() {
            Effect::None
        } else {
            Effect::LoggedIn
        }
    }

    fn broadcast(&mut self, id: ConnId, me: Option<String>, message: String) {
        let Some(me) = me else {
            self.to_conn(id, &ServerMessage::BroadcastResp(Err(code::NOT_LOGGED_IN)));
            return;
        };
        let faults = self.settings.faults;
        if !faults.has(Fault::BroadcastWithoutResp) {
            self.to_conn(id, &ServerMessage::BroadcastResp(Ok(())));
        }
        let broadcast = ServerMessage::Broadcast {
            username: me,
            message,
        };
        if faults.has(Fault::BroadcastEchoesSender) {
            self.to_conn(id, &broadcast);
        }
        self.to_others(id, &broadcast);
    }

    fn list_users(&self, id: ConnId, me: Option<String>) {
        let answer = match me {
            None => Err(code::NOT_LOGGED_IN),
            Some(_) => Ok(self
                .order
                .iter()
                .filter(|c| **c != id || !self.settings.faults.has(Fault::ListUsersWithoutSelf))
                .filter_map(|c| self.username(*c).map(str::to_owned))
                .collect()),
        };
        self.to_conn(id, &ServerMessage::ListUsersResp(answer));
    }

    fn private_message(&self, id: ConnId, me: Option<String>, receiver: String, message: String) {
        let faults = self.settings.faults;
        let answer = match &me {
            None => Err(code::NOT_LOGGED_IN),
            Some(me) if *me == receiver && !faults.has(Fault::PmToSelfAllowed) => {
                Err(code::MESSAGE_TO_SELF)
            }
            Some(_) if !self.by_name.contains_key(&receiver) => Err(code::USER_NOT_FOUND),
            Some(_) if message.is_empty() && !faults.has(Fault::PmEmptyAllowed) => {
                Err(code::EMPTY_MESSAGE)
            }
            Some(_) => Ok(()),
        };
        let ok = answer.is_ok();
        self.to_conn(id, &ServerMessage::PrivateMessageResp(answer));
        let (Some(sender), true) = (me, ok) else {
            return;
        };
        let delivery = ServerMessage::PrivateMessage { sender, message };
        if faults.has(Fault::PmToEveryone) {
            self.to_others(id, &delivery);
        } else if !faults.has(Fault::PmNotDelivered) {
            self.to_user(&receiver, &delivery);
        }
    }

    fn start_game(&mut self, id: ConnId, me: Option<String>) -> Effect {
        let Some(me) = me else {
            self.to_conn(id, &ServerMessage::StartGameResp(Err(code::NOT_LOGGED_IN)));
            return Effect::None;
        };
        match self.games.start(&me) {
            Err(code) => {
                self.to_conn(id, &ServerMessage::StartGameResp(Err(code)));
                Effect::None
            }
            Ok(game) => {
                self.to_conn(id, &ServerMessage::StartGameResp(Ok(())));
                if !self.settings.faults.has(Fault::NoGameNotification) {
                    self.to_others(id, &ServerMessage::GameNotification(Ok(())));
                }
                Effect::GameStarted(game)
            }
        }
    }

    fn guess(&mut self, id: ConnId, me: Option<String>, number: &Guess, now: Instant) {
        let Some(me) = me else {
            self.to_conn(
                id,
                &ServerMessage::GuessNumberResp(Err(code::NOT_LOGGED_IN)),
            );
            return;
        };
        let (answer, finished) = self.games.guess(&me, number, now.into_std());
        self.to_conn(id, &ServerMessage::GuessNumberResp(answer));
        if let Some(finished) = finished {
            self.game_over(finished.recipients, finished.results);
        }
    }

    fn game_over(
        &self,
        recipients: Vec<String>,
        results: Result<Vec<super::codec::GameResult>, Code>,
    ) {
        let message = ServerMessage::GameResults(results);
        for name in recipients {
            self.to_user(&name, &message);
        }
    }

    /// The join window of `game` ended.
    fn close_window(&mut self, game: GameId, now: Instant) -> bool {
        let secret = match self.settings.secret {
            Some(secret) => i64::from(secret),
            None => random_secret(),
        };
        match self.games.close_window(game, secret, now.into_std()) {
            Some(WindowEnd::Started { participants }) => {
                let message = ServerMessage::StartGameResp(Ok(()));
                for name in participants {
                    self.to_user(&name, &message);
                }
                true
            }
            Some(WindowEnd::Cancelled { notify }) => {
                let message = ServerMessage::StartGameResp(Err(code::INSUFFICIENT_PLAYERS));
                for name in notify {
                    self.to_user(&name, &message);
                }
                false
            }
            None => false,
        }
    }

    fn time_up(&mut self, game: GameId) {
        if let Some(finished) = self.games.time_up(game) {
            self.game_over(finished.recipients, finished.results);
        }
    }

    fn file_request(
        &mut self,
        id: ConnId,
        me: Option<String>,
        receiver: String,
        filename: String,
        size: Option<u64>,
        checksum: Option<String>,
    ) {
        let Some(me) = me else {
            return self.file_error(id, code::NOT_LOGGED_IN);
        };
        let refusal = if me == receiver || !self.by_name.contains_key(&receiver) {
            Some(code::USER_NOT_FOUND)
        } else if size.is_some_and(|s| s > self.settings.max_file_size) {
            Some(code::FILE_TOO_LARGE)
        } else if checksum.as_deref().is_some_and(|c| !is_valid_checksum(c)) {
            Some(code::INVALID_CHECKSUM)
        } else {
            None
        };
        if let Some(code) = refusal {
            return self.file_error(id, code);
        }
        self.transfers.request(
            &me,
            &receiver,
            transfer::Request {
                size,
                checksum: checksum.clone(),
            },
        );
        self.to_user(
            &receiver,
            &ServerMessage::FileTransferRequest {
                sender: me,
                filename,
                size,
                checksum,
            },
        );
    }

    fn file_error(&self, id: ConnId, code: Code) {
        self.to_conn(id, &ServerMessage::FileTransferResponse(Err(code)));
    }

    fn file_response(
        &mut self,
        id: ConnId,
        me: Option<String>,
        sender: String,
        decision: TransferDecision,
        transfer_id: String,
    ) -> Effect {
        let Some(me) = me else {
            self.file_error(id, code::NOT_LOGGED_IN);
            return Effect::None;
        };
        if !self.by_name.contains_key(&sender) {
            self.file_error(id, code::USER_NOT_FOUND);
            return Effect::None;
        }
        if !self.transfers.has_pending(&sender, &me) {
            self.file_error(id, code::NO_PENDING_TRANSFER);
            return Effect::None;
        }
        if decision == TransferDecision::Reject {
            self.transfers.take_pending(&sender, &me);
            self.to_user(
                &sender,
                &ServerMessage::FileTransferResponse(Err(code::FILE_REJECTED)),
            );
            return Effect::None;
        }
        if !transfer::is_valid_transfer_id(&transfer_id) || self.transfers.is_known(&transfer_id) {
            self.file_error(id, code::INVALID_TRANSFER_ID);
            return Effect::None;
        }
        if self.transfers.active_count() >= self.settings.max_transfers {
            self.file_error(id, code::TRANSFER_FAILED);
            return Effect::None;
        }
        let Some(request) = self.transfers.take_pending(&sender, &me) else {
            return Effect::None;
        };
        let told_id = if self.settings.faults.has(Fault::TransferIdNotRelayed) {
            uuid::Uuid::new_v4().to_string()
        } else {
            transfer_id.clone()
        };
        let new = self
            .transfers
            .register(transfer_id, sender.clone(), me.clone(), request);
        self.to_user(
            &sender,
            &ServerMessage::FileTransferResponse(Ok(TransferAccepted {
                receiver: me,
                transfer_id: told_id,
            })),
        );
        Effect::TransferAccepted(new)
    }

    /// A transfer ended: both parties learn how, if they are still logged in.
    pub(crate) fn transfer_done(&mut self, done: transfer::Done) {
        self.transfers.finish(&done.transfer_id);
        let message = ServerMessage::FileTransferComplete {
            transfer_id: done.transfer_id,
            result: done.result,
            size: done.size,
            checksum: done.checksum,
        };
        self.to_user(&done.uploader, &message);
        self.to_user(&done.downloader, &message);
    }

    /// Whether a level-4 message from `me` may go to `receiver`, or the error to answer.
    fn relay_target(&self, me: &str, receiver: &str) -> Result<(), Code> {
        if me == receiver {
            Err(code::MESSAGE_TO_SELF)
        } else if !self.by_name.contains_key(receiver) {
            Err(code::USER_NOT_FOUND)
        } else {
            Ok(())
        }
    }

    fn secure_request(&self, id: ConnId, me: Option<String>, receiver: String) {
        let Some(me) = me else {
            return self.to_conn(
                id,
                &ServerMessage::SecureMessageReq(Err(code::NOT_LOGGED_IN)),
            );
        };
        match self.relay_target(&me, &receiver) {
            Ok(()) => {
                self.to_user(&receiver, &ServerMessage::SecureMessageReq(Ok(me)));
            }
            Err(code) => self.to_conn(id, &ServerMessage::SecureMessageReq(Err(code))),
        }
    }

    fn secure_response(&mut self, id: ConnId, me: Option<String>, sender: String, key: String) {
        let Some(me) = me else {
            return self.to_conn(
                id,
                &ServerMessage::SecureMessageRes(Err(code::NOT_LOGGED_IN)),
            );
        };
        if let Err(code) = self.relay_target(&me, &sender) {
            return self.to_conn(id, &ServerMessage::SecureMessageRes(Err(code)));
        }
        self.to_user(
            &sender,
            &ServerMessage::SecureMessageRes(Ok(PublicKey {
                receiver: me.clone(),
                public_key: key,
            })),
        );
        if let Some(peer) = self
            .by_name
            .get(&sender)
            .copied()
            .and_then(|c| self.conns.get_mut(&c))
        {
            peer.secure_peer = Some(me);
        }
    }

    fn secure_message(
        &self,
        id: ConnId,
        me: Option<String>,
        receiver: Option<String>,
        sender: Option<String>,
        session_key: String,
        message: String,
    ) {
        let Some(me) = me else {
            return self.to_conn(id, &ServerMessage::SecureMessage(Err(code::NOT_LOGGED_IN)));
        };
        // The receiver: the "receiver" field; else the spec's "sender" field if it names
        // someone else; else whoever answered this user's last SECURE_MESSAGE_REQ.
        let target = receiver
            .filter(|r| !r.is_empty())
            .or_else(|| sender.filter(|s| !s.is_empty() && *s != me))
            .or_else(|| self.conns.get(&id).and_then(|p| p.secure_peer.clone()))
            .unwrap_or_default();
        if let Err(code) = self.relay_target(&me, &target) {
            return self.to_conn(id, &ServerMessage::SecureMessage(Err(code)));
        }
        let message = if self.settings.faults.has(Fault::SecureMessageAltered) {
            format!("X{message}")
        } else {
            message
        };
        self.to_user(
            &target,
            &ServerMessage::SecureMessage(Ok(SecureEnvelope {
                sender: me,
                session_key,
                message,
            })),
        );
    }
}

/// A number in 1..=50 from the system's random source.
fn random_secret() -> i64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    let span = u64::try_from(MAX_SECRET - MIN_SECRET + 1).unwrap_or(50);
    MIN_SECRET + i64::try_from(u64::from_le_bytes(word) % span).unwrap_or(0)
}

/// The timers of one game: the end of its join window, then its time limit.
pub(crate) async fn game_timers(shared: Arc<Shared>, game: GameId) {
    let mut stop = shared.stop.clone();
    let settings = shared.settings.clone();
    let window_end = Instant::now() + settings.join_window;
    tokio::select! {
        _ = stop.changed() => return,
        () = tokio::time::sleep_until(window_end) => {}
    }
    if !shared.hub().close_window(game, Instant::now()) {
        return;
    }
    tokio::select! {
        _ = stop.changed() => {}
        () = tokio::time::sleep(settings.game_time_limit) => shared.hub().time_up(game),
    }
}
