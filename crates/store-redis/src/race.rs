//! Opening a connection when the network may swallow what is sent: several
//! attempts race, the first to connect wins (see [`race_connect`]).

use std::future::Future;
use std::time::Duration;

use redis::RedisResult;
use tokio::sync::Notify;

use crate::conn::{ConnectError, is_denial};

/// Attempts in flight at most while connecting.
const MAX_RACERS: usize = 4;
/// Attempts in flight at most counting those a waiting request asked for.
const MAX_HURRIED: usize = 8;
/// The least time between two attempts a waiting request asks for.
const HURRY_GAP: Duration = Duration::from_millis(25);
/// How long one race lasts at most, in connect timeouts.
const RACE_SPAN: u32 = 2;

/// Opens a connection with `open`, each attempt bounded by `timeout`. While an
/// attempt hangs (a black-holed network answers nothing, so only the timeout ends
/// it), another starts every `timeout / 4` (25..250 ms), up to four at once; the
/// first to succeed wins and the rest are dropped. So when the network heals, a
/// connection is made within a fraction of the connect timeout instead of after
/// the attempt in progress gives up. An attempt that fails outright (refused)
/// starts no other: that is an answer, not a hang, and the race ends once
/// nothing else is in flight.
///
/// A request waiting for the connection may ring `hurry`: once the race is half
/// a stagger old (a connect that has not answered by then is presumed hung;
/// one that is merely slow is not multiplied by the requests waiting for it),
/// the race starts a fresh attempt at once (at most one per 25 ms, eight in
/// flight in all), so the first request after a heal is answered within a
/// round trip rather than after the next scheduled attempt, which could be
/// later than the request's own timeout (the breaker's probe would fail and
/// keep L2 off for another open period).
///
/// The race itself lasts at most two connect timeouts: then it gives up at once,
/// dropping what still hangs, and the caller backs off and starts another. It
/// used to stop *launching* after eight attempts and then wait for those in
/// flight to time out, so a network that healed just after the eighth launch
/// was noticed only a full timeout (plus the caller's backoff) later: the chaos
/// run's black hole once served stale reads past its one-second grace that way.
pub(crate) async fn race_connect<T, F, Fut>(
    timeout: Duration,
    hurry: Option<&Notify>,
    open: F,
) -> Result<T, ConnectError>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = RedisResult<T>> + Send + 'static,
{
    let stagger = (timeout / 4).clamp(Duration::from_millis(25), Duration::from_millis(250));
    let mut racers = tokio::task::JoinSet::new();
    let launch = |racers: &mut tokio::task::JoinSet<_>| {
        let attempt = open();
        racers.spawn(async move { tokio::time::timeout(timeout, attempt).await });
    };
    let start = tokio::time::Instant::now();
    let deadline = start + timeout * RACE_SPAN;
    launch(&mut racers);
    let mut last_launch = start;
    let mut hurried = false;
    let mut last = ConnectError {
        why: String::from("no connect attempt made"),
        denied: false,
    };
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(ConnectError {
                why: format!("no connection within {:?}", timeout * RACE_SPAN),
                denied: last.denied,
            });
        }
        // More attempts only while one hangs: a failure is an answer.
        if racers.is_empty() {
            return Err(last);
        }
        let scheduled_at = last_launch + stagger;
        let asked_at = (last_launch + HURRY_GAP).max(start + stagger / 2);
        let scheduled = now >= scheduled_at && racers.len() < MAX_RACERS;
        let asked = hurried && now >= asked_at && racers.len() < MAX_HURRIED;
        if scheduled || asked {
            launch(&mut racers);
            last_launch = now;
            hurried = false;
        }
        // With every racer in flight, only a finished one or the deadline can
        // change anything.
        let mut wake = if racers.len() < MAX_RACERS {
            (last_launch + stagger).min(deadline)
        } else {
            deadline
        };
        if hurried && racers.len() < MAX_HURRIED {
            wake = wake.min(asked_at);
        }
        tokio::select! {
            joined = racers.join_next() => match joined {
                Some(Ok(Ok(Ok(conn)))) => return Ok(conn),
                Some(Ok(Ok(Err(e)))) => {
                    // Refused or rejected: no new attempt (the loop launches
                    // only while one hangs), but one still in flight may win.
                    last = ConnectError {
                        why: e.to_string(),
                        denied: is_denial(&e),
                    };
                }
                Some(Ok(Err(_))) => {
                    last = ConnectError {
                        why: format!("connect timed out after {timeout:?}"),
                        denied: false,
                    };
                }
                Some(Err(_)) | None => {}
            },
            () = tokio::time::sleep_until(wake) => {}
            () = async {
                match hurry {
                    Some(h) => h.notified().await,
                    None => std::future::pending().await,
                }
            }, if !hurried => hurried = true,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The connect race on a paused clock: attempts are futures that hang (a
    //! black hole), fail at once (refused) or succeed, by the time they start.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use redis::{ErrorKind, RedisError, RedisResult};
    use tokio::sync::Notify;
    use tokio::time::Instant;

    use super::{HURRY_GAP, MAX_HURRIED, MAX_RACERS, race_connect};
    use crate::conn::ConnectError;

    const TIMEOUT: Duration = Duration::from_secs(1);
    /// What the bus reader sleeps at most between two races.
    const BACKOFF: Duration = crate::bus::MAX_BACKOFF;

    /// Attempts made and the most in flight at once.
    #[derive(Default)]
    struct Tally {
        started: AtomicUsize,
        live: AtomicUsize,
        most_live: AtomicUsize,
    }

    /// Counts an attempt as live until dropped (finished, timed out or aborted).
    struct Live(Arc<Tally>);

    impl Live {
        fn new(tally: &Arc<Tally>) -> Self {
            tally.started.fetch_add(1, Ordering::SeqCst);
            let now = tally.live.fetch_add(1, Ordering::SeqCst) + 1;
            tally.most_live.fetch_max(now, Ordering::SeqCst);
            Self(tally.clone())
        }
    }

    impl Drop for Live {
        fn drop(&mut self) {
            self.0.live.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Attempts started before `heal` hang forever; later ones connect at once.
    async fn black_hole_until(heal: Instant, tally: Arc<Tally>) -> Result<Instant, ConnectError> {
        black_hole_hurried(heal, tally, None).await
    }

    /// The same, with a request able to ring `hurry`.
    async fn black_hole_hurried(
        heal: Instant,
        tally: Arc<Tally>,
        hurry: Option<&Notify>,
    ) -> Result<Instant, ConnectError> {
        race_connect(TIMEOUT, hurry, move || {
            let live = Live::new(&tally);
            async move {
                let _live = live;
                if Instant::now() < heal {
                    std::future::pending::<()>().await;
                }
                RedisResult::Ok(Instant::now())
            }
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_network_that_heals_mid_race_is_used_within_one_stagger() {
        let tally = Arc::new(Tally::default());
        let start = Instant::now();
        let heal = start + Duration::from_millis(600);
        let Ok(at) = black_hole_until(heal, tally.clone()).await else {
            panic!("the race gave up although the network healed inside it");
        };
        assert!(at >= heal);
        assert!(
            at - heal <= TIMEOUT / 4,
            "connected {:?} after the heal",
            at - heal
        );
        assert!(tally.most_live.load(Ordering::SeqCst) <= MAX_RACERS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_race_against_a_black_hole_ends_after_two_timeouts_with_bounded_attempts() {
        let tally = Arc::new(Tally::default());
        let start = Instant::now();
        let never = start + Duration::from_secs(3600);
        let outcome = black_hole_until(never, tally.clone()).await;
        let took = Instant::now() - start;
        let Err(e) = outcome else {
            panic!("connected through a black hole");
        };
        assert!(!e.denied);
        assert!(e.why.contains("no connection within"), "{}", e.why);
        assert_eq!(took, TIMEOUT * 2, "the race lasted {took:?}");
        let started = tally.started.load(Ordering::SeqCst);
        assert!((4..=12).contains(&started), "{started} attempts");
        assert!(tally.most_live.load(Ordering::SeqCst) <= MAX_RACERS);
        // The attempts still hanging at the end were dropped with the race.
        tokio::task::yield_now().await;
        assert_eq!(tally.live.load(Ordering::SeqCst), 0);
    }

    /// The case the chaos run caught: the network heals late in a race, after
    /// the attempts in flight were all sent into the black hole. The caller's
    /// next race (after its backoff) must find it within one second of the heal,
    /// wherever in the race the heal falls.
    #[tokio::test(start_paused = true)]
    async fn a_late_heal_is_noticed_by_the_next_race_within_a_second() {
        for late_ms in (0..2_000).step_by(50) {
            let tally = Arc::new(Tally::default());
            let start = Instant::now();
            let heal = start + Duration::from_millis(late_ms);
            let connected = loop {
                match black_hole_until(heal, tally.clone()).await {
                    Ok(at) => break at,
                    Err(_) => tokio::time::sleep(BACKOFF).await,
                }
                assert!(Instant::now() - start < Duration::from_secs(10));
            };
            let after = connected - heal;
            assert!(
                after <= TIMEOUT / 2,
                "healed {late_ms} ms into the race, connected {after:?} later"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_an_answer_not_a_hang() {
        let tally = Arc::new(Tally::default());
        let start = Instant::now();
        let counted = tally.clone();
        let outcome: Result<(), _> = race_connect(TIMEOUT, None, move || {
            let live = Live::new(&counted);
            async move {
                let _live = live;
                Err(RedisError::from((
                    ErrorKind::AuthenticationFailed,
                    "WRONGPASS",
                    String::from("invalid username-password pair"),
                )))
            }
        })
        .await;
        let Err(e) = outcome else {
            panic!("a refused attempt connected");
        };
        assert!(e.denied, "{}", e.why);
        assert_eq!(Instant::now(), start, "a refusal waited");
        assert_eq!(tally.started.load(Ordering::SeqCst), 1);
    }

    /// A refusal while an earlier attempt still hangs does not end the race:
    /// the hanging one may still connect.
    #[tokio::test(start_paused = true)]
    async fn a_refusal_does_not_drop_an_attempt_still_in_flight() {
        let made = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let outcome = race_connect(TIMEOUT, None, move || {
            let n = made.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    Ok(n)
                } else {
                    Err(RedisError::from((ErrorKind::Io, "refused")))
                }
            }
        })
        .await;
        assert_eq!(outcome.ok(), Some(0));
        assert_eq!(Instant::now() - start, Duration::from_millis(400));
    }

    /// A request waiting after the heal rings `hurry`: it need not wait for the
    /// next scheduled attempt (up to a stagger away, longer than a probe's
    /// operation timeout).
    #[tokio::test(start_paused = true)]
    async fn a_waiting_request_gets_a_fresh_attempt_at_once() {
        for heal_ms in [300u64, 1_100, 1_880, 1_990] {
            let tally = Arc::new(Tally::default());
            let hurry = Arc::new(Notify::new());
            let start = Instant::now();
            let heal = start + Duration::from_millis(heal_ms);
            let ring = hurry.clone();
            let request = tokio::spawn(async move {
                tokio::time::sleep_until(heal + Duration::from_millis(1)).await;
                ring.notify_one();
            });
            let Ok(at) = black_hole_hurried(heal, tally, Some(&hurry)).await else {
                panic!("healed {heal_ms} ms in and a request waited: still no connection");
            };
            assert!(
                at - heal <= Duration::from_millis(1),
                "healed {heal_ms} ms in, connected {:?} later",
                at - heal
            );
            request.await.expect("the ringing task");
        }
    }

    /// Requests waiting for the connection: one rings `hurry` every
    /// millisecond (of the paused clock) until aborted.
    fn ringing(hurry: &Arc<Notify>) -> tokio::task::JoinHandle<()> {
        let ring = hurry.clone();
        tokio::spawn(async move {
            loop {
                ring.notify_one();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    }

    /// However often requests ring, attempts stay spaced and bounded.
    #[tokio::test(start_paused = true)]
    async fn hurried_attempts_are_spaced_and_bounded() {
        let tally = Arc::new(Tally::default());
        let hurry = Arc::new(Notify::new());
        let requests = ringing(&hurry);
        let start = Instant::now();
        let never = start + Duration::from_secs(3600);
        let outcome = black_hole_hurried(never, tally.clone(), Some(&hurry)).await;
        assert!(outcome.is_err());
        assert_eq!(Instant::now() - start, TIMEOUT * 2);
        let started = tally.started.load(Ordering::SeqCst);
        let spaced = (TIMEOUT * 2).as_millis() / HURRY_GAP.as_millis() + 1;
        assert!(
            started >= MAX_HURRIED && started as u128 <= spaced,
            "{started} attempts"
        );
        assert!(tally.most_live.load(Ordering::SeqCst) <= MAX_HURRIED);
        requests.abort();
    }

    /// A connect that is slow but answers (a distant server) is not multiplied
    /// by the requests waiting for it.
    #[tokio::test(start_paused = true)]
    async fn a_slow_connect_is_not_multiplied_by_waiting_requests() {
        let tally = Arc::new(Tally::default());
        let hurry = Arc::new(Notify::new());
        let requests = ringing(&hurry);
        let counted = tally.clone();
        let start = Instant::now();
        let outcome = race_connect(TIMEOUT, Some(&hurry), move || {
            let live = Live::new(&counted);
            async move {
                let _live = live;
                tokio::time::sleep(Duration::from_millis(100)).await;
                RedisResult::Ok(())
            }
        })
        .await;
        requests.abort();
        assert!(outcome.is_ok());
        assert_eq!(Instant::now() - start, Duration::from_millis(100));
        assert_eq!(tally.started.load(Ordering::SeqCst), 1);
    }
}
