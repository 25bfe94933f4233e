//! Shrinking a failed case: delta debugging over its actions (Zeller's ddmin), then over
//! the literal bytes of each message, keeping any smaller case that still fails the same
//! oracle. Every attempt is a full trial (reference, then target), bounded in number.

use super::case::{Action, Op, Part};
use super::{FuzzError, Fuzzer, Oracle, Trial};

/// Shrinks `actions` (which failed `oracle` in `trial`); returns the smallest case found and
/// its trial.
pub(super) async fn shrink(
    fuzzer: &mut Fuzzer<'_>,
    actions: Vec<Action>,
    trial: Trial,
    oracle: Oracle,
    index: u64,
) -> Result<(Vec<Action>, Trial), FuzzError> {
    let mut budget = fuzzer.opts.shrink_trials;
    let mut cur = actions;
    let mut best = trial;
    let attempt = async |fuzzer: &mut Fuzzer<'_>, cand: &[Action], budget: &mut usize| {
        *budget = budget.saturating_sub(1);
        let t = fuzzer.trial(cand, index).await?;
        let same = t.verdict.as_ref().is_some_and(|v| v.oracle == oracle);
        Ok::<_, FuzzError>(same.then_some(t))
    };

    // Actions: remove chunks, then their complements' halves, down to single actions.
    let mut n = 2;
    while cur.len() >= 2 && budget > 0 {
        let chunk = cur.len().div_ceil(n);
        let mut reduced = false;
        for start in (0..cur.len()).step_by(chunk) {
            if budget == 0 {
                break;
            }
            let mut cand = cur.clone();
            cand.drain(start..(start + chunk).min(cur.len()));
            if let Some(t) = attempt(fuzzer, &cand, &mut budget).await? {
                cur = cand;
                best = t;
                n = (n - 1).max(2);
                reduced = true;
                break;
            }
        }
        if !reduced {
            if n >= cur.len() {
                break;
            }
            n = (n * 2).min(cur.len());
        }
    }
    if cur.len() == 1
        && budget > 0
        && let Some(t) = attempt(fuzzer, &[], &mut budget).await?
    {
        cur.clear();
        best = t;
    }

    // Bytes: cut ever smaller pieces out of each literal part.
    for a in 0..cur.len() {
        let parts = match &cur[a].op {
            Op::Send(parts) => parts.len(),
            _ => 0,
        };
        for p in 0..parts {
            let mut size = literal(&cur[a], p).map_or(0, |b| b.len() / 2).max(1);
            while budget > 0 && literal(&cur[a], p).is_some_and(|b| !b.is_empty()) {
                let mut start = 0;
                while budget > 0 {
                    let Some(bytes) = literal(&cur[a], p) else {
                        break;
                    };
                    if start >= bytes.len() {
                        break;
                    }
                    let mut cut = bytes.to_vec();
                    cut.drain(start..(start + size).min(bytes.len()));
                    let mut cand = cur.clone();
                    set_literal(&mut cand[a], p, cut);
                    match attempt(fuzzer, &cand, &mut budget).await? {
                        Some(t) => {
                            cur = cand;
                            best = t;
                        }
                        None => start += size,
                    }
                }
                if size == 1 {
                    break;
                }
                size /= 2;
            }
        }
    }
    Ok((cur, best))
}

fn literal(action: &Action, part: usize) -> Option<&[u8]> {
    match action.parts().get(part) {
        Some(Part::Lit(b)) => Some(b),
        _ => None,
    }
}

fn set_literal(action: &mut Action, part: usize, bytes: Vec<u8>) {
    if let Op::Send(parts) = &mut action.op
        && let Some(p @ Part::Lit(_)) = parts.get_mut(part)
    {
        *p = Part::Lit(bytes);
    }
}
