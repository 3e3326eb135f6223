//! Delivery tracking: which stored events a socket has delivered, so none
//! is delivered twice or skipped, whatever races between replay and live
//! events.

use std::collections::BTreeSet;

/// Which stored events a socket has delivered: every `seq` up to `floor`,
/// and those above it in `above` (events can arrive out of order: an answer
/// stored after a question may overtake the question's echo).
#[derive(Debug, Default)]
pub(crate) struct Delivered {
    floor: i64,
    above: BTreeSet<i64>,
}

impl From<i64> for Delivered {
    fn from(floor: i64) -> Self {
        Self {
            floor,
            above: BTreeSet::new(),
        }
    }
}

impl Delivered {
    /// Every `seq` up to this one was delivered.
    pub(crate) fn floor(&self) -> i64 {
        self.floor
    }

    /// Records `seq`; false when it was delivered already.
    pub(crate) fn first_time(&mut self, seq: i64) -> bool {
        // In order, the usual case: no set (which, once used, keeps a node).
        if seq == self.floor + 1 && self.above.is_empty() {
            self.floor = seq;
            return true;
        }
        if seq <= self.floor || !self.above.insert(seq) {
            return false;
        }
        while self.above.remove(&(self.floor + 1)) {
            self.floor += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Delivered;

    #[test]
    fn an_overtaken_event_is_still_delivered_once() {
        let mut d = Delivered::from(2);
        assert!(!d.first_time(2), "replayed already");
        assert!(d.first_time(4), "an answer overtaking its question");
        assert!(d.first_time(3), "the question's echo arrives late");
        assert!(!d.first_time(3) && !d.first_time(4));
        assert_eq!(d.floor, 4);
        assert!(d.above.is_empty());
    }
}
