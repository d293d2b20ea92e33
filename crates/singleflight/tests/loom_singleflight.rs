//! loom models of the hand-written synchronization. Run with
//! `RUSTFLAGS="--cfg cache_loom" cargo test --release -p cache-singleflight --test loom_singleflight`
//! (`cargo xtask test` does).
#![cfg(cache_loom)]

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use cache_singleflight::{Group, Role};
use loom::future::block_on;
use loom::thread;

/// Returns `Pending` once (waking itself), then `value`: gives other threads a
/// window to join the flight.
struct YieldOnce(bool, u32);

impl Future for YieldOnce {
    type Output = Result<u32, ()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.0 {
            Poll::Ready(Ok(self.1))
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[test]
fn a_late_joiner_never_misses_the_wake_up() {
    loom::model(|| {
        let g: Arc<Group<u8, u32, ()>> = Arc::new(Group::new());
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || block_on(g2.work(1, || YieldOnce(false, 1))));
        let a = block_on(g.work(1, || YieldOnce(false, 2)));
        let b = t.join().expect("no panic");
        let st = g.stats();
        let (a_role, b_role) = (a.role(), b.role());
        let (a, b) = (a.into_result().expect("ok"), b.into_result().expect("ok"));
        if st.joins == 1 {
            assert_eq!(a, b, "a follower gets the leader's value");
            assert_eq!(st.executions, 1);
            assert!(a_role == Role::Follower || b_role == Role::Follower);
        } else {
            assert_eq!((a, b), (2, 1));
            assert_eq!(st.executions, 2);
        }
        assert_eq!(g.in_flight(), 0);
    });
}

#[test]
fn leader_cancel_racing_a_join() {
    loom::model(|| {
        let g: Arc<Group<u8, u32, ()>> = Arc::new(Group::new());
        let g2 = Arc::clone(&g);
        let canceller = thread::spawn(move || {
            let mut fut = pin!(g2.work(1, || std::future::pending::<Result<u32, ()>>()));
            let _ = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
            // Dropped here, mid-flight.
        });
        let out = block_on(g.work(1, || std::future::ready(Ok(7))));
        canceller.join().expect("no panic");
        assert_eq!(out.into_result().expect("value"), 7);
        assert!(g.stats().takeovers <= 1);
        assert_eq!(g.in_flight(), 0, "no flight left behind");
    });
}

#[test]
fn forget_racing_completion() {
    loom::model(|| {
        let g: Arc<Group<u8, u32, ()>> = Arc::new(Group::new());
        let g2 = Arc::clone(&g);
        let t = thread::spawn(move || block_on(g2.work(1, || YieldOnce(false, 1))));
        g.forget(&1);
        let b = block_on(g.work(1, || std::future::ready(Ok(2))));
        let a = t.join().expect("no panic");
        let (a, b) = (a.into_result().expect("ok"), b.into_result().expect("ok"));
        assert!(a == 1 || a == 2);
        assert!(b == 1 || b == 2);
        assert_eq!(g.in_flight(), 0, "neither flight is left in the map");
    });
}

#[test]
fn follower_cancel_racing_completion() {
    loom::model(|| {
        let g: Arc<Group<u8, u32, ()>> = Arc::new(Group::new());
        let g2 = Arc::clone(&g);
        let quitter = thread::spawn(move || {
            let mut fut = pin!(g2.work(1, || std::future::pending::<Result<u32, ()>>()));
            let _ = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        });
        let out = block_on(g.work(1, || YieldOnce(false, 5)));
        quitter.join().expect("no panic");
        assert_eq!(out.into_result().expect("ok"), 5);
        assert_eq!(g.in_flight(), 0);
    });
}

#[test]
fn detached_work_outlives_its_cancelled_first_caller() {
    loom::model(|| {
        let g: Arc<Group<u8, u32, ()>> = Arc::new(Group::new());
        let mut spawned = None;
        {
            let mut first =
                pin!(g.work_detached(1, || YieldOnce(false, 1), |fut| spawned = Some(fut)));
            let _ = first.as_mut().poll(&mut Context::from_waker(Waker::noop()));
            // The first caller is dropped here; the work is not.
        }
        let work = spawned.expect("spawned on first poll");
        let runner = thread::spawn(move || block_on(work));
        let out = block_on(g.work(1, || std::future::ready(Ok(2))));
        runner.join().expect("no panic");
        let st = g.stats();
        match out.role() {
            Role::Follower => {
                assert_eq!(out.into_result().expect("value"), 1);
                assert_eq!(st.executions, 1, "joining never runs the work again");
            }
            _ => {
                // Only possible once the detached work had already ended.
                assert_eq!(out.into_result().expect("value"), 2);
                assert_eq!(st.takeovers, 0);
            }
        }
        assert_eq!(g.in_flight(), 0);
    });
}
