//! Random sequences of start / complete / fail / cancel / forget keep the map
//! consistent, and every caller still alive at the end gets an answer.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use cache_singleflight::{FlightError, Group, Outcome, Role};
use proptest::prelude::*;

type Results = Arc<Mutex<HashMap<usize, Result<u32, String>>>>;

/// A work future that stays pending until the test sets a result for its caller.
struct Controlled {
    caller: usize,
    results: Results,
}

impl Future for Controlled {
    type Output = Result<u32, String>;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        match self.results.lock().expect("lock").remove(&self.caller) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Start(u8),
    Complete(usize, u32),
    Fail(usize),
    Cancel(usize),
    Forget(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3).prop_map(Op::Start),
        2 => (0usize..24, any::<u32>()).prop_map(|(i, v)| Op::Complete(i, v)),
        1 => (0usize..24).prop_map(Op::Fail),
        1 => (0usize..24).prop_map(Op::Cancel),
        1 => (0u8..3).prop_map(Op::Forget),
    ]
}

type Call<'a> = Pin<Box<dyn Future<Output = Outcome<u32, String>> + 'a>>;

struct Caller<'a> {
    key: u8,
    fut: Option<Call<'a>>,
    done: Option<Outcome<u32, String>>,
}

fn poll_all(callers: &mut [Caller<'_>]) {
    let mut cx = Context::from_waker(Waker::noop());
    // Twice: a completion in one caller can unblock a follower polled earlier.
    for _ in 0..2 {
        for c in callers.iter_mut() {
            if let Some(f) = c.fut.as_mut()
                && let Poll::Ready(out) = f.as_mut().poll(&mut cx)
            {
                c.done = Some(out);
                c.fut = None;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_map_stays_consistent(ops in proptest::collection::vec(op(), 1..60)) {
        let group: Group<u8, u32, String> = Group::new();
        let results: Results = Arc::default();
        let runs: Arc<Mutex<Vec<usize>>> = Arc::default();
        // Values the test made available, per key (a follower must get one of them).
        let mut produced: HashMap<u8, Vec<u32>> = HashMap::new();
        let mut callers: Vec<Caller<'_>> = Vec::new();

        for op in ops {
            match op {
                Op::Start(key) => {
                    let id = callers.len();
                    let (results, runs) = (results.clone(), runs.clone());
                    let fut: Call<'_> = Box::pin(group.work(key, move || {
                        runs.lock().expect("lock").push(id);
                        Controlled { caller: id, results }
                    }));
                    callers.push(Caller { key, fut: Some(fut), done: None });
                }
                Op::Complete(i, _) | Op::Fail(i) if i < callers.len() => {
                    let running = runs.lock().expect("lock").contains(&i);
                    if running && callers[i].fut.is_some() {
                        let r = if let Op::Complete(_, v) = op { Ok(v) } else { Err(format!("e{i}")) };
                        if let Ok(v) = r { produced.entry(callers[i].key).or_default().push(v); }
                        results.lock().expect("lock").insert(i, r);
                    }
                }
                Op::Cancel(i) if i < callers.len() => callers[i].fut = None,
                Op::Forget(key) => { group.forget(&key); }
                _ => {}
            }
            poll_all(&mut callers);

            // No orphans: every flight in the map has a live caller of its key.
            let live_keys: std::collections::HashSet<u8> =
                callers.iter().filter(|c| c.fut.is_some()).map(|c| c.key).collect();
            prop_assert!(group.in_flight() <= live_keys.len());
            for c in &callers {
                if let Some(Ok(v)) = c.done.as_ref().map(Outcome::result) {
                    prop_assert!(produced.get(&c.key).is_some_and(|p| p.contains(v)));
                }
            }
        }

        // Finish every running work; then every live caller must have an answer.
        for _ in 0..callers.len() + 1 {
            let running: Vec<usize> = runs.lock().expect("lock").clone();
            for i in running {
                if callers[i].fut.is_some() {
                    results.lock().expect("lock").entry(i).or_insert(Ok(1_000 + i as u32));
                }
            }
            poll_all(&mut callers);
        }
        for c in &callers {
            prop_assert!(c.fut.is_none(), "a live caller was left waiting");
        }
        prop_assert_eq!(group.in_flight(), 0);
        let st = group.stats();
        prop_assert_eq!(st.executions as usize, runs.lock().expect("lock").len());
        for c in callers.iter().filter_map(|c| c.done.as_ref()) {
            if c.role() == Role::Follower {
                prop_assert!(c.is_shared());
            }
            prop_assert!(!matches!(c.result(), Err(FlightError::LeaderPanicked)));
        }
    }
}
