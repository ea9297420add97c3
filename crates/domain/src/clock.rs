//! Time as a parameter: nothing in the library crates reads the wall clock directly.

use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The real clock, used by the server binary.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods, reason = "this is the one real clock")]
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock tests move by hand. It starts at the real current time (truncated to whole seconds)
/// so tokens it stamps look plausible to external clients.
#[derive(Clone, Debug)]
pub struct MockClock(Arc<Mutex<OffsetDateTime>>);

impl MockClock {
    #[allow(clippy::disallowed_methods, reason = "a mock clock starts at the real time")]
    pub fn new() -> Self {
        let now = OffsetDateTime::now_utc();
        Self::at(now.replace_nanosecond(0).unwrap_or(now))
    }

    pub fn at(t: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(t)))
    }

    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().expect("clock lock");
        *t += by;
    }
}

impl Default for MockClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MockClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().expect("clock lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_clock_advances_only_when_told() {
        let c = MockClock::new();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(Duration::seconds(61));
        assert_eq!(c.now() - t0, Duration::seconds(61));
    }
}
