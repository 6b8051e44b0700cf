//! Per-key sliding-window limits, in this instance (comments a user
//! writes, device codes a user tries, sign-ins started).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

/// At most `most` events per key within `window`.
pub struct RateLimit {
    most: usize,
    window: Duration,
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimit {
    pub fn new(most: usize, window: Duration) -> Self {
        Self {
            most,
            window,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event for `key`; `Err(seconds)` to wait when over.
    pub fn take(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let window = self.window;
        let Ok(mut recent) = self.recent.lock() else {
            return Ok(());
        };
        // Forget keys quiet for a window: the map stays as small as the
        // number of keys active right now.
        if recent.len() > 10_000 {
            recent.retain(|_, times| times.back().is_some_and(|t| now - *t < window));
        }
        let times = recent.entry(key.to_owned()).or_default();
        while times.front().is_some_and(|t| now - *t >= window) {
            times.pop_front();
        }
        if times.len() >= self.most {
            let wait = times
                .front()
                .map_or(window, |t| window.saturating_sub(now - *t));
            return Err(wait.as_secs().max(1));
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key_up_to_the_limit() {
        let limit = RateLimit::new(2, Duration::from_secs(60));
        assert!(limit.take("a").is_ok());
        assert!(limit.take("a").is_ok());
        let wait = limit.take("a").unwrap_err();
        assert!((1..=60).contains(&wait));
        assert!(limit.take("b").is_ok());
    }
}
