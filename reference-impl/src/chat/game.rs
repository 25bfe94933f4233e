//! The guessing game (level 2): one game at a time, state only. The hub calls it under its
//! lock and sends what it returns; timers live in the server.
//!
//! ```text
//! START_GAME_REQ      no game -> Joining (the initiator is the first participant)
//!                     a game exists (joining or running) -> 6003
//! JOIN_GAME_REQ       Joining: a new participant | 6004 already one
//!                     Running -> 6003; no game -> 6005
//! join window ends    >= 2 participants -> Running, secret 1..=50, every participant gets
//!                     START_GAME_RESP OK | < 2 -> 6002 to the remaining participant, no game
//! GUESS_NUMBER_REQ    no game -> 7002; Joining -> 7003 (anyone); Running: not a participant
//!                     -> 8001, guessed right already -> 7003, not an integer -> 7004,
//!                     outside 1..=50 -> 7007, low 7005, high 7006, right -> OK "Correct"
//! the game ends       every participant has guessed right, or the time limit passes:
//!                     GAME_RESULTS to every remaining participant, fastest first; 9002 if
//!                     nobody guessed right. Leaving removes a participant (and their time);
//!                     a game without participants ends without results.
//! ```

use std::time::{Duration, Instant};

use super::codec::{Code, GameResult, Guess, code};
use super::fault::{Fault, Faults};

/// The smallest number the server picks.
pub const MIN_SECRET: i64 = 1;
/// The largest number the server picks.
pub const MAX_SECRET: i64 = 50;
/// Participants a game needs to start.
pub const MIN_PLAYERS: usize = 2;

/// Identifies one game, so that a timer of a game that ended early does nothing.
pub type GameId = u64;

#[derive(Debug)]
struct Player {
    name: String,
    /// Milliseconds from the game's start to the correct guess, and the order of solving.
    solved: Option<(u64, usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Joining,
    Running { started: Instant },
}

#[derive(Debug)]
struct Game {
    id: GameId,
    players: Vec<Player>,
    phase: Phase,
    secret: i64,
    solved: usize,
}

/// How a join window ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowEnd {
    /// The game runs; each participant gets `START_GAME_RESP OK`.
    Started { participants: Vec<String> },
    /// Too few participants: each remaining one (at most one) gets 6002.
    Cancelled { notify: Vec<String> },
}

/// A game that ended: who gets `GAME_RESULTS`, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub recipients: Vec<String>,
    pub results: Result<Vec<GameResult>, Code>,
}

/// The game, if any.
#[derive(Debug, Default)]
pub struct Games {
    current: Option<Game>,
    next_id: GameId,
    faults: Faults,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Games {
    /// No game yet.
    pub fn new(faults: Faults) -> Self {
        Self {
            current: None,
            next_id: 1,
            faults,
        }
    }

    /// Whether a game exists (joining or running).
    pub fn is_active(&self) -> bool {
        self.current.is_some()
    }

    /// Whether `user` takes part in the current game.
    pub fn is_participant(&self, user: &str) -> bool {
        self.current
            .as_ref()
            .is_some_and(|g| g.players.iter().any(|p| p.name == user))
    }

    /// Opens a join window with `initiator` as the first participant.
    pub fn start(&mut self, initiator: &str) -> Result<GameId, Code> {
        if self.current.is_some() {
            return Err(code::GAME_ALREADY_STARTED);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.current = Some(Game {
            id,
            players: vec![Player {
                name: initiator.to_owned(),
                solved: None,
            }],
            phase: Phase::Joining,
            secret: 0,
            solved: 0,
        });
        Ok(id)
    }

    /// Adds `user` to the game in its join window.
    pub fn join(&mut self, user: &str) -> Result<(), Code> {
        let Some(game) = &mut self.current else {
            return Err(code::NO_GAME);
        };
        if game.players.iter().any(|p| p.name == user) {
            return Err(code::ALREADY_JOINED);
        }
        if matches!(game.phase, Phase::Running { .. })
            && !self.faults.has(Fault::JoinAfterWindowAllowed)
        {
            return Err(code::GAME_ALREADY_STARTED);
        }
        game.players.push(Player {
            name: user.to_owned(),
            solved: None,
        });
        Ok(())
    }

    /// Ends the join window of game `id` (nothing if that game is gone or running).
    pub fn close_window(&mut self, id: GameId, secret: i64, now: Instant) -> Option<WindowEnd> {
        let game = self.current.as_mut().filter(|g| g.id == id)?;
        if game.phase != Phase::Joining {
            return None;
        }
        let names = || game.players.iter().map(|p| p.name.clone()).collect();
        let enough = game.players.len() >= MIN_PLAYERS
            || (self.faults.has(Fault::GameNo6002) && !game.players.is_empty());
        if enough {
            game.phase = Phase::Running { started: now };
            game.secret = secret;
            Some(WindowEnd::Started {
                participants: names(),
            })
        } else {
            let notify = names();
            self.current = None;
            Some(WindowEnd::Cancelled { notify })
        }
    }

    /// A guess by `user` (logged in). The answer, and the end of the game if this guess ended
    /// it.
    pub fn guess(
        &mut self,
        user: &str,
        guess: &Guess,
        now: Instant,
    ) -> (Result<String, Code>, Option<Finished>) {
        let Some(game) = &mut self.current else {
            return (Err(code::NO_GAME_TO_GUESS), None);
        };
        let Phase::Running { started } = game.phase else {
            return (Err(code::CANNOT_GUESS_NOW), None);
        };
        let Some(player) = game.players.iter_mut().find(|p| p.name == user) else {
            return (Err(code::NOT_PARTICIPATING), None);
        };
        if player.solved.is_some() {
            return (Err(code::CANNOT_GUESS_NOW), None);
        }
        let Guess::Number(n) = *guess else {
            return (Err(code::INVALID_GUESS), None);
        };
        if !(MIN_SECRET..=MAX_SECRET).contains(&n) && !self.faults.has(Fault::GuessRangeUnchecked) {
            return (Err(code::GUESS_OUT_OF_RANGE), None);
        }
        match n.cmp(&game.secret) {
            std::cmp::Ordering::Less => (Err(code::GUESS_TOO_LOW), None),
            std::cmp::Ordering::Greater => (Err(code::GUESS_TOO_HIGH), None),
            std::cmp::Ordering::Equal => {
                player.solved = Some((millis(now.saturating_duration_since(started)), game.solved));
                game.solved += 1;
                let finished = self.finish_if_done();
                (Ok("Correct".to_owned()), finished)
            }
        }
    }

    /// `user` left: they are no longer a participant. The end of the game if that ended it.
    pub fn leave(&mut self, user: &str) -> Option<Finished> {
        let game = self.current.as_mut()?;
        game.players.retain(|p| p.name != user);
        if game.players.is_empty() {
            self.current = None;
            return None;
        }
        if matches!(game.phase, Phase::Running { .. }) {
            return self.finish_if_done();
        }
        None
    }

    /// The time limit of game `id` passed (nothing if it is gone or still joining).
    pub fn time_up(&mut self, id: GameId) -> Option<Finished> {
        let game = self.current.as_ref().filter(|g| g.id == id)?;
        if game.phase == Phase::Joining {
            return None;
        }
        self.finish()
    }

    fn finish_if_done(&mut self) -> Option<Finished> {
        let game = self.current.as_ref()?;
        if game.players.iter().all(|p| p.solved.is_some()) {
            self.finish()
        } else {
            None
        }
    }

    fn finish(&mut self) -> Option<Finished> {
        let game = self.current.take()?;
        let recipients = game.players.iter().map(|p| p.name.clone()).collect();
        let mut solved: Vec<_> = game
            .players
            .iter()
            .filter_map(|p| p.solved.map(|(ms, order)| (ms, order, p.name.clone())))
            .collect();
        solved.sort();
        if self.faults.has(Fault::ResultsUnsorted) {
            solved.reverse();
        }
        let results = if solved.is_empty() {
            Err(code::NO_RESULTS)
        } else {
            Ok(solved
                .into_iter()
                .map(|(time_ms, _, username)| GameResult { username, time_ms })
                .collect())
        };
        Some(Finished {
            recipients,
            results,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(n: i64) -> Guess {
        Guess::Number(n)
    }

    #[test]
    fn a_game_from_start_to_results() {
        let mut games = Games::new(Faults::NONE);
        let t0 = Instant::now();
        assert_eq!(games.guess("a", &n(1), t0).0, Err(code::NO_GAME_TO_GUESS));
        assert_eq!(games.join("b"), Err(code::NO_GAME));
        let id = games.start("a").expect("no game yet");
        assert_eq!(games.start("b"), Err(code::GAME_ALREADY_STARTED));
        assert_eq!(games.join("a"), Err(code::ALREADY_JOINED));
        assert_eq!(games.join("b"), Ok(()));
        assert_eq!(games.join("b"), Err(code::ALREADY_JOINED));
        assert_eq!(games.guess("a", &n(1), t0).0, Err(code::CANNOT_GUESS_NOW));
        assert_eq!(
            games.close_window(id, 20, t0),
            Some(WindowEnd::Started {
                participants: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(games.close_window(id, 20, t0), None);
        assert_eq!(games.join("c"), Err(code::GAME_ALREADY_STARTED));
        assert_eq!(games.guess("c", &n(1), t0).0, Err(code::NOT_PARTICIPATING));
        assert_eq!(
            games
                .guess("a", &Guess::Invalid(serde_json::json!("x")), t0)
                .0,
            Err(code::INVALID_GUESS)
        );
        assert_eq!(games.guess("a", &n(0), t0).0, Err(code::GUESS_OUT_OF_RANGE));
        assert_eq!(
            games.guess("a", &n(51), t0).0,
            Err(code::GUESS_OUT_OF_RANGE)
        );
        assert_eq!(games.guess("a", &n(19), t0).0, Err(code::GUESS_TOO_LOW));
        assert_eq!(games.guess("a", &n(21), t0).0, Err(code::GUESS_TOO_HIGH));
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!(games.guess("b", &n(20), t1), (Ok("Correct".into()), None));
        assert_eq!(games.guess("b", &n(20), t1).0, Err(code::CANNOT_GUESS_NOW));
        let t2 = t0 + Duration::from_millis(500);
        let (answer, finished) = games.guess("a", &n(20), t2);
        assert_eq!(answer, Ok("Correct".into()));
        assert_eq!(
            finished,
            Some(Finished {
                recipients: vec!["a".into(), "b".into()],
                results: Ok(vec![
                    GameResult {
                        username: "b".into(),
                        time_ms: 300
                    },
                    GameResult {
                        username: "a".into(),
                        time_ms: 500
                    },
                ]),
            })
        );
        assert!(!games.is_active());
        assert_eq!(games.time_up(id), None);
    }

    #[test]
    fn too_few_players_cancel_and_nobody_right_is_9002() {
        let mut games = Games::new(Faults::NONE);
        let t0 = Instant::now();
        let id = games.start("a").expect("no game");
        assert_eq!(
            games.close_window(id, 5, t0),
            Some(WindowEnd::Cancelled {
                notify: vec!["a".into()]
            })
        );
        assert!(!games.is_active());
        let id = games.start("a").expect("no game");
        games.join("b").expect("joining");
        games.close_window(id, 5, t0);
        assert_eq!(
            games.time_up(id),
            Some(Finished {
                recipients: vec!["a".into(), "b".into()],
                results: Err(code::NO_RESULTS)
            })
        );
    }

    #[test]
    fn leaving_removes_participants() {
        let mut games = Games::new(Faults::NONE);
        let t0 = Instant::now();
        let id = games.start("a").expect("no game");
        games.join("b").expect("joining");
        games.join("c").expect("joining");
        games.close_window(id, 7, t0);
        assert_eq!(games.guess("a", &n(7), t0).1, None);
        assert_eq!(games.leave("c"), None);
        // b leaves: everyone left has guessed right.
        let finished = games.leave("b").expect("the game ends");
        assert_eq!(finished.recipients, ["a"]);
        let id = games.start("a").expect("no game");
        assert_eq!(games.leave("a"), None);
        assert!(!games.is_active());
        assert_eq!(games.close_window(id, 1, t0), None);
    }

    #[test]
    fn faults_change_one_rule_each() {
        let t0 = Instant::now();
        let mut games = Games::new(Faults::only(Fault::GameNo6002));
        let id = games.start("a").expect("no game");
        assert!(matches!(
            games.close_window(id, 1, t0),
            Some(WindowEnd::Started { .. })
        ));
        let mut games = Games::new(Faults::only(Fault::GuessRangeUnchecked));
        let id = games.start("a").expect("no game");
        games.join("b").expect("joining");
        games.close_window(id, 9, t0);
        assert_eq!(games.guess("a", &n(99), t0).0, Err(code::GUESS_TOO_HIGH));
        let mut games = Games::new(Faults::only(Fault::JoinAfterWindowAllowed));
        let id = games.start("a").expect("no game");
        games.join("b").expect("joining");
        games.close_window(id, 9, t0);
        assert_eq!(games.join("c"), Ok(()));
    }
}
