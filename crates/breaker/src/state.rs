//! The breaker's state, packed in one `u64` so admission and probe accounting
//! are single compare-and-swap operations.
//!
//! ```text
//! bits  0..2   state (closed, open, half-open)
//! bits  2..18  probes in flight (half-open)
//! bits 18..34  probes that succeeded (half-open)
//! bits 34..64  generation: +1 on every transition; permits carry it, so an
//!              outcome recorded after the state moved on is ignored
//! ```

/// The three states of a circuit breaker (resilience4j's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls flow; outcomes are recorded and may trip the breaker.
    Closed,
    /// Calls are rejected at once until the wait in open state has passed.
    Open,
    /// A limited number of probe calls decide between closing and reopening.
    HalfOpen,
}

impl State {
    /// `"closed"`, `"open"` or `"half_open"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    /// A gauge value ordered by severity: 0 closed, 1 half-open, 2 open (so
    /// `max` over instances is the worst state and `== 2` means open).
    #[must_use]
    pub const fn as_gauge(self) -> u8 {
        match self {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        }
    }

    /// The two state bits of the packed [`Word`] (independent of the gauge value).
    const fn kind_bits(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

const KIND_MASK: u64 = 0b11;
const PROBES_SHIFT: u32 = 2;
const SUCC_SHIFT: u32 = 18;
const GEN_SHIFT: u32 = 34;
const FIELD_MASK: u64 = 0xFFFF;

/// The most probes a half-open breaker can admit.
pub const MAX_PERMITTED_PROBES: u32 = 0xFFFF;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

impl Word {
    pub(crate) fn new(state: State, generation: u32) -> Self {
        let kind = state.kind_bits();
        Word(kind | (u64::from(generation) << GEN_SHIFT))
    }

    pub(crate) fn state(self) -> State {
        match self.0 & KIND_MASK {
            0 => State::Closed,
            1 => State::Open,
            _ => State::HalfOpen,
        }
    }

    pub(crate) fn probes(self) -> u32 {
        ((self.0 >> PROBES_SHIFT) & FIELD_MASK) as u32
    }

    pub(crate) fn successes(self) -> u32 {
        ((self.0 >> SUCC_SHIFT) & FIELD_MASK) as u32
    }

    /// 30 bits, wrapping; compared only for equality.
    pub(crate) fn generation(self) -> u32 {
        (self.0 >> GEN_SHIFT) as u32
    }

    pub(crate) fn next(self, state: State) -> Self {
        Word::new(state, self.generation().wrapping_add(1) & ((1 << 30) - 1))
    }

    pub(crate) fn with_counts(self, probes: u32, successes: u32) -> Self {
        let cleared = self.0 & !((FIELD_MASK << PROBES_SHIFT) | (FIELD_MASK << SUCC_SHIFT));
        Word(
            cleared
                | ((u64::from(probes) & FIELD_MASK) << PROBES_SHIFT)
                | ((u64::from(successes) & FIELD_MASK) << SUCC_SHIFT),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauge_values_order_states_by_severity() {
        let g = |s: State| s.as_gauge();
        assert_eq!(
            (g(State::Closed), g(State::HalfOpen), g(State::Open)),
            (0, 1, 2)
        );
        for s in [State::Closed, State::HalfOpen, State::Open] {
            assert_eq!(Word::new(s, 1).state(), s);
        }
    }

    #[test]
    fn fields_round_trip_and_generation_wraps() {
        let w = Word::new(State::HalfOpen, 7).with_counts(3, 65_535);
        assert_eq!(w.state(), State::HalfOpen);
        assert_eq!((w.probes(), w.successes(), w.generation()), (3, 65_535, 7));
        let n = w.next(State::Open);
        assert_eq!(
            (n.state(), n.probes(), n.successes(), n.generation()),
            (State::Open, 0, 0, 8)
        );
        let top = Word::new(State::Closed, (1 << 30) - 1);
        assert_eq!(top.next(State::Open).generation(), 0);
    }
}
