//! How many batches the sender keeps unacked. It starts at `relay.window`
//! and grows by one batch per ack (so it doubles each round trip) while
//! there is a backlog that the window holds back, up to a ceiling; it
//! halves (not below the start) when an ack says the relay held the batch
//! back (`queue_wait_ms`, `in_flight_wait_ms`), could not take it
//! (`OVERLOADED`) or did not come; and it returns to the start once the
//! backlog is sent.

/// The ceiling of the window: the relay's default
/// `server.max_in_flight_batches_per_connection` is 1024; half of it keeps
/// the batches held for resending (about 12 MB at 1000 points) small.
pub const MAX_WINDOW: usize = 512;

/// What an ack said about the relay's room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckRoom {
    /// Acked without waiting.
    Room,
    /// Held back, refused as overloaded, or not acked.
    Pushback,
}

/// The window.
#[derive(Debug, Clone)]
pub struct Window {
    start: usize,
    max: usize,
    current: usize,
    /// Whether the last time the window was full, records were waiting.
    limiting: bool,
}

impl Window {
    /// A window of `start` batches growing to at most `max`.
    pub fn new(start: usize, max: usize) -> Self {
        let start = start.max(1);
        Self {
            start,
            max: max.max(start),
            current: start,
            limiting: false,
        }
    }

    /// Batches that may be unacked now.
    pub fn size(&self) -> usize {
        self.current
    }

    /// Whether another batch may be sent with `in_flight` unacked; a full
    /// window marks the backlog as held back by it.
    pub fn admits(&mut self, in_flight: usize) -> bool {
        let ok = in_flight < self.current;
        if !ok {
            self.limiting = true;
        }
        ok
    }

    /// An ack arrived.
    pub fn on_ack(&mut self, room: AckRoom) {
        match room {
            AckRoom::Room if self.limiting => self.current = (self.current + 1).min(self.max),
            AckRoom::Room => {}
            AckRoom::Pushback => self.current = (self.current / 2).max(self.start),
        }
    }

    /// Everything was handed out: back to the start.
    pub fn caught_up(&mut self) {
        self.current = self.start;
        self.limiting = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_while_a_backlog_is_held_back_and_halves_on_pushback() {
        let mut w = Window::new(4, 64);
        // Room, but nothing waited for the window: no growth.
        w.on_ack(AckRoom::Room);
        assert_eq!(w.size(), 4);
        // A backlog fills the window: one batch more per ack.
        assert!(w.admits(3));
        assert!(!w.admits(4));
        for _ in 0..4 {
            w.on_ack(AckRoom::Room);
        }
        assert_eq!(w.size(), 8, "doubled over one window of acks");
        for _ in 0..100 {
            w.on_ack(AckRoom::Room);
        }
        assert_eq!(w.size(), 64, "capped");
        w.on_ack(AckRoom::Pushback);
        assert_eq!(w.size(), 32);
        for _ in 0..10 {
            w.on_ack(AckRoom::Pushback);
        }
        assert_eq!(w.size(), 4, "never below the start");
        w.on_ack(AckRoom::Room);
        assert_eq!(w.size(), 5);
        w.caught_up();
        assert_eq!(w.size(), 4);
        w.on_ack(AckRoom::Room);
        assert_eq!(w.size(), 4, "no growth without a backlog");
    }
}
