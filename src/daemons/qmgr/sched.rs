//! The queue manager's scheduling arithmetic, with no I/O: per-destination
//! concurrency windows with positive and negative feedback and the
//! dead-destination rule (qmgr_queue.c), per-transport process limits,
//! recipient batching, rate delays, and the deferred-queue backoff
//! (qmgr_active.c).

use std::time::{Duration, Instant};

/// One feedback setting: a constant, or a fraction of the window
/// (`1/concurrency`, Postfix's default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Feedback {
    Constant(f64),
    PerConcurrency(f64),
}

impl Feedback {
    /// Parse `1/concurrency`, `1/8`, `0.5`, `2`.
    pub fn parse(text: &str) -> Option<Feedback> {
        let t = text.trim();
        if let Some((n, d)) = t.split_once('/') {
            let n: f64 = n.trim().parse().ok()?;
            let d = d.trim();
            if d == "concurrency" {
                return Some(Feedback::PerConcurrency(n));
            }
            let d: f64 = d.parse().ok()?;
            return (d > 0.0).then_some(Feedback::Constant(n / d));
        }
        t.parse().ok().map(Feedback::Constant)
    }

    fn value(self, window: f64) -> f64 {
        match self {
            Feedback::Constant(v) => v,
            Feedback::PerConcurrency(n) => n / window.max(1.0),
        }
    }
}

/// The per-transport settings (`<transport>_destination_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub initial_concurrency: u32,
    /// 0: no limit (besides the transport's process limit).
    pub concurrency_limit: u32,
    pub positive: Feedback,
    pub negative: Feedback,
    pub failed_cohort_limit: u32,
    pub recipient_limit: usize,
    pub rate_delay: Duration,
    pub process_limit: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            initial_concurrency: 5,
            concurrency_limit: 20,
            positive: Feedback::PerConcurrency(1.0),
            negative: Feedback::PerConcurrency(1.0),
            failed_cohort_limit: 1,
            recipient_limit: 50,
            rate_delay: Duration::ZERO,
            process_limit: 100,
        }
    }
}

/// One destination's state.
#[derive(Debug, Clone)]
pub struct Dest {
    /// The concurrency window.
    pub window: f64,
    /// Deliveries in progress.
    pub busy: u32,
    /// Fractional feedback not yet applied (success and failure).
    pub success: f64,
    pub failure: f64,
    /// Pseudo-cohorts that failed in a row.
    pub fail_cohorts: f64,
    /// Dead until then (throttled), with the reason.
    pub dead_until: Option<Instant>,
    pub dead_reason: Option<(String, String)>,
    /// Earliest time the next delivery may start (rate delay).
    pub next_start: Option<Instant>,
}

impl Dest {
    pub fn new(l: &Limits) -> Dest {
        let mut w = l.initial_concurrency.max(1) as f64;
        if l.concurrency_limit > 0 {
            w = w.min(l.concurrency_limit as f64);
        }
        if !l.rate_delay.is_zero() {
            w = 1.0;
        }
        Dest {
            window: w,
            busy: 0,
            success: 0.0,
            failure: 0.0,
            fail_cohorts: 0.0,
            dead_until: None,
            dead_reason: None,
            next_start: None,
        }
    }

    /// Whether this destination is dead (throttled) at `now`. An expired
    /// throttle is lifted as Postfix's unthrottle timer lifts it: the
    /// window becomes the number of deliveries in progress, or the
    /// initial concurrency when none are.
    pub fn is_dead(&mut self, l: &Limits, now: Instant) -> bool {
        match self.dead_until {
            Some(t) if t > now => true,
            Some(_) => {
                self.revive(l);
                false
            }
            None => false,
        }
    }

    /// Lift a throttle (timer expiry, or `postqueue -f`).
    pub fn revive(&mut self, l: &Limits) {
        self.dead_until = None;
        self.dead_reason = None;
        self.fail_cohorts = 0.0;
        self.window = if self.busy > 0 {
            f64::from(self.busy)
        } else {
            f64::from(l.initial_concurrency.max(1))
        };
        self.success = 0.0;
        self.failure = 0.0;
    }

    /// May another delivery start now?
    pub fn may_start(&mut self, l: &Limits, now: Instant) -> bool {
        if self.is_dead(l, now) {
            return false;
        }
        if let Some(t) = self.next_start
            && t > now
        {
            return false;
        }
        (self.busy as f64) < self.window.max(1.0)
            && (l.concurrency_limit == 0 || self.busy < l.concurrency_limit)
    }

    /// A delivery starts.
    pub fn start(&mut self, l: &Limits, now: Instant) {
        self.busy += 1;
        if !l.rate_delay.is_zero() {
            self.next_start = Some(now + l.rate_delay);
        }
    }

    /// A delivery finished without a site-level failure
    /// (qmgr_queue_unthrottle on a ready queue): the failed-cohort count
    /// resets and positive feedback may grow the window, while it is
    /// below the deliveries in progress plus the initial concurrency and
    /// below the limit. Call after `busy` was decremented ([`Dest::release`]).
    pub fn success(&mut self, l: &Limits) {
        self.fail_cohorts = 0.0;
        if self.dead_until.is_some() {
            return;
        }
        if l.concurrency_limit != 0 && f64::from(l.concurrency_limit) <= self.window {
            return;
        }
        if self.window < f64::from(self.busy + l.initial_concurrency) {
            let fb = l.positive.value(self.window);
            self.success += fb;
            while self.success + fb / 2.0 >= 1.0 {
                self.window += 1.0;
                self.success -= 1.0;
                self.failure = 0.0;
            }
            if l.concurrency_limit > 0 && self.window > f64::from(l.concurrency_limit) {
                self.window = f64::from(l.concurrency_limit);
            }
        }
    }

    /// A delivery ended.
    pub fn release(&mut self) {
        self.busy = self.busy.saturating_sub(1);
    }

    /// A site-level failure (the agent deferred with a hop status:
    /// qmgr_queue_throttle): one more failed pseudo-cohort, negative
    /// feedback with the window kept at 1 or more, and when the failed
    /// cohorts reach the limit the destination is dead until `now +
    /// retry` (minimal_backoff_time). Returns true when it is dead.
    pub fn throttle(
        &mut self,
        l: &Limits,
        now: Instant,
        retry: Duration,
        status: &str,
        reason: &str,
    ) -> bool {
        if self.dead_until.is_some() {
            return true;
        }
        self.fail_cohorts += 1.0 / self.window.max(1.0);
        if l.failed_cohort_limit > 0 && self.fail_cohorts >= f64::from(l.failed_cohort_limit) {
            self.dead_until = Some(now + retry);
            self.dead_reason = Some((status.to_string(), reason.to_string()));
            return true;
        }
        let fb = l.negative.value(self.window);
        self.failure -= fb;
        while self.failure - fb / 2.0 < 0.0 {
            self.window -= 1.0;
            self.success = 0.0;
            self.failure += 1.0;
        }
        if self.window < 1.0 {
            self.window = 1.0;
        }
        false
    }
}

/// The order of recipients within one destination (the address part of
/// qmgr_message_sort_compare): addresses with a domain first, by domain
/// without case, then by the whole address.
pub fn rcpt_order(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.rfind('@'), b.rfind('@')) {
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(i), Some(j)) => a[i..]
            .to_lowercase()
            .cmp(&b[j..].to_lowercase())
            .then_with(|| a.cmp(b)),
        (None, None) => a.cmp(b),
    }
}

/// Split recipients into batches of at most `limit` (0: no limit).
pub fn batches<T: Clone>(items: &[T], limit: usize) -> Vec<Vec<T>> {
    if limit == 0 {
        return vec![items.to_vec()];
    }
    items.chunks(limit).map(|c| c.to_vec()).collect()
}

/// How long a message waits in the deferred queue after an attempt
/// (qmgr_active_done_3_generic): its age, within [minimal, maximal].
pub fn backoff(age_secs: i64, min_backoff: i64, max_backoff: i64) -> i64 {
    if age_secs <= 0 {
        return min_backoff;
    }
    age_secs.min(max_backoff).max(min_backoff)
}

/// Whether a message has reached its lifetime: bounce_queue_lifetime for
/// the null sender, maximal_queue_lifetime otherwise (the former never
/// exceeds the latter).
pub fn expired(age_secs: i64, null_sender: bool, max_life: i64, bounce_life: i64) -> bool {
    let life = if null_sender {
        bounce_life.min(max_life)
    } else {
        max_life
    };
    age_secs >= life
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_parse() {
        assert_eq!(
            Feedback::parse("1/concurrency"),
            Some(Feedback::PerConcurrency(1.0))
        );
        assert_eq!(Feedback::parse("1/4"), Some(Feedback::Constant(0.25)));
        assert_eq!(Feedback::parse("1"), Some(Feedback::Constant(1.0)));
        assert_eq!(Feedback::parse("x"), None);
    }

    #[test]
    fn window_grows_and_is_capped() {
        let l = Limits {
            initial_concurrency: 2,
            concurrency_limit: 3,
            ..Default::default()
        };
        let now = Instant::now();
        let mut d = Dest::new(&l);
        assert_eq!(d.window, 2.0);
        assert!(d.may_start(&l, now));
        d.start(&l, now);
        d.start(&l, now);
        assert!(!d.may_start(&l, now), "window of 2 is full");
        // 1/concurrency at window 2: 0.5 per success, and a step is taken
        // once success + feedback/2 reaches 1.
        d.release();
        d.success(&l);
        assert_eq!(d.window, 2.0);
        d.start(&l, now);
        d.release();
        d.success(&l);
        assert_eq!(d.window, 3.0);
        for _ in 0..10 {
            d.start(&l, now);
            d.start(&l, now);
            d.release();
            d.success(&l);
            d.release();
            d.success(&l);
        }
        assert_eq!(d.window, 3.0, "capped at the limit");
    }

    #[test]
    fn no_growth_beyond_busy_plus_initial() {
        let l = Limits {
            initial_concurrency: 2,
            concurrency_limit: 0,
            ..Default::default()
        };
        let now = Instant::now();
        let mut d = Dest::new(&l);
        for _ in 0..20 {
            d.start(&l, now);
            d.release();
            d.success(&l);
        }
        assert_eq!(d.window, 2.0, "serial deliveries never need more");
    }

    #[test]
    fn failures_kill_the_destination_then_it_revives() {
        let l = Limits {
            initial_concurrency: 1,
            ..Default::default()
        };
        let now = Instant::now();
        let mut d = Dest::new(&l);
        d.start(&l, now);
        d.release();
        assert!(d.throttle(&l, now, Duration::from_secs(60), "4.4.1", "down"));
        assert!(!d.may_start(&l, now));
        assert!(d.is_dead(&l, now + Duration::from_secs(30)));
        assert!(d.may_start(&l, now + Duration::from_secs(61)));
        assert_eq!(d.window, 1.0);
    }

    #[test]
    fn negative_feedback_before_the_cohort_limit() {
        let l = Limits {
            initial_concurrency: 4,
            failed_cohort_limit: 2,
            ..Default::default()
        };
        let now = Instant::now();
        let mut d = Dest::new(&l);
        // One failure at window 4: a quarter cohort, window shrinks by 1.
        assert!(!d.throttle(&l, now, Duration::from_secs(60), "4.4.1", "x"));
        assert_eq!(d.window, 3.0);
        // A success resets the cohort count.
        d.success(&l);
        assert_eq!(d.fail_cohorts, 0.0);
        // Failures in a row at windows 3, 3, 2, 2, 2: 1/3 + 1/3 + 1/2 + 1/2 + 1/2 >= 2.
        let mut n = 0;
        while !d.throttle(&l, now, Duration::from_secs(60), "4.4.1", "x") {
            n += 1;
            assert!(n < 10);
        }
        assert_eq!(n, 4);
        // Cohort limit 0: never dead.
        let l0 = Limits {
            failed_cohort_limit: 0,
            ..l.clone()
        };
        let mut d = Dest::new(&l0);
        for _ in 0..50 {
            assert!(!d.throttle(&l0, now, Duration::from_secs(60), "4.4.1", "x"));
        }
        assert_eq!(d.window, 1.0);
    }

    #[test]
    fn rate_delay_serialises() {
        let l = Limits {
            rate_delay: Duration::from_secs(5),
            ..Default::default()
        };
        let now = Instant::now();
        let mut d = Dest::new(&l);
        assert_eq!(d.window, 1.0);
        d.start(&l, now);
        d.release();
        assert!(!d.may_start(&l, now + Duration::from_secs(1)));
        assert!(d.may_start(&l, now + Duration::from_secs(5)));
    }

    #[test]
    fn backoff_bounds() {
        assert_eq!(backoff(0, 300, 4000), 300);
        assert_eq!(backoff(100, 300, 4000), 300);
        assert_eq!(backoff(1000, 300, 4000), 1000);
        assert_eq!(backoff(100_000, 300, 4000), 4000);
    }

    #[test]
    fn lifetimes() {
        assert!(!expired(10, false, 432_000, 432_000));
        assert!(expired(432_000, false, 432_000, 432_000));
        assert!(expired(100, true, 432_000, 100));
        assert!(!expired(100, false, 432_000, 100));
    }

    #[test]
    fn recipient_order() {
        let mut v = vec![
            "b@Y.example",
            "local",
            "a@y.example",
            "c@x.example",
            "B@x.example",
        ];
        v.sort_by(|a, b| rcpt_order(a, b));
        assert_eq!(
            v,
            vec![
                "B@x.example",
                "c@x.example",
                "a@y.example",
                "b@Y.example",
                "local"
            ]
        );
    }

    #[test]
    fn batching() {
        let v: Vec<u32> = (0..5).collect();
        assert_eq!(batches(&v, 2), vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(batches(&v, 0), vec![v.clone()]);
    }
}
