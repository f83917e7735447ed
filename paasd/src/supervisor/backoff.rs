//! When a crashed instance restarts: exponential backoff, capped, and when it stops being
//! restarted at all. Pure arithmetic; the instance task sleeps.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub initial: Duration,
    pub max: Duration,
    /// Crashes in a row after which the instance is left `crashed`.
    pub limit: u32,
    /// A run at least this long resets the count.
    pub reset_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    RestartIn(Duration),
    GiveUp,
}

impl Policy {
    /// After the `crashes`-th crash in a row (1 = the first).
    pub fn next(&self, crashes: u32) -> Next {
        if crashes > self.limit {
            return Next::GiveUp;
        }
        let factor = 1u32 << crashes.saturating_sub(1).min(20);
        Next::RestartIn(self.initial.saturating_mul(factor).min(self.max))
    }

    /// The crash count after a run of `ran` ended in a crash.
    pub fn count(&self, before: u32, ran: Duration) -> u32 {
        if ran >= self.reset_after {
            1
        } else {
            before + 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_gives_up() {
        let p = Policy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5),
            limit: 4,
            reset_after: Duration::from_secs(60),
        };
        let secs: Vec<Next> = (1..=5).map(|n| p.next(n)).collect();
        assert_eq!(
            secs,
            vec![
                Next::RestartIn(Duration::from_secs(1)),
                Next::RestartIn(Duration::from_secs(2)),
                Next::RestartIn(Duration::from_secs(4)),
                Next::RestartIn(Duration::from_secs(5)),
                Next::GiveUp,
            ]
        );
        assert_eq!(p.count(3, Duration::from_secs(1)), 4);
        assert_eq!(p.count(3, Duration::from_secs(61)), 1);
    }
}
