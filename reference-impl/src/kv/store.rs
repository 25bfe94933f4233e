//! Accounts, sessions and their data: the state of a key-value server, shared by all its
//! connections. Synchronous: a `std::sync::Mutex` guards it and is never held across an
//! `.await` (or across a password derivation).
//!
//! ```text
//! account   id -> what a CONNECT must present:
//!             Verified: PBKDF2(password from the users file, salt), derived on first use
//!             FirstUse: whatever hash the id's first successful CONNECT presented
//! session   id -> { data: key -> value, active: the connection logged in, if any }
//!
//! CONNECT ok          session created, or an inactive one reactivated with its data
//! connection closes   session inactive, data kept: the id may CONNECT again and find it
//! DISCONNECT          session and data removed (the account stays)
//! protocol error      session and data removed, connection dropped
//! ```
//!
//! One session per id may be active at a time. Stored sessions, keys per session and
//! first-use accounts are capped, so a client cannot grow the server without bound.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::auth::{HASH_LEN, TEST_SALT, hash_password};
use super::codec::is_valid_id;
use super::fault::{Fault, Faults};

/// Default cap on stored sessions (active or holding data).
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// Default cap on keys per session.
pub const DEFAULT_MAX_KEYS: usize = 10_000;
/// Default cap on the hashes first-use accounts remember.
pub const DEFAULT_MAX_ACCOUNTS: usize = 100_000;

/// Who may log in, and with which password.
#[derive(Clone, Default)]
pub enum Accounts {
    /// No user table: an id's first successful `CONNECT` sets its password hash, and later
    /// `CONNECT`s must present the same hash.
    #[default]
    FirstUse,
    /// A user table, id -> password: only these ids may log in, and only with the hash of
    /// their password.
    Verified(HashMap<String, String>),
}

impl fmt::Debug for Accounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Accounts::FirstUse => f.write_str("FirstUse"),
            Accounts::Verified(users) => write!(f, "Verified({} users)", users.len()),
        }
    }
}

/// A users file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountsError {
    #[error("cannot read users file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: expected `id:password`, found no `:`", path.display())]
    MissingColon { path: PathBuf, line: usize },
    #[error(
        "{}:{line}: {id:?} is not a valid id: ids are non-empty and ASCII",
        path.display()
    )]
    BadId {
        path: PathBuf,
        line: usize,
        id: String,
    },
    #[error("{}:{line}: id {id:?} is already defined on line {first}", path.display())]
    DuplicateId {
        path: PathBuf,
        line: usize,
        id: String,
        first: usize,
    },
    #[error(
        "{} defines no user: write one `id:password` line per user",
        path.display()
    )]
    NoUsers { path: PathBuf },
}

impl Accounts {
    /// Reads a users file; see [`Accounts::parse_users`] for its format.
    pub fn from_users_file(path: &Path) -> Result<Self, AccountsError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccountsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_users(&text, path)
    }

    /// Parses a users file: one `id:password` per line, split at the first `:` (so a
    /// password may contain `:`), nothing trimmed; blank lines and lines starting with `#`
    /// are ignored. `path` is only used in error messages.
    pub fn parse_users(text: &str, path: &Path) -> Result<Self, AccountsError> {
        let mut users = HashMap::new();
        let mut defined_on = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((id, password)) = line.split_once(':') else {
                return Err(AccountsError::MissingColon {
                    path: path.to_owned(),
                    line: line_number,
                });
            };
            if !is_valid_id(id) {
                return Err(AccountsError::BadId {
                    path: path.to_owned(),
                    line: line_number,
                    id: id.to_owned(),
                });
            }
            if let Some(first) = defined_on.insert(id.to_owned(), line_number) {
                return Err(AccountsError::DuplicateId {
                    path: path.to_owned(),
                    line: line_number,
                    id: id.to_owned(),
                    first,
                });
            }
            users.insert(id.to_owned(), password.to_owned());
        }
        if users.is_empty() {
            return Err(AccountsError::NoUsers {
                path: path.to_owned(),
            });
        }
        Ok(Accounts::Verified(users))
    }
}

/// Configuration of a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub accounts: Accounts,
    /// PBKDF2 salt for verified accounts; the spec's [`TEST_SALT`] by default.
    pub salt: Vec<u8>,
    /// Stored sessions, active or holding data; a `CONNECT` of a new id beyond it fails.
    pub max_sessions: usize,
    /// Keys per session; a `PUT` of a new key beyond it fails.
    pub max_keys: usize,
    /// Hashes remembered for first-use accounts; a `CONNECT` of a new id beyond it fails.
    pub max_accounts: usize,
    #[doc(hidden)]
    pub faults: Faults,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            accounts: Accounts::FirstUse,
            salt: TEST_SALT.to_vec(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_keys: DEFAULT_MAX_KEYS,
            max_accounts: DEFAULT_MAX_ACCOUNTS,
            faults: Faults::NONE,
        }
    }
}

/// Identifies one connection to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

/// A logged-in session, held by the connection that logged in. Ending the connection
/// consumes it: [`Store::disconnect`], [`Store::release`] or [`Store::discard`].
#[derive(Debug)]
pub struct SessionRef {
    id: String,
    conn: ConnId,
}

impl SessionRef {
    /// The client id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Why a `CONNECT` was refused. The protocol answers all of them with `CONNECT: ERROR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("the id is empty or contains a line feed")]
    InvalidId,
    #[error("no such user")]
    UnknownUser,
    #[error("wrong password")]
    WrongPassword,
    #[error("the session is active on another connection")]
    SessionActive,
    #[error("the server's session limit is reached")]
    Full,
}

/// Why an operation on a session failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the session no longer exists")]
    NoSession,
    #[error("the session already holds {limit} keys")]
    TooManyKeys { limit: usize },
}

#[derive(Debug, Default)]
struct Session {
    data: HashMap<String, String>,
    active: Option<ConnId>,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<String, Session>,
    /// The one store of all sessions under `Fault::SharedStore`.
    shared: HashMap<String, String>,
    /// First-use accounts: id -> the hash of their first successful CONNECT.
    remembered: HashMap<String, [u8; HASH_LEN]>,
    /// Verified accounts: id -> PBKDF2 of the password, derived on first login.
    derived: HashMap<String, [u8; HASH_LEN]>,
}

/// Sessions and accounts of a server. Share it between connections in an `Arc`.
pub struct Store {
    config: StoreConfig,
    state: Mutex<State>,
    next_conn: AtomicU64,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("accounts", &self.config.accounts)
            .field("sessions", &self.session_count())
            .finish_non_exhaustive()
    }
}

/// Compares two hashes in time independent of where they differ.
fn same_hash(a: &[u8; HASH_LEN], b: &[u8; HASH_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

impl Store {
    pub fn new(config: StoreConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::default()),
            next_conn: AtomicU64::new(1),
        }
    }

    /// The configuration the store was made with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; if one did, the state is still a
        // consistent set of maps.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection identity.
    pub fn connection(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    /// Logs `conn` in as `id` with the password hash `hash`.
    ///
    /// Blocking: the first login of a verified account derives its password hash (PBKDF2,
    /// 100 000 iterations, tens of milliseconds). Async callers run this on a blocking
    /// thread.
    pub fn login(
        &self,
        id: &str,
        hash: &[u8; HASH_LEN],
        conn: ConnId,
    ) -> Result<SessionRef, LoginError> {
        if !is_valid_id(id) {
            return Err(LoginError::InvalidId);
        }
        let check_password = !self.config.faults.has(Fault::AcceptAnyPassword);
        let derived = match &self.config.accounts {
            Accounts::Verified(users) => {
                let password = users.get(id).ok_or(LoginError::UnknownUser)?;
                check_password.then(|| self.derived_hash(id, password))
            }
            Accounts::FirstUse => None,
        };
        let mut state = self.lock();
        let expected = match &self.config.accounts {
            Accounts::Verified(_) => derived,
            Accounts::FirstUse => state.remembered.get(id).copied(),
        };
        if check_password && expected.is_some_and(|expected| !same_hash(&expected, hash)) {
            return Err(LoginError::WrongPassword);
        }
        match state.sessions.get(id) {
            Some(Session {
                active: Some(_), ..
            }) if !self.config.faults.has(Fault::AllowDuplicateSession) => {
                return Err(LoginError::SessionActive);
            }
            Some(_) => {}
            None if state.sessions.len() >= self.config.max_sessions => {
                return Err(LoginError::Full);
            }
            None => {}
        }
        if let Accounts::FirstUse = self.config.accounts
            && !state.remembered.contains_key(id)
        {
            if state.remembered.len() >= self.config.max_accounts {
                return Err(LoginError::Full);
            }
            state.remembered.insert(id.to_owned(), *hash);
        }
        state.sessions.entry(id.to_owned()).or_default().active = Some(conn);
        Ok(SessionRef {
            id: id.to_owned(),
            conn,
        })
    }

    /// The PBKDF2 hash of a verified account's password, derived once and remembered.
    fn derived_hash(&self, id: &str, password: &str) -> [u8; HASH_LEN] {
        if let Some(hash) = self.lock().derived.get(id) {
            return *hash;
        }
        // Derived without the lock, so other connections are not held up meanwhile.
        let hash = hash_password(password.as_bytes(), &self.config.salt);
        self.lock().derived.insert(id.to_owned(), hash);
        hash
    }

    /// Logs `conn` in as `id` without any check, for faults that let a connection act
    /// without a proper login.
    #[doc(hidden)]
    pub fn open_unchecked(&self, id: &str, conn: ConnId) -> SessionRef {
        self.lock()
            .sessions
            .entry(id.to_owned())
            .or_default()
            .active = Some(conn);
        SessionRef {
            id: id.to_owned(),
            conn,
        }
    }

    /// Stores `value` under `key`, replacing any old value.
    pub fn put(&self, session: &SessionRef, key: String, value: String) -> Result<(), StoreError> {
        let max_keys = self.config.max_keys;
        let keep_old = self.config.faults.has(Fault::PutKeepsOldValue);
        let mut state = self.lock();
        let data = self.data(&mut state, session)?;
        let room = data.len() < max_keys;
        // One lookup of the key, whether it is new or replaced.
        match data.entry(key) {
            Entry::Occupied(mut stored) if !keep_old => {
                stored.insert(value);
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(slot) if room => {
                slot.insert(value);
            }
            Entry::Vacant(_) => return Err(StoreError::TooManyKeys { limit: max_keys }),
        }
        Ok(())
    }

    /// The value under `key`; `None` if there is none (or the session is gone).
    pub fn get(&self, session: &SessionRef, key: &str) -> Option<String> {
        let mut state = self.lock();
        self.data(&mut state, session).ok()?.get(key).cloned()
    }

    /// Deletes `key`; `Ok(false)` if it did not exist.
    pub fn delete(&self, session: &SessionRef, key: &str) -> Result<bool, StoreError> {
        let keep = self.config.faults.has(Fault::DeleteKeepsKey);
        let mut state = self.lock();
        let data = self.data(&mut state, session)?;
        if keep {
            return Ok(data.contains_key(key));
        }
        Ok(data.remove(key).is_some())
    }

    fn data<'a>(
        &self,
        state: &'a mut State,
        session: &SessionRef,
    ) -> Result<&'a mut HashMap<String, String>, StoreError> {
        let own = &mut state
            .sessions
            .get_mut(&session.id)
            .ok_or(StoreError::NoSession)?
            .data;
        if self.config.faults.has(Fault::SharedStore) {
            return Ok(&mut state.shared);
        }
        Ok(own)
    }

    /// `DISCONNECT`: removes the session and all its data; the id is free again.
    pub fn disconnect(&self, session: SessionRef) {
        if self.config.faults.has(Fault::KeepSessionAfterDisconnect) {
            return self.release(session);
        }
        self.lock().sessions.remove(&session.id);
    }

    /// The connection ended without `DISCONNECT`: the session becomes inactive and keeps its
    /// data for the next login of the same id.
    pub fn release(&self, session: SessionRef) {
        let mut state = self.lock();
        if let Some(stored) = state.sessions.get_mut(&session.id)
            && stored.active == Some(session.conn)
        {
            stored.active = None;
            if stored.data.is_empty() {
                // Nothing to keep: free the slot.
                state.sessions.remove(&session.id);
            }
        }
    }

    /// The connection was dropped for a protocol error: the session and all its data go.
    pub fn discard(&self, session: SessionRef) {
        self.lock().sessions.remove(&session.id);
    }

    /// Stored sessions, active or holding data.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Whether a connection is logged in as `id`.
    pub fn is_active(&self, id: &str) -> bool {
        self.lock()
            .sessions
            .get(id)
            .is_some_and(|s| s.active.is_some())
    }

    /// The value stored under `key` in the session of `id`, for inspection.
    pub fn peek(&self, id: &str, key: &str) -> Option<String> {
        self.lock().sessions.get(id)?.data.get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::OnceLock;

    use super::*;

    fn secret() -> [u8; HASH_LEN] {
        static HASH: OnceLock<[u8; HASH_LEN]> = OnceLock::new();
        *HASH.get_or_init(|| hash_password(b"secret", &TEST_SALT))
    }

    const OTHER: [u8; HASH_LEN] = [7; HASH_LEN];

    fn store() -> Store {
        Store::new(StoreConfig::default())
    }

    fn faulty(fault: Fault) -> Store {
        Store::new(StoreConfig {
            faults: fault.into(),
            ..StoreConfig::default()
        })
    }

    #[test]
    fn first_use_remembers_the_first_hash() {
        let store = store();
        let s = store.login("alice", &OTHER, store.connection()).unwrap();
        store.release(s);
        assert_eq!(
            store
                .login("alice", &[8; HASH_LEN], store.connection())
                .unwrap_err(),
            LoginError::WrongPassword
        );
        let s = store.login("alice", &OTHER, store.connection()).unwrap();
        // The remembered hash is account data: DISCONNECT keeps it.
        store.disconnect(s);
        assert!(
            store
                .login("alice", &[8; HASH_LEN], store.connection())
                .is_err()
        );
    }

    #[test]
    fn verified_accounts_check_the_pbkdf2_hash() {
        let accounts = Accounts::parse_users("alice:secret\n", Path::new("users")).unwrap();
        let store = Store::new(StoreConfig {
            accounts,
            ..StoreConfig::default()
        });
        assert_eq!(
            store
                .login("alice", &OTHER, store.connection())
                .unwrap_err(),
            LoginError::WrongPassword
        );
        assert_eq!(
            store
                .login("bob", &secret(), store.connection())
                .unwrap_err(),
            LoginError::UnknownUser
        );
        assert!(store.login("alice", &secret(), store.connection()).is_ok());
    }

    #[test]
    fn one_active_session_per_id() {
        let store = store();
        let first = store.login("a", &OTHER, store.connection()).unwrap();
        assert_eq!(
            store.login("a", &OTHER, store.connection()).unwrap_err(),
            LoginError::SessionActive
        );
        store.release(first);
        assert!(store.login("a", &OTHER, store.connection()).is_ok());
    }

    #[test]
    fn release_keeps_data_disconnect_and_discard_remove_it() {
        let store = store();
        let s = store.login("a", &OTHER, store.connection()).unwrap();
        store.put(&s, "k".into(), "v".into()).unwrap();
        store.release(s);
        assert!(!store.is_active("a"));
        let s = store.login("a", &OTHER, store.connection()).unwrap();
        assert_eq!(store.get(&s, "k").as_deref(), Some("v"));
        store.disconnect(s);
        assert_eq!(store.session_count(), 0);

        let s = store.login("a", &OTHER, store.connection()).unwrap();
        store.put(&s, "k".into(), "v".into()).unwrap();
        store.discard(s);
        assert_eq!(store.peek("a", "k"), None);
    }

    #[test]
    fn empty_inactive_sessions_free_their_slot() {
        let store = store();
        let s = store.login("a", &OTHER, store.connection()).unwrap();
        store.release(s);
        assert_eq!(store.session_count(), 0);
    }

    #[test]
    fn invalid_ids_are_refused() {
        let store = store();
        for id in ["", "abc\n", "caf\u{e9}"] {
            assert_eq!(
                store.login(id, &OTHER, store.connection()).unwrap_err(),
                LoginError::InvalidId
            );
        }
    }

    #[test]
    fn caps() {
        let store = Store::new(StoreConfig {
            max_sessions: 1,
            max_keys: 1,
            ..StoreConfig::default()
        });
        let s = store.login("a", &OTHER, store.connection()).unwrap();
        assert_eq!(
            store.login("b", &OTHER, store.connection()).unwrap_err(),
            LoginError::Full
        );
        store.put(&s, "k".into(), "1".into()).unwrap();
        store.put(&s, "k".into(), "2".into()).unwrap();
        assert_eq!(
            store.put(&s, "l".into(), "3".into()),
            Err(StoreError::TooManyKeys { limit: 1 })
        );
    }

    #[test]
    fn sessions_are_separate() {
        let store = store();
        let a = store.login("a", &OTHER, store.connection()).unwrap();
        let b = store.login("b", &OTHER, store.connection()).unwrap();
        store.put(&a, "k".into(), "from a".into()).unwrap();
        assert_eq!(store.get(&b, "k"), None);
        assert_eq!(store.delete(&b, "k"), Ok(false));
        assert_eq!(store.delete(&a, "k"), Ok(true));
    }

    #[test]
    fn store_faults() {
        let store = faulty(Fault::SharedStore);
        let a = store.login("a", &OTHER, store.connection()).unwrap();
        let b = store.login("b", &OTHER, store.connection()).unwrap();
        store.put(&a, "k".into(), "from a".into()).unwrap();
        assert_eq!(store.get(&b, "k").as_deref(), Some("from a"));

        let store = faulty(Fault::PutKeepsOldValue);
        let a = store.login("a", &OTHER, store.connection()).unwrap();
        store.put(&a, "k".into(), "1".into()).unwrap();
        store.put(&a, "k".into(), "2".into()).unwrap();
        assert_eq!(store.get(&a, "k").as_deref(), Some("1"));

        let store = faulty(Fault::DeleteKeepsKey);
        let a = store.login("a", &OTHER, store.connection()).unwrap();
        store.put(&a, "k".into(), "1".into()).unwrap();
        assert_eq!(store.delete(&a, "k"), Ok(true));
        assert_eq!(store.get(&a, "k").as_deref(), Some("1"));

        let store = faulty(Fault::AllowDuplicateSession);
        let _a = store.login("a", &OTHER, store.connection()).unwrap();
        assert!(store.login("a", &OTHER, store.connection()).is_ok());

        let store = faulty(Fault::AcceptAnyPassword);
        store.release(store.login("a", &OTHER, store.connection()).unwrap());
        assert!(store.login("a", &[9; HASH_LEN], store.connection()).is_ok());

        let store = faulty(Fault::KeepSessionAfterDisconnect);
        let a = store.login("a", &OTHER, store.connection()).unwrap();
        store.put(&a, "k".into(), "1".into()).unwrap();
        store.disconnect(a);
        assert_eq!(store.peek("a", "k").as_deref(), Some("1"));
    }

    #[test]
    fn users_file_format() {
        let path = Path::new("users.txt");
        let accounts = Accounts::parse_users(
            "# graders\n\nalice:secret\r\nbob:pa:ss word\n  # indented comment\n",
            path,
        )
        .unwrap();
        let Accounts::Verified(users) = accounts else {
            panic!("expected verified accounts");
        };
        assert_eq!(users["alice"], "secret");
        assert_eq!(users["bob"], "pa:ss word");
    }

    #[test]
    fn users_file_errors_name_the_line() {
        let path = Path::new("users.txt");
        let error = |text| Accounts::parse_users(text, path).unwrap_err().to_string();
        assert_eq!(
            error("alice:x\nbob\n"),
            "users.txt:2: expected `id:password`, found no `:`"
        );
        assert_eq!(
            error("alice:x\n\nalice:y\n"),
            "users.txt:3: id \"alice\" is already defined on line 1"
        );
        assert_eq!(
            error(":x\n"),
            "users.txt:1: \"\" is not a valid id: ids are non-empty and ASCII"
        );
        assert_eq!(
            error("# nobody\n"),
            "users.txt defines no user: write one `id:password` line per user"
        );
    }
}
