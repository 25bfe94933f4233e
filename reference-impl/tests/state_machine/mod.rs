//! Sequences of operations for state-machine property tests (`kv_model.rs`, `chat_model.rs`).
//!
//! A [`Generator`] is a model of the system: it draws each operation for the state the
//! operations before it leave (a request mostly goes to a logged-in connection), then
//! applies it. The sequence it makes is a plain list of operations, each defined in any
//! state, so any operation can be left out and the rest is still a valid sequence.
//!
//! Shrinking leaves operations out: one at a time, front to back, keeping each removal after
//! which the test still fails, and passing over the list again until no single operation can
//! go; then runs of two and of three neighbouring operations (a login that only matters with
//! the request after it), and single ones again after any removal that stuck. The sequence
//! reported is minimal in that sense: without any one operation, or any two or three
//! neighbouring ones, it passes.

use std::fmt::Debug;
use std::ops::RangeInclusive;

use proptest::prelude::*;
use proptest::strategy::{NewTree, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

/// A model that draws operations.
pub trait Generator {
    type Op: Clone + Debug;

    /// The model's initial state.
    fn start() -> Self;

    /// Draws the next operation for the current state and applies it to the state.
    fn next_op(&mut self, rng: &mut TestRng) -> Self::Op;
}

/// One of `preferred` nine times in ten, else any of `slots` slots (`0..slots`): models
/// mostly act on connections in the state an operation needs, and sometimes on any.
pub fn pick_slot(rng: &mut TestRng, preferred: &[usize], slots: usize) -> usize {
    if !preferred.is_empty() && rng.random_bool(0.9) {
        preferred[rng.random_range(0..preferred.len())]
    } else {
        rng.random_range(0..slots)
    }
}

/// Sequences of `len` operations drawn by `G`.
pub struct Sequences<G> {
    len: RangeInclusive<usize>,
    generator: std::marker::PhantomData<fn() -> G>,
}

impl<G> Debug for Sequences<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequences").field("len", &self.len).finish()
    }
}

pub fn sequences<G: Generator>(len: RangeInclusive<usize>) -> Sequences<G> {
    Sequences {
        len,
        generator: std::marker::PhantomData,
    }
}

impl<G: Generator> Strategy for Sequences<G> {
    type Tree = Shrinker<G::Op>;
    type Value = Vec<G::Op>;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        let rng = runner.rng();
        let len = rng.random_range(self.len.clone());
        let mut model = G::start();
        Ok(Shrinker::new(
            (0..len).map(|_| model.next_op(rng)).collect(),
        ))
    }
}

/// The longest run of neighbouring operations shrinking tries to leave out at once.
const MAX_WIDTH: usize = 3;

/// A sequence and which of its operations are still in.
#[derive(Debug, Clone)]
pub struct Shrinker<T> {
    ops: Vec<T>,
    keep: Vec<bool>,
    /// How many neighbouring operations (of those still in) are left out together.
    width: usize,
    /// Where the next run to leave out starts, among the operations still in.
    pos: usize,
    /// The operations left out of the current sequence, on trial.
    trying: Vec<usize>,
    /// Whether a removal was kept in this pass (then another pass follows).
    removed_in_pass: bool,
}

impl<T> Shrinker<T> {
    fn new(ops: Vec<T>) -> Self {
        Self {
            keep: vec![true; ops.len()],
            ops,
            width: 1,
            pos: 0,
            trying: Vec::new(),
            removed_in_pass: false,
        }
    }

    /// Leaves out the next run of operations; `false` once no run is left to try: every
    /// single operation, pair and triple has been tried since the last removal that stuck.
    fn try_next(&mut self) -> bool {
        loop {
            let kept: Vec<usize> = (0..self.ops.len()).filter(|&i| self.keep[i]).collect();
            if let Some(run) = kept.get(self.pos..self.pos + self.width) {
                for &i in run {
                    self.keep[i] = false;
                }
                self.trying = run.to_vec();
                return true;
            }
            self.pos = 0;
            if self.removed_in_pass {
                self.removed_in_pass = false;
                self.width = 1;
            } else if self.width < MAX_WIDTH {
                self.width += 1;
            } else {
                return false;
            }
        }
    }
}

impl<T: Clone + Debug> ValueTree for Shrinker<T> {
    type Value = Vec<T>;

    fn current(&self) -> Vec<T> {
        self.ops
            .iter()
            .zip(&self.keep)
            .filter(|(_, keep)| **keep)
            .map(|(op, _)| op.clone())
            .collect()
    }

    /// The current sequence fails: the run on trial stays out; try the next one (which now
    /// starts at the same position).
    fn simplify(&mut self) -> bool {
        if !self.trying.is_empty() {
            self.trying.clear();
            self.removed_in_pass = true;
        }
        self.try_next()
    }

    /// The current sequence passes: put the run on trial back, try the one after it.
    fn complicate(&mut self) -> bool {
        if self.trying.is_empty() {
            return false;
        }
        for &i in &self.trying {
            self.keep[i] = true;
        }
        self.trying.clear();
        self.pos += 1;
        self.try_next()
    }
}

/// A runner for `cases` sequences that saves no failures to files; with `seeded`, the same
/// sequences every run.
pub fn runner(cases: u32, seeded: bool) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    if seeded {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    } else {
        TestRunner::new(config)
    }
}

/// A sequence, one numbered operation a line.
pub fn show<T: Debug>(ops: &[T]) -> String {
    ops.iter()
        .enumerate()
        .map(|(i, op)| format!("  {}. {op:?}\n", i + 1))
        .collect()
}

/// Panics with the reason and the minimal sequence of a failed run.
pub fn expect_pass<T: Debug>(result: Result<(), TestError<Vec<T>>>) {
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => {
            panic!("{reason}\nminimal sequence:\n{}", show(&ops))
        }
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
}

/// The minimal failing sequence of a run that must fail (against a faulty server), printed;
/// panics if the run passed.
pub fn expect_failure<T: Debug>(what: &str, result: Result<(), TestError<Vec<T>>>) -> Vec<T> {
    match result {
        Err(TestError::Fail(reason, ops)) => {
            println!(
                "{what}: minimal sequence of {} operations\n{}{reason}",
                ops.len(),
                show(&ops)
            );
            ops
        }
        Ok(()) => panic!("{what}: the property holds; it should not"),
        Err(TestError::Abort(reason)) => panic!("{what}: aborted: {reason}"),
    }
}
