//! The breaker agrees with a simple sequential reference model on random
//! sequences of acquire / report / drop / time steps.

use std::collections::VecDeque;
use std::time::Duration;

use cache_breaker::{CircuitBreaker, MockClock, Permit, Policy, State};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Acquire(usize),
    Success(usize),
    Failure(usize),
    Ignore(usize),
    Drop(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..3).prop_map(Op::Acquire),
        3 => (0usize..3).prop_map(Op::Success),
        3 => (0usize..3).prop_map(Op::Failure),
        1 => (0usize..3).prop_map(Op::Ignore),
        1 => (0usize..3).prop_map(Op::Drop),
        2 => (0u64..1_500).prop_map(Op::Advance),
    ]
}

/// The reference: plain sequential code, written from the contract.
struct Model {
    policy: Policy,
    wait_ms: u64,
    permitted: u32,
    state: State,
    generation: u64,
    run: u32,
    window: VecDeque<bool>, // true = failure
    open_until: u64,
    probes: u32,
    successes: u32,
    now: u64,
}

#[derive(Clone, Copy)]
struct Ticket {
    generation: u64,
    probe: bool,
}

impl Model {
    fn go(&mut self, to: State) {
        if to == State::Open {
            self.open_until = self.now + self.wait_ms;
        }
        if to == State::Closed {
            self.run = 0;
            self.window.clear();
        }
        self.state = to;
        self.generation += 1;
        self.probes = 0;
        self.successes = 0;
    }

    fn acquire(&mut self) -> Option<Ticket> {
        if self.state == State::Open {
            if self.now < self.open_until {
                return None;
            }
            self.go(State::HalfOpen);
        }
        match self.state {
            State::Closed => Some(Ticket {
                generation: self.generation,
                probe: false,
            }),
            _ if self.probes + self.successes >= self.permitted => None,
            _ => {
                self.probes += 1;
                Some(Ticket {
                    generation: self.generation,
                    probe: true,
                })
            }
        }
    }

    /// verdict: Some(true) failure, Some(false) success, None ignore/drop.
    fn report(&mut self, t: Ticket, verdict: Option<bool>) {
        if t.generation != self.generation {
            return;
        }
        if t.probe {
            match verdict {
                Some(true) => self.go(State::Open),
                Some(false) if self.successes + 1 >= self.permitted => self.go(State::Closed),
                Some(false) => {
                    self.probes -= 1;
                    self.successes += 1;
                }
                None => self.probes -= 1,
            }
            return;
        }
        let Some(failure) = verdict else { return };
        match self.policy {
            Policy::ConsecutiveFailures(n) => {
                self.run = if failure { self.run + 1 } else { 0 };
                if failure && self.run >= n {
                    self.go(State::Open);
                }
            }
            Policy::CountWindow {
                size,
                threshold,
                minimum_calls,
            } => {
                self.window.push_back(failure);
                if self.window.len() > size as usize {
                    self.window.pop_front();
                }
                let calls = self.window.len() as f64;
                let fails = self.window.iter().filter(|f| **f).count() as f64;
                if failure && calls >= f64::from(minimum_calls) && fails >= threshold * calls {
                    self.go(State::Open);
                }
            }
            Policy::TimeWindow { .. } => unreachable!("not modelled"),
        }
    }
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        (1u32..5).prop_map(Policy::ConsecutiveFailures),
        (1u32..8, 1u32..=4, 1u32..8).prop_map(|(size, quarters, min)| Policy::CountWindow {
            size,
            threshold: f64::from(quarters) / 4.0,
            minimum_calls: min.min(size),
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn agrees_with_the_reference_model(
        policy in policy(),
        permitted in 1u32..4,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let clock = MockClock::new();
        let wait_ms = 1_000;
        let b = CircuitBreaker::builder()
            .policy(policy)
            .wait_in_open(Duration::from_millis(wait_ms))
            .permitted_in_half_open(permitted)
            .clock(clock.clone())
            .build()
            .expect("valid");
        let mut m = Model {
            policy, wait_ms, permitted, state: State::Closed, generation: 0, run: 0,
            window: VecDeque::new(), open_until: 0, probes: 0, successes: 0, now: 0,
        };
        let mut slots: [Option<(Permit<'_>, Ticket)>; 3] = [None, None, None];
        for op in ops {
            match op {
                Op::Acquire(i) => {
                    if slots[i].is_none() {
                        let real = b.try_acquire();
                        let model = m.acquire();
                        prop_assert_eq!(real.is_ok(), model.is_some(), "admission differs");
                        if let (Ok(p), Some(t)) = (real, model) {
                            prop_assert_eq!(p.is_probe(), t.probe);
                            slots[i] = Some((p, t));
                        }
                    }
                }
                Op::Success(i) | Op::Failure(i) | Op::Ignore(i) | Op::Drop(i) => {
                    if let Some((p, t)) = slots[i].take() {
                        match op {
                            Op::Success(_) => { p.success(); m.report(t, Some(false)); }
                            Op::Failure(_) => { p.failure(); m.report(t, Some(true)); }
                            Op::Ignore(_) => { p.ignore(); m.report(t, None); }
                            _ => { drop(p); m.report(t, None); }
                        }
                    }
                }
                Op::Advance(ms) => {
                    clock.advance(Duration::from_millis(ms));
                    m.now += ms;
                }
            }
            prop_assert_eq!(b.state(), m.state);
        }
    }
}
